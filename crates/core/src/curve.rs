//! `curve.json`: a learning curve, test accuracy against labelled train rows
//! (`graft-finetune curve --out`), drawn by `graft-evaluate --curve`.

use serde::{Deserialize, Serialize};

use crate::config::finetune::HeadConfig;

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
