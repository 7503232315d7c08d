//! What every stage binary shares: logging to stderr, a progress bar with rate and ETA,
//! and the exit-code convention (0 ok, 1 the user's mistake, 2 graft's own error).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing_subscriber::EnvFilter;

use crate::UserFacing;
use crate::progress::Progress;

/// Parses the command line; a usage error exits 1 (the user's mistake), `--help` and
/// `--version` exit 0.
pub fn parse<T: clap::Parser>() -> T {
    T::try_parse().unwrap_or_else(|e| {
        let _ = e.print();
        std::process::exit(if e.use_stderr() { 1 } else { 0 })
    })
}

/// Set by `graft run` in each stage's environment: the runner's pid.
pub const RUNNER_PID_VAR: &str = "GRAFT_RUNNER_PID";

/// A stage started by `graft run` ends with it, however the runner ends (even `kill -9`),
/// instead of running on as an orphan. Linux only; a stage started through a wrapper
/// process (the runner is not its parent) is left alone while the runner lives.
fn die_with_runner() {
    #[cfg(target_os = "linux")]
    if let Some(runner) = std::env::var(RUNNER_PID_VAR).ok().and_then(|p| p.parse::<i32>().ok()) {
        let started_by_runner = nix::unistd::getppid().as_raw() == runner;
        if started_by_runner {
            let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM);
        }
        // The runner may have ended before the request took effect.
        let gone = if started_by_runner { nix::unistd::getppid().as_raw() != runner } else { !running(runner) };
        if gone {
            eprintln!("error: `graft run` (pid {runner}) ended before this stage started");
            std::process::exit(1);
        }
    }
}

/// Whether process `pid` runs: it exists and has not ended. A runner killed a moment ago is a
/// zombie until it is reaped, and its children have already been handed to init.
#[cfg(target_os = "linux")]
fn running(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // `pid (name) state ...`; the name may hold spaces and parentheses.
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, None | Some('Z' | 'X'))
}

/// The variable that keeps ONNX Runtime's telemetry off.
pub const ORT_TELEMETRY_VAR: &str = "ORT_DISABLE_TELEMETRY";

/// ONNX Runtime's builds start Microsoft's telemetry when an environment is created: a device
/// id and an event queue under `~/.cache/Microsoft`, and an uploader that looks up its
/// server. graft runs offline, so unless the user set `ORT_DISABLE_TELEMETRY` it is set here,
/// before any thread starts. (ONNX Runtime reads it when the environment is created;
/// disabling telemetry on an environment afterwards is too late.)
#[allow(unsafe_code)]
fn no_runtime_telemetry() {
    if std::env::var_os(ORT_TELEMETRY_VAR).is_none() {
        // SAFETY: every binary calls this first in `main`, before it starts any thread, so
        // nothing else reads or writes the environment meanwhile.
        unsafe { std::env::set_var(ORT_TELEMETRY_VAR, "1") }
    }
}

