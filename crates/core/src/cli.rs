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
        let gone = if started_by_runner {
            nix::unistd::getppid().as_raw() != runner
        } else {
            !std::path::Path::new(&format!("/proc/{runner}")).exists()
        };
        if gone {
            eprintln!("error: `graft run` (pid {runner}) ended before this stage started");
            std::process::exit(1);
        }
    }
}

/// Logs go to stderr; `RUST_LOG` overrides the level; `NO_COLOR` is respected. Every
/// binary calls this first, so a stage started by `graft run` also ends with it here.
pub fn init_logging(quiet: bool) {
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

/// A progress bar on stderr, drawn only when stderr is a terminal and not `--quiet`.
#[derive(Debug)]
pub struct Bar {
    bar: Mutex<Option<ProgressBar>>,
    visible: bool,
    unit: &'static str,
    /// The phase's name and tokens counted so far, for the token rate.
    tokens: Mutex<(String, u64)>,
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
            tokens: Mutex::new((String::new(), 0)),
        }
    }

    /// Whether the bar is drawn (stderr is a terminal and not quiet).
    pub fn visible(&self) -> bool {
        self.visible
    }
}

impl Progress for Bar {
    fn start(&self, what: &str, total: u64) {
        let bar = if self.visible {
            ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "{{msg:>12}} [{{bar:30}}] {{pos}}/{{len}} {} {{per_sec}} eta {{eta}}",
                self.unit
            ))
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_message(what.to_owned());
        *self.tokens.lock().expect("progress lock") = (what.to_owned(), 0);
        bar.enable_steady_tick(Duration::from_millis(200));
        *self.bar.lock().expect("progress lock") = Some(bar);
    }

    fn advance(&self, n: u64) {
        if let Some(b) = &*self.bar.lock().expect("progress lock") {
            b.inc(n);
        }
    }

    fn advance_tokens(&self, n: u64, tokens: u64) {
        if let Some(b) = &*self.bar.lock().expect("progress lock") {
            let mut counted = self.tokens.lock().expect("progress lock");
            counted.1 += tokens;
            let rate = counted.1 as f64 / b.elapsed().as_secs_f64().max(1e-3);
            b.set_message(format!("{} {rate:.0} tokens/s", counted.0));
            b.inc(n);
        }
    }

    fn finish(&self) {
        if let Some(b) = self.bar.lock().expect("progress lock").take() {
            b.finish_and_clear();
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
