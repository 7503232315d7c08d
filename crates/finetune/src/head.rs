//! The trained head on disk: `head.safetensors` (weights, float64) and `head.json`
//! (architecture, labels, feature space, training record), both written atomically.

use std::collections::BTreeMap;
use std::path::Path;

use graft_core::artifact::BackboneId;
use ndarray::{Array1, Array2, ArrayView2};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::logreg::Linear;

pub const FORMAT: &str = "graft-head/1";
pub const WEIGHTS_FILE: &str = "head.safetensors";
pub const INFO_FILE: &str = "head.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadInfo {
    pub format: String,
    pub graft_version: String,
    pub architecture: Architecture,
    /// Class names; class i is row i of the weights.
    pub labels: Vec<String>,
    /// The feature space the head was trained in; other features are refused.
    pub backbone: BackboneId,
    /// Features are standardised with the stored `mean` and `scale` before the head.
    pub standardize: bool,
    pub training: Training,
    /// blake3 of the training inputs, by split.
    pub inputs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Architecture {
    pub kind: String,
    pub classes: usize,
    pub dim: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Training {
    pub config: Config,
    pub train_rows: usize,
    pub chosen_c: f64,
    /// Every C tried, with its validation accuracy when there is a val split.
    pub selection: Vec<Candidate>,
    /// Objective after each L-BFGS iteration of the kept fit.
    pub history: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Candidate {
    pub c: f64,
    pub val_accuracy: Option<f64>,
    pub iterations: usize,
    pub converged: bool,
    pub loss: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    pub info: HeadInfo,
    pub model: Linear,
    /// Standardisation, when `info.standardize`.
    pub mean: Option<Array1<f64>>,
    pub scale: Option<Array1<f64>>,
}

impl Head {
    /// Class probabilities `[n, classes]` of raw features `x`.
    pub fn predict_proba(&self, x: ArrayView2<'_, f64>) -> Array2<f64> {
        match (&self.mean, &self.scale) {
            (Some(m), Some(s)) => self.model.predict_proba(((&x - m) / s).view()),
            _ => self.model.predict_proba(x),
        }
    }

    /// Serialises both files; the caller commits them.
    pub fn to_files(&self, dir: &Path) -> Result<Vec<graft_core::atomic::Pending>> {
        let mut tensors: Vec<(&str, Vec<usize>, Vec<u8>)> = vec![
            ("bias", vec![self.model.bias.len()], le_bytes(self.model.bias.iter())),
            ("weight", self.model.weight.shape().to_vec(), le_bytes(self.model.weight.iter())),
        ];
        if let (Some(m), Some(s)) = (&self.mean, &self.scale) {
            tensors.push(("mean", vec![m.len()], le_bytes(m.iter())));
            tensors.push(("scale", vec![s.len()], le_bytes(s.iter())));
        }
        let views: Vec<(&str, TensorView<'_>)> = tensors
            .iter()
            .map(|(n, shape, bytes)| {
                (*n, TensorView::new(Dtype::F64, shape.clone(), bytes).expect("shape matches bytes"))
            })
            .collect();
        let weights_path = dir.join(WEIGHTS_FILE);
        let bytes = safetensors::serialize(views, None)
            .map_err(|source| Error::HeadWeights { path: weights_path.clone(), source })?;
        let mut json =
            serde_json::to_vec_pretty(&self.info).map_err(|source| graft_core::Error::Json { what: "head", source })?;
        json.push(b'\n');
        Ok(vec![
            graft_core::atomic::pending_bytes(&weights_path, &bytes)?,
            graft_core::atomic::pending_bytes(&dir.join(INFO_FILE), &json)?,
        ])
    }

    pub fn load(dir: &Path) -> Result<Self> {
        let info_path = dir.join(INFO_FILE);
        let read = |path: &Path| {
            fs_err::read(path).map_err(|source| graft_core::Error::Read { path: path.to_owned(), source })
        };
        let info: HeadInfo = serde_json::from_slice(&read(&info_path)?)
            .map_err(|source| Error::HeadJson { path: info_path.clone(), source })?;
        let bad = |message: String| Error::BadHead { path: dir.to_owned(), message };
        if info.format != FORMAT {
            return Err(bad(format!("format `{}`, expected `{FORMAT}`", info.format)));
        }
        let weights_path = dir.join(WEIGHTS_FILE);
        let bytes = read(&weights_path)?;
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|source| Error::HeadWeights { path: weights_path.clone(), source })?;
        let (k, d) = (info.architecture.classes, info.architecture.dim);
        let get = |name: &str, shape: &[usize]| -> Result<Vec<f64>> {
            let t = st.tensor(name).map_err(|source| Error::HeadWeights { path: weights_path.clone(), source })?;
            if t.dtype() != Dtype::F64 || t.shape() != shape {
                return Err(bad(format!("tensor `{name}` is {:?} {:?}, expected F64 {shape:?}", t.dtype(), t.shape())));
            }
            Ok(t.data().chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))).collect())
        };
        let weight = Array2::from_shape_vec((k, d), get("weight", &[k, d])?).expect("checked shape");
        let bias = Array1::from(get("bias", &[k])?);
        let (mean, scale) = if info.standardize {
            (Some(Array1::from(get("mean", &[d])?)), Some(Array1::from(get("scale", &[d])?)))
        } else {
            (None, None)
        };
        Ok(Self { info, model: Linear { weight, bias }, mean, scale })
    }
}

fn le_bytes<'a>(values: impl Iterator<Item = &'a f64>) -> Vec<u8> {
    values.flat_map(|v| v.to_le_bytes()).collect()
}
