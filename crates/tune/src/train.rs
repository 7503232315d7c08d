//! The trained model (the top layers, masked mean pooling, a linear head) and its training
//! loop: shuffled length-bucketed batches, weighted cross-entropy, the optimiser's schedule,
//! per-epoch val loss and accuracy, early stopping that restores the best epoch.

use candle_core::{D, DType, Device, Tensor, Var};
use graft_core::config::finetune::LayersTraining;
use graft_core::head::Epoch;
use graft_core::rng::SplitMix64;

use crate::cut::Split;
use crate::encoder::Dropout;
use crate::error::{Error, Result};
use crate::optim::{Optim, schedule};
use crate::trunk::Trunk;

/// The top layers (or blocks) and the head on their mean-pooled output.
#[derive(Debug)]
pub struct Model {
    pub trunk: Trunk,
    /// `[width, classes]`.
    pub head_weight: Var,
    /// `[classes]`.
    pub head_bias: Var,
}

impl Model {
    /// A head initialised as BERT's classifier: weights from N(0, 0.02^2), zero bias.
    pub fn new(trunk: Trunk, classes: usize, seed: u64, dtype: DType) -> Result<Self> {
        let mut rng = SplitMix64::new(seed ^ 0x6865_6164); // "head"
        let width = trunk.output_width();
        let weights: Vec<f64> = (0..width * classes).map(|_| 0.02 * normal(&mut rng)).collect();
        let w = Tensor::from_vec(weights, (width, classes), &Device::Cpu)?.to_dtype(dtype)?;
        let b = Tensor::zeros(classes, dtype, &Device::Cpu)?;
        Ok(Self { trunk, head_weight: Var::from_tensor(&w)?, head_bias: Var::from_tensor(&b)? })
    }

    /// Logits `[batch, classes]` of a batch of cut vectors.
    pub fn logits(&self, x: &Tensor, mask: &Tensor, mut dropout: Option<&mut Dropout>) -> Result<Tensor> {
        let hidden = self.trunk.forward(x, mask, dropout.as_deref_mut())?;
        let mut pooled = self.trunk.pool(&hidden, mask)?;
        if let Some(d) = dropout {
            pooled = d.apply(&pooled)?;
        }
        Ok(pooled.matmul(self.head_weight.as_tensor())?.broadcast_add(self.head_bias.as_tensor())?)
    }

    /// Every trained variable, the head's last.
    pub fn vars(&self) -> Vec<&Var> {
        let mut vars: Vec<&Var> = self.trunk.named_vars().into_iter().map(|(_, v)| v).collect();
        vars.extend([&self.head_weight, &self.head_bias]);
        vars
    }

    fn snapshot(&self) -> Result<Vec<Tensor>> {
        Ok(self.vars().into_iter().map(|v| v.as_tensor().copy()).collect::<candle_core::Result<_>>()?)
    }

