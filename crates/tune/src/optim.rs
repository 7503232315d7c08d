//! Optimisers over candle variables in groups with their own peak learning rate (the
//! trained layers lower than the head), a linear warm-up then linear decay to zero, decoupled
//! weight decay for weight matrices only, and gradient clipping by global norm.

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use graft_core::config::finetune::Optimizer;

use crate::error::Result;

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPSILON: f64 = 1e-8;

/// One trained tensor and its optimiser state.
#[derive(Debug)]
struct Slot {
    var: Var,
    /// The group's peak learning rate.
    peak_lr: f64,
    decay: bool,
    /// First moment (AdamW) or velocity (SGD).
    m: Tensor,
    /// Second moment (AdamW).
    v: Tensor,
}

#[derive(Debug)]
pub struct Optim {
    kind: Optimizer,
    momentum: f64,
    weight_decay: f64,
    slots: Vec<Slot>,
    step: usize,
}

impl Optim {
    pub fn new(kind: Optimizer, momentum: f64, weight_decay: f64) -> Self {
        Self { kind, momentum, weight_decay, slots: Vec::new(), step: 0 }
    }

    /// Adds `var` with the group's peak rate; matrices are decayed, vectors (biases, layer
    /// norm) are not.
    pub fn add(&mut self, var: &Var, peak_lr: f64) -> Result<()> {
        let zeros = var.as_tensor().zeros_like()?;
        let decay = var.as_tensor().rank() > 1;
        self.slots.push(Slot { var: var.clone(), peak_lr, decay, m: zeros.clone(), v: zeros });
        Ok(())
    }

    /// The global L2 norm of the gradients, before clipping.
    pub fn grad_norm(&self, grads: &GradStore) -> Result<f64> {
        let mut total = 0.0;
        for s in &self.slots {
            if let Some(g) = grads.get(s.var.as_tensor()) {
                total += g.sqr()?.sum_all()?.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
            }
        }
        Ok(total.sqrt())
    }

    /// One update with every rate scaled by `factor` (the schedule); gradients scaled so that
    /// their global norm is at most `clip` (0: no clipping). Returns the norm before clipping.
    pub fn step(&mut self, grads: &GradStore, factor: f64, clip: f64) -> Result<f64> {
        let norm = self.grad_norm(grads)?;
        let scale = if clip > 0.0 && norm > clip { clip / norm } else { 1.0 };
        self.step += 1;
        let t = self.step as i32;
        for s in &mut self.slots {
            let Some(g) = grads.get(s.var.as_tensor()) else { continue };
            // Detached: a gradient's history would keep every step's graph alive.
            let g = g.detach().affine(scale, 0.0)?;
            let lr = s.peak_lr * factor;
            let p = s.var.as_tensor().detach();
            let updated = match self.kind {
                Optimizer::Sgd => {
                    let g = if s.decay { (g + p.affine(self.weight_decay, 0.0)?)? } else { g };
                    s.m = (s.m.affine(self.momentum, 0.0)? + g)?;
                    (p - s.m.affine(lr, 0.0)?)?
                }
                Optimizer::Adam | Optimizer::Adamw => {
                    let l2 = self.kind == Optimizer::Adam && s.decay;
                    let g = if l2 { (g + p.affine(self.weight_decay, 0.0)?)? } else { g };
                    s.m = (s.m.affine(BETA1, 0.0)? + g.affine(1.0 - BETA1, 0.0)?)?;
                    s.v = (s.v.affine(BETA2, 0.0)? + g.sqr()?.affine(1.0 - BETA2, 0.0)?)?;
                    let m_hat = s.m.affine(1.0 / (1.0 - BETA1.powi(t)), 0.0)?;
                    let v_hat = s.v.affine(1.0 / (1.0 - BETA2.powi(t)), 0.0)?;
                    let update = m_hat.div(&v_hat.sqrt()?.affine(1.0, EPSILON)?)?;
                    let decayed = if self.kind == Optimizer::Adamw && s.decay {
                        p.affine(1.0 - lr * self.weight_decay, 0.0)?
                    } else {
                        p
                    };
                    (decayed - update.affine(lr, 0.0)?)?
                }
            };
            s.m = s.m.detach();
            s.v = s.v.detach();
            s.var.set(&updated.detach())?;
        }
        Ok(norm)
    }
}

/// The learning-rate factor of step `t` (0-based) of `total`: linear warm-up over `warmup`
/// steps, then linear decay to zero.
pub fn schedule(t: usize, total: usize, warmup: usize) -> f64 {
    if t < warmup {
        return (t + 1) as f64 / warmup as f64;
    }
    let left = total.saturating_sub(t) as f64;
    let span = total.saturating_sub(warmup).max(1) as f64;
    (left / span).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_up_then_linear_decay() {
        let f: Vec<f64> = (0..10).map(|t| schedule(t, 10, 2)).collect();
        assert_eq!(f[..3], [0.5, 1.0, 1.0]);
        assert!((f[6] - 0.5).abs() < 1e-12 && (f[9] - 0.125).abs() < 1e-12, "{f:?}");
        assert!(f.windows(2).skip(2).all(|w| w[1] < w[0]));
    }
}
