//! Seeded, stratified train/val/test assignment.

use graft_core::rng::SplitMix64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Val,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }
}

/// Assigns each row a split so that every class is divided in the given fractions
/// (rounded per class). `classes[i]` is row i's class id in `0..n_classes`.
pub fn stratified(classes: &[usize], n_classes: usize, val: f64, test: f64, seed: u64) -> Vec<Split> {
    let mut by_class = vec![Vec::new(); n_classes];
    for (row, &c) in classes.iter().enumerate() {
        by_class[c].push(row);
    }
    let mut rng = SplitMix64::new(seed);
    let mut out = vec![Split::Train; classes.len()];
    for rows in &mut by_class {
        rng.shuffle(rows);
        let n = rows.len() as f64;
        let n_test = (n * test).round() as usize;
        let n_val = ((n * val).round() as usize).min(rows.len() - n_test);
        for &r in &rows[..n_test] {
            out[r] = Split::Test;
        }
        for &r in &rows[n_test..n_test + n_val] {
            out[r] = Split::Val;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_class_is_split_in_proportion_and_seeded() {
        let classes: Vec<usize> = (0..1000).map(|i| usize::from(i % 4 == 0)).collect();
        let a = stratified(&classes, 2, 0.1, 0.2, 3);
        for (c, n) in [(0, 750.0), (1, 250.0)] {
            let count = |s| a.iter().zip(&classes).filter(|&(x, &k)| *x == s && k == c).count() as f64;
            assert!((count(Split::Test) - n * 0.2).abs() <= 1.0);
            assert!((count(Split::Val) - n * 0.1).abs() <= 1.0);
        }
        assert_eq!(a, stratified(&classes, 2, 0.1, 0.2, 3));
        assert_ne!(a, stratified(&classes, 2, 0.1, 0.2, 4));
    }
}
