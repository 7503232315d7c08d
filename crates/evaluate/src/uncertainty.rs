//! Uncertainty of headline metrics: seeded percentile-bootstrap intervals, and McNemar's
//! exact test for two classifiers scored on the same rows.

pub use graft_core::metrics::Interval;
use graft_core::metrics::{Classification, Intervals};
use graft_core::rng::SplitMix64;

/// A metric's name and how to compute it on resampled row indices.
pub type NamedStatistic<'a> = (&'a str, &'a dyn Fn(&[usize]) -> f64);

/// Seeded 95% percentile-bootstrap intervals of each statistic over `n` rows; `None` without
/// resamples or rows.
pub fn intervals(n: usize, resamples: usize, seed: u64, stats: &[NamedStatistic<'_>]) -> Option<Intervals> {
    (resamples > 0 && n > 0).then(|| Intervals {
        resamples,
        seed,
        confidence: 0.95,
        metrics: stats.iter().map(|(name, f)| ((*name).to_owned(), bootstrap(n, resamples, 0.95, seed, f))).collect(),
    })
}

/// [`intervals`] of accuracy and macro F1 of predicted classes `pred` against `truth`.
pub fn classification_intervals(
    truth: &[usize],
    pred: &[usize],
    labels: &[String],
    resamples: usize,
    seed: u64,
) -> Option<Intervals> {
    let resampled = |rows: &[usize], stat: fn(&Classification) -> f64| {
        let (t, p): (Vec<usize>, Vec<usize>) = rows.iter().map(|&r| (truth[r], pred[r])).unzip();
        stat(&crate::metrics::classification(&t, &p, labels))
    };
    intervals(
        pred.len(),
        resamples,
        seed,
        &[("accuracy", &|rows| resampled(rows, |m| m.accuracy)), ("macro_f1", &|rows| resampled(rows, |m| m.macro_f1))],
    )
}

/// Percentile bootstrap: `resamples` draws of `n` row indices with replacement (seeded), the
/// statistic of each, and the `(1 - confidence) / 2` and `(1 + confidence) / 2` quantiles
/// (linear interpolation, as numpy's default).
pub fn bootstrap(
    n: usize,
    resamples: usize,
    confidence: f64,
    seed: u64,
    mut statistic: impl FnMut(&[usize]) -> f64,
) -> Interval {
    let mut rng = SplitMix64::new(seed);
    let mut rows = vec![0; n];
    let mut values: Vec<f64> = (0..resamples)
        .map(|_| {
            rows.iter_mut().for_each(|r| *r = rng.below(n));
            statistic(&rows)
        })
        .collect();
    values.sort_by(f64::total_cmp);
    let alpha = (1.0 - confidence) / 2.0;
    Interval { low: quantile(&values, alpha), high: quantile(&values, 1.0 - alpha) }
}

/// Quantile `q` of sorted `values`, interpolating linearly between order statistics.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// McNemar's exact test on the discordant pairs: `b` rows only the first classifier got
/// right, `c` only the second. Two-sided p-value of `min(b, c)` under Binomial(b + c, 1/2),
/// as `statsmodels.stats.contingency_tables.mcnemar(exact=True)` and scipy's `binomtest`.
pub fn mcnemar_exact(b: u64, c: u64) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k = b.min(c);
    // Sum of C(n, i) / 2^n for i <= k, in log space so large n does not overflow.
    let mut log_choose = 0.0f64;
    let mut tail = 0.0f64;
    let log_half_n = n as f64 * std::f64::consts::LN_2;
    for i in 0..=k {
        if i > 0 {
            log_choose += ((n - i + 1) as f64).ln() - (i as f64).ln();
        }
        tail += (log_choose - log_half_n).exp();
    }
    (2.0 * tail).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mcnemar_matches_scipy_binomtest() {
        // tests/fixtures/sklearn/mcnemar.json: scipy.stats.binomtest(min(b, c), b + c).pvalue.
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/sklearn/mcnemar.json");
        let cases: Vec<(u64, u64, f64)> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert!(cases.len() >= 6);
        for (b, c, want) in cases {
            let got = mcnemar_exact(b, c);
            assert!((got - want).abs() <= 1e-9 * want.max(1e-300) + 1e-15, "b={b} c={c}: {got} vs {want}");
        }
    }

    #[test]
    fn bootstrap_interval_brackets_the_estimate_and_narrows_with_more_rows() {
        let width = |n: usize| {
            let correct: Vec<bool> = (0..n).map(|i| i % 4 != 0).collect();
            let acc = |rows: &[usize]| rows.iter().filter(|&&r| correct[r]).count() as f64 / rows.len() as f64;
            let ci = bootstrap(n, 2000, 0.95, 7, acc);
            assert!(ci.low < 0.75 && 0.75 < ci.high, "{ci:?}");
            assert_eq!(ci, bootstrap(n, 2000, 0.95, 7, acc), "seeded");
            ci.high - ci.low
        };
        let (small, large) = (width(100), width(10_000));
        // The normal approximation: 2 * 1.96 * sqrt(0.75 * 0.25 / n).
        assert!((small - 0.1697).abs() < 0.03, "n=100 width {small}");
        assert!((large - 0.01697).abs() < 0.003, "n=10000 width {large}");
    }

    #[test]
    fn quantile_interpolates_like_numpy() {
        let v = [1.0, 2.0, 4.0, 8.0];
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert_eq!(quantile(&v, 1.0), 8.0);
        assert!((quantile(&v, 0.5) - 3.0).abs() < 1e-12);
        assert!((quantile(&v, 0.9) - 6.8).abs() < 1e-12);
    }
}
