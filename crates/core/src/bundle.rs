//! A model bundle: one relocatable folder holding everything needed to score new rows with
//! a trained model. `bundle.json` describes it; `manifest.json` lists the blake3 of every
//! other file, and loading checks them all, so a tampered or incomplete bundle is refused
//! naming the file.
//!
//! ```text
//! BUNDLE/bundle.json      what the model is, what it takes, how it was trained and tested
//! BUNDLE/spec.yaml        the backbone spec, its paths relative to the bundle
//! BUNDLE/model.onnx       the backbone
//! BUNDLE/tokenizer.json   text backbones
//! BUNDLE/head/            head.json, head.safetensors and their manifest
//! BUNDLE/metrics.json     the test evaluation, when the bundle was made with one
//! BUNDLE/MODEL_CARD.md    the same facts for people
//! BUNDLE/manifest.json    blake3 of each file above
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::artifact::{BackboneId, Task};
use crate::head::Head;
use crate::manifest::Manifest;
use crate::spec::BackboneSpec;
use crate::{Error, Result};

pub const FORMAT: &str = "graft-bundle/1";
pub const INFO_FILE: &str = "bundle.json";
pub const SPEC_FILE: &str = "spec.yaml";
pub const MODEL_FILE: &str = "model.onnx";
pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const HEAD_DIR: &str = "head";
pub const METRICS_FILE: &str = "metrics.json";
pub const CARD_FILE: &str = "MODEL_CARD.md";
/// The manifest's `kind` of a bundle.
pub const MANIFEST_KIND: &str = "bundle";

/// `bundle.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleInfo {
    pub format: String,
    pub graft_version: String,
    pub task: Task,
    /// Class names in the head's output order; empty for regression.
    pub labels: Vec<String>,
    /// The feature space the head was trained in: outputs, combination, pooling,
    /// normalisation, dimension.
    pub features: BackboneId,
    pub input: Input,
    pub training: TrainingData,
    /// Measured on the held-out test split, when the bundle was made with an evaluation.
    pub test: Option<TestSummary>,
}

/// What scoring reads from a table of new rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Input {
    /// Text, cleaned and tokenised as at training time, truncated at `max_length` tokens.
    Text { text_column: String, label_column: String, id_column: Option<String>, max_length: usize },
    /// Images: a folder, a table of paths (`path_column`) or pixel rows, as at training time.
    Image { label_column: String, id_column: Option<String>, path_column: Option<String> },
}

impl Input {
    pub fn label_column(&self) -> &str {
        match self {
            Input::Text { label_column, .. } | Input::Image { label_column, .. } => label_column,
        }
    }

    pub fn id_column(&self) -> Option<&str> {
        match self {
            Input::Text { id_column, .. } | Input::Image { id_column, .. } => id_column.as_deref(),
        }
    }
}

/// What the model was trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingData {
    /// blake3 of the training inputs (features files), by split.
    pub inputs: BTreeMap<String, String>,
    pub train_rows: usize,
    /// Train rows per class, in label order (classification).
    pub class_counts: Vec<u64>,
}

/// The test evaluation, and what drift checks compare tonight's rows with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestSummary {
    pub rows: usize,
    /// Headline metrics (accuracy and macro F1, or R² and RMSE) with their 95% intervals.
    pub metrics: BTreeMap<String, Estimate>,
    /// Share of test rows whose top probability falls in each of [`CONFIDENCE_BINS`] equal
    /// bins of [0, 1] (classification).
    pub top_probability: Vec<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Estimate {
    pub value: f64,
    pub low: Option<f64>,
    pub high: Option<f64>,
}

/// Bins of the top-probability histograms compared by the population stability index.
pub const CONFIDENCE_BINS: usize = 10;

/// Shares of `values` (in [0, 1]) in [`CONFIDENCE_BINS`] equal bins.
pub fn confidence_histogram(values: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut counts = [0u64; CONFIDENCE_BINS];
    let mut n = 0u64;
    for v in values {
        let bin = ((v.clamp(0.0, 1.0) * CONFIDENCE_BINS as f64) as usize).min(CONFIDENCE_BINS - 1);
        counts[bin] += 1;
        n += 1;
    }
    counts.iter().map(|&c| c as f64 / n.max(1) as f64).collect()
}

/// Population stability index of `actual` against `expected` shares (bins of equal
/// edges), each share floored at 1e-4 so an empty bin stays finite.
pub fn population_stability_index(expected: &[f64], actual: &[f64]) -> f64 {
    expected
        .iter()
        .zip(actual)
        .map(|(&e, &a)| {
            let (e, a) = (e.max(1e-4), a.max(1e-4));
            (a - e) * (a / e).ln()
        })
        .sum()
}

/// A loaded bundle, every file checked against the manifest.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub dir: PathBuf,
    pub info: BundleInfo,
    pub spec: BackboneSpec,
    pub head: Head,
}

impl Bundle {
    /// Reads `dir`: the manifest, then every file it lists (each must hash as listed, and
    /// `bundle.json`, `spec.yaml` and the head must be among them), then the head.
    pub fn load(dir: &Path) -> Result<Self> {
        let manifest = Manifest::read(dir, MANIFEST_KIND)?;
        manifest.check_all(dir)?;
        let head_dir = dir.join(HEAD_DIR);
        for required in [INFO_FILE, SPEC_FILE, MODEL_FILE] {
            manifest.lists(dir, required)?;
        }
        let bad = |message: String| Error::Document { path: dir.join(INFO_FILE), what: "bundle.json", message };
        let bytes =
            fs_err::read(dir.join(INFO_FILE)).map_err(|source| Error::Read { path: dir.join(INFO_FILE), source })?;
        let info: BundleInfo = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        if info.format != FORMAT {
            return Err(bad(format!("format `{}`, expected `{FORMAT}`: make the bundle again", info.format)));
        }
        let spec = BackboneSpec::load(&dir.join(SPEC_FILE))?;
        let head = Head::load(&head_dir)?;
        if !head.info.backbone.same_features(&info.features) || head.info.labels != info.labels {
            return Err(bad("its head was trained on other features or labels than it describes".into()));
        }
        Ok(Self { dir: dir.to_owned(), info, spec, head })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psi_is_zero_for_equal_shares_and_grows_with_shift() {
        let a = confidence_histogram([0.55, 0.65, 0.75, 0.95].into_iter());
        assert_eq!(a.iter().sum::<f64>(), 1.0);
        assert_eq!(population_stability_index(&a, &a), 0.0);
        let b = confidence_histogram([0.51, 0.52, 0.53, 0.54].into_iter());
        let shifted = population_stability_index(&a, &b);
        // Hand-computed: bins 5..9 hold 1/4 each in `a` except bin 8; `b` has all in bin 5.
        let e = |x: f64| x.max(1e-4);
        let want = (e(1.0) - e(0.25)) * (e(1.0) / e(0.25)).ln() + 3.0 * (e(0.0) - e(0.25)) * (e(0.0) / e(0.25)).ln();
        assert!((shifted - want).abs() < 1e-12, "{shifted} vs {want}");
    }
}
