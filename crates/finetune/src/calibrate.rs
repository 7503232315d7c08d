//! Temperature scaling (Guo et al. 2017): one scalar T > 0 that divides the logits, fitted
//! by minimising the cross-entropy on val. Accuracy is unchanged; probabilities calibrate.

use graft_core::numeric::log_sum_exp;
use ndarray::{ArrayView2, Axis};

/// Mean cross-entropy of `softmax(z / t)` against `y`.
pub fn nll(z: ArrayView2<'_, f64>, y: &[usize], t: f64) -> f64 {
    let total: f64 =
        z.axis_iter(Axis(0)).zip(y).map(|(row, &yi)| log_sum_exp(row.iter().map(|v| v / t)) - row[yi] / t).sum();
    total / y.len().max(1) as f64
}

/// The temperature in [0.05, 20] minimising [`nll`], by golden-section search on log T
/// (the loss is unimodal there).
pub fn fit_temperature(z: ArrayView2<'_, f64>, y: &[usize]) -> f64 {
    let f = |log_t: f64| nll(z, y, log_t.exp());
    let ratio = (5f64.sqrt() - 1.0) / 2.0;
    let (mut a, mut b) = (0.05f64.ln(), 20f64.ln());
    let mut c = b - ratio * (b - a);
    let mut d = a + ratio * (b - a);
    let (mut fc, mut fd) = (f(c), f(d));
    for _ in 0..80 {
        if fc <= fd {
            b = d;
            d = c;
            fd = fc;
            c = b - ratio * (b - a);
            fc = f(c);
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + ratio * (b - a);
            fd = f(d);
        }
    }
    ((a + b) / 2.0).exp()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn recovers_the_temperature_that_generated_the_labels() {
        // Labels drawn from softmax(z / 2.5): the fitted temperature should be near 2.5.
        let mut rng = graft_core::rng::SplitMix64::new(9);
        let n = 20_000;
        let z = Array2::from_shape_simple_fn((n, 3), || 6.0 * (rng.next_f64() - 0.5));
        let y: Vec<usize> = z
            .axis_iter(Axis(0))
            .map(|row| {
                let p: Vec<f64> = row.iter().map(|v| (v / 2.5).exp()).collect();
                let u = rng.next_f64() * p.iter().sum::<f64>();
                let mut acc = 0.0;
                p.iter()
                    .position(|pi| {
                        acc += pi;
                        u < acc
                    })
                    .unwrap_or(2)
            })
            .collect();
        let t = fit_temperature(z.view(), &y);
        assert!((t - 2.5).abs() < 0.15, "fitted {t}");
        assert!(nll(z.view(), &y, t) <= nll(z.view(), &y, 1.0));
    }
}