/// Logs go to stderr; `RUST_LOG` overrides the level; `NO_COLOR` is respected. Every
/// binary calls this first, so a stage started by `graft run` also ends with it here, and
/// ONNX Runtime's telemetry stays off.
pub fn init_logging(quiet: bool) {
    no_runtime_telemetry();
    die_with_runner();
    let default = if quiet { "warn" } else { "info" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .with_target(false)
        .without_time()
        .init();
}

/// A progress bar on stderr, drawn only when stderr is a terminal and not `--quiet`; each
/// phase ends with a summary line in the log either way.
#[derive(Debug)]
pub struct Bar {
    bar: Mutex<Option<ProgressBar>>,
    visible: bool,
    unit: &'static str,
    /// The phase: its name, when it started, and units and tokens counted so far.
    phase: Mutex<Phase>,
}

#[derive(Debug)]
struct Phase {
    what: String,
    started: std::time::Instant,
    count: u64,
    tokens: u64,
}

/// A rate with the precision it deserves: `0.42/s`, `7.3/s`, `512/s`, `12.4k/s`.
pub fn rate(per_second: f64) -> String {
    if !per_second.is_finite() || per_second <= 0.0 {
        return "-".to_owned();
    }
    format!("{}/s", amount(per_second))
}

/// `0.42`, `7.3`, `512`, `12.4k`, `3.1M`.
fn amount(x: f64) -> String {
    match x {
        x if x < 1.0 => format!("{x:.2}"),
        x if x < 100.0 => format!("{x:.1}"),
        x if x < 10_000.0 => format!("{x:.0}"),
        x if x < 10_000_000.0 => format!("{:.1}k", x / 1e3),
        x => format!("{:.1}M", x / 1e6),
    }
}

impl Bar {
    /// A bar counting rows.
    pub fn new(quiet: bool) -> Self {
        Self::counting(quiet, "rows")
    }

    /// A bar counting `unit`s.
    pub fn counting(quiet: bool, unit: &'static str) -> Self {
        Self {
            bar: Mutex::new(None),
            visible: !quiet && std::io::stderr().is_terminal(),
            unit,
            phase: Mutex::new(Phase { what: String::new(), started: std::time::Instant::now(), count: 0, tokens: 0 }),
        }
    }

    /// Whether the bar is drawn (stderr is a terminal and not quiet).
    pub fn visible(&self) -> bool {
        self.visible
    }
}

impl Progress for Bar {
    fn start(&self, what: &str, total: u64) {
        // A total of 0 is unknown (a folder listed as it is read): a count and a rate only.
        let bar = if self.visible {
            ProgressBar::with_draw_target((total > 0).then_some(total), ProgressDrawTarget::stderr())
        } else {
            ProgressBar::hidden()
        };
        // At most 80 columns: 20 for the phase and token rate, 22 for the bar, the count,
        // the unit, a rate of at most 8 and the time left (shown once there is a rate).
        let template = match total {
            0 => format!("{{msg:<20!}} {{pos}} {} {{rate}}", self.unit),
            _ => format!("{{msg:<20!}} [{{bar:20}}] {{pos}}/{{len}} {} {{rate}} {{left}}", self.unit),
        };
        bar.set_style(
            ProgressStyle::with_template(&template)
                .expect("valid template")
                .with_key("rate", |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let shown = if s.pos() == 0 { "-".to_owned() } else { rate(s.per_sec()) };
                    let _ = w.write_str(&shown);
                })
                .with_key("left", |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    if s.pos() > 0 && s.elapsed() >= Duration::from_secs(1) {
                        let _ = write!(w, "eta {}", indicatif::HumanDuration(s.eta()));
                    }
                })
                .progress_chars("=> "),
        );
        bar.set_message(what.to_owned());
        *self.phase.lock().expect("progress lock") =
            Phase { what: what.to_owned(), started: std::time::Instant::now(), count: 0, tokens: 0 };
        bar.enable_steady_tick(Duration::from_millis(200));
        *self.bar.lock().expect("progress lock") = Some(bar);
    }

    fn advance(&self, n: u64) {
        self.phase.lock().expect("progress lock").count += n;
        if let Some(b) = &*self.bar.lock().expect("progress lock") {
            b.inc(n);
        }
    }

    fn advance_tokens(&self, n: u64, tokens: u64) {
        let mut phase = self.phase.lock().expect("progress lock");
        phase.count += n;
        phase.tokens += tokens;
        if let Some(b) = &*self.bar.lock().expect("progress lock") {
            let tokens_per_second = phase.tokens as f64 / phase.started.elapsed().as_secs_f64().max(1e-3);
            b.set_message(format!("{} {} tok", phase.what, rate(tokens_per_second)));
            b.inc(n);
        }
    }

    fn finish(&self) {
        // Taken out first: the bar's lock is never held while the phase's is taken (the
        // order `advance_tokens` takes them in is phase, then bar).
        let bar = self.bar.lock().expect("progress lock").take();
        if let Some(b) = bar {
            b.finish_and_clear();
            let phase = self.phase.lock().expect("progress lock");
            let seconds = phase.started.elapsed().as_secs_f64().max(1e-3);
            let (tokens, token_rate) = match phase.tokens {
                0 => (String::new(), String::new()),
                t => (format!(", {t} tokens"), format!(", {} tokens/s", amount(t as f64 / seconds))),
            };
            tracing::info!(
                "{}: {} {}{tokens} in {seconds:.1} s ({} {}/s{token_rate})",
                phase.what,
                phase.count,
                self.unit,
                amount(phase.count as f64 / seconds),
                self.unit
            );
        }
    }
}

/// Prints the whole error chain and maps it to an exit code.
pub fn exit<E>(result: Result<(), E>) -> ExitCode
where
    E: UserFacing + std::error::Error + Send + Sync + 'static,
{
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = if e.is_user_error() { 1 } else { 2 };
            eprintln!("error: {:#}", anyhow::Error::from(e));
            ExitCode::from(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_have_sensible_precision() {
        assert_eq!(rate(0.0), "-");
        assert_eq!(rate(0.4242), "0.42/s");
        assert_eq!(rate(7.345), "7.3/s");
        assert_eq!(rate(512.34), "512/s");
        assert_eq!(rate(13807.0), "13.8k/s");
        assert_eq!(amount(31_400.0), "31.4k");
        assert_eq!(amount(2.5e7), "25.0M");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_killed_process_not_yet_reaped_is_not_running() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id() as i32;
        assert!(running(pid));
        child.kill().unwrap();
        // Killed, not reaped: a zombie whose /proc entry is still there.
        let start = std::time::Instant::now();
        while running(pid) {
            assert!(start.elapsed() < std::time::Duration::from_secs(10), "still running");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists(), "a zombie until reaped");
        child.wait().unwrap();
        assert!(!running(pid));
    }
}
