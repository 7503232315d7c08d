//! A trained head on disk and in use: `head.safetensors` (weights), `head.json` (what the
//! head is, what it was trained on and how) and the folder's `manifest.json`. Applying a
//! head needs only this module, so evaluation and prediction need no trainer.

mod files;
pub mod model;
pub mod timing;

use std::collections::BTreeMap;

use ndarray::{Array1, Array2, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use crate::artifact::{BackboneId, Task};
use crate::config::finetune::{Activation, HeadConfig, HeadKind, LayersTraining};
use model::Model;

pub const FORMAT: &str = "graft-head/5";
/// Earlier formats read as they are (`/4` added the `layers` fit).
pub const READABLE_FORMATS: [&str; 3] = ["graft-head/3", "graft-head/4", FORMAT];
pub const WEIGHTS_FILE: &str = "head.safetensors";
pub const INFO_FILE: &str = "head.json";
/// The manifest's `kind` of a head folder.
pub const MANIFEST_KIND: &str = "head";

/// What names the head in folder `dir` in the provenance of what it made (an evaluation's
/// `inputs.head`): the blake3 of its weights.
pub fn weights_blake3(dir: &std::path::Path) -> crate::Result<String> {
    crate::hash::file(&dir.join(WEIGHTS_FILE))
}

/// `head.json`.
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
    /// blake3 of the `graft-preprocess` splits those features were made from, by split, as
    /// the features record them (empty for a head trained on a cut, or of format 4 or
    /// earlier): a bundle checks its `--data` against them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
}

/// The head's layers: what the weights file must hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Architecture {
    /// `weight [outputs, dim]`, `bias [outputs]` (float64).
    LogisticRegression { outputs: usize, dim: usize },
    /// `weight [1, dim]`, `bias [1]` (float64).
    Ridge { dim: usize },
    /// `layers.I.weight [in, out]`, `layers.I.bias [out]` (float32).
    Mlp { outputs: usize, dim: usize, hidden: Vec<usize>, activation: Activation },
}

impl Architecture {
    pub fn kind(&self) -> HeadKind {
        match self {
            Architecture::LogisticRegression { .. } => HeadKind::LogisticRegression,
            Architecture::Ridge { .. } => HeadKind::Ridge,
            Architecture::Mlp { .. } => HeadKind::Mlp,
        }
    }

    /// Classes, or 1 for regression.
    pub fn outputs(&self) -> usize {
        match self {
            Architecture::LogisticRegression { outputs, .. } | Architecture::Mlp { outputs, .. } => *outputs,
            Architecture::Ridge { .. } => 1,
        }
    }

    pub fn dim(&self) -> usize {
        match self {
            Architecture::LogisticRegression { dim, .. }
            | Architecture::Ridge { dim }
            | Architecture::Mlp { dim, .. } => *dim,
        }
    }
}

/// How the head was trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Training {
    pub config: HeadConfig,
    /// Train rows used (after `train_fraction` / `per_class`).
    pub train_rows: usize,
    /// Weight of each class's rows in the loss (classification).
    pub class_weights: Vec<f64>,
    /// Val cross-entropy before and after temperature scaling.
    pub calibration: Option<Calibration>,
    pub fit: Fit,
}

impl Training {
    /// What was chosen from data, and on which split: `C by 5-fold CV on train`, `C on
    /// val`, `alpha on val`, `epoch on val` (early stopping), `temperature on val`. Empty when
    /// nothing was (one C, no val).
    pub fn selections(&self) -> Vec<Selection> {
        let mut out = Vec::new();
        match &self.fit {
            Fit::LogisticRegression { selection, .. } if selection.len() > 1 => {
                let folds = selection.iter().map(|c| c.fold_scores.len()).max().unwrap_or(0);
                out.push(match folds {
                    0 => Selection { what: "C".into(), split: "val".into() },
                    k => Selection { what: "C".into(), split: format!("train ({k}-fold CV)") },
                });
            }
            Fit::Ridge { alpha_selection, .. } if alpha_selection.len() > 1 => {
                out.push(Selection { what: "alpha".into(), split: "val".into() });
            }
            Fit::Layers { epochs, .. } if epochs.iter().any(|e| e.val_loss.is_some()) => {
                out.push(Selection { what: "epoch".into(), split: "val".into() });
            }
            Fit::Mlp { epochs, .. } if epochs.iter().any(|e| e.val_loss.is_some()) => {
                let split = match self.config.early_stopping_fraction {
                    Some(f) => format!("train ({:.0}% held out)", 100.0 * f),
                    None => "val".into(),
                };
                out.push(Selection { what: "epoch".into(), split });
            }
            _ => {}
        }
        if self.calibration.is_some() {
            out.push(Selection { what: "temperature".into(), split: "val".into() });
        }
        out
    }
}

