use std::process::ExitCode;

use clap::{Parser, Subcommand};
use graft_core::cli;

/// Cleans, splits and tokenises a labelled text data set into Arrow IPC files; or, with
/// `rows`, prepares new rows to score with a model bundle.
///
/// Examples:
///   graft-preprocess --input reviews.csv --spec models/all-minilm-l6-v2.yaml \
///       --text-column text --label-column label --out runs/rt/data
///   graft-preprocess rows --bundle runs/rt/model --input tonight.csv --keep source --out runs/tonight/rows
#[derive(Debug, Parser)]
#[command(version, verbatim_doc_comment, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Option<graft_preprocess::Config>,
    /// No progress bar; warnings and errors only.
    #[arg(long, short, global = true)]
    quiet: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// New rows (labelled or not) read and tokenised as a model bundle's training rows were,
    /// in input order; rows that cannot be scored go to `rejects.arrow` with their reason.
    Rows(graft_preprocess::rows::RowsConfig),
}

fn main() -> ExitCode {
    let cli: Cli = cli::parse();
    cli::init_logging(cli.quiet);
    let bar = cli::Bar::new(cli.quiet);
    match (cli.command, cli.config) {
        (Some(Command::Rows(config)), _) => cli::exit(graft_preprocess::rows::run(&config, &bar).map(|s| {
            tracing::info!(
                "read {} rows: {} to score, rejected {:?}; truncated {}; wrote {}",
                s.read,
                s.written,
                s.rejected,
                s.truncated,
                config.out.display()
            );
        })),
        (None, Some(config)) => cli::exit(graft_preprocess::run(&config, &bar).map(|s| {
            tracing::info!(
                "read {} rows; dropped {:?}{}; labels {:?}; wrote {:?} to {}; truncated {}",
                s.rows_read,
                s.dropped,
                match s.skipped.len() {
                    0 => String::new(),
                    n => format!("; skipped {n} unreadable images"),
                },
                s.labels,
                s.written,
                config.out.display(),
                s.truncated
            );
        })),
        (None, None) => {
            eprintln!("error: give --input, --spec and --out, or a subcommand (see --help)");
            ExitCode::from(1)
        }
    }
}
