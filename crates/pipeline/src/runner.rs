//! Runs a pipeline's stages as child processes, independent ones in parallel up to
//! `--jobs`, skipping those whose inputs (binary version and contents, arguments, input
//! contents) match what the lock file recorded; explains what is stale (`graft status`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;

use graft_core::lockfile::{Lock, LockedStage};

use crate::definition::{self, Pipeline, Stage};
use crate::error::{Error, Result};
use crate::export::shell_quote;
use crate::fingerprint::HashCache;

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
    /// Override a param or a stage flag: `params.NAME=VALUE` or `STAGE.KEY=VALUE` (repeatable).
    #[arg(long = "set", value_name = "TARGET=VALUE")]
    pub set: Vec<String>,
    /// Run at most this many independent stages at once.
    #[arg(long, short = 'j', default_value_t = 1, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub jobs: usize,
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
    // A name selects that stage, or every stage the matrix expanded from it (`finetune`
    // selects `finetune[c=1]` and `finetune[c=10]`).
    let matching = |name: &String| -> Result<Vec<String>> {
        let found: Vec<String> = pipeline
            .stages
            .keys()
            .filter(|k| *k == name || k.strip_prefix(name.as_str()).is_some_and(|rest| rest.starts_with('[')))
            .cloned()
            .collect();
        if found.is_empty() {
            return Err(Error::UnknownStage {
                path: pipeline_path.to_owned(),
                stage: name.clone(),
                known: pipeline.stages.keys().cloned().collect(),
            });
        }
        Ok(found)
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
    let only: Vec<String> = opts.only.iter().map(&matching).collect::<Result<Vec<_>>>()?.concat();
    let closure = |start: &Option<String>, downstream: bool| -> Result<Option<std::collections::BTreeSet<String>>> {
        let Some(start) = start else { return Ok(None) };
        Ok(Some(matching(start)?.iter().flat_map(|s| reach(s, downstream)).collect()))
    };
    let from = closure(&opts.from, true)?;
    let until = closure(&opts.until, false)?;
    let selected: Vec<String> = order
        .into_iter()
        .filter(|n| only.is_empty() || only.contains(n))
        .filter(|n| from.as_ref().is_none_or(|s| s.contains(n)))
        .filter(|n| until.as_ref().is_none_or(|s| s.contains(n)))
        .collect();
    if selected.is_empty() && !pipeline.stages.is_empty() {
        let flags = [
            ("--only", opts.only.join(",")),
            ("--from", opts.from.clone().unwrap_or_default()),
            ("--until", opts.until.clone().unwrap_or_default()),
        ];
        let selection: Vec<String> =
            flags.iter().filter(|(_, v)| !v.is_empty()).map(|(f, v)| format!("`{f} {v}`")).collect();
        return Err(Error::NothingSelected { path: pipeline_path.to_owned(), selection: selection.join(" and ") });
    }
    Ok(selected)
}

/// What a stage would run with now.
#[derive(Debug, Clone, PartialEq)]
struct Inputs {
    binary: String,
    argv: Vec<String>,
    deps: BTreeMap<PathBuf, String>,
}

impl Inputs {
    fn fingerprint(&self, cmd: &str) -> String {
        let mut hasher = blake3::Hasher::new();
        for part in [cmd, &self.binary].into_iter().chain(self.argv.iter().map(String::as_str)) {
            hasher.update(part.as_bytes());
            hasher.update(&[0]);
        }
        for (dep, hash) in &self.deps {
            hasher.update(dep.to_string_lossy().as_bytes());
            hasher.update(hash.as_bytes());
        }
        hasher.finalize().to_hex().to_string()
    }
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

/// Held while `graft run` runs a pipeline: an exclusive lock on `<pipeline>.running`, which
/// holds the runner's pid. The operating system releases it however the runner exits.
#[derive(Debug)]
struct RunLock {
    _file: std::fs::File,
}

impl RunLock {
    fn acquire(pipeline: &Path) -> Result<Self> {
        use std::io::{Read, Seek, Write};
        let path = pipeline.with_extension("running");
        let io = |source| Error::Read { path: path.clone(), source };
        let mut file =
            std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                return Err(Error::Busy { pipeline: pipeline.to_owned(), lock: path, pid: pid.trim().to_owned() });
            }
            Err(std::fs::TryLockError::Error(source)) => return Err(io(source)),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        write!(file, "{}", std::process::id()).map_err(io)?;
        Ok(Self { _file: file })
    }
}

