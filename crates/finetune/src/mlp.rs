//! Multi-layer perceptron head: dense layers with ReLU or GELU and dropout between them,
//! trained by mini-batch gradient descent on (label-smoothed, class-weighted)
//! cross-entropy, with early stopping on the val split.
//!
//! Single-threaded float32 arithmetic in a fixed order: the same features, settings and
//! seed give bit-identical weights on any machine with the same float semantics.

use graft_core::numeric::log_sum_exp;
use graft_core::rng::SplitMix64;
use ndarray::{Array1, Array2, ArrayView2, Axis};

pub use graft_core::config::finetune::{Activation, Monitor};
pub use graft_core::head::Epoch;
use graft_core::head::model::{Dense, Mlp, activate, derivative};

use crate::optim::{self, Schedule, State};

/// Layers of widths `dims` (`[input, hidden.., outputs]`), initialised as PyTorch's
/// `nn.Linear`: uniform in ±1/sqrt(fan_in).
pub fn init(dims: &[usize], activation: Activation, rng: &mut SplitMix64) -> Mlp {
    let layers = dims
        .windows(2)
        .map(|w| {
            let bound = 1.0 / (w[0] as f64).sqrt();
            let mut u = || ((2.0 * rng.next_f64() - 1.0) * bound) as f32;
            let weight = Array2::from_shape_simple_fn((w[0], w[1]), &mut u);
            let bias = Array1::from_shape_simple_fn(w[1], &mut u);
            Dense { weight, bias }
        })
        .collect();
    Mlp { layers, activation }
}

/// How to train.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Training {
    pub epochs: usize,
    pub batch_size: usize,
    pub dropout: f64,
    pub optimizer: optim::Settings,
    pub schedule: Schedule,
    pub warmup_epochs: usize,
    pub lr_step: usize,
    pub lr_gamma: f64,
    pub clip_norm: Option<f64>,
    pub loss: Loss,
    /// Stop after this many epochs without improvement of `monitor` on val.
    pub patience: Option<usize>,
    pub monitor: Monitor,
    pub seed: u64,
}

/// What the head is trained to minimise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Loss {
    /// Softmax cross-entropy with targets smoothed by `smoothing` (classification).
    CrossEntropy { smoothing: f64 },
    /// Squared error of the single output (regression).
    Mse,
    /// Huber loss with threshold `delta` (regression): squared near 0, linear beyond.
    Huber { delta: f64 },
}

/// Per-row targets: class ids, or real values for a one-output head.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    Classes(&'a [usize]),
    Values(&'a [f32]),
}

impl Target<'_> {
    pub fn len(&self) -> usize {
        match self {
            Target::Classes(c) => c.len(),
            Target::Values(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn gather(&self, rows: &[usize]) -> Gathered {
        match self {
            Target::Classes(c) => Gathered::Classes(rows.iter().map(|&i| c[i]).collect()),
            Target::Values(v) => Gathered::Values(rows.iter().map(|&i| v[i]).collect()),
        }
    }
}

enum Gathered {
    Classes(Vec<usize>),
    Values(Vec<f32>),
}

impl Gathered {
    fn target(&self) -> Target<'_> {
        match self {
            Gathered::Classes(c) => Target::Classes(c),
            Gathered::Values(v) => Target::Values(v),
        }
    }
}

/// Rows, their targets and optional per-row weights.
#[derive(Debug, Clone, Copy)]
pub struct Split<'a> {
    pub x: ArrayView2<'a, f32>,
    pub y: Target<'a>,
    pub row_weights: Option<&'a [f64]>,
}

/// Training stopped: the loss of `epoch` (1-based) was NaN or infinite.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Diverged {
    pub epoch: usize,
    pub train_loss: f64,
    pub val_loss: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct Fitted {
    pub model: Mlp,
    pub history: Vec<Epoch>,
    /// 1-based epoch whose weights were kept.
    pub best_epoch: usize,
}

