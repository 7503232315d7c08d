//! `curve.json`: a learning curve, test accuracy against labelled train rows
//! (`graft-finetune curve --out`), drawn by `graft-evaluate --curve`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::finetune::HeadConfig;
use crate::{Error, Result};

pub const FORMAT: &str = "graft-curve/1";

pub const FILE: &str = "curve.json";

/// How many labelled rows a point uses.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Size {
    PerClass(usize),
    Fraction(f64),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Point {
    pub size: Size,
    /// Train rows used (the same for every repeat).
    pub train_rows: usize,
    pub accuracy_mean: f64,
    /// Population standard deviation over repeats.
    pub accuracy_std: f64,
    pub accuracies: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Curve {
    pub format: String,
    /// The split accuracy is measured on.
    pub split: String,
    pub config: HeadConfig,
    pub repeats: usize,
    pub points: Vec<Point>,
}

impl Curve {
    /// Reads a `curve.json`; another format is refused.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = fs_err::read(path).map_err(|source| Error::Read { path: path.to_owned(), source })?;
        let bad = |message: String| Error::Document { path: path.to_owned(), what: "curve.json", message };
        let curve: Curve = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        if curve.format != FORMAT {
            return Err(bad(format!("format `{}`, expected `{FORMAT}`", curve.format)));
        }
        Ok(curve)
    }
}