/// Finds a stage binary: beside the running `graft`, else the first on `PATH`, else the
/// bare name (spawning it then reports the error).
pub fn resolve_program(cmd: &str) -> PathBuf {
    let beside = std::env::current_exe().ok().and_then(|exe| exe.parent().map(|d| d.join(cmd)));
    let on_path = || {
        std::env::var_os("PATH")
            .map(|paths| std::env::split_paths(&paths).map(|d| d.join(cmd)).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    beside.into_iter().chain(on_path()).find(|p| p.is_file()).unwrap_or_else(|| PathBuf::from(cmd))
}

/// The cache of file hashes kept beside the pipeline's lock file.
pub fn hash_cache_path(pipeline: &Path) -> PathBuf {
    pipeline.with_extension("hashes.json")
}

fn root_of(pipeline_path: &Path) -> &Path {
    pipeline_path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// The stages' run order, and for each the selected stages it waits for.
fn waits(pipeline: &Pipeline, order: &[String]) -> HashMap<String, Vec<String>> {
    let up = definition::upstream(pipeline).expect("validated by load");
    order
        .iter()
        .map(|n| {
            let ups = up[n.as_str()].iter().filter(|u| order.iter().any(|o| o == *u)).map(|u| (*u).to_owned());
            (n.clone(), ups.collect())
        })
        .collect()
}

/// What `stage` would run with; its inputs must exist.
fn inputs(
    name: &str,
    stage: &Stage,
    root: &Path,
    cache: &HashCache,
    binaries: &mut HashMap<String, String>,
) -> Result<Inputs> {
    let program = resolve_program(&stage.cmd);
    let binary = match binaries.get(&stage.cmd) {
        Some(b) => b.clone(),
        None => {
            // The version and the binary's contents: a rebuilt stage reruns.
            let b = format!("{} {}", binary_version(name, &program)?, graft_core::hash::file(&program)?);
            binaries.insert(stage.cmd.clone(), b.clone());
            b
        }
    };
    let mut deps = BTreeMap::new();
    for dep in &stage.deps {
        let path = root.join(dep);
        if !path.exists() {
            return Err(Error::MissingDep { stage: name.to_owned(), path });
        }
        deps.insert(dep.clone(), cache.path_hash(&path)?);
    }
    Ok(Inputs { binary, argv: stage.argv(), deps })
}

fn outputs_intact(locked: &LockedStage, root: &Path, cache: &HashCache) -> bool {
    locked.outs.iter().all(|(p, h)| cache.path_hash(&root.join(p)).ok().as_ref() == Some(h))
}

/// What a run did, and the sweep's comparison when the pipeline has a matrix.
#[derive(Debug)]
pub struct Summary {
    pub outcomes: Vec<(String, Outcome)>,
    /// Wall time of each stage that ran, in seconds.
    pub seconds: BTreeMap<String, f64>,
    pub sweep: Option<crate::sweep::Sweep>,
}

pub fn run(pipeline_path: &Path, opts: &RunOptions) -> Result<Summary> {
    let (pipeline, order) = crate::expand::load(pipeline_path, &opts.set)?;
    let order = select(pipeline_path, &pipeline, order, opts)?;
    let root = root_of(pipeline_path);
    if opts.dry_run {
        let mut outcomes = Vec::new();
        for name in order {
            let stage = &pipeline.stages[&name];
            let program = resolve_program(&stage.cmd);
            let shown: Vec<String> = std::iter::once(program.display().to_string())
                .chain(stage.argv().iter().map(|a| shell_quote(a)))
                .collect();
            println_out(&format!("# {name}\n{}", shown.join(" ")));
            outcomes.push((name, Outcome::DryRun));
        }
        return Ok(Summary { outcomes, seconds: BTreeMap::new(), sweep: None });
    }
    let lock_file = lock_path(pipeline_path);
    let _running = RunLock::acquire(pipeline_path)?;
    let mut lock = Lock::read(&lock_file)?;
    let cache = HashCache::load(&hash_cache_path(pipeline_path));
    let waits = waits(&pipeline, &order);
    let mut binaries = HashMap::new();
    let mut done: HashMap<String, Outcome> = HashMap::new();
    let mut running: HashMap<String, (Inputs, std::time::Instant)> = HashMap::new();
    let mut seconds = BTreeMap::new();
    let mut failure: Option<Error> = None;
    let mut outcomes = Vec::new();
    let (tx, rx) = mpsc::channel::<(String, std::io::Result<ExitStatus>)>();
    loop {
        // Start every stage whose upstream is done, up to `jobs` at a time.
        let mut started = true;
        while started && failure.is_none() {
            started = false;
            for name in &order {
                if done.contains_key(name) || running.contains_key(name) || running.len() >= opts.jobs.max(1) {
                    continue;
                }
                if !waits[name].iter().all(|u| done.contains_key(u)) {
                    continue;
                }
                let stage = &pipeline.stages[name];
                let now = match inputs(name, stage, root, &cache, &mut binaries) {
                    Ok(i) => i,
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                };
                let fingerprint = now.fingerprint(&stage.cmd);
                let cached = lock
                    .stages
                    .get(name)
                    .is_some_and(|l| l.fingerprint == fingerprint && outputs_intact(l, root, &cache));
                if cached && !opts.force {
                    tracing::info!("stage `{name}`: unchanged, skipped");
                    done.insert(name.clone(), Outcome::Cached);
                    outcomes.push((name.clone(), Outcome::Cached));
                    started = true;
                    continue;
                }
                tracing::info!("stage `{name}`: {} {}", stage.cmd, now.argv.join(" "));
                let mut command = Command::new(resolve_program(&stage.cmd));
                command.args(&now.argv).current_dir(root);
                // The stage ends when this runner ends (see `graft_core::cli`).
                command.env(graft_core::cli::RUNNER_PID_VAR, std::process::id().to_string());
                let prefixed = opts.jobs > 1;
                if prefixed {
                    // Several stages at once: each line they print carries the stage's name.
                    command.stdout(Stdio::piped()).stderr(Stdio::piped());
                } else if let Ok(fd) = std::os::fd::AsFd::as_fd(&std::io::stderr()).try_clone_to_owned() {
                    // Stages print to stderr, so graft's stdout carries only its own results.
                    command.stdout(fd);
                }
                if opts.quiet && std::env::var_os("RUST_LOG").is_none() {
                    command.env("RUST_LOG", "warn");
                }
                let (tx, stage_name) = (tx.clone(), name.clone());
                std::thread::spawn(move || {
                    let status = match command.spawn() {
                        Ok(mut child) if prefixed => {
                            let (out, err) = (child.stdout.take(), child.stderr.take());
                            let (out_name, err_name) = (stage_name.clone(), stage_name.clone());
                            let copies = [
                                out.map(|p| std::thread::spawn(move || prefix_lines(p, &out_name))),
                                err.map(|p| std::thread::spawn(move || prefix_lines(p, &err_name))),
                            ];
                            let status = child.wait();
                            copies.into_iter().flatten().for_each(|c| {
                                let _ = c.join();
                            });
                            status
                        }
                        Ok(mut child) => child.wait(),
                        Err(e) => Err(e),
                    };
                    let _ = tx.send((stage_name, status));
                });
                running.insert(name.clone(), (now, std::time::Instant::now()));
                started = true;
            }
        }
        if running.is_empty() {
            break;
        }
        let (name, status) = rx.recv().expect("a running stage reports back");
        let (now, began) = running.remove(&name).expect("it was running");
        let took = began.elapsed().as_secs_f64();
        let stage = &pipeline.stages[&name];
        let result = status
            .map_err(|source| Error::Spawn { stage: name.clone(), program: resolve_program(&stage.cmd), source })
            .and_then(|status| {
                if !status.success() {
                    return Err(Error::StageFailed { stage: name.clone(), status });
                }
                let mut outs = BTreeMap::new();
                for out in &stage.outs {
                    let path = root.join(out);
                    if !path.exists() {
                        return Err(Error::MissingOut { stage: name.clone(), path });
                    }
                    outs.insert(out.clone(), cache.path_hash(&path)?);
                }
                Ok(outs)
            });
        match result {
            Ok(outs) => {
                let fingerprint = now.fingerprint(&stage.cmd);
                let Inputs { binary, argv, deps } = now;
                lock.stages
                    .insert(name.clone(), LockedStage { fingerprint, binary, argv, deps, outs, seconds: Some(took) });
                tracing::info!("stage `{name}`: done in {}", duration(took));
                seconds.insert(name.clone(), took);
                done.insert(name.clone(), Outcome::Ran);
                outcomes.push((name, Outcome::Ran));
            }
            Err(e) => {
                lock.stages.remove(&name);
                failure.get_or_insert(e);
            }
        }
        lock.write(&lock_file)?;
    }
    cache.save()?;
    if let Some(e) = failure {
        return Err(e);
    }
    let sweep = crate::sweep::collect(pipeline_path, &pipeline)?;
    Ok(Summary { outcomes, seconds, sweep })
}

/// Whether a stage would run, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    UpToDate,
    Stale(Vec<String>),
}

/// `graft status`: each stage in run order with what makes it stale, without running anything.
pub fn status(pipeline_path: &Path, set: &[String]) -> Result<Vec<(String, State)>> {
    let (pipeline, order) = crate::expand::load(pipeline_path, set)?;
    let root = root_of(pipeline_path);
    let lock = Lock::read(&lock_path(pipeline_path))?;
    let cache = HashCache::load(&hash_cache_path(pipeline_path));
    let waits = waits(&pipeline, &order);
    let mut binaries = HashMap::new();
    let mut states: Vec<(String, State)> = Vec::new();
    for name in &order {
        let stage = &pipeline.stages[name];
        let mut reasons: Vec<String> = waits[name]
            .iter()
            .filter(|u| states.iter().any(|(n, s)| n == *u && *s != State::UpToDate))
            .map(|u| format!("upstream stage `{u}` will rerun"))
            .collect();
        let locked = lock.stages.get(name);
        if locked.is_none() {
            reasons.push("never ran".into());
        }
        match inputs(name, stage, root, &cache, &mut binaries) {
            Err(Error::MissingDep { path, .. }) => {
                reasons.push(format!("input `{}` does not exist yet", path.display()))
            }
            Err(e) => return Err(e),
            Ok(now) => {
                if let Some(l) = locked {
                    if l.binary != now.binary {
                        reasons.push(format!(
                            "`{}` changed ({} -> {})",
                            stage.cmd,
                            short(&l.binary),
                            short(&now.binary)
                        ));
                    }
                    if l.argv != now.argv {
                        reasons.push(format!("arguments changed: {}", argv_diff(&l.argv, &now.argv)));
                    }
                    for (dep, hash) in &now.deps {
                        if l.deps.get(dep) != Some(hash) {
                            reasons.push(format!("input `{}` changed", dep.display()));
                        }
                    }
                    for (out, hash) in &l.outs {
                        if cache.path_hash(&root.join(out)).ok().as_ref() != Some(hash) {
                            reasons.push(format!("output `{}` is missing or was modified", out.display()));
                        }
                    }
                }
            }
        }
        states.push((name.clone(), if reasons.is_empty() { State::UpToDate } else { State::Stale(reasons) }));
    }
    cache.save()?;
    Ok(states)
}

/// A binary's record (`NAME VERSION BLAKE3`) with the hash cut to 12 digits.
fn short(binary: &str) -> String {
    match binary.rsplit_once(' ') {
        Some((version, hash)) => format!("{version} {}", &hash[..hash.len().min(12)]),
        None => binary.to_owned(),
    }
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

/// Copies `pipe` to stderr line by line, each line prefixed with `[stage] ` and written
/// whole, so the lines of stages running at once never mix mid-line.
fn prefix_lines(pipe: impl std::io::Read, stage: &str) {
    use std::io::{BufRead, Write};
    let mut reader = std::io::BufReader::new(pipe);
    let mut line = Vec::new();
    while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
        let text = String::from_utf8_lossy(&line);
        let _ = std::io::stderr()
            .lock()
            .write_all(format!("[{stage}] {}\n", text.trim_end_matches(['\n', '\r'])).as_bytes());
        line.clear();
    }
}

/// `12.3 s`, `4 min 05 s`.
pub fn duration(seconds: f64) -> String {
    if seconds < 60.0 {
        format!("{seconds:.1} s")
    } else {
        let whole = seconds.round() as u64;
        format!("{} min {:02} s", whole / 60, whole % 60)
    }
}

/// Flags and their values: `--c 1 --out h` as `[("--c", "1"), ("--out", "h")]`; words before
/// the first flag (a subcommand) under the empty name.
fn flags(argv: &[String]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for word in argv {
        match out.last_mut() {
            _ if word.starts_with("--") => out.push((word.clone(), String::new())),
            Some((_, value)) => {
                if !value.is_empty() {
                    value.push(' ');
                }
                value.push_str(word);
            }
            None => out.push((String::new(), word.clone())),
        }
    }
    out
}

/// What changed between two argument lists, flag by flag: `--c 1 -> 10`, `--seed 3 (new)`,
/// `--folds 5 (removed)`.
fn argv_diff(before: &[String], after: &[String]) -> String {
    let (old, new) = (flags(before), flags(after));
    let find = |list: &[(String, String)], flag: &str| list.iter().find(|(f, _)| f == flag).map(|(_, v)| v.clone());
    let shown = |flag: &str, value: &str| {
        if flag.is_empty() { value.to_owned() } else { format!("{flag} {value}").trim_end().to_owned() }
    };
    let mut changes = Vec::new();
    for (flag, value) in &new {
        match find(&old, flag) {
            Some(was) if &was != value => changes.push(format!("{} -> {value}", shown(flag, &was))),
            Some(_) => {}
            None => changes.push(format!("{} (new)", shown(flag, value))),
        }
    }
    for (flag, value) in &old {
        if find(&new, flag).is_none() {
            changes.push(format!("{} (removed)", shown(flag, value)));
        }
    }
    if changes.is_empty() {
        changes.push("the same flags in another order".to_owned());
    }
    changes.join(", ")
}

#[allow(clippy::print_stdout)] // --dry-run's commands are the requested output
fn println_out(s: &str) {
    println!("{s}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argument_changes_are_shown_flag_by_flag() {
        let argv = |s: &str| s.split(' ').map(str::to_owned).collect::<Vec<_>>();
        let before = argv("--features f --c 0.1 1 --folds 5 --out h");
        let after = argv("--features f --c 10 --out h --seed 3");
        assert_eq!(argv_diff(&before, &after), "--c 0.1 1 -> 10, --seed 3 (new), --folds 5 (removed)");
        assert_eq!(argv_diff(&argv("predict --x 1"), &argv("bundle --x 1")), "predict -> bundle");
        assert_eq!(duration(75.4), "1 min 15 s");
        assert_eq!(duration(9.94), "9.9 s");
    }
}