/// Mean cross-entropy and accuracy of `model` on `split` (unweighted, unsmoothed), or for
/// regression the mean squared error and no accuracy.
pub fn score(model: &Mlp, split: &Split<'_>) -> (f64, Option<f64>) {
    let z = model.logits(split.x);
    let n = split.y.len().max(1) as f64;
    match split.y {
        Target::Classes(y) => {
            let (mut loss, mut correct) = (0.0, 0usize);
            for (row, &y) in z.axis_iter(Axis(0)).zip(y) {
                let row: Vec<f64> = row.iter().map(|&v| f64::from(v)).collect();
                loss += log_sum_exp(row.iter().copied()) - row[y];
                correct += usize::from(graft_core::numeric::argmax(&row) == y);
            }
            (loss / n, Some(correct as f64 / n))
        }
        Target::Values(y) => {
            let se: f64 = z.column(0).iter().zip(y).map(|(p, t)| (f64::from(*p) - f64::from(*t)).powi(2)).sum();
            (se / n, None)
        }
    }
}

type Gradients = Vec<(Array2<f32>, Array1<f32>)>;

/// Weighted mean loss of one batch and its gradient per layer, with dropout (kept with
/// probability `keep`, masks drawn from `rng`) between hidden layers.
fn gradients(
    model: &Mlp,
    x: Array2<f32>,
    y: Target<'_>,
    weights: &[f32],
    loss_kind: Loss,
    keep: f32,
    rng: &mut SplitMix64,
) -> (f64, Gradients) {
    let activation = model.activation;
    let depth = model.layers.len();
    let (mut inputs, mut pre, mut masks) = (Vec::with_capacity(depth), Vec::with_capacity(depth), Vec::new());
    let mut h = x;
    for (i, layer) in model.layers.iter().enumerate() {
        let z = h.dot(&layer.weight) + &layer.bias;
        inputs.push(h);
        if i + 1 == depth {
            h = z;
            break;
        }
        let mut a = z.mapv(|v| activate(activation, v));
        let mask = (keep < 1.0).then(|| {
            Array2::from_shape_simple_fn(a.raw_dim(), || if (rng.next_f64() as f32) < keep { 1.0 / keep } else { 0.0 })
        });
        if let Some(m) = &mask {
            a *= m;
        }
        masks.push(mask);
        pre.push(z);
        h = a;
    }
    // Loss, and its gradient with respect to the outputs in place of them.
    let classes = h.ncols();
    let weight_sum: f32 = weights.iter().sum();
    let mut delta = h;
    let mut loss = 0.0f64;
    match (y, loss_kind) {
        (Target::Classes(y), Loss::CrossEntropy { smoothing }) => {
            let smoothing = smoothing as f32;
            for ((mut row, &yi), &w) in delta.axis_iter_mut(Axis(0)).zip(y).zip(weights) {
                let lse = log_sum_exp(row.iter().map(|&v| f64::from(v)));
                let mut row_loss = 0.0f64;
                for (c, z) in row.iter_mut().enumerate() {
                    let target = smoothing / classes as f32 + if c == yi { 1.0 - smoothing } else { 0.0 };
                    row_loss += f64::from(target) * (lse - f64::from(*z));
                    let p = (f64::from(*z) - lse).exp() as f32;
                    *z = w * (p - target) / weight_sum;
                }
                loss += f64::from(w) * row_loss;
            }
        }
        (Target::Values(y), Loss::Mse | Loss::Huber { .. }) => {
            for ((mut row, &yi), &w) in delta.axis_iter_mut(Axis(0)).zip(y).zip(weights) {
                let d = row[0] - yi;
                let (l, g) = match loss_kind {
                    Loss::Huber { delta } if f64::from(d.abs()) > delta => {
                        let delta = delta as f32;
                        (delta * (d.abs() - 0.5 * delta), delta * d.signum())
                    }
                    Loss::Huber { .. } => (0.5 * d * d, d),
                    _ => (d * d, 2.0 * d),
                };
                row[0] = w * g / weight_sum;
                loss += f64::from(w) * f64::from(l);
            }
        }
        _ => unreachable!("the loss matches the target kind"),
    }
    let mut grads = Vec::with_capacity(depth);
    for i in (0..depth).rev() {
        // Row-major like the weights, whatever layout the product chose.
        let gw = inputs[i].t().dot(&delta).as_standard_layout().into_owned();
        let gb = delta.sum_axis(Axis(0));
        if i > 0 {
            let mut back = delta.dot(&model.layers[i].weight.t());
            back.zip_mut_with(&pre[i - 1], |g, &z| *g *= derivative(activation, z));
            if let Some(m) = &masks[i - 1] {
                back *= m;
            }
            delta = back;
        }
        grads.push((gw, gb));
    }
    grads.reverse();
    (loss / f64::from(weight_sum), grads)
}