    fn restore(&self, values: &[Tensor]) -> Result<()> {
        for (v, t) in self.vars().into_iter().zip(values) {
            v.set(t)?;
        }
        Ok(())
    }
}

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut SplitMix64) -> f64 {
    let u1 = rng.next_f64().max(f64::MIN_POSITIVE);
    let u2 = rng.next_f64();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Rows `rows` of `split` padded to the longest: `x` `[batch, seq, dim]` (token ids
/// `[batch, seq]`, u32, for a split of ids) and the mask `[batch, seq]` (1 on real tokens),
/// in `dtype`.
pub fn batch(split: &Split, rows: &[usize], dim: usize, dtype: DType) -> Result<(Tensor, Tensor)> {
    let seq = rows.iter().map(|&r| split.tokens(r, dim)).max().unwrap_or(0);
    let mut buf = Vec::new();
    let mut mask = vec![0f32; rows.len() * seq];
    for (b, &r) in rows.iter().enumerate() {
        mask[b * seq..b * seq + split.tokens(r, dim)].fill(1.0);
    }
    let mask = Tensor::from_vec(mask, (rows.len(), seq), &Device::Cpu)?.to_dtype(dtype)?;
    if split.ids() {
        let mut ids = vec![0u32; rows.len() * seq];
        for (b, &r) in rows.iter().enumerate() {
            let n = split.rows.elements(r);
            split.rows.fill_ids(r, &mut ids[b * seq..b * seq + n], &mut buf)?;
        }
        return Ok((Tensor::from_vec(ids, (rows.len(), seq), &Device::Cpu)?, mask));
    }
    let mut x = vec![0f32; rows.len() * seq * dim];
    for (b, &r) in rows.iter().enumerate() {
        let n = split.rows.elements(r);
        split.rows.fill(r, &mut x[b * seq * dim..b * seq * dim + n], &mut buf)?;
    }
    let x = Tensor::from_vec(x, (rows.len(), seq, dim), &Device::Cpu)?.to_dtype(dtype)?;
    Ok((x, mask))
}

/// What the head is trained to predict.
#[derive(Debug, Clone, PartialEq)]
pub enum Objective {
    /// Classes, each row's loss weighted by its class's weight (cross-entropy).
    Classes { weights: Vec<f64> },
    /// A number, standardised with train's mean and scale (mean squared error).
    Value { mean: f64, scale: f64 },
}

impl Objective {
    /// Outputs of the head.
    pub fn outputs(&self) -> usize {
        match self {
            Objective::Classes { weights } => weights.len(),
            Objective::Value { .. } => 1,
        }
    }

    /// The targets of `rows` (weighted one-hot, or standardised values `[batch, 1]`) and
    /// their total weight.
    fn targets(&self, split: &Split, rows: &[usize], dtype: DType) -> Result<(Tensor, f64)> {
        match self {
            Objective::Classes { weights } => {
                let classes: Vec<usize> = rows.iter().map(|&r| split.classes[r]).collect();
                let total = classes.iter().map(|&c| weights[c]).sum();
                Ok((targets(&classes, weights.len(), weights, dtype)?, total))
            }
            Objective::Value { mean, scale } => {
                let values: Vec<f64> = rows.iter().map(|&r| (split.targets[r] - mean) / scale).collect();
                Ok((Tensor::from_vec(values, (rows.len(), 1), &Device::Cpu)?.to_dtype(dtype)?, rows.len() as f64))
            }
        }
    }

    /// Weighted mean cross-entropy, or mean squared error.
    pub fn loss(&self, out: &Tensor, targets: &Tensor) -> Result<Tensor> {
        match self {
            Objective::Classes { .. } => cross_entropy(out, targets),
            Objective::Value { .. } => Ok((out - targets)?.sqr()?.mean_all()?),
        }
    }
}

/// One-hot targets `[batch, classes]` scaled by each row's class weight.
pub fn targets(classes: &[usize], k: usize, weights: &[f64], dtype: DType) -> Result<Tensor> {
    let mut t = vec![0f64; classes.len() * k];
    for (i, &c) in classes.iter().enumerate() {
        t[i * k + c] = weights[c];
    }
    Ok(Tensor::from_vec(t, (classes.len(), k), &Device::Cpu)?.to_dtype(dtype)?)
}

/// Weighted mean cross-entropy of `logits` against weighted one-hot `targets` (PyTorch's
/// `CrossEntropyLoss(weight=...)`: the sum divided by the rows' total weight).
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let shifted = logits.broadcast_sub(&logits.max_keepdim(D::Minus1)?.detach())?;
    let log_probs = shifted.broadcast_sub(&shifted.exp()?.sum_keepdim(D::Minus1)?.log()?)?;
    Ok(log_probs.mul(targets)?.sum_all()?.neg()?.broadcast_div(&targets.sum_all()?)?)
}

/// Batches of `batch_size` rows in a seeded shuffled order, each drawn from a window of
/// similar-length rows (less padding), the batches themselves shuffled.
fn epoch_batches(split: &Split, dim: usize, batch_size: usize, rng: &mut SplitMix64) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..split.len()).collect();
    rng.shuffle(&mut order);
    let mut batches = Vec::new();
    for window in order.chunks(batch_size * 50) {
        let mut window = window.to_vec();
        window.sort_by_key(|&r| split.tokens(r, dim));
        batches.extend(window.chunks(batch_size).map(<[usize]>::to_vec));
    }
    rng.shuffle(&mut batches);
    batches
}

