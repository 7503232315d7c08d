//! Ridge regression in closed form, scikit-learn's `Ridge(alpha)`: minimises
//! ||y - Xw - b||² + alpha ||w||² with an unpenalised intercept, by centring X and y and
//! solving (XcᵀXc + alpha I) w = Xcᵀyc with a Cholesky factorisation in float64.

use ndarray::{Array1, Array2, ArrayView2, Axis};

use graft_core::head::model::Linear;

/// Fits `y ≈ x w + b`; `alpha` must be positive. Returns a one-output [`Linear`].
pub fn fit(x: ArrayView2<'_, f32>, y: &[f64], alpha: f64) -> Linear {
    let d = x.ncols();
    let mut xc = x.mapv(f64::from);
    let mean = xc.mean_axis(Axis(0)).unwrap_or_else(|| Array1::zeros(d));
    xc -= &mean;
    let y_mean = y.iter().sum::<f64>() / y.len().max(1) as f64;
    let yc = Array1::from_iter(y.iter().map(|v| v - y_mean));
    let mut gram = xc.t().dot(&xc);
    gram.diag_mut().iter_mut().for_each(|v| *v += alpha);
    let rhs = xc.t().dot(&yc);
    let w = cholesky_solve(gram, rhs);
    let bias = y_mean - mean.dot(&w);
    Linear { weight: w.insert_axis(Axis(0)), bias: Array1::from(vec![bias]) }
}

/// Solves `a x = b` for symmetric positive-definite `a`.
fn cholesky_solve(mut a: Array2<f64>, mut b: Array1<f64>) -> Array1<f64> {
    let n = a.nrows();
    // In place: the lower triangle becomes L with a = L Lᵀ.
    for j in 0..n {
        let mut diag = a[[j, j]];
        for k in 0..j {
            diag -= a[[j, k]] * a[[j, k]];
        }
        let l = diag.max(f64::MIN_POSITIVE).sqrt();
        a[[j, j]] = l;
        for i in j + 1..n {
            let mut v = a[[i, j]];
            for k in 0..j {
                v -= a[[i, k]] * a[[j, k]];
            }
            a[[i, j]] = v / l;
        }
    }
    for i in 0..n {
        let mut v = b[i];
        for k in 0..i {
            v -= a[[i, k]] * b[k];
        }
        b[i] = v / a[[i, i]];
    }
    for i in (0..n).rev() {
        let mut v = b[i];
        for k in i + 1..n {
            v -= a[[k, i]] * b[k];
        }
        b[i] = v / a[[i, i]];
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_solves_a_known_system() {
        let a = ndarray::array![[4.0, 2.0, 0.6], [2.0, 5.0, 1.0], [0.6, 1.0, 3.0]];
        let x = ndarray::array![1.0, -2.0, 0.5];
        let b = a.dot(&x);
        let got = cholesky_solve(a, b);
        assert!(got.iter().zip(&x).all(|(g, w)| (g - w).abs() < 1e-12), "{got}");
    }
}
