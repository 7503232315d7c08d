//! `graft`: runs YAML pipeline definitions that chain the graft stage binaries.

pub mod definition;
mod error;
pub mod expand;
pub mod export;
mod fingerprint;
pub mod predict;
pub mod runner;
pub mod sweep;

pub use error::{Error, Result};
pub use runner::{Outcome, RunOptions, State, Summary, run, status};