/// The loss of `split` (weighted as in training) and, for classes, its accuracy; without
/// dropout.
pub fn evaluate(model: &Model, split: &Split, objective: &Objective, dtype: DType) -> Result<(f64, Option<f64>)> {
    let dim = model.trunk.input_width();
    let mut order: Vec<usize> = (0..split.len()).collect();
    order.sort_by_key(|&r| split.tokens(r, dim));
    let (mut loss, mut weight, mut correct) = (0.0, 0.0, 0usize);
    for rows in order.chunks(64) {
        let (x, mask) = batch(split, rows, dim, dtype)?;
        let out = model.logits(&x, &mask, None)?;
        let (t, w) = objective.targets(split, rows, dtype)?;
        loss += scalar(&objective.loss(&out, &t)?)? * w;
        weight += w;
        if let Objective::Classes { .. } = objective {
            let predicted = out.argmax(D::Minus1)?.to_vec1::<u32>()?;
            correct += predicted.iter().zip(rows).filter(|(p, r)| **p as usize == split.classes[**r]).count();
        }
    }
    let accuracy = matches!(objective, Objective::Classes { .. }).then(|| correct as f64 / split.len() as f64);
    Ok((loss / weight, accuracy))
}

pub fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

/// What training kept and recorded.
#[derive(Debug)]
pub struct Trained {
    pub epochs: Vec<Epoch>,
    pub best_epoch: usize,
    /// Seconds each epoch took (train and val): the head's `timing.json`, kept out of
    /// `head.json` so that a rerun writes the same bytes there.
    pub seconds: Vec<f64>,
}

