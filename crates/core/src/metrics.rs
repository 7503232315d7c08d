//! `metrics.json`: an evaluation's (or fusion's) metrics, intervals, head and provenance,
//! written by `graft-evaluate` and read back by `graft-evaluate show`, `compare` and the
//! pipeline's sweep table.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};

use serde::{Deserialize, Serialize};

use crate::artifact::BackboneId;
use crate::config::finetune::HeadKind;
use crate::{Error, Result};

pub const FILE: &str = "metrics.json";
pub const FORMAT: &str = "graft-metrics/2";
/// `comparison.json`: two evaluations paired on the same rows (see [`Comparison`]).
pub const COMPARISON_FILE: &str = "comparison.json";
pub const COMPARISON_FORMAT: &str = "graft-comparison/1";
/// `metrics.parquet`: the report as rows (see [`Report::table`]).
pub const TABLE_FORMAT: &str = "graft-metrics-table/1";

/// `metrics.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    pub format: String,
    pub split: String,
    pub metrics: Metrics,
    /// 95% percentile-bootstrap intervals of the headline metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intervals: Option<Intervals>,
    /// Metrics of the predicted probabilities (classification).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probabilities: Option<Probabilistic>,
    pub backbone: BackboneId,
    /// The head evaluated (none for fused predictions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<HeadSummary>,
    /// How fused predictions were made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fusion: Option<Fusion>,
    /// Against a baseline evaluation (`--baseline`): A is the baseline, B these predictions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Comparison>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Intervals {
    pub resamples: usize,
    pub seed: u64,
    pub confidence: f64,
    /// By metric: accuracy and macro_f1, or rmse and r2.
    pub metrics: BTreeMap<String, Interval>,
}

/// Classification or regression metrics, tagged by `task`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "task", rename_all = "snake_case")]
pub enum Metrics {
    Classification(Classification),
    Regression(Regression),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadSummary {
    pub kind: HeadKind,
    /// Logistic regression's chosen C.
    pub c: Option<f64>,
    pub temperature: f64,
    pub train_rows: usize,
}

impl Report {
    /// Reads `path` (a `metrics.json`); another format is refused.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = fs_err::read(path).map_err(|source| Error::Read { path: path.to_owned(), source })?;
        Self::parse(path, &bytes)
    }

    /// Parses the bytes of `path`.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self> {
        let bad = |message: String| Error::Document { path: path.to_owned(), what: "metrics.json", message };
        let report: Report = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        if report.format != FORMAT {
            return Err(bad(format!("format `{}`, expected `{FORMAT}`", report.format)));
        }
        Ok(report)
    }

    /// The report as a table (`TABLE_FORMAT` in the schema metadata under `graft.format`):
    /// one row per number of metrics.json, `metric`, `class` for per-class numbers, `value`,
    /// and the interval's `low` and `high` where the report has one.
    pub fn table(&self) -> RecordBatch {
        let mut rows: Vec<(String, Option<String>, f64)> = Vec::new();
        let mut flatten = |value: &serde_json::Value| {
            let serde_json::Value::Object(map) = value else { return };
            for (key, v) in map {
                match v {
                    serde_json::Value::Number(n) => rows.extend(n.as_f64().map(|x| (key.clone(), None, x))),
                    serde_json::Value::Array(items) if key == "per_class" => {
                        for item in items {
                            let label = item.get("label").and_then(|l| l.as_str()).map(str::to_owned);
                            for (k, x) in item.as_object().into_iter().flatten() {
                                if let Some(x) = x.as_f64() {
                                    rows.push((k.clone(), label.clone(), x));
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
        };
        if let Ok(metrics) = serde_json::to_value(&self.metrics) {
            flatten(&metrics);
        }
        if let Some(p) = self.probabilities.as_ref().and_then(|p| serde_json::to_value(p).ok()) {
            flatten(&p);
        }
        let interval = |name: &str, class: &Option<String>| {
            class.is_none().then(|| self.intervals.as_ref()?.metrics.get(name).copied()).flatten()
        };
        let fields = vec![
            Field::new("metric", DataType::Utf8, false),
            Field::new("class", DataType::Utf8, true),
            Field::new("value", DataType::Float64, false),
            Field::new("low", DataType::Float64, true),
            Field::new("high", DataType::Float64, true),
        ];
        let format = HashMap::from([("graft.format".to_owned(), TABLE_FORMAT.to_owned())]);
        let schema = Arc::new(Schema::new_with_metadata(fields, format));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0.as_str()))),
            Arc::new(StringArray::from_iter(rows.iter().map(|r| r.1.as_deref()))),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2))),
            Arc::new(Float64Array::from_iter(rows.iter().map(|r| interval(&r.0, &r.1).map(|i| i.low)))),
            Arc::new(Float64Array::from_iter(rows.iter().map(|r| interval(&r.0, &r.1).map(|i| i.high)))),
        ];
        RecordBatch::try_new(schema, columns).expect("columns match the schema")
    }

    /// Headline numbers: accuracy and macro F1, or R² and RMSE.
    pub fn headline(&self) -> Vec<(&'static str, f64)> {
        match &self.metrics {
            Metrics::Classification(m) => vec![("accuracy", m.accuracy), ("macro_f1", m.macro_f1)],
            Metrics::Regression(m) => vec![("r2", m.r2), ("rmse", m.rmse)],
        }
    }
}

