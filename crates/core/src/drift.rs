//! `NAME.drift.json`, written beside each predictions file: how tonight's rows compare with
//! the rows the model was trained and tested on.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const FORMAT: &str = "graft-drift/2";

/// A population stability index above this is a large shift (the usual rule of thumb).
pub const PSI_LARGE: f64 = 0.25;
/// Above this, a moderate shift.
pub const PSI_MODERATE: f64 = 0.1;
/// Fewer scored rows than this give no PSI: their histogram says little.
pub const PSI_MIN_ROWS: usize = 100;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Drift {
    pub format: String,
    /// Rows read = `scored` + the rejected rows.
    pub rows_read: u64,
    pub scored: u64,
    /// Rows that could not be scored, by reason.
    pub rejected: BTreeMap<String, u64>,
    /// Share of scored rows predicted as each class, beside the training split's share.
    pub classes: Vec<ClassShare>,
    /// Scored rows whose top probability is below `threshold`.
    pub low_confidence: LowConfidence,
    /// Population stability index of the top probability against the test split's (none
    /// without a test summary in the bundle, or with fewer than [`PSI_MIN_ROWS`] scored rows).
    pub top_probability_psi: Option<f64>,
    /// Accuracy (classification) or error (regression) on the scored rows whose input had a
    /// label the model knows: one of its classes, or a finite number.
    pub labelled: Option<Labelled>,
    /// Scored rows with another label, left out of `labelled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unknown_labels: Option<UnknownLabels>,
    /// Plain-language warnings an operator should read.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Labelled {
    pub rows: u64,
    /// Classification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    /// Regression: mean absolute and root-mean-square error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mae: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rmse: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnknownLabels {
    pub rows: u64,
    /// Such labels, the first [`UNKNOWN_LABEL_EXAMPLES`] in name order.
    pub examples: Vec<String>,
}

/// Distinct unknown labels kept as examples (a free-text column must not fill memory).
pub const UNKNOWN_LABEL_EXAMPLES: usize = 5;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassShare {
    pub label: String,
    pub predicted: f64,
    pub training: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LowConfidence {
    pub threshold: f64,
    pub share: f64,
}
