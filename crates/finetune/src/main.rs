use std::process::ExitCode;

use clap::Parser;
use graft_core::cli;

/// Trains a logistic-regression head on backbone features, choosing C on the val split.
///
/// Example:
///   graft-finetune --features runs/rt/features --out runs/rt/head --c 0.1,1,10
#[derive(Debug, Parser)]
#[command(version, verbatim_doc_comment)]
struct Cli {
    #[command(flatten)]
    config: graft_finetune::Config,
    /// Warnings and errors only.
    #[arg(long, short)]
    quiet: bool,
}

fn main() -> ExitCode {
    let cli: Cli = cli::parse();
    cli::init_logging(cli.quiet);
    cli::exit(graft_finetune::run(&cli.config).map(|head| {
        let t = &head.info.training;
        tracing::info!(
            "kept C={} ({} train rows, {} classes, dim {}); wrote {}",
            t.chosen_c,
            t.train_rows,
            head.info.architecture.classes,
            head.info.architecture.dim,
            cli.config.out.display()
        );
    }))
}
