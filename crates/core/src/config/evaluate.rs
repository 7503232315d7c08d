//! `graft-evaluate`.

use std::path::PathBuf;

use serde::Serialize;

/// Parameters of `graft-evaluate`.
#[derive(Debug, Clone, PartialEq, Serialize, clap::Args)]
pub struct Config {
    /// Folder of `graft-finetune` output (`head.json`, `head.safetensors`).
    #[arg(long)]
    pub head: PathBuf,
    /// Folder of `graft-backbone` output.
    #[arg(long)]
    pub features: PathBuf,
    /// Split to evaluate.
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Output folder for `metrics.json` and `predictions.arrow`.
    #[arg(long)]
    pub out: PathBuf,
    /// A baseline evaluation on the same rows (its folder or predictions.arrow): the report
    /// and metrics.json then show the difference with its interval and McNemar's test.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// A learning curve (`curve.json` from `graft-finetune curve --out`) to draw in the report.
    #[arg(long)]
    pub curve: Option<PathBuf>,
    /// Bootstrap resamples for the 95% intervals of accuracy and macro F1 (0: none).
    #[arg(long, default_value_t = 1000)]
    pub bootstrap: usize,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Parameters of `graft-evaluate bundle`: one folder with everything needed to score new
/// rows with a trained head.
#[derive(Debug, Clone, PartialEq, Serialize, clap::Args)]
pub struct BundleConfig {
    /// Folder of `graft-finetune` output.
    #[arg(long)]
    pub head: PathBuf,
    /// The backbone spec the features were made with (models/*.yaml).
    #[arg(long)]
    pub spec: PathBuf,
    /// Folder of `graft-preprocess` output the head was trained on: how rows were read
    /// (text, label and id columns, maximum length) and the training class counts.
    #[arg(long)]
    pub data: PathBuf,
    /// The head's test evaluation (`graft-evaluate` output): its metrics and confidence
    /// distribution go into the bundle and its model card.
    #[arg(long)]
    pub eval: Option<PathBuf>,
    /// Output folder (the bundle).
    #[arg(long)]
    pub out: PathBuf,
}
