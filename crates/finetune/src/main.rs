use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use graft_core::cli;
use graft_core::head::Fit;
use graft_core::progress::Progress;
use graft_finetune::curve::Size;
use graft_finetune::{Config, HeadConfig, HeadKind};

/// Trains a head on backbone features: logistic regression (C chosen on val or by
/// cross-validation) or an MLP (early stopping on val).
///
/// Examples:
///   graft-finetune --features runs/rt/features --out runs/rt/head --c 0.1,1,10
///   graft-finetune --features runs/rt/features --out runs/rt/mlp --head mlp --hidden 512 --epochs 30
///   graft-finetune --features runs/rt/features --out runs/rt/head --config heads/mlp.yaml
///   graft-finetune bench --features runs/imdb/features --c 10
#[derive(Debug, Parser)]
#[command(version, verbatim_doc_comment, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    paths: Option<graft_core::config::finetune::Paths>,
    #[command(flatten)]
    params: HeadConfig,
    /// Warnings and errors only.
    #[arg(long, short, global = true)]
    quiet: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Learning curve: test accuracy against labelled rows per class (`--sizes 8,32,128`)
    /// or train fractions (`--fractions 0.01,0.1,1`), each trained `--repeats` times on
    /// seeded subsets; prints a table and writes `curve.json` with `--out`.
    ///
    /// Example: graft-finetune curve --features runs/rt/features --sizes 8,32,128 --out runs/rt/curve
    #[command(verbatim_doc_comment)]
    Curve {
        /// Folder of `graft-backbone` output (train, and test for the scores).
        #[arg(long)]
        features: PathBuf,
        /// Labelled train rows per class at each point.
        #[arg(long, value_delimiter = ',', conflicts_with = "fractions")]
        sizes: Vec<usize>,
        /// Fractions of each class's train rows at each point.
        #[arg(long, value_delimiter = ',')]
        fractions: Vec<f64>,
        /// Seeded subsets trained per point.
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        /// Folder for `curve.json`.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        params: HeadConfig,
    },
    /// Trains the top K transformer layers of a BERT-family backbone with a linear head, on
    /// the token vectors at the cut below them (`graft-backbone --tokens --outputs
    /// hidden_state_N`), and writes the backbone with the trained layers as ONNX beside the
    /// head: `graft-backbone --spec OUT/spec.yaml` then gives the head's features.
    ///
    /// Example: graft-finetune layers --cut runs/rt/cut --spec models/all-minilm-l6-v2.yaml --layers 2 --out runs/rt/tuned
    #[command(verbatim_doc_comment)]
    Layers(graft_core::config::finetune::LayersConfig),
    /// Times training (reading excluded) and prints one JSON line: seconds (best of
    /// `--repeat`), iterations or epochs, and test accuracy when `test.arrow` exists.
    ///
    /// Example: graft-finetune bench --features runs/imdb/features --c 10
    #[command(verbatim_doc_comment)]
    Bench {
        /// Folder of `graft-backbone` output.
        #[arg(long)]
        features: PathBuf,
        /// Timed trainings; the fastest is reported.
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        #[command(flatten)]
        params: HeadConfig,
    },
}

fn main() -> ExitCode {
    let matches = Cli::command().try_get_matches().unwrap_or_else(|e| {
        let _ = e.print();
        std::process::exit(if e.use_stderr() { 1 } else { 0 })
    });
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| {
        let _ = e.print();
        std::process::exit(1)
    });
    cli::init_logging(cli.quiet);
    let given = graft_core::config::given(matches.subcommand().map_or(&matches, |(_, m)| m));
    // Keys the chosen head would ignore are refused, from the command line and the config file.
    let check = |params: &HeadConfig| graft_finetune::check_given(params, &given);
    match (cli.command, cli.paths) {
        (Some(Command::Layers(config)), _) => match config.train.first_unused(&given) {
            Some((_, why)) => {
                eprintln!("error: {why}");
                ExitCode::from(1)
            }
            None => cli::exit(layers(&config)),
        },
        (Some(Command::Bench { features, repeat, params }), _) => {
            cli::exit(check(&params).and_then(|()| bench(&features, repeat, &params)))
        }
        (Some(Command::Curve { features, sizes, fractions, repeats, out, params }), _) => {
            if let Err(e) = check(&params) {
                return cli::exit(Err(e));
            }
            let sizes: Vec<Size> = if fractions.is_empty() {
                sizes.into_iter().map(Size::PerClass).collect()
            } else {
                fractions.into_iter().map(Size::Fraction).collect()
            };
            cli::exit(curve(&features, &sizes, repeats, out.as_deref(), &params))
        }
        (None, Some(paths)) => {
            let mut config = Config { features: paths.features, out: paths.out, params: cli.params };
            if let Some(path) = paths.config {
                match graft_finetune::apply_config_file(&config.params, &path, &given) {
                    Ok(params) => config.params = params,
                    Err(e) => return cli::exit(Err(e)),
                }
            }
            cli::exit(check(&config.params).and_then(|()| train(&config, cli.quiet)))
        }
        (None, None) => {
            eprintln!("error: give --features and --out, or a subcommand (see --help)");
            ExitCode::from(1)
        }
    }
}

/// One row of the per-epoch table.
fn epoch_line(e: &graft_finetune::mlp::Epoch) -> String {
    let opt = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.4}"));
    format!("{:>5}  {:>10.4}  {:>8}  {:>7}  {:.2e}", e.epoch, e.train_loss, opt(e.val_loss), opt(e.val_accuracy), e.lr)
}

const EPOCH_HEADER: &str = "epoch  train_loss  val_loss  val_acc  lr";

