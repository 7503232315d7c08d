//! The trained head on disk: `head.safetensors` (weights) and `head.json` (architecture,
//! labels, feature space, training record), both written atomically.

use std::collections::BTreeMap;
use std::path::Path;

use graft_core::artifact::{BackboneId, Task};
use graft_core::manifest::Manifest;
use ndarray::{Array1, Array2, ArrayView2};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::logreg::{Linear, softmax_rows};
use crate::mlp::{Activation, Dense, Epoch, Mlp};
use crate::{HeadConfig, HeadKind};

pub const FORMAT: &str = "graft-head/2";
pub const WEIGHTS_FILE: &str = "head.safetensors";
pub const INFO_FILE: &str = "head.json";
/// The manifest's `kind` of a head folder.
pub const MANIFEST_KIND: &str = "head";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadInfo {
    pub format: String,
    pub graft_version: String,
    pub architecture: Architecture,
    pub task: Task,
    /// Class names; class i is output i of the head. Empty for regression.
    pub labels: Vec<String>,
    /// The feature space the head was trained in; other features are refused.
    pub backbone: BackboneId,
    /// Features are standardised with the stored `mean` and `scale` before the head.
    pub standardize: bool,
    /// Logits are divided by this before the softmax (fitted on val with `--calibrate`).
    pub temperature: f64,
    /// Regression: the output is `target_mean + target_scale * head(x)`.
    pub target_mean: f64,
    pub target_scale: f64,
    pub training: Training,
    /// blake3 of the training inputs, by split.
    pub inputs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Architecture {
    pub kind: HeadKind,
    /// Classes, or 1 for regression.
    pub outputs: usize,
    pub dim: usize,
    /// Hidden layer widths (MLP).
    pub hidden: Vec<usize>,
    pub activation: Option<Activation>,
    pub parameters: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Training {
    pub config: HeadConfig,
    /// Train rows used (after `train_fraction` / `per_class`).
    pub train_rows: usize,
    /// Weight of each class's rows in the loss.
    pub class_weights: Vec<f64>,
    /// Ridge: the alpha kept and the val MSE of every alpha tried.
    pub chosen_alpha: Option<f64>,
    pub alpha_selection: Vec<(f64, Option<f64>)>,
    /// Logistic regression: the C kept and every C tried.
    pub chosen_c: Option<f64>,
    pub selection: Vec<Candidate>,
    /// Logistic regression: objective after each L-BFGS iteration of the kept fit.
    pub objective: Vec<f64>,
    /// MLP: one record per epoch, and the epoch whose weights were kept.
    pub epochs: Vec<Epoch>,
    pub best_epoch: Option<usize>,
    /// Val cross-entropy before and after temperature scaling.
    pub calibration: Option<Calibration>,
}

impl Training {
    /// An empty record of training `config` on `train_rows` rows.
    pub fn new(config: &HeadConfig, train_rows: usize) -> Self {
        Self {
            config: config.clone(),
            train_rows,
            class_weights: Vec::new(),
            chosen_alpha: None,
            alpha_selection: Vec::new(),
            chosen_c: None,
            selection: Vec::new(),
            objective: Vec::new(),
            epochs: Vec::new(),
            best_epoch: None,
            calibration: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Candidate {
    pub c: f64,
    /// Accuracy on val, or the mean over cross-validation folds.
    pub score: Option<f64>,
    /// Per-fold accuracies with `folds`.
    pub fold_scores: Vec<f64>,
    /// The fit on the whole train split (every C when choosing on val, the kept C with folds).
    pub fit: Option<Fit>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fit {
    pub iterations: usize,
    pub converged: bool,
    /// Final objective.
    pub loss: f64,
}

impl Fit {
    pub fn of(outcome: &crate::lbfgs::Outcome) -> Self {
        Self { iterations: outcome.iterations, converged: outcome.converged, loss: outcome.value }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    pub val_loss_before: f64,
    pub val_loss_after: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Model {
    Linear(Linear),
    Mlp(Mlp),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    pub info: HeadInfo,
    pub model: Model,
    /// Standardisation, when `info.standardize`.
    pub mean: Option<Array1<f64>>,
    pub scale: Option<Array1<f64>>,
}

/// `(x - mean) / scale`, computed in float64 and stored as float32 as the features are.
pub fn standardized(x: ArrayView2<'_, f32>, mean: &Array1<f64>, scale: &Array1<f64>) -> Array2<f32> {
    let mut out = x.to_owned();
    for mut row in out.rows_mut() {
        for ((v, m), s) in row.iter_mut().zip(mean).zip(scale) {
            *v = ((f64::from(*v) - m) / s) as f32;
        }
    }
    out
}

impl Model {
    /// Logits `[n, classes]` of (already standardised) features.
    pub fn logits(&self, x: ArrayView2<'_, f32>) -> Array2<f64> {
        match self {
            Model::Linear(m) => m.logits(x),
            Model::Mlp(m) => m.logits(x).mapv(f64::from),
        }
    }
}

impl Head {
    /// Logits `[n, classes]` of raw features `x`, divided by the temperature.
    pub fn logits(&self, x: ArrayView2<'_, f32>) -> Array2<f64> {
        let mut z = match (&self.mean, &self.scale) {
            (Some(m), Some(s)) => self.model.logits(standardized(x, m, s).view()),
            _ => self.model.logits(x),
        };
        if self.info.temperature != 1.0 {
            z.mapv_inplace(|v| v / self.info.temperature);
        }
        z
    }

    /// Regression predictions of raw features `x`.
    pub fn predict_values(&self, x: ArrayView2<'_, f32>) -> Vec<f64> {
        self.logits(x).column(0).iter().map(|v| self.info.target_mean + self.info.target_scale * v).collect()
    }

    /// Class probabilities `[n, classes]` of raw features `x`.
    pub fn predict_proba(&self, x: ArrayView2<'_, f32>) -> Array2<f64> {
        let mut z = self.logits(x);
        softmax_rows(&mut z);
        z
    }

    /// What makes the head unusable: a non-finite or non-positive temperature or scale, a
    /// non-finite weight. Checked before writing and after reading.
    pub fn defect(&self) -> Option<String> {
        let info = &self.info;
        if !(info.temperature.is_finite() && info.temperature > 0.0) {
            return Some(format!("temperature {} is not a finite positive number", info.temperature));
        }
        if !(info.target_mean.is_finite() && info.target_scale.is_finite() && info.target_scale > 0.0) {
            return Some(format!(
                "target mean {} and scale {} must be finite, the scale positive",
                info.target_mean, info.target_scale
            ));
        }
        fn finite(mut v: impl Iterator<Item = f64>) -> bool {
            v.all(f64::is_finite)
        }
        let mut tensors: Vec<(String, bool)> = match &self.model {
            Model::Linear(m) => vec![
                ("weight".into(), finite(m.weight.iter().copied())),
                ("bias".into(), finite(m.bias.iter().copied())),
            ],
            Model::Mlp(m) => (m.layers.iter().enumerate())
                .map(|(i, l)| (format!("layers.{i}"), finite(l.weight.iter().chain(&l.bias).map(|&v| f64::from(v)))))
                .collect(),
        };
        if let (Some(mean), Some(scale)) = (&self.mean, &self.scale) {
            tensors.push(("mean".into(), finite(mean.iter().copied())));
            tensors.push(("scale".into(), scale.iter().all(|&v| v.is_finite() && v > 0.0)));
        }
        let (name, _) = tensors.into_iter().find(|(_, ok)| !ok)?;
        Some(format!("tensor `{name}` holds a NaN, infinite or (for `scale`) non-positive value"))
    }

    /// Serialises both files; the caller commits them.
    pub fn to_files(&self, dir: &Path) -> Result<Vec<graft_core::atomic::Pending>> {
        if let Some(message) = self.defect() {
            return Err(Error::BadHead { path: dir.to_owned(), message });
        }
        let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
        match &self.model {
            Model::Linear(m) => {
                tensors.push(("bias".into(), Dtype::F64, vec![m.bias.len()], le64(m.bias.iter())));
                tensors.push(("weight".into(), Dtype::F64, m.weight.shape().to_vec(), le64(m.weight.iter())));
            }
            Model::Mlp(m) => {
                for (i, layer) in m.layers.iter().enumerate() {
                    tensors.push((
                        format!("layers.{i}.bias"),
                        Dtype::F32,
                        vec![layer.bias.len()],
                        le32(layer.bias.iter()),
                    ));
                    let shape = layer.weight.shape().to_vec();
                    tensors.push((format!("layers.{i}.weight"), Dtype::F32, shape, le32(layer.weight.iter())));
                }
            }
        }
        if let (Some(m), Some(s)) = (&self.mean, &self.scale) {
            tensors.push(("mean".into(), Dtype::F64, vec![m.len()], le64(m.iter())));
            tensors.push(("scale".into(), Dtype::F64, vec![s.len()], le64(s.iter())));
        }
        let views: Vec<(&str, TensorView<'_>)> = tensors
            .iter()
            .map(|(n, dtype, shape, bytes)| {
                (n.as_str(), TensorView::new(*dtype, shape.clone(), bytes).expect("shape matches bytes"))
            })
            .collect();
        let weights_path = dir.join(WEIGHTS_FILE);
        let bytes = safetensors::serialize(views, None)
            .map_err(|source| Error::HeadWeights { path: weights_path.clone(), source })?;
        let mut json =
            serde_json::to_vec_pretty(&self.info).map_err(|source| graft_core::Error::Json { what: "head", source })?;
        json.push(b'\n');
        let mut manifest = Manifest::new(MANIFEST_KIND);
        manifest.add_bytes(WEIGHTS_FILE, &bytes);
        manifest.add_bytes(INFO_FILE, &json);
        Ok(vec![
            graft_core::atomic::pending_bytes(&weights_path, &bytes)?,
            graft_core::atomic::pending_bytes(&dir.join(INFO_FILE), &json)?,
            manifest.pending(dir)?,
        ])
    }

    pub fn load(dir: &Path) -> Result<Self> {
        let info_path = dir.join(INFO_FILE);
        let read = |path: &Path| {
            fs_err::read(path).map_err(|source| graft_core::Error::Read { path: path.to_owned(), source })
        };
        let manifest = Manifest::read(dir, MANIFEST_KIND)?;
        let info_bytes = read(&info_path)?;
        manifest.check_bytes(dir, INFO_FILE, &info_bytes)?;
        let info: HeadInfo = serde_json::from_slice(&info_bytes)
            .map_err(|source| Error::HeadJson { path: info_path.clone(), source })?;
        let bad = |message: String| Error::BadHead { path: dir.to_owned(), message };
        if info.format != FORMAT {
            return Err(bad(format!("format `{}`, expected `{FORMAT}`", info.format)));
        }
        let weights_path = dir.join(WEIGHTS_FILE);
        let bytes = read(&weights_path)?;
        manifest.check_bytes(dir, WEIGHTS_FILE, &bytes)?;
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|source| Error::HeadWeights { path: weights_path.clone(), source })?;
        let get = |name: &str, dtype: Dtype, shape: &[usize]| -> Result<Vec<u8>> {
            let t = st.tensor(name).map_err(|source| Error::HeadWeights { path: weights_path.clone(), source })?;
            if t.dtype() != dtype || t.shape() != shape {
                return Err(bad(format!(
                    "tensor `{name}` is {:?} {:?}, expected {dtype:?} {shape:?}",
                    t.dtype(),
                    t.shape()
                )));
            }
            Ok(t.data().to_vec())
        };
        let f64s = |b: Vec<u8>| -> Vec<f64> {
            b.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))).collect()
        };
        let f32s = |b: Vec<u8>| -> Vec<f32> {
            b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect()
        };
        let arch = &info.architecture;
        let (k, d) = (arch.outputs, arch.dim);
        let model = match arch.kind {
            HeadKind::LogisticRegression | HeadKind::Ridge => {
                let weight =
                    Array2::from_shape_vec((k, d), f64s(get("weight", Dtype::F64, &[k, d])?)).expect("checked");
                let bias = Array1::from(f64s(get("bias", Dtype::F64, &[k])?));
                Model::Linear(Linear { weight, bias })
            }
            HeadKind::Mlp => {
                let activation = arch.activation.ok_or_else(|| bad("an MLP head needs `activation`".into()))?;
                let dims: Vec<usize> = std::iter::once(d).chain(arch.hidden.iter().copied()).chain([k]).collect();
                let mut layers = Vec::new();
                for (i, w) in dims.windows(2).enumerate() {
                    let weight = get(&format!("layers.{i}.weight"), Dtype::F32, &[w[0], w[1]])?;
                    let weight = Array2::from_shape_vec((w[0], w[1]), f32s(weight)).expect("checked");
                    let bias = Array1::from(f32s(get(&format!("layers.{i}.bias"), Dtype::F32, &[w[1]])?));
                    layers.push(Dense { weight, bias });
                }
                Model::Mlp(Mlp { layers, activation })
            }
        };
        let (mean, scale) = if info.standardize {
            (
                Some(Array1::from(f64s(get("mean", Dtype::F64, &[d])?))),
                Some(Array1::from(f64s(get("scale", Dtype::F64, &[d])?))),
            )
        } else {
            (None, None)
        };
        let head = Self { info, model, mean, scale };
        match head.defect() {
            Some(message) => Err(bad(message)),
            None => Ok(head),
        }
    }
}

fn le64<'a>(values: impl Iterator<Item = &'a f64>) -> Vec<u8> {
    values.flat_map(|v| v.to_le_bytes()).collect()
}

fn le32<'a>(values: impl Iterator<Item = &'a f32>) -> Vec<u8> {
    values.flat_map(|v| v.to_le_bytes()).collect()
}
