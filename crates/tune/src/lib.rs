//! `graft-finetune layers`: the top K transformer layers of a BERT-family ONNX backbone (or
//! the top K MBConv blocks and the head convolution of an EfficientNet-Lite) trained together
//! with a linear head on the vectors cached at the cut below them (`graft-backbone --tokens`:
//! token vectors, or a feature map's positions), so each epoch costs only the trained part;
//! the trained weights go back into a copy of the ONNX model, so scoring runs in ONNX Runtime
//! alone.

mod bias_act;
mod cpu_op;
pub mod cut;
mod depthwise;
pub mod encoder;
mod error;
pub mod mbconv;
pub mod optim;
pub mod train;
pub mod trunk;

use std::collections::BTreeMap;
use std::path::PathBuf;

use candle_core::DType;
use graft_core::artifact::{BackboneId, SPLITS, Task};
use graft_core::config::finetune::{Activation, ClassWeight, HeadConfig, HeadKind, LayersConfig};
use graft_core::head::model::{Dense, Mlp, Model as HeadModel};
use graft_core::head::{self, Architecture, Fit, Head, HeadInfo, Training};
use graft_core::spec::{BackboneSpec, Kind, Pooling};

pub use error::{Error, Result};
pub use trunk::Trunk;

/// The output folder's files.
pub const MODEL_FILE: &str = "model.onnx";
pub const SPEC_FILE: &str = "spec.yaml";
pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const HEAD_DIR: &str = "head";
/// The manifest's `kind` of the output folder (checked when its spec is loaded).
pub use graft_core::spec::TUNED_KIND as MANIFEST_KIND;
/// The tuned model's features: its last layer, mean-pooled, as the head was trained on.
pub const OUTPUT: &str = "last_hidden_state";

/// What a run kept, for the binary to report.
#[derive(Debug)]
pub struct Summary {
    pub head: Head,
    pub train_rows: usize,
    pub seconds: Vec<f64>,
    pub out: PathBuf,
}

fn check(cfg: &LayersConfig) -> Result<()> {
    let t = &cfg.train;
    let bad = |key: &'static str, message: String| Err(Error::BadParam { key, message });
    let at_least = |v: f64, min: f64| v.is_finite() && v >= min;
    if !(at_least(t.lr, 0.0) && t.lr > 0.0 && at_least(t.layer_lr, 0.0)) {
        return bad("lr", format!("`lr` {} must be positive, `layer_lr` {} not negative", t.lr, t.layer_lr));
    }
    if !(0.0..1.0).contains(&t.dropout) {
        return bad("dropout", format!("must be in [0, 1), got {}", t.dropout));
    }
    if !(0.0..=1.0).contains(&t.warmup) {
        return bad("warmup", format!("must be a fraction of the steps in [0, 1], got {}", t.warmup));
    }
    if t.epochs == 0 || t.batch_size == 0 {
        return bad("epochs", "`epochs` and `batch_size` must be at least 1".into());
    }
    if !(at_least(t.clip_norm, 0.0) && at_least(t.weight_decay, 0.0)) {
        return bad("clip_norm", "`clip_norm` and `weight_decay` must be finite and not negative".into());
    }
    Ok(())
}

/// Trains and writes `cfg.out`. `on_epoch` sees each epoch's record and seconds.
pub fn run(cfg: &LayersConfig, on_epoch: impl FnMut(&head::Epoch, f64) + Send) -> Result<Summary> {
    graft_core::atomic::check_out_is_no_input(&cfg.out, &[("--cut", &cfg.cut)])?;
    check(cfg)?;
    let pool = rayon::ThreadPoolBuilder::new().num_threads(cfg.train.threads).build().map_err(|e| Error::BadParam {
        key: "threads",
        message: format!("cannot start {} threads: {e}", cfg.train.threads),
    })?;
    pool.install(|| run_here(cfg, on_epoch))
}

