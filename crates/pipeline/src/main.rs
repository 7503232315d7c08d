use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use graft_core::cli;
use graft_pipeline::Outcome;

/// Runs graft pipelines: YAML files that chain the stage binaries and skip what has not changed.
///
/// Examples:
///   graft run pipelines/rt-minilm.yaml
///   graft run pipelines/rt-sweep.yaml --jobs 2 --set matrix.pooling=mean
///   graft export --to make pipelines/rt-minilm.yaml > pipelines/rt-minilm.mk
///   graft export --to airflow pipelines/rt-score.yaml > dags/rt_score.py   # an Airflow DAG
///   graft predict --bundle runs/rt-minilm/model --input tonight.csv --out tonight.parquet
#[derive(Debug, Parser)]
#[command(version, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Warnings and errors only.
    #[arg(long, short, global = true)]
    quiet: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the stages of a pipeline file that are not up to date.
    Run {
        /// The pipeline file (pipelines/*.yaml).
        pipeline: PathBuf,
        #[command(flatten)]
        options: graft_pipeline::RunOptions,
    },
    /// Says for each stage whether it is up to date, and if not why; runs nothing.
    Status {
        /// The pipeline file.
        pipeline: PathBuf,
        /// Overrides, as for `run`.
        #[arg(long = "set", value_name = "TARGET=VALUE")]
        set: Vec<String>,
    },
    /// Ranks a sweep's evaluations already on disk: prints the table and writes `X.sweep.json`
    /// (what `graft run` does at its end; an exported Airflow DAG's last task).
    Sweep {
        /// The pipeline file.
        pipeline: PathBuf,
        /// Overrides, as for `run`.
        #[arg(long = "set", value_name = "TARGET=VALUE")]
        set: Vec<String>,
    },
    /// Scores a table with a model bundle: the rows, backbone and predict stages in one
    /// command (a scoring pipeline runs them as separate, cached stages).
    Predict(graft_pipeline::predict::PredictOptions),
    /// Prints the JSON Schema of pipeline files (for editors and validators).
    Schema,
    /// Prints the stage graph.
    Dag {
        #[arg(long, value_enum, default_value = "text")]
        format: graft_pipeline::export::DagFormat,
        /// The pipeline file.
        pipeline: PathBuf,
    },
    /// Writes the pipeline as a Makefile or shell script (to stdout) that runs the same
    /// commands; keep it beside the pipeline file.
    Export {
        /// Output format.
        #[arg(long = "to", value_enum)]
        format: graft_pipeline::export::Format,
        /// The pipeline file.
        pipeline: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli: Cli = cli::parse();
    cli::init_logging(cli.quiet);
    match cli.command {
        Command::Run { pipeline, mut options } => {
            options.quiet = cli.quiet;
            let started = std::time::Instant::now();
            cli::exit(graft_pipeline::run(&pipeline, &options).map(|summary| {
                let outcomes = &summary.outcomes;
                let count = |kind| outcomes.iter().filter(|(_, o)| *o == kind).count();
                if !options.dry_run {
                    let (ran, cached) = (count(Outcome::Ran), count(Outcome::Cached));
                    let mut slowest: Vec<(&String, &f64)> = summary.seconds.iter().collect();
                    slowest.sort_by(|a, b| b.1.total_cmp(a.1));
                    let slowest: Vec<String> = slowest
                        .iter()
                        .take(3)
                        .map(|(name, s)| format!("{name} {}", graft_pipeline::runner::duration(**s)))
                        .collect();
                    let slowest =
                        if slowest.is_empty() { String::new() } else { format!("; slowest: {}", slowest.join(", ")) };
                    tracing::info!(
                        "{} stages: {ran} ran, {cached} up to date, in {}{slowest}",
                        outcomes.len(),
                        graft_pipeline::runner::duration(started.elapsed().as_secs_f64())
                    );
                }
                if let Some(sweep) = &summary.sweep {
                    let _ = std::io::Write::write_all(
                        &mut std::io::stdout(),
                        graft_pipeline::sweep::render(sweep).as_bytes(),
                    );
                }
            }))
        }
        Command::Predict(mut options) => {
            options.quiet = cli.quiet;
            cli::exit(graft_pipeline::predict::predict(&options))
        }
        Command::Export { format, pipeline } => print(graft_pipeline::export::export(&pipeline, format)),
        Command::Dag { format, pipeline } => print(graft_pipeline::export::dag(&pipeline, format)),
        Command::Schema => print(Ok(graft_pipeline::definition::json_schema())),
        Command::Sweep { pipeline, set } => print(graft_pipeline::sweep::rank(&pipeline, &set).and_then(|sweep| {
            sweep.map(|s| graft_pipeline::sweep::render(&s)).ok_or_else(|| graft_pipeline::Error::Invalid {
                path: pipeline.clone(),
                message: "has no matrix with evaluate stages to rank".into(),
            })
        })),
        Command::Status { pipeline, set } => print(graft_pipeline::status(&pipeline, &set).map(|states| {
            let mut text = String::new();
            for (name, state) in states {
                match state {
                    graft_pipeline::State::UpToDate => text.push_str(&format!("{name}: up to date\n")),
                    graft_pipeline::State::Stale(reasons) => {
                        text.push_str(&format!("{name}: stale: {}\n", reasons.join("; ")));
                    }
                }
            }
            text
        })),
    }
}

/// Writes a command's text result to stdout.
fn print(result: graft_pipeline::Result<String>) -> ExitCode {
    cli::exit(result.map(|text| {
        let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
    }))
}