/// Trains `model` on `train`, early-stopping on `val` (the best val loss) when given, and
/// leaves it holding the kept epoch's weights. `on_epoch` sees each epoch as it ends.
pub fn train(
    model: &Model,
    cfg: &LayersTraining,
    train: &Split,
    val: Option<&Split>,
    objective: &Objective,
    dtype: DType,
    mut on_epoch: impl FnMut(&Epoch, f64),
) -> Result<Trained> {
    let dim = model.trunk.input_width();
    let mut optim = Optim::new(cfg.optimizer, cfg.momentum, cfg.weight_decay);
    for (_, var) in model.trunk.named_vars() {
        optim.add(var, cfg.layer_lr)?;
    }
    optim.add(&model.head_weight, cfg.lr)?;
    optim.add(&model.head_bias, cfg.lr)?;
    let steps_per_epoch = train.len().div_ceil(cfg.batch_size);
    let total = steps_per_epoch * cfg.epochs;
    let warmup = (cfg.warmup * total as f64).round() as usize;
    let mut rng = SplitMix64::new(cfg.seed);
    let mut dropout = Dropout { p: cfg.dropout, rng: SplitMix64::new(cfg.seed ^ 0x6472_6f70) }; // "drop"
    let (mut epochs, mut seconds) = (Vec::new(), Vec::new());
    let (mut best, mut best_epoch, mut kept) = (f64::INFINITY, 0, None);
    let mut step = 0;
    for epoch in 1..=cfg.epochs {
        let started = std::time::Instant::now();
        let (mut loss_sum, mut weight_sum) = (0.0, 0.0);
        for rows in epoch_batches(train, dim, cfg.batch_size, &mut rng) {
            let (x, mask) = batch(train, &rows, dim, dtype)?;
            let (t, w) = objective.targets(train, &rows, dtype)?;
            let loss = objective.loss(&model.logits(&x, &mask, Some(&mut dropout))?, &t)?;
            let grads = loss.backward()?;
            optim.step(&grads, schedule(step, total, warmup), cfg.clip_norm)?;
            step += 1;
            loss_sum += scalar(&loss)? * w;
            weight_sum += w;
        }
        let train_loss = loss_sum / weight_sum;
        if !train_loss.is_finite() {
            return Err(Error::Diverged { epoch, loss: train_loss });
        }
        let (val_loss, val_accuracy) = match val {
            Some(v) => {
                let (l, a) = evaluate(model, v, objective, dtype)?;
                (Some(l), a)
            }
            None => (None, None),
        };
        let lr = cfg.lr * schedule(step.saturating_sub(1), total, warmup);
        let record = Epoch { epoch, train_loss, val_loss, val_accuracy, lr };
        seconds.push(started.elapsed().as_secs_f64());
        on_epoch(&record, seconds[seconds.len() - 1]);
        epochs.push(record);
        let score = val_loss.unwrap_or(train_loss);
        if score < best {
            (best, best_epoch) = (score, epoch);
            if val.is_some() && epoch < cfg.epochs {
                kept = Some(model.snapshot()?);
            } else {
                kept = None;
            }
        } else if val.is_some() && epoch - best_epoch >= cfg.patience {
            break;
        }
    }
    if val.is_none() {
        best_epoch = epochs.len();
    } else if let Some(values) = kept
        && best_epoch != epochs.len()
    {
        model.restore(&values)?;
    }
    Ok(Trained { epochs, best_epoch, seconds })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::encoder::Encoder;
    use crate::mbconv::ConvTop;

    const TINY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/tiny/model.onnx");

    /// The tiny fixture BERT's top `k` layers and a 3-class head, in float64; a batch of two
    /// rows (5 and 3 real tokens) with random cut vectors.
    fn tiny(k: usize) -> (Model, Tensor, Tensor, Tensor) {
        let bytes = std::fs::read(TINY).unwrap();
        let encoder = Encoder::load(&bytes, Path::new(TINY), k, DType::F64).unwrap();
        let model = Model::new(Trunk::Layers(encoder), 3, 7, DType::F64).unwrap();
        // A larger head than BERT's init, so that its gradients are not tiny.
        model.head_weight.set(&model.head_weight.as_tensor().affine(20.0, 0.0).unwrap()).unwrap();
        let mut rng = SplitMix64::new(3);
        let x: Vec<f64> = (0..2 * 5 * 16).map(|_| normal(&mut rng)).collect();
        let x = Tensor::from_vec(x, (2, 5, 16), &Device::Cpu).unwrap();
        let mask = Tensor::new(&[[1f64, 1., 1., 1., 1.], [1., 1., 1., 0., 0.]], &Device::Cpu).unwrap();
        let t = targets(&[2, 0], 3, &[1.0, 1.5, 0.5], DType::F64).unwrap();
        (model, x, mask, t)
    }

    fn loss(model: &Model, x: &Tensor, mask: &Tensor, t: &Tensor) -> Tensor {
        cross_entropy(&model.logits(x, mask, None).unwrap(), t).unwrap()
    }

    #[test]
    fn every_gradient_matches_central_differences() {
        let (model, x, mask, t) = tiny(2);
        let grads = loss(&model, &x, &mask, &t).backward().unwrap();
        let vars = model.vars();
        assert_eq!(vars.len(), 2 * 16 + 2);
        for var in vars {
            let analytic = grads.get(var.as_tensor()).expect("a gradient");
            // Every element of small tensors, every 7th of the larger ones.
            let step = if var.as_tensor().elem_count() > 64 { 7 } else { 1 };
            let elements: Vec<usize> = (0..var.as_tensor().elem_count()).step_by(step).collect();
            check_gradient(var, analytic, &elements, || scalar(&loss(&model, &x, &mask, &t)).unwrap());
        }
    }

    /// Asserts that `analytic` (the gradient of `var`) matches central differences of `loss`
    /// at `elements`: relative 1e-5, plus 1e-8 absolute for the differences' rounding (loss
    /// about 1, float64, h = 1e-6).
    fn check_gradient(var: &Var, analytic: &Tensor, elements: &[usize], loss: impl Fn() -> f64) {
        let h = 1e-6;
        let analytic = analytic.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let original = var.as_tensor().copy().unwrap();
        let values = original.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        for &i in elements {
            let at = |delta: f64| {
                let mut v = values.clone();
                v[i] += delta;
                var.set(&Tensor::from_vec(v, original.shape(), &Device::Cpu).unwrap()).unwrap();
                loss()
            };
            let numeric = (at(h) - at(-h)) / (2.0 * h);
            let error = (numeric - analytic[i]).abs();
            assert!(
                error < 1e-8 + 1e-5 * numeric.abs(),
                "element {i} of a {:?} tensor: {numeric} by differences, {}",
                original.dims(),
                analytic[i]
            );
        }
        var.set(&original).unwrap();
    }

    #[test]
    fn embedding_gradients_match_central_differences() {
        let bytes = std::fs::read(TINY).unwrap();
        let encoder = Encoder::load(&bytes, Path::new(TINY), 2, DType::F64).unwrap();
        let encoder = encoder.with_embeddings(&bytes, Path::new(TINY), DType::F64).unwrap();
        let model = Model::new(Trunk::Layers(encoder), 2, 5, DType::F64).unwrap();
        model.head_weight.set(&model.head_weight.as_tensor().affine(20.0, 0.0).unwrap()).unwrap();
        let ids = Tensor::new(&[[1u32, 5, 7, 3, 2], [4, 6, 2, 0, 0]], &Device::Cpu).unwrap();
        let mask = Tensor::new(&[[1f64, 1., 1., 1., 1.], [1., 1., 1., 0., 0.]], &Device::Cpu).unwrap();
        let t = targets(&[1, 0], 2, &[1.0, 1.0], DType::F64).unwrap();
        let grads = loss(&model, &ids, &mask, &t).backward().unwrap();
        let named = model.trunk.named_vars();
        assert_eq!(named.iter().filter(|(n, _)| n.starts_with("embeddings.")).count(), 5);
        for (name, var) in named.iter().filter(|(n, _)| n.starts_with("embeddings.")) {
            // The word table: the rows of the ids fed (the rest have no gradient) and one other.
            let elements: Vec<usize> = if name == "embeddings.word" {
                [1usize, 5, 7, 3, 2, 4, 6, 0, 9]
                    .iter()
                    .flat_map(|r| (0..16).step_by(5).map(move |c| r * 16 + c))
                    .collect()
            } else {
                (0..var.as_tensor().elem_count()).step_by(3).collect()
            };
            let analytic = grads.get(var.as_tensor()).expect("a gradient");
            check_gradient(var, analytic, &elements, || scalar(&loss(&model, &ids, &mask, &t)).unwrap());
        }
    }

    #[test]
    fn one_step_changes_every_trained_tensor() {
        let (model, x, mask, t) = tiny(1);
        // The key bias adds q.b to every key's score of a query: softmax ignores it, so its
        // gradient is zero and it never moves (as in any BERT); every other tensor must.
        let key_bias = model.trunk.named_vars().iter().position(|(n, _)| n.ends_with("key.bias")).unwrap();
        assert_one_step_moves(&model, &x, &mask, &t, Some(key_bias));
        let (model, x, mask, t) = tiny_blocks(5);
        assert_one_step_moves(&model, &x, &mask, &t, None);
    }

    /// One AdamW step moves every trained tensor but `still`, whose gradient must be zero.
    fn assert_one_step_moves(model: &Model, x: &Tensor, mask: &Tensor, t: &Tensor, still: Option<usize>) {
        let before: Vec<Tensor> = model.vars().iter().map(|v| v.as_tensor().copy().unwrap()).collect();
        let mut optim = Optim::new(graft_core::config::finetune::Optimizer::Adamw, 0.9, 0.01);
        for v in model.vars() {
            optim.add(v, 1e-3).unwrap();
        }
        let grads = loss(model, x, mask, t).backward().unwrap();
        optim.step(&grads, 1.0, 1.0).unwrap();
        for (i, (var, old)) in model.vars().iter().zip(&before).enumerate() {
            if Some(i) == still {
                let g = grads.get(var.as_tensor()).unwrap().abs().unwrap().max(0).unwrap();
                assert!(scalar(&g).unwrap() < 1e-12, "the key bias's gradient is zero");
                continue;
            }
            let moved = scalar(
                &(var.as_tensor() - old)
                    .unwrap()
                    .abs()
                    .unwrap()
                    .max_keepdim(0)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .max(0)
                    .unwrap(),
            )
            .unwrap();
            // Adam's first step moves every element with a gradient by about the rate.
            assert!(moved > 1e-4, "a {:?} tensor moved by {moved}", old.dims());
        }
    }

    const TINY_EFFNET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/tiny-images/effnet.onnx");

    /// The tiny EfficientNet-Lite's top `k` MBConv blocks and head convolution with a 3-class
    /// head, in float64; a batch of two random feature maps at the cut (6 x 6 below the
    /// strided block 11, 3 x 3 above it).
    fn tiny_blocks(k: usize) -> (Model, Tensor, Tensor, Tensor) {
        let bytes = std::fs::read(TINY_EFFNET).unwrap();
        let top = ConvTop::load(&bytes, Path::new(TINY_EFFNET), k, DType::F64).unwrap();
        let (channels, positions) = (top.channels, if k >= 5 { 36 } else { 9 });
        let model = Model::new(Trunk::Blocks(top), 3, 7, DType::F64).unwrap();
        model.head_weight.set(&model.head_weight.as_tensor().affine(20.0, 0.0).unwrap()).unwrap();
        let mut rng = SplitMix64::new(5);
        let x: Vec<f64> = (0..2 * positions * channels).map(|_| normal(&mut rng)).collect();
        let x = Tensor::from_vec(x, (2, positions, channels), &Device::Cpu).unwrap();
        let mask = Tensor::ones((2, positions), DType::F64, &Device::Cpu).unwrap();
        let t = targets(&[2, 0], 3, &[1.0, 1.5, 0.5], DType::F64).unwrap();
        (model, x, mask, t)
    }

    #[test]
    fn mbconv_gradients_match_central_differences() {
        // Five blocks: expansions, 5 x 5 and 3 x 3 depthwise filters, skips, and block 11's
        // stride 2 with its uneven "same" padding.
        let (model, x, mask, t) = tiny_blocks(5);
        let Trunk::Blocks(top) = &model.trunk else { unreachable!() };
        assert_eq!((top.depth, top.blocks.len(), top.blocks.iter().filter(|b| b.skip).count()), (16, 5, 3));
        assert_eq!(top.blocks[0].convs[1].stride, 2);
        assert_eq!(top.blocks[0].convs[1].pads, [1, 1, 2, 2]);
        let grads = loss(&model, &x, &mask, &t).backward().unwrap();
        let vars = model.vars();
        assert_eq!(vars.len(), 5 * 3 * 2 + 2 + 2);
        for var in vars {
            let analytic = grads.get(var.as_tensor()).expect("a gradient");
            let step = if var.as_tensor().elem_count() > 64 { 5 } else { 1 };
            let elements: Vec<usize> = (0..var.as_tensor().elem_count()).step_by(step).collect();
            check_gradient(var, analytic, &elements, || scalar(&loss(&model, &x, &mask, &t)).unwrap());
        }
    }

    #[test]
    fn mbconv_blocks_beyond_the_depth_or_a_bert_are_refused() {
        let bytes = std::fs::read(TINY_EFFNET).unwrap();
        let err = ConvTop::load(&bytes, Path::new(TINY_EFFNET), 17, DType::F32).unwrap_err().to_string();
        assert!(err.contains("`--layers 17`") && err.contains("has 16 MBConv blocks"), "{err}");
        let bert = std::fs::read(TINY).unwrap();
        let err = ConvTop::load(&bert, Path::new(TINY), 1, DType::F32).unwrap_err().to_string();
        assert!(err.contains("no graph output is a Flatten of a GlobalAveragePool"), "{err}");
    }
}
