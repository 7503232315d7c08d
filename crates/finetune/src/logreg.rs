//! L2-regularised logistic regression with the objective of scikit-learn's
//! `LogisticRegression(C)`: mean cross-entropy + ||W||^2 / (2 C n), intercept unpenalised.
//! Two classes use one weight vector (class 0's logit fixed at 0), as scikit-learn does;
//! more classes use the multinomial (softmax) model.

use ndarray::{Array1, Array2, ArrayView2, Axis, s};

use crate::lbfgs::{self, Options, Outcome};

/// A fitted linear classifier over `dim` features and `classes` classes.
#[derive(Debug, Clone, PartialEq)]
pub struct Linear {
    /// `[classes, dim]`; for two classes row 0 is zero.
    pub weight: Array2<f64>,
    /// `[classes]`.
    pub bias: Array1<f64>,
}

impl Linear {
    /// Class probabilities `[n, classes]`.
    pub fn predict_proba(&self, x: ArrayView2<'_, f64>) -> Array2<f64> {
        let mut z = x.dot(&self.weight.t());
        z += &self.bias;
        softmax_rows(&mut z);
        z
    }
}

fn softmax_rows(z: &mut Array2<f64>) {
    for mut row in z.axis_iter_mut(Axis(0)) {
        let max = row.fold(f64::NEG_INFINITY, |m, &v| m.max(v));
        row.mapv_inplace(|v| (v - max).exp());
        let sum = row.sum();
        row.mapv_inplace(|v| v / sum);
    }
}

/// Number of classes whose weights are free parameters.
fn free_classes(classes: usize) -> usize {
    if classes == 2 { 1 } else { classes }
}

/// Objective and gradient at `params` = free weights `[k, d]` then biases `[k]`.
fn objective(x: ArrayView2<'_, f64>, y: &[usize], classes: usize, c: f64, params: &[f64], grad: &mut [f64]) -> f64 {
    let (n, d) = x.dim();
    let k = free_classes(classes);
    let w = ArrayView2::from_shape((k, d), &params[..k * d]).expect("parameter layout");
    let b = &params[k * d..];
    let mut z = Array2::<f64>::zeros((n, classes));
    let offset = classes - k;
    {
        let mut free = z.slice_mut(s![.., offset..]);
        free.assign(&x.dot(&w.t()));
        free += &ArrayView2::from_shape((1, k), b).expect("bias layout");
    }
    let mut loss = 0.0;
    for (row, &yi) in z.axis_iter_mut(Axis(0)).zip(y) {
        let max = row.fold(f64::NEG_INFINITY, |m, &v| m.max(v));
        let lse = max + row.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
        loss += lse - row[yi];
    }
    softmax_rows(&mut z);
    for (mut row, &yi) in z.axis_iter_mut(Axis(0)).zip(y) {
        row[yi] -= 1.0;
    }
    let residual = z.slice(s![.., offset..]);
    let inv_n = 1.0 / n as f64;
    let l2 = 1.0 / (c * n as f64);
    let gw = residual.t().dot(&x);
    for ((g, gw), wv) in grad[..k * d].iter_mut().zip(gw.iter()).zip(w.iter()) {
        *g = gw * inv_n + l2 * wv;
    }
    for (g, col) in grad[k * d..].iter_mut().zip(residual.axis_iter(Axis(1))) {
        *g = col.sum() * inv_n;
    }
    loss * inv_n + 0.5 * l2 * w.iter().map(|v| v * v).sum::<f64>()
}

/// Fits the model; `y[i]` is row i's class in `0..classes`.
pub fn fit(x: ArrayView2<'_, f64>, y: &[usize], classes: usize, c: f64, opts: Options) -> (Linear, Outcome) {
    let d = x.ncols();
    let k = free_classes(classes);
    let out = lbfgs::minimize(|p, g| objective(x, y, classes, c, p, g), vec![0.0; k * (d + 1)], opts);
    let mut weight = Array2::zeros((classes, d));
    weight
        .slice_mut(s![classes - k.., ..])
        .assign(&ArrayView2::from_shape((k, d), &out.x[..k * d]).expect("parameter layout"));
    let mut bias = Array1::zeros(classes);
    bias.slice_mut(s![classes - k..]).assign(&ndarray::ArrayView1::from(&out.x[k * d..]));
    (Linear { weight, bias }, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> (Array2<f64>, Vec<usize>) {
        // Three separable-ish blobs in 2-d from a fixed generator.
        let mut rng = graft_core::rng::SplitMix64::new(1);
        let mut u = || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
        let centres = [(0.0, 0.0), (2.0, 0.0), (0.0, 2.0)];
        let mut x = Array2::zeros((90, 2));
        let mut y = Vec::new();
        for i in 0..90 {
            let c = i % 3;
            x[[i, 0]] = centres[c].0 + 2.0 * u();
            x[[i, 1]] = centres[c].1 + 2.0 * u();
            y.push(c);
        }
        (x, y)
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let (x, y) = data();
        for classes in [2, 3] {
            let y: Vec<usize> = y.iter().map(|&c| c % classes).collect();
            let k = free_classes(classes);
            let p: Vec<f64> = (0..k * 3).map(|i| 0.1 * i as f64 - 0.2).collect();
            let mut g = vec![0.0; p.len()];
            objective(x.view(), &y, classes, 0.7, &p, &mut g);
            for j in 0..p.len() {
                let h = 1e-6;
                let mut plus = p.clone();
                plus[j] += h;
                let mut minus = p.clone();
                minus[j] -= h;
                let mut scratch = vec![0.0; p.len()];
                let num = (objective(x.view(), &y, classes, 0.7, &plus, &mut scratch)
                    - objective(x.view(), &y, classes, 0.7, &minus, &mut scratch))
                    / (2.0 * h);
                assert!((num - g[j]).abs() < 1e-6, "classes {classes} param {j}: {num} vs {}", g[j]);
            }
        }
    }

    #[test]
    fn probabilities_sum_to_one_and_fit_separates_blobs() {
        let (x, y) = data();
        let (model, out) = fit(x.view(), &y, 3, 1.0, Options::default());
        assert!(out.converged);
        let p = model.predict_proba(x.view());
        for row in p.axis_iter(Axis(0)) {
            assert!((row.sum() - 1.0).abs() < 1e-12);
        }
        let correct = p
            .axis_iter(Axis(0))
            .zip(&y)
            .filter(|(r, c)| r.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0 == **c)
            .count();
        assert!(correct >= 70, "{correct}/90");
    }
}
