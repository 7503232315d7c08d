//! `graft-finetune`: trains a head on frozen backbone features.

mod config;
pub mod data;
mod error;
pub mod head;
pub mod lbfgs;
pub mod logreg;

use std::collections::BTreeMap;

use graft_core::artifact::SPLITS;
use ndarray::{Array2, Axis};

pub use config::Config;
pub use error::{Error, Result};
pub use head::{Candidate, Head, HeadInfo};

/// Fraction of rows whose most probable class is their class.
pub fn accuracy(proba: &Array2<f64>, classes: &[usize]) -> f64 {
    let correct = proba
        .axis_iter(Axis(0))
        .zip(classes)
        .filter(|(row, c)| argmax(row.as_slice().expect("contiguous rows")) == **c)
        .count();
    correct as f64 / classes.len().max(1) as f64
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

/// Trains the head and writes it; returns what was written.
pub fn run(cfg: &Config) -> Result<Head> {
    if cfg.c.is_empty() || cfg.c.iter().any(|c| !(c.is_finite() && *c > 0.0)) {
        return Err(Error::BadC(cfg.c.clone()));
    }
    let [train_name, val_name, _] = SPLITS;
    let train_path = cfg.features.join(format!("{train_name}.arrow"));
    if !train_path.exists() {
        return Err(Error::NoTrain { path: train_path });
    }
    let train = data::read_features(&train_path)?;
    let labels = train.provenance.labels.clone();
    for (class, name) in labels.iter().enumerate() {
        if !train.classes.contains(&class) {
            return Err(Error::MissingClass { path: train_path, class: name.clone() });
        }
    }
    let val_path = cfg.features.join(format!("{val_name}.arrow"));
    let val = if val_path.exists() {
        let val = data::read_features(&val_path)?;
        data::check_compatible(&train, &train_path, &val, &val_path)?;
        Some(val)
    } else if cfg.c.len() > 1 {
        return Err(Error::NoVal { path: val_path, count: cfg.c.len() });
    } else {
        None
    };

    let (mean, scale) = if cfg.standardize {
        let mean = train.x.mean_axis(Axis(0)).expect("train has rows");
        let std = train.x.std_axis(Axis(0), 0.0).mapv(|s| if s > 0.0 { s } else { 1.0 });
        (Some(mean), Some(std))
    } else {
        (None, None)
    };
    let scaled = |x: &Array2<f64>| -> Array2<f64> {
        match (&mean, &scale) {
            (Some(m), Some(s)) => (x - m) / s,
            _ => x.clone(),
        }
    };
    let x_train = scaled(&train.x);
    let x_val = val.as_ref().map(|v| scaled(&v.x));
    let opts = lbfgs::Options { max_iter: cfg.max_iter, gtol: cfg.tol, ..lbfgs::Options::default() };
    let mut best: Option<(f64, logreg::Linear, lbfgs::Outcome, f64)> = None;
    let mut selection = Vec::new();
    for &c in &cfg.c {
        let (model, outcome) = logreg::fit(x_train.view(), &train.classes, labels.len(), c, opts);
        let score = match (&x_val, &val) {
            (Some(x), Some(v)) => Some(accuracy(&model.predict_proba(x.view()), &v.classes)),
            _ => None,
        };
        tracing::info!(
            "C={c}: {} iterations{}, loss {:.6}{}",
            outcome.iterations,
            if outcome.converged { "" } else { " (not converged)" },
            outcome.value,
            score.map_or(String::new(), |s| format!(", val accuracy {s:.4}"))
        );
        selection.push(Candidate {
            c,
            val_accuracy: score,
            iterations: outcome.iterations,
            converged: outcome.converged,
            loss: outcome.value,
        });
        let s = score.unwrap_or(0.0);
        if best.as_ref().is_none_or(|b| s > b.3) {
            best = Some((c, model, outcome, s));
        }
    }
    let (chosen_c, model, outcome, _) = best.expect("at least one C");
    let mut inputs = BTreeMap::from([(train_name.to_owned(), graft_core::hash::file(&train_path)?)]);
    if val.is_some() {
        inputs.insert(val_name.to_owned(), graft_core::hash::file(&val_path)?);
    }
    let head = Head {
        info: HeadInfo {
            format: head::FORMAT.into(),
            graft_version: graft_core::VERSION.into(),
            architecture: head::Architecture {
                kind: "logistic_regression".into(),
                classes: labels.len(),
                dim: train.backbone.dim,
            },
            labels,
            backbone: train.backbone.clone(),
            standardize: cfg.standardize,
            training: head::Training {
                config: cfg.clone(),
                train_rows: train.ids.len(),
                chosen_c,
                selection,
                history: outcome.trace,
            },
            inputs,
        },
        model,
        mean,
        scale,
    };
    graft_core::atomic::commit_all(head.to_files(&cfg.out)?)?;
    Ok(head)
}
