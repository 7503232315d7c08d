use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use graft_core::cli;

/// Runs a pretrained ONNX backbone over preprocessed splits and writes pooled features.
///
/// Examples:
///   graft-backbone --spec models/all-minilm-l6-v2.yaml --input runs/rt/data --out runs/rt/features
///   graft-backbone --spec models/all-minilm-l6-v2.yaml --input runs/rt/data --out runs/rt/features --device cuda
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
    Doctor,
}

fn main() -> ExitCode {
    let cli: Cli = cli::parse();
    cli::init_logging(cli.quiet);
    match (cli.command, cli.config) {
        (Some(Command::Doctor), _) => cli::exit(graft_backbone::doctor().map(|report| {
            let _ = std::io::stdout().write_all(report.as_bytes());
        })),
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
            "onnx runtime `{}` on {}; {rows} rows, {tokens} tokens, dim {} in {secs:.1}s ({:.0} rows/s, {:.0} tokens/s)",
            s.runtime.display(),
            s.provider,
            s.dim,
            rows as f64 / secs,
            tokens as f64 / secs
        );
    }))
}