/// A two-sided interval with its construction.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassMetrics {
    pub label: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Classification {
    pub rows: usize,
    /// Also micro-averaged precision, recall and F1 (one label per row).
    pub accuracy: f64,
    /// Mean recall over the classes present in the truth.
    pub balanced_accuracy: f64,
    pub macro_precision: f64,
    pub macro_recall: f64,
    pub macro_f1: f64,
    pub weighted_precision: f64,
    pub weighted_recall: f64,
    pub weighted_f1: f64,
    /// Matthews correlation coefficient (multiclass form); 0 when undefined, as scikit-learn.
    pub mcc: f64,
    /// Cohen's kappa; `None` when chance agreement is 1.
    pub cohen_kappa: Option<f64>,
    pub per_class: Vec<ClassMetrics>,
    /// `confusion[t][p]`: rows of true class t predicted as p.
    pub confusion: Vec<Vec<usize>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Probabilistic {
    /// Mean negative log-probability of the true class (probabilities clipped to
    /// [eps, 1 - eps], eps = f64::EPSILON, as scikit-learn).
    pub log_loss: f64,
    /// Binary: the positive (second) class's ROC-AUC. More classes: the macro average of
    /// one-vs-rest AUCs. `None` when a class has no positive or no negative row.
    pub roc_auc: Option<f64>,
    /// Same averaging as `roc_auc`, of scikit-learn's average precision.
    pub average_precision: Option<f64>,
    /// Fraction of rows whose true class is among the k most probable, for k = 2..min(5, classes-1).
    pub top_k_accuracy: Vec<(usize, f64)>,
    /// Expected calibration error of the top-class confidence over equal-width confidence bins (15).
    pub expected_calibration_error: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Regression {
    pub rows: usize,
    pub mse: f64,
    pub rmse: f64,
    pub mae: f64,
    /// 1 - SS_res / SS_tot; with constant targets 1 for a perfect fit, else 0 (scikit-learn).
    pub r2: f64,
    /// `None` when targets or predictions are constant.
    pub pearson: Option<f64>,
    pub spearman: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Average of the members' probabilities.
    Mean,
    /// Weighted average: `--weights`, or fitted on val with `--val`.
    Weighted,
    /// Majority vote of the predicted classes (ties: the highest mean probability);
    /// probabilities are the vote shares.
    Vote,
}

/// How the fusion was made, recorded in metrics.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fusion {
    pub method: Method,
    pub members: Vec<PathBuf>,
    /// Normalised weights (mean and vote: equal).
    pub weights: Vec<f64>,
    /// Each member's test accuracy, in order.
    pub member_accuracy: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Comparison {
    pub format: String,
    pub a: PathBuf,
    pub b: PathBuf,
    pub rows: usize,
    pub accuracy_a: f64,
    pub accuracy_b: f64,
    /// accuracy_b - accuracy_a, and its 95% paired percentile-bootstrap interval.
    pub difference: f64,
    pub difference_interval: Interval,
    /// Rows only A got right, and rows only B got right.
    pub only_a_right: u64,
    pub only_b_right: u64,
    pub mcnemar_p: f64,
}

impl Comparison {
    /// Reads `path` (a `comparison.json`); another format is refused.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = fs_err::read(path).map_err(|source| Error::Read { path: path.to_owned(), source })?;
        let bad = |message: String| Error::Document { path: path.to_owned(), what: COMPARISON_FILE, message };
        let c: Comparison = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        if c.format != COMPARISON_FORMAT {
            return Err(bad(format!("format `{}`, expected `{COMPARISON_FORMAT}`", c.format)));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_comparison_of_another_format_or_shape_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(COMPARISON_FILE);
        let c = Comparison {
            format: COMPARISON_FORMAT.into(),
            a: "a".into(),
            b: "b".into(),
            rows: 10,
            accuracy_a: 0.7,
            accuracy_b: 0.8,
            difference: 0.1,
            difference_interval: Interval { low: -0.1, high: 0.3 },
            only_a_right: 1,
            only_b_right: 2,
            mcnemar_p: 1.0,
        };
        std::fs::write(&path, serde_json::to_vec(&c).unwrap()).unwrap();
        assert_eq!(Comparison::read(&path).unwrap(), c);
        let old = serde_json::to_string(&c).unwrap().replace(COMPARISON_FORMAT, "graft-comparison/0");
        std::fs::write(&path, old).unwrap();
        let err = Comparison::read(&path).unwrap_err().to_string();
        assert!(err.contains("comparison.json") && err.contains("graft-comparison/0"), "{err}");
        std::fs::write(&path, b"{\"format\": 1").unwrap();
        assert!(Comparison::read(&path).unwrap_err().to_string().contains("comparison.json"));
    }
}
