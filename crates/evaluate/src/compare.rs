//! `graft-evaluate compare A B`: two prediction files on the same rows, their accuracies,
//! a paired-bootstrap interval of the difference and McNemar's exact test.

use std::path::{Path, PathBuf};

use arrow::array::StringArray;
use graft_core::artifact::{ArtifactReader, column};
use serde::{Deserialize, Serialize};

use crate::uncertainty::{self, Interval};
use crate::{Error, PREDICTIONS_FILE, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Comparison {
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

/// A predictions file's ids, true labels and predicted labels.
fn read(path: &Path) -> Result<(Vec<String>, Vec<String>, Vec<String>)> {
    let path = if path.is_dir() { path.join(PREDICTIONS_FILE) } else { path.to_owned() };
    let mut reader = ArtifactReader::open(&path)?;
    let (mut ids, mut truth, mut pred) = (Vec::new(), Vec::new(), Vec::new());
    while let Some(batch) = reader.next_batch()? {
        let get = |name| column::<StringArray>(&batch, name, &path, "utf8").cloned();
        let (i, t, p) = (get("id")?, get("label")?, get("pred")?);
        ids.extend(i.iter().map(|v| v.unwrap_or_default().to_owned()));
        truth.extend(t.iter().map(|v| v.unwrap_or_default().to_owned()));
        pred.extend(p.iter().map(|v| v.unwrap_or_default().to_owned()));
    }
    Ok((ids, truth, pred))
}

pub fn compare(a: &Path, b: &Path, resamples: usize, seed: u64) -> Result<Comparison> {
    let (ids_a, truth_a, pred_a) = read(a)?;
    let (ids_b, truth_b, pred_b) = read(b)?;
    let mismatch = |message: String| Error::NotComparable { a: a.to_owned(), b: b.to_owned(), message };
    if ids_a.len() != ids_b.len() {
        return Err(mismatch(format!("{} rows against {}", ids_a.len(), ids_b.len())));
    }
    if let Some(i) = (0..ids_a.len()).find(|&i| ids_a[i] != ids_b[i]) {
        return Err(mismatch(format!("row {i} is `{}` in one and `{}` in the other", ids_a[i], ids_b[i])));
    }
    if let Some(i) = (0..ids_a.len()).find(|&i| truth_a[i] != truth_b[i]) {
        return Err(mismatch(format!(
            "row {i} (id `{}`) has label `{}` against `{}`",
            ids_a[i], truth_a[i], truth_b[i]
        )));
    }
    let right_a: Vec<bool> = (0..ids_a.len()).map(|i| pred_a[i] == truth_a[i]).collect();
    let right_b: Vec<bool> = (0..ids_a.len()).map(|i| pred_b[i] == truth_b[i]).collect();
    let n = right_a.len();
    let acc = |right: &[bool], rows: &mut dyn Iterator<Item = usize>| {
        let (mut hit, mut total) = (0usize, 0usize);
        for r in rows {
            hit += usize::from(right[r]);
            total += 1;
        }
        hit as f64 / total.max(1) as f64
    };
    let (accuracy_a, accuracy_b) = (acc(&right_a, &mut (0..n)), acc(&right_b, &mut (0..n)));
    let difference_interval = uncertainty::bootstrap(n, resamples, 0.95, seed, |rows| {
        acc(&right_b, &mut rows.iter().copied()) - acc(&right_a, &mut rows.iter().copied())
    });
    let only_a_right = (0..n).filter(|&i| right_a[i] && !right_b[i]).count() as u64;
    let only_b_right = (0..n).filter(|&i| right_b[i] && !right_a[i]).count() as u64;
    Ok(Comparison {
        a: a.to_owned(),
        b: b.to_owned(),
        rows: n,
        accuracy_a,
        accuracy_b,
        difference: accuracy_b - accuracy_a,
        difference_interval,
        only_a_right,
        only_b_right,
        mcnemar_p: uncertainty::mcnemar_exact(only_a_right, only_b_right),
    })
}

pub fn render(c: &Comparison) -> String {
    format!(
        "{} rows\nA {}: accuracy {:.4}\nB {}: accuracy {:.4}\nB - A: {:+.4} (95% paired bootstrap [{:+.4}, {:+.4}])\n\
         only A right {}, only B right {}; McNemar exact p = {:.3e}\n",
        c.rows,
        c.a.display(),
        c.accuracy_a,
        c.b.display(),
        c.accuracy_b,
        c.difference,
        c.difference_interval.low,
        c.difference_interval.high,
        c.only_a_right,
        c.only_b_right,
        c.mcnemar_p
    )
}
