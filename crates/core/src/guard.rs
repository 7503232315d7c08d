//! Panics inside third-party decoders turned into errors.
//!
//! Arrow's IPC decoder can panic on a hostile file (a buffer shorter than its declared
//! length), and so can the JPEG decoder (sampling factors its scans lack) and Polars'
//! Parquet reader (a corrupt footer or page); graft reports such a file as corrupt instead
//! of crashing. The panic message is kept for the error and not printed by the default hook,
//! also when it happens in a worker thread of a call guarded with [`unwind_with_workers`]
//! (Polars' thread pool hands the panic back to its caller): while such a call runs, a panic
//! on a thread other than the main one is logged at debug level instead.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};

thread_local! {
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Calls guarded with their worker threads, running.
static WITH_WORKERS: AtomicUsize = AtomicUsize::new(0);

static HOOK: Once = Once::new();

/// Runs `f`; a panic inside it becomes `Err` with the panic's message.
pub fn unwind<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    guard(f, false)
}

/// As [`unwind`], for a call that hands work to its own threads and gets their panics back.
pub fn unwind_with_workers<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    guard(f, true)
}

fn guard<T>(f: impl FnOnce() -> T, with_workers: bool) -> Result<T, String> {
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if QUIET.with(Cell::get) {
                return;
            }
            // Most likely a worker of the guarded call; the main thread's own panics are
            // always shown.
            if WITH_WORKERS.load(Ordering::SeqCst) > 0 && std::thread::current().name() != Some("main") {
                tracing::debug!("panic while a decoder ran: {info}");
            } else {
                default(info);
            }
        }));
    });
    let was = QUIET.with(|q| q.replace(true));
    let workers = usize::from(with_workers);
    WITH_WORKERS.fetch_add(workers, Ordering::SeqCst);
    let result = catch_unwind(AssertUnwindSafe(f));
    WITH_WORKERS.fetch_sub(workers, Ordering::SeqCst);
    QUIET.with(|q| q.set(was));
    result.map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "decoder panicked".to_owned())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn panic_becomes_error_with_its_message() {
        let r: Result<(), String> = super::unwind(|| panic!("offset {} out of range", 7));
        assert_eq!(r.unwrap_err(), "offset 7 out of range");
        assert_eq!(super::unwind(|| 3).unwrap(), 3);
    }
}
