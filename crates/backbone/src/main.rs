use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use graft_core::cli;

/// Runs a pretrained ONNX backbone over preprocessed splits and writes pooled features.
///
/// Examples:
///   graft-backbone --spec models/all-minilm-l6-v2.yaml --input runs/rt/data --out runs/rt/features
///   graft-backbone --spec models/all-minilm-l6-v2.yaml --input runs/rt/data --out runs/rt/features --device cuda
///   graft-backbone ... --shard 0/2 --out runs/rt/f0; graft-backbone ... --shard 1/2 --out runs/rt/f1
///   graft-backbone merge --out runs/rt/features runs/rt/f0 runs/rt/f1
///   graft-backbone export --bundle runs/rt/model --out runs/rt/model.onnx
///   graft-backbone doctor
#[derive(Debug, Parser)]
#[command(version, verbatim_doc_comment, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Option<graft_backbone::Config>,
    /// No progress bar; warnings and errors only.
    #[arg(long, short, global = true)]
    quiet: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Reports which ONNX Runtime library is loaded, its build, and whether CUDA can be used.
    ///
    /// Example: graft-backbone doctor
    #[command(verbatim_doc_comment)]
    Doctor,
    /// Lists an ONNX model's inputs, outputs and intermediate tensors (with shapes where the
    /// file records them); any tensor can be pooled into features with `--outputs NAME`.
    ///
    /// Example: graft-backbone inspect .graft/models/all-minilm-l6-v2/model.onnx
    #[command(verbatim_doc_comment)]
    Inspect {
        /// The ONNX model file.
        model: PathBuf,
    },
    /// Writes a model bundle as one ONNX model: the backbone with pooling, normalisation,
    /// standardisation, head, temperature and softmax, outputs `probabilities` (or `value`)
    /// and `embedding`, labels in its metadata; runs in any ONNX Runtime.
    Export {
        /// The model bundle.
        #[arg(long)]
        bundle: PathBuf,
        /// The ONNX file to write, or with `--format mlflow` the MLflow model folder.
        #[arg(long)]
        out: PathBuf,
        /// One ONNX file, or an MLflow model folder.
        #[arg(long, value_enum, default_value = "onnx")]
        format: graft_backbone::export::ExportFormat,
    },
    /// Joins the outputs of `--shard 0/N` .. `--shard N-1/N` into one unsharded output.
    Merge {
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// The N shard output folders, in any order.
        #[arg(required = true)]
        shards: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli: Cli = cli::parse();
    cli::init_logging(cli.quiet);
    match (cli.command, cli.config) {
        (Some(Command::Doctor), _) => cli::exit(graft_backbone::doctor().map(|report| {
            let _ = std::io::stdout().write_all(report.as_bytes());
        })),
        (Some(Command::Inspect { model }), _) => cli::exit(graft_backbone::inspect(&model).map(|report| {
            let _ = std::io::stdout().write_all(report.as_bytes());
        })),
        (Some(Command::Export { bundle, out, format }), _) => {
            cli::exit(graft_backbone::export::export(&bundle, &out, format).map(|()| {
                tracing::info!("wrote {}", out.display());
            }))
        }
        (Some(Command::Merge { out, shards }), _) => {
            cli::exit(graft_backbone::merge::merge(&shards, &out).map(|rows| {
                tracing::info!("merged {} shards: {rows:?} rows into {}", shards.len(), out.display());
            }))
        }
        (None, Some(config)) => embed(&config, cli.quiet),
        (None, None) => {
            eprintln!("error: give --spec, --input and --out, or a subcommand (see --help)");
            ExitCode::from(1)
        }
    }
}

fn embed(config: &graft_backbone::Config, quiet: bool) -> ExitCode {
    let bar = cli::Bar::new(quiet);
    let started = std::time::Instant::now();
    cli::exit(graft_backbone::run(config, &bar).map(|s| {
        let secs = started.elapsed().as_secs_f64();
        let (rows, tokens) = s.rows.values().fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        tracing::info!(
            "onnx runtime `{}` on {}{}, batches of {}; {rows} rows{}{}, dim {} in {secs:.1}s ({:.0} rows/s{}; {:.1}% \
             in inference); wrote {}",
            s.runtime.display(),
            s.provider,
            if s.sessions > 1 { format!(" ({} sessions side by side)", s.sessions) } else { String::new() },
            s.batch_size,
            if tokens > 0 { format!(", {tokens} tokens") } else { String::new() },
            if s.rejected > 0 { format!(" ({} rejected: undecodable image)", s.rejected) } else { String::new() },
            s.dim,
            rows as f64 / secs,
            if tokens > 0 { format!(", {:.0} tokens/s", tokens as f64 / secs) } else { String::new() },
            100.0 * s.inference_seconds / secs,
            config.out.display()
        );
    }))
}
