//! `graft-evaluate compare A B`: two prediction files on the same rows, their accuracies,
//! a paired-bootstrap interval of the difference and McNemar's exact test.

use std::path::Path;

pub use graft_core::metrics::Comparison;

use crate::Result;
use crate::predictions::Predictions;
use crate::uncertainty;

pub fn compare(a: &Path, b: &Path, resamples: usize, seed: u64) -> Result<Comparison> {
    compare_predictions(&Predictions::read(a)?, &Predictions::read(b)?, resamples, seed)
}

/// [`compare`] of predictions already read (their `path`s name them in the result).
pub fn compare_predictions(pa: &Predictions, pb: &Predictions, resamples: usize, seed: u64) -> Result<Comparison> {
    pa.check_same_rows(pb)?;
    let right = |p: &Predictions| -> Vec<bool> { (0..p.ids.len()).map(|i| p.pred[i] == p.truth[i]).collect() };
    let (right_a, right_b) = (right(pa), right(pb));
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
        format: graft_core::metrics::COMPARISON_FORMAT.into(),
        a: pa.path.clone(),
        b: pb.path.clone(),
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

/// Writes [`graft_core::metrics::COMPARISON_FILE`] into `dir` atomically.
pub fn write(dir: &Path, c: &Comparison) -> Result<()> {
    let mut json =
        serde_json::to_vec_pretty(c).map_err(|source| graft_core::Error::Json { what: "comparison", source })?;
    json.push(b'\n');
    graft_core::atomic::commit_all(vec![graft_core::atomic::pending_bytes(
        &dir.join(graft_core::metrics::COMPARISON_FILE),
        &json,
    )?])?;
    Ok(())
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
