//! Numerical learners shared by the stages that train: `graft-finetune` (heads) and
//! `graft-evaluate` (the MTEB protocol's probes, fitted fusion weights). No I/O.

pub mod lbfgs;
pub mod logreg;
pub mod sample;

use graft_core::numeric::argmax;
use ndarray::{Array2, Axis};

/// Fraction of rows whose highest score is their class.
pub fn accuracy(scores: &Array2<f64>, classes: &[usize]) -> f64 {
    let correct = scores
        .axis_iter(Axis(0))
        .zip(classes)
        .filter(|(row, c)| argmax(row.as_slice().expect("contiguous rows")) == **c)
        .count();
    correct as f64 / classes.len().max(1) as f64
}
