//! Rank-based scores of one class against the rest.

/// Ranks 1..=n of `values`, ties sharing their average rank (scipy's `rankdata`).
pub fn average_ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        let rank = (start + end + 1) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = rank;
        }
        start = end;
    }
    ranks
}

/// Area under the ROC curve of `scores` for `positive` rows (Mann-Whitney U, ties
/// counted half, equal to scikit-learn's trapezoidal ROC-AUC); `None` without both classes.
pub fn binary_roc_auc(positive: &[bool], scores: &[f64]) -> Option<f64> {
    let n_pos = positive.iter().filter(|&&p| p).count();
    let n_neg = positive.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let ranks = average_ranks(scores);
    let rank_sum: f64 = ranks.iter().zip(positive).filter(|(_, p)| **p).map(|(r, _)| r).sum();
    let u = rank_sum - (n_pos * (n_pos + 1)) as f64 / 2.0;
    Some(u / (n_pos as f64 * n_neg as f64))
}

/// True and false positives after each distinct score threshold, highest first.
fn threshold_counts(positive: &[bool], scores: &[f64]) -> Vec<(usize, usize)> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut fp, mut out, mut i) = (0usize, 0usize, Vec::new(), 0);
    while i < order.len() {
        let threshold = scores[order[i]];
        // `total_cmp` too, so that a NaN (refused upstream) still advances `i`.
        while i < order.len() && (scores[order[i]] == threshold || scores[order[i]].total_cmp(&threshold).is_eq()) {
            if positive[order[i]] {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        out.push((tp, fp));
    }
    out
}

/// The ROC curve as (false positive rate, true positive rate) points from (0, 0), one per
/// distinct threshold (scikit-learn's `roc_curve(drop_intermediate=False)`); empty without
/// both classes.
pub fn roc_curve(positive: &[bool], scores: &[f64]) -> Vec<(f64, f64)> {
    let n_pos = positive.iter().filter(|&&p| p).count() as f64;
    let n_neg = positive.len() as f64 - n_pos;
    if n_pos == 0.0 || n_neg == 0.0 {
        return Vec::new();
    }
    std::iter::once((0.0, 0.0))
        .chain(threshold_counts(positive, scores).into_iter().map(|(tp, fp)| (fp as f64 / n_neg, tp as f64 / n_pos)))
        .collect()
}

/// The precision-recall curve as (recall, precision) points, one per distinct threshold;
/// empty without a positive row.
pub fn pr_curve(positive: &[bool], scores: &[f64]) -> Vec<(f64, f64)> {
    let n_pos = positive.iter().filter(|&&p| p).count() as f64;
    if n_pos == 0.0 {
        return Vec::new();
    }
    threshold_counts(positive, scores)
        .into_iter()
        .map(|(tp, fp)| (tp as f64 / n_pos, tp as f64 / (tp + fp) as f64))
        .collect()
}

/// scikit-learn's `average_precision_score`: sum over score thresholds of
/// (recall increase) x precision; `None` when there is no positive row.
pub fn binary_average_precision(positive: &[bool], scores: &[f64]) -> Option<f64> {
    let curve = pr_curve(positive, scores);
    if curve.is_empty() {
        return None;
    }
    let mut last_recall = 0.0;
    let mut ap = 0.0;
    for (recall, precision) in curve {
        ap += (recall - last_recall) * precision;
        last_recall = recall;
    }
    Some(ap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_scores_end() {
        // Once spun forever, growing a vector: NaN is never equal to itself.
        let curve = roc_curve(&[true, false, true], &[f64::NAN, 0.5, f64::NAN]);
        assert_eq!(curve.len(), 3, "{curve:?}");
    }

    #[test]
    fn ranks_share_ties() {
        assert_eq!(average_ranks(&[3.0, 1.0, 3.0, 2.0]), [3.5, 1.0, 3.5, 2.0]);
    }

    #[test]
    fn auc_of_perfect_inverted_and_single_class() {
        let pos = [false, false, true, true];
        assert_eq!(binary_roc_auc(&pos, &[0.1, 0.2, 0.8, 0.9]), Some(1.0));
        assert_eq!(binary_roc_auc(&pos, &[0.9, 0.8, 0.2, 0.1]), Some(0.0));
        assert_eq!(binary_roc_auc(&[true, true], &[0.1, 0.2]), None);
    }
}
