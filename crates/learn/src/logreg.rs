//! L2-regularised logistic regression with the objective of scikit-learn's
//! `LogisticRegression(C, class_weight)`: the weighted mean cross-entropy plus
//! ||W||^2 / (2 C S), S the sum of the row weights, intercept unpenalised.
//! Two classes use one weight vector (class 0's logit fixed at 0), as scikit-learn does;
//! more classes use the multinomial (softmax) model.
//!
//! Features stay float32 (as the backbone wrote them) and each evaluation of the objective
//! is one parallel pass over the rows: logits, loss and gradient together. Rows are
//! reduced in fixed chunks, in order, so the result does not depend on the thread count.

use ndarray::{Array1, Array2, ArrayView2, s};
use rayon::prelude::*;

use graft_core::head::model::Linear;
use graft_core::numeric::log_sum_exp;

use crate::lbfgs::{self, Options, Outcome};

/// Rows per partial sum of the objective.
const CHUNK_ROWS: usize = 256;

/// Number of classes whose weights are free parameters.
fn free_classes(classes: usize) -> usize {
    if classes == 2 { 1 } else { classes }
}

/// The training problem: rows `x` (contiguous), their classes and optional per-row weights.
#[derive(Debug, Clone, Copy)]
pub struct Problem<'a> {
    pub x: ArrayView2<'a, f32>,
    pub y: &'a [usize],
    pub classes: usize,
    pub row_weights: Option<&'a [f64]>,
}

