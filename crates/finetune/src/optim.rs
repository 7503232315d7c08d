//! First-order optimisers and learning-rate schedules for the MLP head.

pub use graft_core::config::finetune::{Optimizer, Schedule};

/// Hyper-parameters of one optimiser run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    pub optimizer: Optimizer,
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

/// Learning rate at `step` (0-based) of `total`, with linear warm-up over `warmup` steps.
pub fn rate(
    base: f64,
    schedule: Schedule,
    step: usize,
    total: usize,
    warmup: usize,
    step_every: usize,
    gamma: f64,
) -> f64 {
    if step < warmup {
        return base * (step + 1) as f64 / warmup as f64;
    }
    match schedule {
        Schedule::Constant => base,
        Schedule::Step => base * gamma.powi((step / step_every.max(1)) as i32),
        Schedule::Cosine => {
            let span = total.saturating_sub(warmup).max(1) as f64;
            let t = (step - warmup) as f64 / span;
            0.5 * base * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos())
        }
    }
}

/// Optimiser state for one parameter tensor (flattened).
#[derive(Debug, Clone)]
pub struct State {
    first: Vec<f32>,
    second: Vec<f32>,
    steps: i32,
}

impl State {
    pub fn new(len: usize) -> Self {
        Self { first: vec![0.0; len], second: vec![0.0; len], steps: 0 }
    }

    /// Applies one update with learning rate `lr`; `decay` says whether weight decay applies
    /// to this tensor (weights yes, biases no).
    pub fn step(&mut self, s: &Settings, lr: f64, decay: bool, param: &mut [f32], grad: &[f32]) {
        self.steps += 1;
        let wd = if decay { s.weight_decay as f32 } else { 0.0 };
        let lr32 = lr as f32;
        match s.optimizer {
            Optimizer::Sgd => {
                let mu = s.momentum as f32;
                for ((p, g), v) in param.iter_mut().zip(grad).zip(&mut self.first) {
                    *v = mu * *v + g + wd * *p;
                    *p -= lr32 * *v;
                }
            }
            Optimizer::Adam | Optimizer::Adamw => {
                let (b1, b2) = (s.beta1 as f32, s.beta2 as f32);
                let c1 = 1.0 - s.beta1.powi(self.steps);
                let c2 = 1.0 - s.beta2.powi(self.steps);
                let step = (lr / c1) as f32;
                let c2_sqrt = c2.sqrt() as f32;
                let eps = s.eps as f32;
                let decoupled = s.optimizer == Optimizer::Adamw;
                for ((p, g), (m, v)) in param.iter_mut().zip(grad).zip(self.first.iter_mut().zip(&mut self.second)) {
                    let g = if decoupled { *g } else { g + wd * *p };
                    if decoupled {
                        *p -= lr32 * wd * *p;
                    }
                    *m = b1 * *m + (1.0 - b1) * g;
                    *v = b2 * *v + (1.0 - b2) * g * g;
                    *p -= step * *m / (v.sqrt() / c2_sqrt + eps);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(optimizer: Optimizer) -> Settings {
        Settings { optimizer, lr: 0.1, momentum: 0.9, weight_decay: 0.0, beta1: 0.9, beta2: 0.999, eps: 1e-8 }
    }

    #[test]
    fn every_optimizer_minimises_a_quadratic() {
        for opt in [Optimizer::Sgd, Optimizer::Adam, Optimizer::Adamw] {
            let s = settings(opt);
            let mut p = vec![3.0f32, -2.0];
            let mut state = State::new(2);
            for _ in 0..500 {
                let g: Vec<f32> = p.iter().map(|v| 2.0 * v).collect();
                state.step(&s, 0.05, true, &mut p, &g);
            }
            assert!(p.iter().all(|v| v.abs() < 1e-2), "{opt:?}: {p:?}");
        }
    }

    #[test]
    fn first_adam_step_moves_each_parameter_by_the_rate() {
        // With bias correction the first step is lr * g / |g|.
        let s = settings(Optimizer::Adam);
        let mut p = vec![1.0f32, 1.0];
        State::new(2).step(&s, 0.01, false, &mut p, &[0.5, -4.0]);
        assert!((p[0] - 0.99).abs() < 1e-6 && (p[1] - 1.01).abs() < 1e-6, "{p:?}");
    }

    #[test]
    fn schedules_warm_up_then_decay() {
        assert!((rate(1.0, Schedule::Constant, 0, 100, 4, 1, 0.1) - 0.25).abs() < 1e-12);
        assert!((rate(1.0, Schedule::Constant, 50, 100, 4, 1, 0.1) - 1.0).abs() < 1e-12);
        assert!((rate(1.0, Schedule::Step, 25, 100, 0, 10, 0.1) - 0.01).abs() < 1e-12);
        assert!((rate(1.0, Schedule::Cosine, 0, 100, 0, 1, 0.1) - 1.0).abs() < 1e-12);
        assert!((rate(1.0, Schedule::Cosine, 50, 100, 0, 1, 0.1) - 0.5).abs() < 1e-12);
        assert!(rate(1.0, Schedule::Cosine, 99, 100, 0, 1, 0.1) < 1e-3);
    }
}
