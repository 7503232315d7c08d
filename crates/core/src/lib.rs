//! Shared by every graft stage: artifact files and their provenance metadata, hashing,
//! atomic output, backbone specs, seeded splitting and the exit-code convention.
//!
//! Light on purpose: no ONNX Runtime, no polars.

pub mod artifact;
pub mod atomic;
pub mod bundle;
pub mod cli;
pub mod columns;
pub mod config;
pub mod curve;
pub mod drift;
mod error;
pub mod features;
pub mod guard;
pub mod hash;
pub mod head;
pub mod ipc;
pub mod lockfile;
pub mod manifest;
pub mod metrics;
pub mod numeric;
pub mod onnx;
pub mod progress;
pub mod rng;
pub mod spec;
pub mod spill;

pub use error::{Error, Result, UserFacing};

/// The graft version recorded in every artifact's provenance.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
