use std::process::ExitCode;

use clap::Parser;
use graft_core::cli;

/// Runs a pretrained ONNX backbone over preprocessed splits and writes pooled features.
///
/// Example:
///   graft-backbone --spec models/all-minilm-l6-v2.yaml --input runs/rt/data --out runs/rt/features
#[derive(Debug, Parser)]
#[command(version, verbatim_doc_comment)]
struct Cli {
    #[command(flatten)]
    config: graft_backbone::Config,
    /// No progress bar; warnings and errors only.
    #[arg(long, short)]
    quiet: bool,
}

fn main() -> ExitCode {
    let cli: Cli = cli::parse();
    cli::init_logging(cli.quiet);
    let bar = cli::Bar::new(cli.quiet);
    let started = std::time::Instant::now();
    cli::exit(graft_backbone::run(&cli.config, &bar).map(|s| {
        let secs = started.elapsed().as_secs_f64();
        let (rows, tokens) = s.rows.values().fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        tracing::info!(
            "onnx runtime `{}`; {rows} rows, {tokens} tokens, dim {} in {secs:.1}s ({:.0} rows/s, {:.0} tokens/s)",
            s.runtime.display(),
            s.dim,
            rows as f64 / secs,
            tokens as f64 / secs
        );
    }))
}
