use std::process::ExitCode;

use clap::Parser;
use graft_core::cli;

/// Cleans, splits and tokenises a labelled text data set into Arrow IPC files.
///
/// Example:
///   graft-preprocess --input reviews.csv --spec models/all-minilm-l6-v2.yaml \
///       --text-column text --label-column label --out runs/rt/data
#[derive(Debug, Parser)]
#[command(version, verbatim_doc_comment)]
struct Cli {
    #[command(flatten)]
    config: graft_preprocess::Config,
    /// No progress bar; warnings and errors only.
    #[arg(long, short)]
    quiet: bool,
}

fn main() -> ExitCode {
    let cli: Cli = cli::parse();
    cli::init_logging(cli.quiet);
    let bar = cli::Bar::new(cli.quiet);
    cli::exit(graft_preprocess::run(&cli.config, &bar).map(|s| {
        tracing::info!(
            "read {} rows; dropped {:?}; labels {:?}; wrote {:?}; truncated {}",
            s.rows_read,
            s.dropped,
            s.labels,
            s.written,
            s.truncated
        );
    }))
}
