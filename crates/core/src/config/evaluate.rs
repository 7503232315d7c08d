//! `graft-evaluate`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

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
    /// Folder of `graft-preprocess` output for these rows: the report then shows the text of
    /// the most confident wrong predictions, joined by id from the same split.
    #[arg(long)]
    pub data: Option<PathBuf>,
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

/// Parameters of `graft-evaluate predict`: a bundle's head applied to new rows' features,
/// one output row per input row in input order (rejected rows with their reason).
#[derive(Debug, Clone, PartialEq, Serialize, clap::Args)]
pub struct PredictConfig {
    /// The model bundle.
    #[arg(long)]
    pub bundle: PathBuf,
    /// Folder of `graft-preprocess rows` output (`rows.arrow`, `rejects.arrow`).
    #[arg(long)]
    pub rows: PathBuf,
    /// Folder of `graft-backbone` output for those rows.
    #[arg(long)]
    pub features: PathBuf,
    /// The predictions file; a drift summary is written beside it (`NAME.drift.json`).
    #[arg(long)]
    pub out: PathBuf,
    /// `parquet`, `csv`, `jsonl` or `arrow`; by default from the extension of `--out`,
    /// else Parquet.
    #[arg(long, value_enum)]
    pub format: Option<OutputFormat>,
    /// Rows whose top probability is below this count as low-confidence in the drift summary.
    #[arg(long, default_value_t = 0.6)]
    pub low_confidence: f64,
}

/// File formats of predictions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    Parquet,
    Csv,
    Jsonl,
    Arrow,
}

impl OutputFormat {
    /// The format `--out`'s extension names, if any.
    pub fn of_path(path: &std::path::Path) -> Option<Self> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "parquet" => Some(Self::Parquet),
            "csv" => Some(Self::Csv),
            "jsonl" | "ndjson" => Some(Self::Jsonl),
            "arrow" => Some(Self::Arrow),
            _ => None,
        }
    }
}

/// Parameters of `graft-evaluate mteb`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct MtebConfig {
    /// Folder of `graft-backbone` output with `train.arrow` and `test.arrow`.
    #[arg(long)]
    pub features: PathBuf,
    /// Train rows drawn per label in each experiment (MTEB: `samples_per_label`).
    #[arg(long, default_value_t = 8)]
    pub per_class: usize,
    /// Number of draws (MTEB: `n_experiments`).
    #[arg(long, default_value_t = 10)]
    pub experiments: usize,
    /// Seed of the first draw; draw i uses seed + i.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Folder to write `mteb.json` into.
    #[arg(long)]
    pub out: Option<PathBuf>,
}
