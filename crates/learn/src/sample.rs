//! Deterministic row subsets of a split: fewer labels per class, and cross-validation folds.

use graft_core::rng::SplitMix64;

/// Row indices of each class, in file order.
fn by_class(classes: &[usize], count: usize) -> Vec<Vec<usize>> {
    let mut rows = vec![Vec::new(); count];
    for (i, &c) in classes.iter().enumerate() {
        rows[c].push(i);
    }
    rows
}

/// The rows kept when each class keeps `fraction` of its rows (at least one) and at most
/// `per_class`; ascending. The same seed keeps the same rows, and a smaller subset of the
/// same seed is contained in a larger one.
pub fn subsample(
    classes: &[usize],
    count: usize,
    fraction: Option<f64>,
    per_class: Option<usize>,
    seed: u64,
) -> Vec<usize> {
    let mut rng = SplitMix64::new(seed);
    let mut kept = Vec::new();
    for mut rows in by_class(classes, count) {
        rng.shuffle(&mut rows);
        let mut keep = rows.len();
        if let Some(f) = fraction {
            keep = ((f * rows.len() as f64).round() as usize).max(1).min(keep);
        }
        if let Some(k) = per_class {
            keep = keep.min(k);
        }
        kept.extend_from_slice(&rows[..keep]);
    }
    kept.sort_unstable();
    kept
}

/// Stratified fold of each row in `0..folds`: each class is shuffled and dealt round-robin.
pub fn stratified_folds(classes: &[usize], count: usize, folds: usize, seed: u64) -> Vec<usize> {
    let mut rng = SplitMix64::new(seed);
    let mut fold = vec![0; classes.len()];
    let mut next = 0;
    for mut rows in by_class(classes, count) {
        rng.shuffle(&mut rows);
        for i in rows {
            fold[i] = next % folds;
            next += 1;
        }
    }
    fold
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes() -> Vec<usize> {
        (0..1000).map(|i| if i % 10 == 0 { 1 } else { 0 }).collect()
    }

    #[test]
    fn subsample_keeps_class_proportions_and_nests() {
        let y = classes();
        let half = subsample(&y, 2, Some(0.5), None, 3);
        assert_eq!(half.iter().filter(|&&i| y[i] == 1).count(), 50);
        assert_eq!(half.iter().filter(|&&i| y[i] == 0).count(), 450);
        let eight = subsample(&y, 2, None, Some(8), 3);
        assert_eq!(eight.len(), 16);
        let four = subsample(&y, 2, None, Some(4), 3);
        assert!(four.iter().all(|i| eight.contains(i)), "a smaller subset is inside the larger");
        assert_ne!(subsample(&y, 2, None, Some(8), 4), eight);
        assert_eq!(subsample(&y, 2, None, Some(8), 3), eight);
    }

    #[test]
    fn folds_are_stratified_and_balanced() {
        let y = classes();
        let folds = stratified_folds(&y, 2, 5, 1);
        for f in 0..5 {
            let rows: Vec<usize> = (0..y.len()).filter(|&i| folds[i] == f).collect();
            assert_eq!(rows.len(), 200);
            assert_eq!(rows.iter().filter(|&&i| y[i] == 1).count(), 20);
        }
    }
}
