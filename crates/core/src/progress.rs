//! How libraries report long work without owning a progress bar.

/// Receives progress from a stage; binaries implement it with a bar, tests ignore it.
pub trait Progress: Send + Sync {
    /// A new phase of `total` units (rows) begins.
    fn start(&self, what: &str, total: u64);
    /// `n` more units are done.
    fn advance(&self, n: u64);
    /// `n` more units are done, holding `tokens` tokens (shown as a token rate).
    fn advance_tokens(&self, n: u64, tokens: u64) {
        let _ = tokens;
        self.advance(n);
    }
    /// The phase is finished.
    fn finish(&self);
}

/// Discards progress.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Progress for Silent {
    fn start(&self, _: &str, _: u64) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}
