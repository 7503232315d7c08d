//! Reading a `predictions.arrow` back: ids, true and predicted labels, class probabilities.

use std::path::{Path, PathBuf};

use arrow::array::{Float64Array, StringArray};
use graft_core::artifact::{ArtifactReader, Provenance, column};
use graft_core::columns;

use crate::{Error, PREDICTIONS_FILE, Result};

/// Largest accepted |sum of a row's probabilities - 1|.
const SUM_TOLERANCE: f64 = 1e-6;

#[derive(Debug, Clone)]
pub struct Predictions {
    pub path: PathBuf,
    pub provenance: Provenance,
    pub ids: Vec<String>,
    /// True labels as written.
    pub truth: Vec<String>,
    pub pred: Vec<String>,
    /// `proba[i][c]`: row i's probability of class `provenance.labels[c]`.
    pub proba: Vec<Vec<f64>>,
}

impl Predictions {
    /// Reads a classification predictions file (or the one in an evaluation folder).
    pub fn read(path: &Path) -> Result<Self> {
        let path = if path.is_dir() { path.join(PREDICTIONS_FILE) } else { path.to_owned() };
        if path.extension().is_none_or(|e| e != "arrow") {
            return Err(Error::NotEvaluation { path });
        }
        crate::check_manifest(&path, None)?;
        let mut reader = ArtifactReader::open(&path)?;
        let provenance = reader.provenance().clone();
        let labels = provenance.labels.clone();
        let bad = |row: usize, message: String| Error::BadPredictions { path: path.clone(), row, message };
        let mut p = Self { path: path.clone(), provenance, ids: vec![], truth: vec![], pred: vec![], proba: vec![] };
        while let Some(batch) = reader.next_batch()? {
            let text = |name| column::<StringArray>(&batch, name, &path, "utf8");
            let (ids, truth, pred) = (text(columns::ID)?, text(columns::LABEL)?, text(columns::PRED)?);
            let columns: Vec<&Float64Array> = labels
                .iter()
                .map(|l| column::<Float64Array>(&batch, &columns::prob(l), &path, "float64 probabilities"))
                .collect::<graft_core::Result<_>>()?;
            for i in 0..batch.num_rows() {
                let row = p.ids.len();
                let (t, q) = (truth.value(i), pred.value(i));
                for label in [t, q] {
                    if !labels.iter().any(|l| l == label) {
                        return Err(bad(row, format!("label `{label}` is not in the label set {labels:?}")));
                    }
                }
                let proba: Vec<f64> = columns.iter().map(|c| c.value(i)).collect();
                let sum: f64 = proba.iter().sum();
                if (sum - 1.0).abs() > SUM_TOLERANCE || proba.iter().any(|v| !(0.0..=1.0).contains(v)) {
                    return Err(bad(row, format!("probabilities {proba:?} do not sum to 1 (sum {sum})")));
                }
                p.ids.push(ids.value(i).to_owned());
                p.truth.push(t.to_owned());
                p.pred.push(q.to_owned());
                p.proba.push(proba);
            }
        }
        Ok(p)
    }

    /// Class id of each row's true label.
    pub fn classes(&self) -> Vec<usize> {
        let labels = &self.provenance.labels;
        self.truth.iter().map(|t| labels.iter().position(|l| l == t).expect("checked on read")).collect()
    }

    /// Refuses `other` unless it scores the same rows with the same labels and label set.
    pub fn check_same_rows(&self, other: &Predictions) -> Result<()> {
        let mismatch = |message: String| Error::NotComparable { a: self.path.clone(), b: other.path.clone(), message };
        if self.ids.len() != other.ids.len() {
            return Err(mismatch(format!("{} rows against {}", self.ids.len(), other.ids.len())));
        }
        if self.provenance.labels != other.provenance.labels {
            return Err(mismatch(format!("label sets {:?} and {:?}", self.provenance.labels, other.provenance.labels)));
        }
        if let Some(i) = (0..self.ids.len()).find(|&i| self.ids[i] != other.ids[i]) {
            return Err(mismatch(format!("row {i} is `{}` in one and `{}` in the other", self.ids[i], other.ids[i])));
        }
        if let Some(i) = (0..self.ids.len()).find(|&i| self.truth[i] != other.truth[i]) {
            return Err(mismatch(format!(
                "row {i} (id `{}`) has label `{}` against `{}`",
                self.ids[i], self.truth[i], other.truth[i]
            )));
        }
        Ok(())
    }
}
