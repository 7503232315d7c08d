//! Runs a pipeline's stages in order as child processes, skipping those whose
//! fingerprint (binary version and contents, arguments, input contents) matches the lock file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::definition::{self, Stage};
use crate::error::{Error, Result};
use crate::export::shell_quote;
use crate::fingerprint::path_hash;

/// Options of `graft run`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RunOptions {
    /// Rerun every stage, cached or not.
    #[arg(long)]
    pub force: bool,
    /// Print the commands that would run, run nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Only these stages (repeatable); their inputs must already exist.
    #[arg(long, value_name = "STAGE")]
    pub only: Vec<String>,
    /// This stage and every stage downstream of it.
    #[arg(long, value_name = "STAGE")]
    pub from: Option<String>,
    /// This stage and every stage upstream of it.
    #[arg(long, value_name = "STAGE")]
    pub until: Option<String>,
    /// Stages log warnings and errors only (set by `graft -q`).
    #[arg(skip)]
    pub quiet: bool,
}

/// The stages `opts` selects, in run order; an unknown stage name is an error.
fn select(
    pipeline_path: &Path,
    pipeline: &definition::Pipeline,
    order: Vec<String>,
    opts: &RunOptions,
) -> Result<Vec<String>> {
    let up = definition::upstream(pipeline).expect("validated by load");
    let known = |name: &String| -> Result<()> {
        if pipeline.stages.contains_key(name) {
            Ok(())
        } else {
            Err(Error::UnknownStage {
                path: pipeline_path.to_owned(),
                stage: name.clone(),
                known: pipeline.stages.keys().cloned().collect(),
            })
        }
    };
    // Closure of `start` along `next` (upstream or downstream edges).
    let reach = |start: &str, downstream: bool| -> std::collections::BTreeSet<String> {
        let mut seen = std::collections::BTreeSet::from([start.to_owned()]);
        let mut stack = vec![start.to_owned()];
        while let Some(n) = stack.pop() {
            let next: Vec<&str> = if downstream {
                up.iter().filter(|(_, ups)| ups.contains(&n.as_str())).map(|(name, _)| *name).collect()
            } else {
                up.get(n.as_str()).cloned().unwrap_or_default()
            };
            for m in next {
                if seen.insert(m.to_owned()) {
                    stack.push(m.to_owned());
                }
            }
        }
        seen
    };
    for name in opts.only.iter().chain(&opts.from).chain(&opts.until) {
        known(name)?;
    }
    let from = opts.from.as_deref().map(|f| reach(f, true));
    let until = opts.until.as_deref().map(|u| reach(u, false));
    Ok(order
        .into_iter()
        .filter(|n| opts.only.is_empty() || opts.only.contains(n))
        .filter(|n| from.as_ref().is_none_or(|s| s.contains(n)))
        .filter(|n| until.as_ref().is_none_or(|s| s.contains(n)))
        .collect())
}

/// `<pipeline>.lock`: what each stage last ran with and wrote.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    pub stages: BTreeMap<String, LockedStage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedStage {
    pub fingerprint: String,
    pub outs: BTreeMap<PathBuf, String>,
}

/// What happened to each stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ran,
    Cached,
    DryRun,
}

pub fn lock_path(pipeline: &Path) -> PathBuf {
    pipeline.with_extension("lock")
}

/// Finds a stage binary: beside the running `graft`, else on `PATH`.
pub fn resolve_program(cmd: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(cmd)))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(cmd))
}