fn run_here(cfg: &LayersConfig, on_epoch: impl FnMut(&head::Epoch, f64)) -> Result<Summary> {
    let spec = BackboneSpec::load(&cfg.spec)?;
    let bytes =
        fs_err::read(&spec.model).map_err(|source| graft_core::Error::Read { path: spec.model.clone(), source })?;
    let model_blake3 = graft_core::hash::bytes(&bytes);
    let dtype = DType::F32;
    let k = cfg.train.layers;
    let (trunk, tokenizer_blake3) = match spec.kind {
        Kind::Text => {
            let mut encoder = encoder::Encoder::load(&bytes, &spec.model, k, dtype)?;
            if cfg.train.embeddings {
                if k != encoder.depth {
                    return Err(Error::BadParam {
                        key: "embeddings",
                        message: format!("trains every layer above them: give `--layers {}`", encoder.depth),
                    });
                }
                encoder = encoder.with_embeddings(&bytes, &spec.model, dtype)?;
            }
            (Trunk::Layers(encoder), Some(graft_core::hash::file(&spec.text().tokenizer)?))
        }
        Kind::Image => {
            if cfg.train.embeddings {
                return Err(Error::BadParam {
                    key: "embeddings",
                    message: format!("`{}` is an image backbone; embeddings are a text encoder's", cfg.spec.display()),
                });
            }
            (Trunk::Blocks(mbconv::ConvTop::load(&bytes, &spec.model, k, dtype)?), None)
        }
    };
    let cut_tensor = trunk.cut();
    let expected = match (&trunk, &tokenizer_blake3) {
        (Trunk::Layers(e), Some(tokenizer_blake3)) if e.embeddings.is_some() => {
            cut::Expected::Ids { tokenizer_blake3, vocab: e.vocab().expect("trained embeddings have a word table") }
        }
        _ => cut::Expected::Vectors { tensor: &cut_tensor, model_blake3: &model_blake3, dim: trunk.input_width() },
    };
    let (prov, train_split) = cut::read(&cfg.cut, SPLITS[0], expected)?
        .ok_or_else(|| Error::Cut { path: cfg.cut.join("train.arrow"), message: "there is no train split".into() })?;
    let val = cut::read(&cfg.cut, SPLITS[1], expected)?;
    if let Some((p, _)) = &val
        && p.labels != prov.labels
    {
        return Err(Error::Cut {
            path: cfg.cut.join("val.arrow"),
            message: format!("labels {:?} differ from train's {:?}", p.labels, prov.labels),
        });
    }
    if let Trunk::Blocks(_) = trunk {
        for (split, rows) in [(SPLITS[0], Some(&train_split)), (SPLITS[1], val.as_ref().map(|v| &v.1))] {
            if let Some(rows) = rows {
                cut::check_square(rows, trunk.input_width(), &cfg.cut.join(format!("{split}.arrow")))?;
            }
        }
    }
    let objective = match prov.task {
        Task::Classification => train::Objective::Classes {
            weights: cfg
                .train
                .class_weight
                .weights(&prov.labels, &train_split.classes)
                .map_err(|message| Error::BadParam { key: "class_weight", message })?,
        },
        Task::Regression => {
            if cfg.train.class_weight != ClassWeight::None {
                return Err(Error::BadParam { key: "class_weight", message: "the cut's task is regression".into() });
            }
            let n = train_split.targets.len() as f64;
            let mean = train_split.targets.iter().sum::<f64>() / n;
            let var = train_split.targets.iter().map(|t| (t - mean).powi(2)).sum::<f64>() / n;
            train::Objective::Value { mean, scale: if var > 0.0 { var.sqrt() } else { 1.0 } }
        }
    };
    tracing::info!(
        "training {} above `{cut_tensor}` and a head of {} outputs on {} rows",
        trunk.describe(),
        objective.outputs(),
        train_split.len()
    );
    let model = train::Model::new(trunk, objective.outputs(), cfg.train.seed, dtype)?;
    let val_split = val.as_ref().map(|(_, s)| s);
    let trained = train::train(&model, &cfg.train, &train_split, val_split, &objective, dtype, on_epoch)?;

    let tuned = graft_core::onnx::with_float_initializers(&bytes, &model.trunk.initializers()?).ok_or_else(|| {
        Error::NotRecognised {
            path: spec.model.clone(),
            what: "its trained weights could not be written back".into(),
            expected: model.trunk.expected(),
        }
    })?;
    let mut inputs = BTreeMap::new();
    for split in [SPLITS[0], SPLITS[1]] {
        let path = cfg.cut.join(format!("{split}.arrow"));
        if path.exists() {
            inputs.insert(split.to_owned(), graft_core::hash::file(&path)?);
        }
    }
    let name = tuned_name(&spec, cfg.train.layers);
    let head =
        head_of(&model, cfg, &name, &prov, &tuned, &trained, train_split.len(), &objective, inputs, &model_blake3)?;
    write(cfg, &spec, &model.trunk, &tuned, &head)?;
    Ok(Summary { head, train_rows: train_split.len(), seconds: trained.seconds, out: cfg.out.clone() })
}

