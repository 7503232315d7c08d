use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Parameters of `graft-finetune`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Folder of `graft-backbone` output (`train.arrow`, and `val.arrow` to choose C).
    #[arg(long)]
    pub features: PathBuf,
    /// Output folder for `head.safetensors` and `head.json`.
    #[arg(long)]
    pub out: PathBuf,
    /// Inverse L2 strength(s), as scikit-learn's `C`; with several, the best on val is kept.
    #[arg(long, value_delimiter = ',', default_value = "0.01,0.1,1,10,100")]
    #[serde(default = "default_c")]
    pub c: Vec<f64>,
    /// Most L-BFGS iterations per fit.
    #[arg(long, default_value_t = 1000)]
    #[serde(default = "default_max_iter")]
    pub max_iter: usize,
    /// Stop when no gradient component exceeds this.
    #[arg(long, default_value_t = 1e-6)]
    #[serde(default = "default_tol")]
    pub tol: f64,
    /// Standardise features with the train split's mean and standard deviation
    /// (`--standardize` or `--standardize true|false`).
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, default_value_t = false, default_missing_value = "true")]
    #[serde(default)]
    pub standardize: bool,
}

fn default_c() -> Vec<f64> {
    vec![0.01, 0.1, 1.0, 10.0, 100.0]
}
fn default_max_iter() -> usize {
    1000
}
fn default_tol() -> f64 {
    1e-6
}
