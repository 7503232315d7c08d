//! Limited-memory BFGS with a backtracking (Armijo) line search, for smooth convex
//! objectives. Stops like scipy's L-BFGS-B, which scikit-learn uses: on the largest
//! gradient component (`gtol`) or on a relative decrease of the objective (`ftol`).

use std::collections::VecDeque;

#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub max_iter: usize,
    pub gtol: f64,
    pub ftol: f64,
    pub memory: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self { max_iter: 1000, gtol: 1e-6, ftol: 64.0 * f64::EPSILON, memory: 10 }
    }
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub x: Vec<f64>,
    pub value: f64,
    pub iterations: usize,
    pub converged: bool,
    /// Objective after each iteration.
    pub trace: Vec<f64>,
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Minimises `f`, which returns the objective and writes the gradient into its second argument.
pub fn minimize(mut f: impl FnMut(&[f64], &mut [f64]) -> f64, x0: Vec<f64>, opts: Options) -> Outcome {
    let n = x0.len();
    let mut x = x0;
    let mut g = vec![0.0; n];
    let mut value = f(&x, &mut g);
    let mut history: VecDeque<(Vec<f64>, Vec<f64>, f64)> = VecDeque::new();
    let mut trace = Vec::new();
    let (mut x_new, mut g_new) = (vec![0.0; n], vec![0.0; n]);
    for iter in 0..opts.max_iter {
        if g.iter().fold(0.0f64, |m, v| m.max(v.abs())) <= opts.gtol {
            return Outcome { x, value, iterations: iter, converged: true, trace };
        }
        // Two-loop recursion: d = -H g.
        let mut d: Vec<f64> = g.iter().map(|v| -v).collect();
        let mut alphas = Vec::with_capacity(history.len());
        for (s, y, rho) in history.iter().rev() {
            let a = rho * dot(s, &d);
            d.iter_mut().zip(y).for_each(|(di, yi)| *di -= a * yi);
            alphas.push(a);
        }
        if let Some((s, y, _)) = history.back() {
            let gamma = dot(s, y) / dot(y, y);
            d.iter_mut().for_each(|di| *di *= gamma);
        }
        for ((s, y, rho), a) in history.iter().zip(alphas.iter().rev()) {
            let b = rho * dot(y, &d);
            d.iter_mut().zip(s).for_each(|(di, si)| *di += (a - b) * si);
        }
        let mut slope = dot(&g, &d);
        if slope >= 0.0 {
            history.clear();
            d = g.iter().map(|v| -v).collect();
            slope = -dot(&g, &g);
        }
        let mut t = if history.is_empty() { (1.0 / d.iter().map(|v| v.abs()).sum::<f64>()).min(1.0) } else { 1.0 };
        let mut accepted = None;
        for _ in 0..60 {
            x_new.iter_mut().zip(&x).zip(&d).for_each(|((xn, xi), di)| *xn = xi + t * di);
            let v = f(&x_new, &mut g_new);
            if v.is_finite() && v <= value + 1e-4 * t * slope {
                accepted = Some(v);
                break;
            }
            t *= 0.5;
        }
        let Some(v_new) = accepted else {
            // No decrease along a descent direction: at the optimum to machine precision.
            return Outcome { x, value, iterations: iter, converged: true, trace };
        };
        let s: Vec<f64> = x_new.iter().zip(&x).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = g_new.iter().zip(&g).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &y);
        if sy > 1e-12 * dot(&y, &y).max(f64::MIN_POSITIVE) {
            if history.len() == opts.memory {
                history.pop_front();
            }
            history.push_back((s, y, 1.0 / sy));
        }
        let decrease = (value - v_new) / value.abs().max(v_new.abs()).max(1.0);
        std::mem::swap(&mut x, &mut x_new);
        std::mem::swap(&mut g, &mut g_new);
        value = v_new;
        trace.push(value);
        if decrease <= opts.ftol {
            return Outcome { x, value, iterations: iter + 1, converged: true, trace };
        }
    }
    Outcome { x, value, iterations: opts.max_iter, converged: false, trace }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_minimum_of_rosenbrock() {
        let rosen = |x: &[f64], g: &mut [f64]| {
            let (a, b) = (x[0], x[1]);
            g[0] = -2.0 * (1.0 - a) - 400.0 * a * (b - a * a);
            g[1] = 200.0 * (b - a * a);
            (1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2)
        };
        let out = minimize(rosen, vec![-1.2, 1.0], Options { gtol: 1e-8, ..Options::default() });
        assert!(out.converged);
        assert!((out.x[0] - 1.0).abs() < 1e-5 && (out.x[1] - 1.0).abs() < 1e-5, "{:?}", out.x);
    }
}
