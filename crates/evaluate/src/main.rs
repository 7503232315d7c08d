use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use graft_core::cli;

/// Evaluates a trained head on a split of features: metrics.json, predictions.arrow and a
/// table on stdout.
///
/// Examples:
///   graft-evaluate --head runs/rt/head --features runs/rt/features --out runs/rt/eval
///   graft-evaluate show runs/rt/eval
///   graft-evaluate compare runs/a/eval runs/b/eval
///   graft-evaluate fuse runs/a/eval runs/b/eval --method weighted --val runs/a/val,runs/b/val --out runs/fused
///   graft-evaluate mteb --features runs/rt/features --per-class 8 --experiments 10
///   graft-evaluate bundle --head runs/rt/head --spec models/m.yaml --data runs/rt/data --eval runs/rt/eval --out runs/rt/model
#[derive(Debug, Parser)]
#[command(version, verbatim_doc_comment, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Option<graft_evaluate::Config>,
    /// Warnings and errors only.
    #[arg(long, short, global = true)]
    quiet: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Prints the table of an earlier evaluation.
    ///
    /// Example: graft-evaluate show runs/rt-minilm/eval
    #[command(verbatim_doc_comment)]
    Show {
        /// An evaluation folder, or its metrics.json.
        metrics: PathBuf,
    },
    /// Compares two prediction files (or eval folders) on the same rows: accuracies, a
    /// paired-bootstrap interval of the difference, McNemar's exact test.
    ///
    /// Example: graft-evaluate compare runs/a/eval runs/b/eval --out runs/a-vs-b
    #[command(verbatim_doc_comment)]
    Compare {
        /// The first evaluation folder or predictions.arrow (A).
        a: PathBuf,
        /// The second, on the same rows (B); differences are B - A.
        b: PathBuf,
        /// Paired bootstrap resamples of the accuracy difference.
        #[arg(long, default_value_t = 2000)]
        bootstrap: usize,
        /// Seed of the bootstrap.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Also write `comparison.json` into this folder.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Fuses several heads' predictions on the same rows (mean, weighted, vote) and
    /// evaluates the fusion beside each member.
    Fuse(graft_evaluate::fuse::FuseConfig),
    /// Copies a trained head, its backbone, how its rows were read and its test evaluation
    /// into one relocatable folder with a manifest and a model card.
    Bundle(graft_core::config::evaluate::BundleConfig),
    /// Scores new rows with a model bundle: one output row per input row, in input order,
    /// with a drift summary beside it.
    Predict(graft_core::config::evaluate::PredictConfig),
    /// MTEB's classification protocol (K labelled rows per class, n draws, logistic
    /// regression, test split): mean and spread, comparable with published MTEB scores.
    Mteb(graft_core::config::evaluate::MtebConfig),
}

fn main() -> ExitCode {
    let cli: Cli = cli::parse();
    cli::init_logging(cli.quiet);
    let report = match (cli.command, cli.config) {
        (Some(Command::Show { metrics }), _) => graft_evaluate::load_report(&metrics),
        (Some(Command::Fuse(fuse)), _) => graft_evaluate::fuse::fuse(&fuse),
        (Some(Command::Compare { a, b, bootstrap, seed, out }), _) => {
            let compared = graft_evaluate::compare::compare(&a, &b, bootstrap, seed)
                .and_then(|c| out.as_deref().map(|dir| graft_evaluate::compare::write(dir, &c)).transpose().map(|_| c));
            return cli::exit(compared.map(|c| {
                let _ = std::io::stdout().write_all(graft_evaluate::compare::render(&c).as_bytes());
            }));
        }
        (Some(Command::Bundle(config)), _) => {
            return cli::exit(graft_evaluate::bundle::bundle(&config).map(|info| {
                tracing::info!("wrote bundle {} ({} on {})", config.out.display(), info.task, info.features.spec);
            }));
        }
        (Some(Command::Predict(config)), _) => {
            return cli::exit(graft_evaluate::predict::predict(&config).map(|drift| {
                tracing::info!("wrote {}", config.out.display());
                let _ = std::io::stdout().write_all(graft_evaluate::predict::render(&drift).as_bytes());
            }));
        }
        (Some(Command::Mteb(protocol)), _) => {
            return cli::exit(graft_evaluate::mteb::run(&protocol).map(|r| {
                let _ = std::io::stdout().write_all(graft_evaluate::mteb::render(&r).as_bytes());
            }));
        }
        (None, Some(config)) => graft_evaluate::run(&config).inspect(|_| {
            tracing::info!("wrote {} (metrics.json, predictions.arrow, report.html)", config.out.display());
        }),
        (None, None) => {
            eprintln!("error: give --head, --features and --out, or a subcommand (see --help)");
            return ExitCode::from(1);
        }
    };
    cli::exit(report.map(|r| {
        let _ = std::io::stdout().write_all(graft_evaluate::render(&r).as_bytes());
    }))
}
