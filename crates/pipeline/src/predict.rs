//! `graft predict`: scores a table with a model bundle in one command, as the three stages a
//! scoring pipeline chains (`graft-preprocess rows`, `graft-backbone`, `graft-evaluate
//! predict`), run as child processes over a work folder that is removed afterwards.

use std::path::{Path, PathBuf};
use std::process::Command;

use graft_core::config::evaluate::OutputFormat;
use graft_core::config::preprocess::RowSelection;

use crate::error::{Error, Result};
use crate::runner::resolve_program;

/// Options of `graft predict`.
#[derive(Debug, Clone, clap::Args)]
pub struct PredictOptions {
    #[command(flatten)]
    pub rows: RowSelection,
    /// The predictions file, in the format its extension names (Parquet when it has none)
    /// or `--format` gives; its drift summary goes beside it.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum)]
    pub format: Option<OutputFormat>,
    /// Row-level feature cache folder, shared between runs (rows seen before are not embedded again).
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Inference threads (0: one per core), as `graft-backbone --threads`.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Work folder for the intermediate files, kept afterwards (default: a temporary folder
    /// beside `--out`, removed).
    #[arg(long)]
    pub work: Option<PathBuf>,
    /// Stages log warnings and errors only (set by `graft -q`).
    #[arg(skip)]
    pub quiet: bool,
}

pub fn predict(opts: &PredictOptions) -> Result<()> {
    // Refused before the rows are embedded, not after.
    OutputFormat::resolve(opts.format, &opts.out)?;
    let out = graft_core::atomic::output_target(&opts.out)?;
    if graft_core::atomic::same_path(&opts.rows.input, &opts.out) {
        return Err(Error::OutIsInput { path: opts.out.clone() });
    }
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs_err::create_dir_all(parent).map_err(|source| Error::Read { path: parent.to_owned(), source })?;
    let temp;
    let work = match &opts.work {
        Some(w) => w.clone(),
        None => {
            temp = tempfile::Builder::new()
                .prefix(".graft-predict.")
                .tempdir_in(parent)
                .map_err(|source| Error::Read { path: parent.to_owned(), source })?;
            temp.path().to_owned()
        }
    };
    let (rows, features) = (work.join("rows"), work.join("features"));
    let path = |p: &Path| p.as_os_str().to_owned();
    let mut prepare: Vec<std::ffi::OsString> = vec!["rows".into(), "--out".into(), path(&rows)];
    prepare.extend(opts.rows.argv());
    stage(opts, "graft-preprocess", &prepare)?;

    let mut embed: Vec<std::ffi::OsString> =
        vec!["--spec".into(), path(&opts.rows.bundle), "--input".into(), path(&rows), "--out".into(), path(&features)];
    embed.extend(["--threads".into(), opts.threads.to_string().into()]);
    if let Some(c) = &opts.cache {
        embed.extend(["--cache".into(), path(c)]);
    }
    stage(opts, "graft-backbone", &embed)?;

    let mut score: Vec<std::ffi::OsString> = vec!["predict".into(), "--bundle".into(), path(&opts.rows.bundle)];
    score.extend(["--rows".into(), path(&rows), "--features".into(), path(&features), "--out".into(), path(&opts.out)]);
    if let Some(f) = opts.format {
        score.extend(["--format".into(), f.name().into()]);
    }
    stage(opts, "graft-evaluate", &score)
}

/// Runs one stage to completion; its output goes to this process's stderr, except the final
/// summary of `graft-evaluate predict`, which goes to stdout.
fn stage(opts: &PredictOptions, cmd: &str, args: &[std::ffi::OsString]) -> Result<()> {
    let program = resolve_program(cmd);
    let mut command = Command::new(&program);
    command.args(args).env(graft_core::cli::RUNNER_PID_VAR, std::process::id().to_string());
    if cmd != "graft-evaluate"
        && let Ok(fd) = std::os::fd::AsFd::as_fd(&std::io::stderr()).try_clone_to_owned()
    {
        command.stdout(fd);
    }
    if opts.quiet && std::env::var_os("RUST_LOG").is_none() {
        command.env("RUST_LOG", "warn");
    }
    let status = command.status().map_err(|source| Error::Spawn { stage: cmd.to_owned(), program, source })?;
    if status.success() { Ok(()) } else { Err(Error::StageFailed { stage: cmd.to_owned(), status }) }
}
