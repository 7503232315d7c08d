//! Choosing logistic regression's C: by accuracy on val, or by stratified k-fold
//! cross-validation on train (as scikit-learn's `LogisticRegressionCV`); the first of
//! equal scores wins.

use std::path::Path;

use ndarray::{ArrayView2, Axis};

use crate::HeadConfig;
use crate::error::{Error, Result};
use graft_core::head::model::Linear;
use graft_core::head::{Candidate, Lbfgs};
use graft_learn::lbfgs::{Options, Outcome};
use graft_learn::logreg::{self, Problem};
use graft_learn::sample;

#[derive(Debug)]
pub struct Chosen {
    pub c: f64,
    pub model: Linear,
    pub outcome: Outcome,
    pub candidates: Vec<Candidate>,
}

pub fn check_folds(path: &Path, classes: &[usize], labels: &[String], folds: usize) -> Result<()> {
    for (class, label) in labels.iter().enumerate() {
        let count = classes.iter().filter(|&&c| c == class).count();
        if count < folds {
            return Err(Error::TooFewForFolds { path: path.to_owned(), class: label.clone(), count, folds });
        }
    }
    Ok(())
}

fn accuracy(model: &Linear, x: ArrayView2<'_, f32>, y: &[usize]) -> f64 {
    crate::accuracy(&model.logits(x), y)
}

/// Fits every C of `cs` and keeps the best by `folds`-fold cross-validation (when
/// `folds > 0`) or by accuracy on `val`; with neither, `cs` has one value.
pub fn choose_c(
    problem: &Problem<'_>,
    cs: &[f64],
    folds: usize,
    val: Option<(ArrayView2<'_, f32>, &[usize])>,
    p: &HeadConfig,
) -> Result<Chosen> {
    let opts = Options { max_iter: p.max_iter, gtol: p.tol, ..Options::default() };
    let fold_of = (folds > 0).then(|| sample::stratified_folds(problem.y, problem.classes, folds, p.seed));
    // Each fold's fitting rows and held-out rows, gathered once for every C.
    let fold_data: Vec<_> = fold_of
        .iter()
        .flat_map(|fold_of| {
            (0..folds).map(move |f| {
                let (fit_rows, held_rows): (Vec<usize>, Vec<usize>) =
                    (0..problem.y.len()).partition(|&i| fold_of[i] != f);
                let labels = |rows: &[usize]| -> Vec<usize> { rows.iter().map(|&i| problem.y[i]).collect() };
                let weights = problem.row_weights.map(|w| fit_rows.iter().map(|&i| w[i]).collect::<Vec<f64>>());
                (
                    problem.x.select(Axis(0), &fit_rows),
                    labels(&fit_rows),
                    weights,
                    problem.x.select(Axis(0), &held_rows),
                    labels(&held_rows),
                )
            })
        })
        .collect();
    let mut best: Option<(f64, Chosen)> = None;
    let mut best_cv: Option<(f64, f64)> = None;
    let mut candidates = Vec::new();
    for &c in cs {
        let fold_scores: Vec<f64> = fold_data
            .iter()
            .map(|(xf, yf, wf, xh, yh)| {
                let sub = Problem { x: xf.view(), y: yf, classes: problem.classes, row_weights: wf.as_deref() };
                accuracy(&logreg::fit(&sub, c, opts).0, xh.view(), yh)
            })
            .collect();
        if !fold_scores.is_empty() {
            let score = fold_scores.iter().sum::<f64>() / fold_scores.len() as f64;
            tracing::info!("C={c:<10.4e} cross-validated accuracy {score:.4}");
            candidates.push(Candidate { c, score: Some(score), fold_scores, fit: None });
            if best_cv.is_none_or(|b: (f64, f64)| score > b.0) {
                best_cv = Some((score, c));
            }
            continue;
        }
        let (model, outcome) = logreg::fit(problem, c, opts);
        let score = val.map(|(x, y)| accuracy(&model, x, y));
        log_fit(c, &outcome, score);
        candidates.push(Candidate { c, score, fold_scores, fit: Some(record(&outcome)) });
        let s = score.unwrap_or(0.0);
        if best.as_ref().is_none_or(|b| s > b.0) {
            best = Some((s, Chosen { c, model, outcome, candidates: Vec::new() }));
        }
    }
    if let Some((_, c)) = best_cv {
        let (model, outcome) = logreg::fit(problem, c, opts);
        log_fit(c, &outcome, None);
        if let Some(cand) = candidates.iter_mut().find(|k| k.c == c) {
            cand.fit = Some(record(&outcome));
        }
        best = Some((0.0, Chosen { c, model, outcome, candidates: Vec::new() }));
    }
    let (_, mut chosen) = best.expect("at least one C");
    if !chosen.outcome.converged {
        // As scikit-learn's ConvergenceWarning: the head kept is not the optimum of its loss.
        tracing::warn!(
            "the kept fit (C={}) stopped at max_iter={} without converging (gradient above tol={}): raise --max-iter, or --standardize the features",
            chosen.c,
            p.max_iter,
            p.tol
        );
    }
    chosen.candidates = candidates;
    Ok(chosen)
}

fn log_fit(c: f64, outcome: &Outcome, val_score: Option<f64>) {
    tracing::info!(
        "C={c:<10.4e} {:>4} iterations{}, loss {:.6}{}",
        outcome.iterations,
        if outcome.converged { "" } else { " (not converged)" },
        outcome.value,
        val_score.map_or(String::new(), |s| format!(", val accuracy {s:.4}"))
    );
}

/// How an L-BFGS run ended, as head.json records it.
fn record(outcome: &Outcome) -> Lbfgs {
    Lbfgs { iterations: outcome.iterations, converged: outcome.converged, loss: outcome.value }
}