fn train(config: &Config, quiet: bool) -> graft_finetune::Result<()> {
    // Long runs on a terminal show a bar while training and the table after it; otherwise
    // each epoch's row is logged as it completes.
    let bar = cli::Bar::counting(quiet, "epochs");
    let with_bar = bar.visible() && config.params.head == HeadKind::Mlp && config.params.epochs > 30;
    if with_bar {
        bar.start("training", config.params.epochs as u64);
    } else if config.params.head == HeadKind::Mlp {
        tracing::info!("{EPOCH_HEADER}");
    }
    let head = graft_finetune::run(config, |e| {
        if with_bar {
            bar.advance(1);
        } else {
            tracing::info!("{}", epoch_line(e));
        }
    });
    bar.finish();
    let head = head?;
    if with_bar {
        tracing::info!("{EPOCH_HEADER}");
        if let Fit::Mlp { epochs, .. } = &head.info.training.fit {
            for e in epochs {
                tracing::info!("{}", epoch_line(e));
            }
        }
    }
    let t = &head.info.training;
    let chosen = match &t.fit {
        Fit::LogisticRegression { chosen_c, .. } => format!("C={chosen_c}"),
        Fit::Mlp { epochs, best_epoch } | Fit::Layers { epochs, best_epoch, .. } => {
            format!("epoch {best_epoch} of {}", epochs.len())
        }
        Fit::Ridge { chosen_alpha, .. } => format!("alpha={chosen_alpha}"),
    };
    let calibrated = t.calibration.as_ref().map_or(String::new(), |c| {
        format!(
            ", temperature {:.3} (val loss {:.4} -> {:.4})",
            head.info.temperature, c.val_loss_before, c.val_loss_after
        )
    });
    tracing::info!(
        "kept {chosen} ({} train rows, {} outputs, dim {}){calibrated}; wrote {}",
        t.train_rows,
        head.info.architecture.outputs(),
        head.info.architecture.dim(),
        config.out.display()
    );
    Ok(())
}

fn layers(config: &graft_core::config::finetune::LayersConfig) -> Result<(), graft_tune::Error> {
    tracing::info!("{EPOCH_HEADER}  seconds");
    let summary = graft_tune::run(config, |e, seconds| {
        let opt = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.4}"));
        tracing::info!(
            "{:>5}  {:>10.4}  {:>8}  {:>7}  {:.2e}  {seconds:.1}",
            e.epoch,
            e.train_loss,
            opt(e.val_loss),
            opt(e.val_accuracy),
            e.lr
        );
    })?;
    if let Fit::Layers { epochs, best_epoch, .. } = &summary.head.info.training.fit {
        tracing::info!(
            "kept epoch {best_epoch} of {} ({} train rows, {:.1} s); wrote {} (graft-backbone --spec {}/{})",
            epochs.len(),
            summary.train_rows,
            summary.seconds.iter().sum::<f64>(),
            summary.out.display(),
            summary.out.display(),
            graft_tune::SPEC_FILE
        );
    }
    Ok(())
}

fn bench(features: &std::path::Path, repeat: usize, params: &HeadConfig) -> graft_finetune::Result<()> {
    let (train, val) = graft_finetune::read_splits(features, params)?;
    let test_path = features.join("test.arrow");
    let test = test_path.exists().then(|| graft_core::features::read_features(&test_path)).transpose()?;
    let mut best = f64::INFINITY;
    let mut head = None;
    for _ in 0..repeat.max(1) {
        let started = Instant::now();
        let fitted = graft_finetune::fit(params, &train, val.as_ref(), |_| {})?;
        best = best.min(started.elapsed().as_secs_f64());
        head = Some(fitted);
    }
    let head = head.expect("at least one run");
    let t = &head.info.training;
    let (steps, chosen_c) = match &t.fit {
        Fit::LogisticRegression { selection, chosen_c, .. } => {
            (selection.iter().filter_map(|c| c.fit.as_ref()).map(|f| f.iterations).sum(), Some(*chosen_c))
        }
        Fit::Mlp { epochs, .. } | Fit::Layers { epochs, .. } => (epochs.len(), None),
        Fit::Ridge { alpha_selection, .. } => (alpha_selection.len(), None),
    };
    let accuracy = test
        .filter(|_| head.info.task.is_classification())
        .map(|t| graft_finetune::accuracy(&head.predict_proba(t.x.view()), &t.classes));
    let line = serde_json::json!({
        "head": head.info.architecture.kind(),
        "rows": t.train_rows,
        "dim": head.info.architecture.dim(),
        "threads": rayon::current_num_threads(),
        "seconds": best,
        "steps": steps,
        "chosen_c": chosen_c,
        "test_accuracy": accuracy,
    });
    #[allow(clippy::print_stdout)]
    {
        println!("{line}");
    }
    Ok(())
}

fn curve(
    features: &std::path::Path,
    sizes: &[Size],
    repeats: usize,
    out: Option<&std::path::Path>,
    params: &HeadConfig,
) -> graft_finetune::Result<()> {
    let curve = graft_finetune::curve::learning_curve(features, sizes, repeats, params)?;
    if let Some(dir) = out {
        graft_finetune::curve::write(dir, &curve)?;
    }
    let mut table =
        format!("{:>14}  {:>10}  {} accuracy (mean ± std over {repeats})\n", "size", "train rows", curve.split);
    for p in &curve.points {
        let size = match p.size {
            Size::PerClass(k) => format!("{k} per class"),
            Size::Fraction(f) => format!("{f} of train"),
        };
        table.push_str(&format!("{size:>14}  {:>10}  {:.4} ± {:.4}\n", p.train_rows, p.accuracy_mean, p.accuracy_std));
    }
    #[allow(clippy::print_stdout)]
    {
        print!("{table}");
    }
    Ok(())
}
