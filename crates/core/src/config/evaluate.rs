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
    /// Bootstrap resamples for the 95% intervals of accuracy and macro F1: 0 (none) or at
    /// least 100.
    #[arg(long, default_value_t = 1000, value_parser = resamples)]
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
    /// `parquet`, `csv`, `jsonl` or `arrow`; by default the one the extension of `--out`
    /// names (Parquet when it has none).
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
    /// The format of `out`: `format` when given, else the one its extension names, else
    /// Parquet for a name without an extension. An extension that names no format, or
    /// another format than `format`, is an error: the file would not be what its name says.
    pub fn resolve(format: Option<Self>, out: &std::path::Path) -> crate::Result<Self> {
        let Some(ext) = out.extension() else { return Ok(format.unwrap_or(Self::Parquet)) };
        let ext = ext.to_string_lossy().to_ascii_lowercase();
        let named = match ext.as_str() {
            "parquet" => Some(Self::Parquet),
            "csv" => Some(Self::Csv),
            "jsonl" | "ndjson" => Some(Self::Jsonl),
            "arrow" => Some(Self::Arrow),
            _ => None,
        };
        let error = |message: String| crate::Error::OutputFormat { path: out.to_owned(), message };
        match (format, named) {
            (None, Some(named)) => Ok(named),
            (Some(given), Some(named)) if given != named => {
                Err(error(format!("`--format {}` was given, but `.{ext}` names {} output", given.name(), named.name())))
            }
            (Some(given), _) => Ok(given),
            (None, None) => Err(error(format!(
                "cannot tell the output format from `.{ext}`: name a .parquet, .csv, .jsonl, .ndjson or .arrow \
                 file, or give --format"
            ))),
        }
    }

    /// The name `--format` takes.
    pub fn name(self) -> &'static str {
        match self {
            Self::Parquet => "parquet",
            Self::Csv => "csv",
            Self::Jsonl => "jsonl",
            Self::Arrow => "arrow",
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

/// Fewest bootstrap resamples that a 95% percentile interval is taken from: with fewer, its
/// 2.5% and 97.5% quantiles rest on a value or two (one resample gives an interval of a
/// single value, and not the estimate's).
pub const MIN_RESAMPLES: usize = 100;

/// `--bootstrap`: 0 or at least [`MIN_RESAMPLES`].
pub fn resamples(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|e| format!("{e}"))?;
    match n {
        1..MIN_RESAMPLES => Err(format!("0 (no intervals) or at least {MIN_RESAMPLES} resamples, not {n}")),
        _ => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::OutputFormat::{self, *};
    use std::path::Path;

    #[test]
    fn each_format_is_named_as_the_flag_takes_it() {
        for format in [Parquet, Csv, Jsonl, Arrow] {
            assert_eq!(<OutputFormat as clap::ValueEnum>::from_str(format.name(), false), Ok(format));
        }
    }

    #[test]
    fn the_output_format_follows_the_name_and_refuses_what_it_cannot_tell() {
        let resolve = |format, out: &str| OutputFormat::resolve(format, Path::new(out)).map_err(|e| e.to_string());
        assert_eq!(resolve(None, "out/p.CSV"), Ok(Csv));
        assert_eq!(resolve(None, "p.ndjson"), Ok(Jsonl));
        assert_eq!(resolve(None, "p"), Ok(Parquet));
        assert_eq!(resolve(Some(Csv), "p"), Ok(Csv));
        assert_eq!(resolve(Some(Arrow), "p.arrow"), Ok(Arrow));
        assert_eq!(resolve(Some(Csv), "p.dat"), Ok(Csv));
        let err = resolve(None, "p.tsv").unwrap_err();
        assert!(err.contains("`p.tsv`") && err.contains("`.tsv`") && err.contains("--format"), "{err}");
        let err = resolve(Some(Parquet), "p.csv").unwrap_err();
        assert!(err.contains("`--format parquet`") && err.contains("names csv output"), "{err}");
    }
}