/// The head in graft's head format: a one-layer MLP (linear) on the tuned model's
/// mean-pooled last layer.
#[allow(clippy::too_many_arguments)]
fn head_of(
    model: &train::Model,
    cfg: &LayersConfig,
    name: &str,
    prov: &graft_core::artifact::Provenance,
    tuned: &[u8],
    trained: &train::Trained,
    train_rows: usize,
    objective: &train::Objective,
    inputs: BTreeMap<String, String>,
    base_model_blake3: &str,
) -> Result<Head> {
    let hidden = model.trunk.output_width();
    let outputs = objective.outputs();
    let (class_weights, target_mean, target_scale) = match objective {
        train::Objective::Classes { weights } => (weights.clone(), 0.0, 1.0),
        train::Objective::Value { mean, scale } => (Vec::new(), *mean, *scale),
    };
    let w = model.head_weight.as_tensor().to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let b = model.head_bias.as_tensor().to_dtype(DType::F32)?.to_vec1::<f32>()?;
    let weight = ndarray::Array2::from_shape_vec((hidden, outputs), w).expect("head weight is [hidden, outputs]");
    let layer = Dense { weight, bias: ndarray::Array1::from(b) };
    let t = &cfg.train;
    let config = HeadConfig {
        head: HeadKind::Mlp,
        hidden: Vec::new(),
        dropout: t.dropout,
        optimizer: t.optimizer,
        lr: t.lr,
        momentum: t.momentum,
        weight_decay: t.weight_decay,
        epochs: t.epochs,
        batch_size: t.batch_size,
        clip_norm: (t.clip_norm > 0.0).then_some(t.clip_norm),
        patience: t.patience,
        class_weight: t.class_weight.clone(),
        seed: t.seed,
        ..HeadConfig::default()
    };
    let backbone = BackboneId {
        spec: name.to_owned(),
        model_blake3: graft_core::hash::bytes(tuned),
        outputs: vec![output_of(&model.trunk)],
        combine: None,
        pooling: pooling_of(&model.trunk).as_str().into(),
        normalize: false,
        dim: hidden,
        provider: "cpu".into(),
    };
    let fit = Fit::Layers {
        config: t.clone(),
        cut: model.trunk.cut(),
        base_model_blake3: base_model_blake3.to_owned(),
        epochs: trained.epochs.clone(),
        best_epoch: trained.best_epoch,
    };
    Ok(Head {
        info: HeadInfo {
            format: head::FORMAT.into(),
            graft_version: graft_core::VERSION.into(),
            architecture: Architecture::Mlp { outputs, dim: hidden, hidden: Vec::new(), activation: Activation::Relu },
            task: prov.task,
            labels: prov.labels.clone(),
            backbone,
            standardize: false,
            temperature: 1.0,
            target_mean,
            target_scale,
            training: Training { config, train_rows, class_weights, calibration: None, fit },
            inputs,
            data: BTreeMap::new(),
        },
        model: HeadModel::Mlp(Mlp { layers: vec![layer], activation: Activation::Relu }),
        timing: Some(head::timing::Timing::new(rayon::current_num_threads(), trained.seconds.clone())),
        scaling: None,
    })
}

/// The tuned model's features, as the head was trained on them: the last layer's output
/// mean-pooled, or the graph's own pooled features.
fn output_of(trunk: &Trunk) -> String {
    match trunk {
        Trunk::Layers(_) => OUTPUT.into(),
        Trunk::Blocks(c) => c.output.clone(),
    }
}

fn pooling_of(trunk: &Trunk) -> Pooling {
    match trunk {
        Trunk::Layers(_) => Pooling::Mean,
        Trunk::Blocks(_) => Pooling::None,
    }
}

/// The tuned backbone's spec name: the base spec's, with the layers trained.
fn tuned_name(base: &BackboneSpec, layers: usize) -> String {
    format!("{}-top{layers}", base.name)
}

/// Writes the tuned model, its spec and tokenizer (text), the head, and the manifest last.
fn write(cfg: &LayersConfig, base: &BackboneSpec, trunk: &Trunk, tuned: &[u8], head: &Head) -> Result<()> {
    let out = &cfg.out;
    let mut spec = base.clone();
    spec.name = tuned_name(base, cfg.train.layers);
    spec.model = PathBuf::from(MODEL_FILE);
    let mut files: Vec<(&str, Vec<u8>)> = vec![(MODEL_FILE, tuned.to_vec())];
    if let Some(text) = &mut spec.text {
        let tokenizer = &text.tokenizer;
        let bytes =
            fs_err::read(tokenizer).map_err(|source| graft_core::Error::Read { path: tokenizer.clone(), source })?;
        files.push((TOKENIZER_FILE, bytes));
        text.tokenizer = PathBuf::from(TOKENIZER_FILE);
    }
    spec.output = output_of(trunk);
    spec.pooling = pooling_of(trunk);
    spec.normalize = false;
    let (what, pooled) = match trunk {
        Trunk::Layers(_) => ("layers", "its mean-pooled last layer"),
        Trunk::Blocks(_) => ("MBConv blocks and head convolution", "its pooled features"),
    };
    let yaml = format!(
        "# {} with its top {} {what} trained by `graft-finetune layers`; the head in `{HEAD_DIR}/` reads\n\
         # {pooled}.\n{}",
        base.name,
        cfg.train.layers,
        serde_norway::to_string(&spec).map_err(|e| Error::BadParam { key: "spec", message: e.to_string() })?
    );
    files.push((SPEC_FILE, yaml.into_bytes()));
    let mut manifest = graft_core::manifest::Manifest::new(MANIFEST_KIND);
    let mut pending = Vec::new();
    for (name, bytes) in &files {
        manifest.add_bytes(name, bytes);
        pending.push(graft_core::atomic::pending_bytes(&out.join(name), bytes)?);
    }
    pending.extend(head.to_files(&out.join(HEAD_DIR))?.into_iter().map(|(_, p)| p));
    pending.push(manifest.pending(out)?);
    graft_core::atomic::commit_all(pending)?;
    Ok(())
}