/// One choice made from data: what (`C`, `epoch`...) and the split whose scores chose it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selection {
    pub what: String,
    pub split: String,
}

/// What fitting recorded, by kind of head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fit {
    /// The C kept, every C tried, and the objective after each L-BFGS iteration of the kept fit.
    LogisticRegression { chosen_c: f64, selection: Vec<Candidate>, objective: Vec<f64> },
    /// The alpha kept and the val MSE of every alpha tried.
    Ridge { chosen_alpha: f64, alpha_selection: Vec<(f64, Option<f64>)> },
    /// One record per epoch, and the 1-based epoch whose weights were kept.
    Mlp { epochs: Vec<Epoch>, best_epoch: usize },
    /// The top layers of the backbone trained with a linear head (`graft-finetune layers`):
    /// how, from which cut of which model, one record per epoch and the epoch kept.
    Layers { config: LayersTraining, cut: String, base_model_blake3: String, epochs: Vec<Epoch>, best_epoch: usize },
}

impl Fit {
    /// The per-epoch history of a head trained by epochs (MLP, tuned layers); empty otherwise.
    pub fn epochs(&self) -> &[Epoch] {
        match self {
            Fit::Mlp { epochs, .. } | Fit::Layers { epochs, .. } => epochs,
            Fit::LogisticRegression { .. } | Fit::Ridge { .. } => &[],
        }
    }
}

/// One C tried for logistic regression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Candidate {
    pub c: f64,
    /// Accuracy on val, or the mean over cross-validation folds.
    pub score: Option<f64>,
    /// Per-fold accuracies with `folds`.
    pub fold_scores: Vec<f64>,
    /// The fit on the whole train split (every C when choosing on val, the kept C with folds).
    pub fit: Option<Lbfgs>,
}

/// How an L-BFGS fit ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lbfgs {
    pub iterations: usize,
    pub converged: bool,
    /// Final objective.
    pub loss: f64,
}

/// One row of an MLP's or tuned layers' training history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Epoch {
    pub epoch: usize,
    pub train_loss: f64,
    pub val_loss: Option<f64>,
    pub val_accuracy: Option<f64>,
    pub lr: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    pub val_loss_before: f64,
    pub val_loss_after: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    pub info: HeadInfo,
    pub model: Model,
    /// Standardisation, when `info.standardize`: `(mean, scale)`.
    pub scaling: Option<(Array1<f64>, Array1<f64>)>,
    /// Seconds per epoch (`timing.json`), for heads trained by epochs and timed.
    pub timing: Option<timing::Timing>,
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

impl Head {
    /// Logits `[n, outputs]` of raw features `x`, divided by the temperature.
    pub fn logits(&self, x: ArrayView2<'_, f32>) -> Array2<f64> {
        let mut z = match &self.scaling {
            Some((m, s)) => self.model.logits(standardized(x, m, s).view()),
            None => self.model.logits(x),
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
        for mut row in z.axis_iter_mut(Axis(0)) {
            crate::numeric::softmax(row.as_slice_mut().expect("contiguous rows"));
        }
        z
    }

    /// What makes the head unusable: a non-finite or non-positive temperature or scale, a
    /// non-finite weight, an architecture the weights do not match. Checked before writing
    /// and after reading.
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
        if info.standardize != self.scaling.is_some() {
            return Some("`standardize` disagrees with the presence of `mean` and `scale`".into());
        }
        if let Some(message) = self.timing.as_ref().and_then(|t| t.defect(info.training.fit.epochs().len())) {
            return Some(message);
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
        if let Some((mean, scale)) = &self.scaling {
            tensors.push(("mean".into(), finite(mean.iter().copied())));
            tensors.push(("scale".into(), scale.iter().all(|&v| v.is_finite() && v > 0.0)));
        }
        let (name, _) = tensors.into_iter().find(|(_, ok)| !ok)?;
        Some(format!("tensor `{name}` holds a NaN, infinite or (for `scale`) non-positive value"))
    }
}
