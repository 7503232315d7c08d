//! Classification metrics, with scikit-learn's definitions (zero division gives 0).

use serde::{Deserialize, Serialize};

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
    pub accuracy: f64,
    pub macro_f1: f64,
    pub per_class: Vec<ClassMetrics>,
    /// `confusion[t][p]`: rows of true class t predicted as p.
    pub confusion: Vec<Vec<usize>>,
}

fn ratio(num: usize, den: usize) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

/// Metrics of predicted classes `pred` against true classes `truth`, both in `0..labels.len()`.
pub fn classification(truth: &[usize], pred: &[usize], labels: &[String]) -> Classification {
    let k = labels.len();
    let mut confusion = vec![vec![0usize; k]; k];
    for (&t, &p) in truth.iter().zip(pred) {
        confusion[t][p] += 1;
    }
    let per_class: Vec<ClassMetrics> = (0..k)
        .map(|c| {
            let tp = confusion[c][c];
            let predicted: usize = confusion.iter().map(|row| row[c]).sum();
            let support: usize = confusion[c].iter().sum();
            let precision = ratio(tp, predicted);
            let recall = ratio(tp, support);
            let f1 = if precision + recall == 0.0 {
                0.0
            } else {
                2.0 * precision * recall / (precision + recall)
            };
            ClassMetrics {
                label: labels[c].clone(),
                precision,
                recall,
                f1,
                support,
            }
        })
        .collect();
    let correct: usize = (0..k).map(|c| confusion[c][c]).sum();
    Classification {
        rows: truth.len(),
        accuracy: ratio(correct, truth.len()),
        macro_f1: per_class.iter().map(|m| m.f1).sum::<f64>() / k.max(1) as f64,
        per_class,
        confusion,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_hand_computed_values() {
        // truth 0 0 1 1 2, pred 0 1 1 1 1: class 2 is never predicted.
        let labels: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let m = classification(&[0, 0, 1, 1, 2], &[0, 1, 1, 1, 1], &labels);
        assert_eq!(
            m.confusion,
            vec![vec![1, 1, 0], vec![0, 2, 0], vec![0, 1, 0]]
        );
        assert!((m.accuracy - 0.6).abs() < 1e-12);
        // a: p 1, r 0.5, f1 2/3; b: p 0.5, r 1, f1 2/3; c: p 0 (zero division), r 0, f1 0.
        assert!((m.per_class[0].f1 - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.per_class[1].precision - 0.5).abs() < 1e-12);
        assert_eq!(m.per_class[2].precision, 0.0);
        assert!((m.macro_f1 - 4.0 / 9.0).abs() < 1e-12);
    }
}