pub fn run(pipeline_path: &Path, opts: &RunOptions) -> Result<Vec<(String, Outcome)>> {
    let (pipeline, order) = definition::load(pipeline_path)?;
    let order = select(pipeline_path, &pipeline, order, opts)?;
    let root = pipeline_path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let lock_file = lock_path(pipeline_path);
    let mut lock = read_lock(&lock_file)?;
    let mut outcomes = Vec::new();
    for name in order {
        let stage = &pipeline.stages[&name];
        let program = resolve_program(&stage.cmd);
        let argv = stage.argv();
        if opts.dry_run {
            let shown: Vec<String> =
                std::iter::once(program.display().to_string()).chain(argv.iter().map(|a| shell_quote(a))).collect();
            println_out(&format!("# {name}\n{}", shown.join(" ")));
            outcomes.push((name, Outcome::DryRun));
            continue;
        }
        let fingerprint = fingerprint(&name, stage, &program, &argv, root)?;
        let cached = lock.stages.get(&name).is_some_and(|l| {
            l.fingerprint == fingerprint
                && l.outs.iter().all(|(p, h)| path_hash(&root.join(p)).ok().as_ref() == Some(h))
        });
        if cached && !opts.force {
            tracing::info!("stage `{name}`: unchanged, skipped");
            outcomes.push((name, Outcome::Cached));
            continue;
        }
        tracing::info!("stage `{name}`: {} {}", stage.cmd, argv.join(" "));
        let mut command = Command::new(&program);
        command.args(&argv).current_dir(root);
        if opts.quiet && std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "warn");
        }
        let status = command.status().map_err(|source| Error::Spawn {
            stage: name.clone(),
            program: program.clone(),
            source,
        })?;
        if !status.success() {
            lock.stages.remove(&name);
            write_lock(&lock_file, &lock)?;
            return Err(Error::StageFailed { stage: name, status });
        }
        let mut outs = BTreeMap::new();
        for out in &stage.outs {
            let path = root.join(out);
            if !path.exists() {
                return Err(Error::MissingOut { stage: name, path });
            }
            outs.insert(out.clone(), path_hash(&path)?);
        }
        lock.stages.insert(name.clone(), LockedStage { fingerprint, outs });
        write_lock(&lock_file, &lock)?;
        outcomes.push((name, Outcome::Ran));
    }
    Ok(outcomes)
}

fn fingerprint(name: &str, stage: &Stage, program: &Path, argv: &[String], root: &Path) -> Result<String> {
    let mut hasher = blake3::Hasher::new();
    hasher.update(stage.cmd.as_bytes());
    hasher.update(binary_version(name, program)?.as_bytes());
    // The binary's contents too: a rebuilt stage (same version, changed code) reruns.
    hasher.update(graft_core::hash::file(program)?.as_bytes());
    for a in argv {
        hasher.update(a.as_bytes());
        hasher.update(&[0]);
    }
    for dep in &stage.deps {
        let path = root.join(dep);
        if !path.exists() {
            return Err(Error::MissingDep { stage: name.to_owned(), path });
        }
        hasher.update(dep.to_string_lossy().as_bytes());
        hasher.update(path_hash(&path)?.as_bytes());
    }
    Ok(hasher.finalize().to_hex().to_string())
}

/// What `PROGRAM --version` prints: a new release of a stage reruns it.
fn binary_version(stage: &str, program: &Path) -> Result<String> {
    let out = Command::new(program).arg("--version").output().map_err(|source| Error::Spawn {
        stage: stage.to_owned(),
        program: program.to_owned(),
        source,
    })?;
    if !out.status.success() {
        return Err(Error::StageFailed { stage: stage.to_owned(), status: out.status });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn read_lock(path: &Path) -> Result<Lock> {
    match fs_err::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| Error::Lock { path: path.to_owned(), source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Lock::default()),
        Err(source) => Err(Error::Read { path: path.to_owned(), source }),
    }
}

fn write_lock(path: &Path, lock: &Lock) -> Result<()> {
    let mut json =
        serde_json::to_vec_pretty(lock).map_err(|source| graft_core::Error::Json { what: "lock", source })?;
    json.push(b'\n');
    Ok(graft_core::atomic::write_bytes(path, &json)?)
}

#[allow(clippy::print_stdout)] // --dry-run's commands are the requested output
fn println_out(s: &str) {
    println!("{s}");
}
