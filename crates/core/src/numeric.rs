//! The few numerical kernels several stages share, written once.

/// log(sum(exp(v))) computed stably (shifted by the maximum); -inf for no values.
pub fn log_sum_exp(values: impl Iterator<Item = f64> + Clone) -> f64 {
    let max = values.clone().fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        return max;
    }
    max + values.map(|v| (v - max).exp()).sum::<f64>().ln()
}

/// Softmax of `row`, in place.
pub fn softmax(row: &mut [f64]) {
    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in row.iter_mut() {
        *v /= sum;
    }
}

/// Index of the largest value; the first on ties.
pub fn argmax(values: &[f64]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_for_large_logits() {
        // log(e^1000 + e^1000) = 1000 + ln 2, where a naive sum overflows.
        let lse = log_sum_exp([1000.0, 1000.0].into_iter());
        assert!((lse - (1000.0 + std::f64::consts::LN_2)).abs() < 1e-12, "{lse}");
        let mut p = [1000.0, 1000.0, f64::NEG_INFINITY];
        softmax(&mut p);
        assert_eq!(p, [0.5, 0.5, 0.0]);
        assert_eq!(argmax(&[0.2, 0.7, 0.7]), 1);
    }
}