fn dot(x: &[f32], w: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (xc, wc) = (x.chunks_exact(4), w.chunks_exact(4));
    let (xr, wr) = (xc.remainder(), wc.remainder());
    for (a, b) in xc.zip(wc) {
        for l in 0..4 {
            acc[l] += f64::from(a[l]) * b[l];
        }
    }
    let tail: f64 = xr.iter().zip(wr).map(|(a, b)| f64::from(*a) * b).sum();
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

fn axpy(g: &mut [f64], r: f64, x: &[f32]) {
    for (gi, xi) in g.iter_mut().zip(x) {
        *gi += r * f64::from(*xi);
    }
}

/// Objective and gradient at `params` = free weights `[k, d]` then biases `[k]`.
fn objective(p: &Problem<'_>, c: f64, params: &[f64], grad: &mut [f64]) -> f64 {
    let (n, d) = p.x.dim();
    let classes = p.classes;
    let k = free_classes(classes);
    let offset = classes - k;
    let (w, b) = params.split_at(k * d);
    let rows = p.x.as_slice().expect("contiguous features");
    let partials: Vec<(f64, Vec<f64>)> = rows
        .par_chunks(CHUNK_ROWS * d.max(1))
        .enumerate()
        .map(|(chunk, block)| {
            let mut g = vec![0.0; k * (d + 1)];
            let mut loss = 0.0;
            let mut z = vec![0.0; classes];
            for (r, row) in block.chunks_exact(d.max(1)).enumerate() {
                let i = chunk * CHUNK_ROWS + r;
                let yi = p.y[i];
                let sw = p.row_weights.map_or(1.0, |rw| rw[i]);
                for j in 0..k {
                    z[offset + j] = dot(row, &w[j * d..(j + 1) * d]) + b[j];
                }
                let lse = log_sum_exp(z.iter().copied());
                loss += sw * (lse - z[yi]);
                for j in 0..k {
                    let prob = (z[offset + j] - lse).exp();
                    let residual = sw * (prob - f64::from(u8::from(offset + j == yi)));
                    axpy(&mut g[j * d..(j + 1) * d], residual, row);
                    g[k * d + j] += residual;
                }
            }
            (loss, g)
        })
        .collect();
    let total_weight = p.row_weights.map_or(n as f64, |rw| rw.iter().sum());
    let inv = 1.0 / total_weight;
    let l2 = 1.0 / (c * total_weight);
    grad.iter_mut().for_each(|g| *g = 0.0);
    let mut loss = 0.0;
    for (l, g) in &partials {
        loss += l;
        grad.iter_mut().zip(g).for_each(|(a, b)| *a += b);
    }
    grad.iter_mut().for_each(|g| *g *= inv);
    grad[..k * d].iter_mut().zip(w).for_each(|(g, wv)| *g += l2 * wv);
    loss * inv + 0.5 * l2 * w.iter().map(|v| v * v).sum::<f64>()
}

/// Fits the model; `y[i]` is row i's class in `0..classes`.
pub fn fit(p: &Problem<'_>, c: f64, opts: Options) -> (Linear, Outcome) {
    let (classes, d) = (p.classes, p.x.ncols());
    let k = free_classes(classes);
    let out = lbfgs::minimize(|params, g| objective(p, c, params, g), vec![0.0; k * (d + 1)], opts);
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
    use graft_core::numeric::{argmax, softmax};
    use ndarray::Axis;

    pub(crate) fn blobs() -> (Array2<f32>, Vec<usize>) {
        // Three overlapping blobs in 2-d from a fixed generator.
        let mut rng = graft_core::rng::SplitMix64::new(1);
        let mut u = || rng.next_f64() as f32 - 0.5;
        let centres = [(0.0, 0.0), (2.0, 0.0), (0.0, 2.0)];
        let mut x = Array2::zeros((900, 2));
        let mut y = Vec::new();
        for i in 0..900 {
            let c = i % 3;
            x[[i, 0]] = centres[c].0 + 2.0 * u();
            x[[i, 1]] = centres[c].1 + 2.0 * u();
            y.push(c);
        }
        (x, y)
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let (x, y) = blobs();
        let weights: Vec<f64> = (0..y.len()).map(|i| 0.5 + (i % 5) as f64 * 0.3).collect();
        for classes in [2, 3] {
            let y: Vec<usize> = y.iter().map(|&c| c % classes).collect();
            for row_weights in [None, Some(&weights[..])] {
                let p = Problem { x: x.view(), y: &y, classes, row_weights };
                let k = free_classes(classes);
                let params: Vec<f64> = (0..k * 3).map(|i| 0.1 * i as f64 - 0.2).collect();
                let mut g = vec![0.0; params.len()];
                objective(&p, 0.7, &params, &mut g);
                for j in 0..params.len() {
                    let h = 1e-6;
                    let mut plus = params.clone();
                    plus[j] += h;
                    let mut minus = params.clone();
                    minus[j] -= h;
                    let mut scratch = vec![0.0; params.len()];
                    let num = (objective(&p, 0.7, &plus, &mut scratch) - objective(&p, 0.7, &minus, &mut scratch))
                        / (2.0 * h);
                    assert!((num - g[j]).abs() < 1e-6, "classes {classes} param {j}: {num} vs {}", g[j]);
                }
            }
        }
    }

    #[test]
    fn result_does_not_depend_on_the_thread_count() {
        let (x, y) = blobs();
        let p = Problem { x: x.view(), y: &y, classes: 3, row_weights: None };
        let fit_with = |threads| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("thread pool");
            pool.install(|| fit(&p, 1.0, Options::default()).0)
        };
        let one = fit_with(1);
        for threads in [2, 3, 7] {
            assert_eq!(fit_with(threads), one, "{threads} threads");
        }
    }

    #[test]
    fn probabilities_sum_to_one_and_fit_separates_blobs() {
        let (x, y) = blobs();
        let p = Problem { x: x.view(), y: &y, classes: 3, row_weights: None };
        let (model, out) = fit(&p, 1.0, Options::default());
        assert!(out.converged);
        let mut proba = model.logits(x.view());
        proba.axis_iter_mut(Axis(0)).for_each(|mut r| softmax(r.as_slice_mut().unwrap()));
        for row in proba.axis_iter(Axis(0)) {
            assert!((row.sum() - 1.0).abs() < 1e-12);
        }
        let correct =
            proba.axis_iter(Axis(0)).zip(&y).filter(|(r, c)| argmax(r.as_slice().expect("row")) == **c).count();
        assert!(correct >= 700, "{correct}/900");
    }
}
