//! Classification metrics, with scikit-learn's definitions (zero division gives 0).

pub use graft_core::metrics::{ClassMetrics, Classification};

fn ratio(num: usize, den: usize) -> f64 {
    if den == 0 { 0.0 } else { num as f64 / den as f64 }
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
            let f1 = if precision + recall == 0.0 { 0.0 } else { 2.0 * precision * recall / (precision + recall) };
            ClassMetrics { label: labels[c].clone(), precision, recall, f1, support }
        })
        .collect();
    let correct: usize = (0..k).map(|c| confusion[c][c]).sum();
    let n = truth.len();
    let macro_of = |f: fn(&ClassMetrics) -> f64| per_class.iter().map(f).sum::<f64>() / k.max(1) as f64;
    let weighted_of =
        |f: fn(&ClassMetrics) -> f64| per_class.iter().map(|m| f(m) * m.support as f64).sum::<f64>() / n.max(1) as f64;
    let present: Vec<&ClassMetrics> = per_class.iter().filter(|m| m.support > 0).collect();
    let predicted: Vec<f64> = (0..k).map(|c| confusion.iter().map(|row| row[c]).sum::<usize>() as f64).collect();
    let actual: Vec<f64> = per_class.iter().map(|m| m.support as f64).collect();
    let (nf, cf) = (n as f64, correct as f64);
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let mcc_den = ((nf * nf - dot(&predicted, &predicted)) * (nf * nf - dot(&actual, &actual))).sqrt();
    let chance = dot(&predicted, &actual) / (nf * nf).max(1.0);
    Classification {
        rows: n,
        accuracy: ratio(correct, n),
        balanced_accuracy: present.iter().map(|m| m.recall).sum::<f64>() / present.len().max(1) as f64,
        macro_precision: macro_of(|m| m.precision),
        macro_recall: macro_of(|m| m.recall),
        macro_f1: macro_of(|m| m.f1),
        weighted_precision: weighted_of(|m| m.precision),
        weighted_recall: weighted_of(|m| m.recall),
        weighted_f1: weighted_of(|m| m.f1),
        mcc: if mcc_den == 0.0 { 0.0 } else { (cf * nf - dot(&predicted, &actual)) / mcc_den },
        cohen_kappa: (chance < 1.0).then(|| (cf / nf.max(1.0) - chance) / (1.0 - chance)),
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
        assert_eq!(m.confusion, vec![vec![1, 1, 0], vec![0, 2, 0], vec![0, 1, 0]]);
        assert!((m.accuracy - 0.6).abs() < 1e-12);
        // a: p 1, r 0.5, f1 2/3; b: p 0.5, r 1, f1 2/3; c: p 0 (zero division), r 0, f1 0.
        assert!((m.per_class[0].f1 - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.per_class[1].precision - 0.5).abs() < 1e-12);
        assert_eq!(m.per_class[2].precision, 0.0);
        assert!((m.macro_f1 - 4.0 / 9.0).abs() < 1e-12);
    }
}