/// Trains a head with hidden widths `hidden` on `train`, watching `val` when given.
/// `on_epoch` sees each epoch's record as it completes.
pub fn train(
    train: &Split<'_>,
    val: Option<&Split<'_>>,
    classes: usize,
    hidden: &[usize],
    activation: Activation,
    t: &Training,
    mut on_epoch: impl FnMut(&Epoch),
) -> Result<Fitted, Diverged> {
    let (n, d) = train.x.dim();
    let mut rng = SplitMix64::new(t.seed);
    let dims: Vec<usize> = std::iter::once(d).chain(hidden.iter().copied()).chain([classes]).collect();
    let mut model = init(&dims, activation, &mut rng);
    let mut states: Vec<(State, State)> =
        model.layers.iter().map(|l| (State::new(l.weight.len()), State::new(l.bias.len()))).collect();
    let batch = t.batch_size.clamp(1, n.max(1));
    let steps_per_epoch = n.div_ceil(batch);
    let total_steps = steps_per_epoch * t.epochs;
    let warmup = steps_per_epoch * t.warmup_epochs;
    let keep = 1.0 - t.dropout as f32;
    debug_assert!(classes == model.layers.last().map_or(0, |l| l.bias.len()));
    let mut order: Vec<usize> = (0..n).collect();
    let mut history = Vec::new();
    let mut best: Option<(f64, usize, Mlp)> = None;
    let mut step = 0;
    for epoch in 1..=t.epochs {
        rng.shuffle(&mut order);
        let mut epoch_loss = 0.0;
        let mut lr = 0.0;
        for rows in order.chunks(batch) {
            lr = optim::rate(
                t.optimizer.lr,
                t.schedule,
                step,
                total_steps,
                warmup,
                t.lr_step * steps_per_epoch,
                t.lr_gamma,
            );
            step += 1;
            let x = train.x.select(Axis(0), rows);
            let y = train.y.gather(rows);
            let weights: Vec<f32> = rows.iter().map(|&i| train.row_weights.map_or(1.0, |w| w[i] as f32)).collect();
            let (batch_loss, mut grads) = gradients(&model, x, y.target(), &weights, t.loss, keep, &mut rng);
            epoch_loss += batch_loss * rows.len() as f64;
            if let Some(max_norm) = t.clip_norm {
                let norm = grads
                    .iter()
                    .flat_map(|(w, b)| w.iter().chain(b.iter()))
                    .map(|g| f64::from(*g) * f64::from(*g))
                    .sum::<f64>()
                    .sqrt();
                if norm > max_norm {
                    let factor = (max_norm / norm) as f32;
                    for (w, b) in &mut grads {
                        *w *= factor;
                        *b *= factor;
                    }
                }
            }
            for ((layer, (gw, gb)), (sw, sb)) in model.layers.iter_mut().zip(&grads).zip(&mut states) {
                let p = layer.weight.as_slice_mut().expect("contiguous weights");
                sw.step(&t.optimizer, lr, true, p, gw.as_slice().expect("contiguous gradient"));
                let p = layer.bias.as_slice_mut().expect("contiguous bias");
                sb.step(&t.optimizer, lr, false, p, gb.as_slice().expect("contiguous gradient"));
            }
        }
        let scored = val.map(|v| score(&model, v));
        let record = Epoch {
            epoch,
            train_loss: epoch_loss / n.max(1) as f64,
            val_loss: scored.map(|s| s.0),
            val_accuracy: scored.and_then(|s| s.1),
            lr,
        };
        on_epoch(&record);
        if !record.train_loss.is_finite() || record.val_loss.is_some_and(|l| !l.is_finite()) {
            return Err(Diverged { epoch, train_loss: record.train_loss, val_loss: record.val_loss });
        }
        history.push(record);
        if let Some((loss, accuracy)) = scored {
            let value = match (t.monitor, accuracy) {
                (Monitor::Accuracy, Some(accuracy)) => accuracy,
                _ => -loss,
            };
            if best.as_ref().is_none_or(|b| value > b.0) {
                best = Some((value, epoch, model.clone()));
            } else if t.patience.is_some_and(|p| epoch - best.as_ref().map_or(0, |b| b.1) >= p) {
                break;
            }
        }
    }
    Ok(match best {
        Some((_, best_epoch, kept)) => Fitted { model: kept, history, best_epoch },
        None => {
            let best_epoch = history.len();
            Fitted { model, history, best_epoch }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::Optimizer;

    fn settings(optimizer: Optimizer) -> Training {
        Training {
            epochs: 60,
            batch_size: 32,
            dropout: 0.1,
            optimizer: optim::Settings {
                optimizer,
                lr: if optimizer == Optimizer::Sgd { 0.05 } else { 0.01 },
                momentum: 0.9,
                weight_decay: 1e-4,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
            },
            schedule: Schedule::Cosine,
            warmup_epochs: 2,
            lr_step: 10,
            lr_gamma: 0.5,
            clip_norm: Some(5.0),
            loss: Loss::CrossEntropy { smoothing: 0.05 },
            patience: Some(15),
            monitor: Monitor::Loss,
            seed: 3,
        }
    }

    /// Rings: class by distance from the origin, which no linear head separates.
    fn rings(n: usize, seed: u64) -> (Array2<f32>, Vec<usize>) {
        let mut rng = SplitMix64::new(seed);
        let mut x = Array2::zeros((n, 2));
        let mut y = Vec::new();
        for i in 0..n {
            let class = i % 2;
            let radius = if class == 0 { 0.5 } else { 1.5 } + 0.4 * (rng.next_f64() - 0.5);
            let angle = std::f64::consts::TAU * rng.next_f64();
            x[[i, 0]] = (radius * angle.cos()) as f32;
            x[[i, 1]] = (radius * angle.sin()) as f32;
            y.push(class);
        }
        (x, y)
    }

    #[test]
    fn gradients_match_finite_differences() {
        let (x, y) = rings(16, 1);
        let weights: Vec<f32> = (0..16).map(|i| 0.5 + (i % 3) as f32).collect();
        let values: Vec<f32> = (0..16).map(|i| (i as f32 * 0.37).sin() * 2.0).collect();
        let cases = [
            (Activation::Relu, Target::Classes(&y), Loss::CrossEntropy { smoothing: 0.1 }, 3),
            (Activation::Gelu, Target::Classes(&y), Loss::CrossEntropy { smoothing: 0.1 }, 3),
            (Activation::Gelu, Target::Values(&values), Loss::Mse, 1),
            (Activation::Gelu, Target::Values(&values), Loss::Huber { delta: 0.5 }, 1),
        ];
        for (activation, target, kind, outputs) in cases {
            let model = init(&[2, 6, outputs], activation, &mut SplitMix64::new(4));
            let mut rng = SplitMix64::new(0);
            let loss = |m: &Mlp, rng: &mut SplitMix64| gradients(m, x.clone(), target, &weights, kind, 1.0, rng).0;
            let (_, grads) = gradients(&model, x.clone(), target, &weights, kind, 1.0, &mut rng);
            let h = 1e-2f32;
            for (l, (gw, gb)) in grads.iter().enumerate() {
                for (j, g) in gw.iter().chain(gb.iter()).enumerate() {
                    let nudge = |sign: f32| {
                        let mut m = model.clone();
                        let (wlen, layer) = (m.layers[l].weight.len(), &mut m.layers[l]);
                        if j < wlen {
                            layer.weight.as_slice_mut().expect("contiguous")[j] += sign * h;
                        } else {
                            layer.bias[j - wlen] += sign * h;
                        }
                        m
                    };
                    let mut r = SplitMix64::new(0);
                    let numeric = (loss(&nudge(1.0), &mut r) - loss(&nudge(-1.0), &mut r)) / (2.0 * f64::from(h));
                    assert!(
                        (numeric - f64::from(*g)).abs() < 2e-3,
                        "{activation:?} layer {l} param {j}: {numeric} vs {g}"
                    );
                }
            }
        }
    }

    #[test]
    fn each_optimizer_learns_a_nonlinear_boundary() {
        let (x, y) = rings(600, 1);
        let (vx, vy) = rings(200, 2);
        for opt in [Optimizer::Sgd, Optimizer::Adam, Optimizer::Adamw] {
            for activation in [Activation::Relu, Activation::Gelu] {
                let fitted = train(
                    &Split { x: x.view(), y: Target::Classes(&y), row_weights: None },
                    Some(&Split { x: vx.view(), y: Target::Classes(&vy), row_weights: None }),
                    2,
                    &[32],
                    activation,
                    &settings(opt),
                    |_| {},
                )
                .unwrap();
                let (_, acc) =
                    score(&fitted.model, &Split { x: vx.view(), y: Target::Classes(&vy), row_weights: None });
                let acc = acc.expect("classification");
                assert!(acc > 0.95, "{opt:?} {activation:?}: val accuracy {acc}");
                let best = &fitted.history[fitted.best_epoch - 1];
                assert!(fitted.history.iter().all(|e| e.val_loss >= best.val_loss), "best epoch restored");
            }
        }
    }

    #[test]
    fn regression_head_fits_a_nonlinear_function() {
        // y = sin(3 x0) + x1², which no linear head fits; checked with MSE and Huber.
        let mut rng = SplitMix64::new(5);
        let x = Array2::from_shape_simple_fn((800, 2), || (2.0 * rng.next_f64() - 1.0) as f32);
        let y: Vec<f32> = x.rows().into_iter().map(|r| (3.0 * r[0]).sin() + r[1] * r[1]).collect();
        let (train_x, val_x) = (x.slice(ndarray::s![..600, ..]), x.slice(ndarray::s![600.., ..]));
        let variance = {
            let m = y[600..].iter().sum::<f32>() / 200.0;
            y[600..].iter().map(|v| f64::from((v - m).powi(2))).sum::<f64>() / 200.0
        };
        for loss in [Loss::Mse, Loss::Huber { delta: 1.0 }] {
            let mut t = settings(Optimizer::Adam);
            t.loss = loss;
            t.dropout = 0.0;
            t.epochs = 200;
            t.patience = Some(30);
            let train_split = Split { x: train_x, y: Target::Values(&y[..600]), row_weights: None };
            let val = Split { x: val_x, y: Target::Values(&y[600..]), row_weights: None };
            let fitted = train(&train_split, Some(&val), 1, &[32], Activation::Gelu, &t, |_| {}).unwrap();
            let (mse, acc) = score(&fitted.model, &val);
            assert!(acc.is_none());
            assert!(mse < 0.05 * variance, "{loss:?}: val MSE {mse} against variance {variance}");
        }
    }

    #[test]
    fn training_is_reproducible_and_depends_on_the_seed() {
        let (x, y) = rings(200, 1);
        let split = Split { x: x.view(), y: Target::Classes(&y), row_weights: None };
        let mut t = settings(Optimizer::Adamw);
        t.epochs = 5;
        let a = train(&split, None, 2, &[8], Activation::Gelu, &t, |_| {}).unwrap();
        let b = train(&split, None, 2, &[8], Activation::Gelu, &t, |_| {}).unwrap();
        assert_eq!(a.model, b.model);
        t.seed += 1;
        let c = train(&split, None, 2, &[8], Activation::Gelu, &t, |_| {}).unwrap();
        assert_ne!(a.model, c.model);
    }

    #[test]
    fn a_diverging_run_stops_naming_its_epoch() {
        let (x, y) = rings(200, 1);
        let split = Split { x: x.view(), y: Target::Classes(&y), row_weights: None };
        let mut t = settings(Optimizer::Sgd);
        t.optimizer.lr = 1e6;
        let err = train(&split, Some(&split), 2, &[8], Activation::Relu, &t, |_| {}).unwrap_err();
        assert!(err.epoch >= 1 && err.epoch <= t.epochs, "{err:?}");
        assert!(!err.train_loss.is_finite() || err.val_loss.is_some_and(|l| !l.is_finite()), "{err:?}");
    }
}
