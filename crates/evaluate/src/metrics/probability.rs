//! Metrics of predicted class probabilities.

pub use graft_core::metrics::Probabilistic;

use super::rank::{binary_average_precision, binary_roc_auc};

/// Number of equal-width confidence bins of the expected calibration error.
pub const ECE_BINS: usize = 15;

/// A score of one class against the rest: (is positive, score) per row.
type BinaryScore = fn(&[bool], &[f64]) -> Option<f64>;

/// `proba[i]` holds row i's class probabilities; `truth[i]` its class.
pub fn probabilistic(truth: &[usize], proba: &[Vec<f64>]) -> Probabilistic {
    let n = truth.len().max(1) as f64;
    let k = proba.first().map_or(0, Vec::len);
    let eps = f64::EPSILON;
    let log_loss = -truth.iter().zip(proba).map(|(&t, p)| p[t].clamp(eps, 1.0 - eps).ln()).sum::<f64>() / n;
    let one_vs_rest = |score: BinaryScore| -> Option<f64> {
        let classes: Vec<usize> = if k == 2 { vec![1] } else { (0..k).collect() };
        let mut sum = 0.0;
        for &c in &classes {
            let positive: Vec<bool> = truth.iter().map(|&t| t == c).collect();
            let scores: Vec<f64> = proba.iter().map(|p| p[c]).collect();
            sum += score(&positive, &scores)?;
        }
        Some(sum / classes.len() as f64)
    };
    let top_k_accuracy = (2..k.min(6))
        .map(|top| {
            let hits = truth.iter().zip(proba).filter(|&(&t, p)| p.iter().filter(|&&q| q > p[t]).count() < top).count();
            (top, hits as f64 / n)
        })
        .collect();
    Probabilistic {
        log_loss,
        roc_auc: one_vs_rest(binary_roc_auc),
        average_precision: one_vs_rest(binary_average_precision),
        top_k_accuracy,
        expected_calibration_error: expected_calibration_error(truth, proba),
    }
}

/// Per confidence bin (top-class probability in (lo, hi], `ECE_BINS` equal widths): the
/// summed confidence, the number of correct rows and the number of rows.
pub fn reliability_bins(truth: &[usize], proba: &[Vec<f64>]) -> Vec<(f64, f64, usize)> {
    let mut bins = vec![(0.0f64, 0.0f64, 0usize); ECE_BINS];
    for (&t, p) in truth.iter().zip(proba) {
        let (top, conf) = p.iter().enumerate().fold((0, f64::MIN), |b, (i, &q)| if q > b.1 { (i, q) } else { b });
        // Confidence 0 goes to the first bin.
        let b = ((conf * ECE_BINS as f64).ceil() as usize).clamp(1, ECE_BINS) - 1;
        bins[b].0 += conf;
        bins[b].1 += f64::from(u8::from(top == t));
        bins[b].2 += 1;
    }
    bins
}

/// ECE = sum over bins of |correct - summed confidence| / n.
fn expected_calibration_error(truth: &[usize], proba: &[Vec<f64>]) -> f64 {
    let n = truth.len().max(1) as f64;
    reliability_bins(truth, proba).iter().map(|&(conf, correct, _)| (correct - conf).abs() / n).sum()
}
