//! Writing and reading a head folder: both files and the manifest that binds them.

use std::path::Path;

use ndarray::{Array1, Array2};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use super::model::{Dense, Linear, Mlp, Model};
use super::{Architecture, FORMAT, Head, HeadInfo, INFO_FILE, MANIFEST_KIND, WEIGHTS_FILE, timing};
use crate::atomic::Pending;
use crate::manifest::Manifest;
use crate::{Error, Result};

impl Head {
    /// Serialises the weights, `head.json`, `timing.json` (when timed) and the manifest into
    /// `dir`, each with its name in the folder; the caller commits them (the manifest last, as
    /// listed). A head with a [`defect`](Head::defect) is refused.
    pub fn to_files(&self, dir: &Path) -> Result<Vec<(&'static str, Pending)>> {
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
                    let bias = le32(layer.bias.iter());
                    tensors.push((format!("layers.{i}.bias"), Dtype::F32, vec![layer.bias.len()], bias));
                    let shape = layer.weight.shape().to_vec();
                    tensors.push((format!("layers.{i}.weight"), Dtype::F32, shape, le32(layer.weight.iter())));
                }
            }
        }
        if let Some((m, s)) = &self.scaling {
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
        let mut json = serde_json::to_vec_pretty(&self.info).map_err(|source| Error::Json { what: "head", source })?;
        json.push(b'\n');
        let mut files = vec![(WEIGHTS_FILE, bytes), (INFO_FILE, json)];
        if let Some(t) = &self.timing {
            let mut json = serde_json::to_vec_pretty(t).map_err(|source| Error::Json { what: "timing", source })?;
            json.push(b'\n');
            files.push((timing::FILE, json));
        }
        let mut manifest = Manifest::new(MANIFEST_KIND);
        let mut pending = Vec::new();
        for (name, bytes) in &files {
            manifest.add_bytes(name, bytes);
            pending.push((*name, crate::atomic::pending_bytes(&dir.join(name), bytes)?));
        }
        pending.push((crate::manifest::FILE, manifest.pending(dir)?));
        Ok(pending)
    }

    /// Reads a head folder; each file must be the one its manifest lists.
    pub fn load(dir: &Path) -> Result<Self> {
        let manifest = Manifest::read(dir, MANIFEST_KIND)?;
        let read = |name: &str| -> Result<Vec<u8>> {
            let path = dir.join(name);
            let bytes = fs_err::read(&path).map_err(|source| Error::Read { path, source })?;
            manifest.check_bytes(dir, name, &bytes)?;
            Ok(bytes)
        };
        let info_path = dir.join(INFO_FILE);
        let info: HeadInfo = serde_json::from_slice(&read(INFO_FILE)?)
            .map_err(|source| Error::HeadJson { path: info_path.clone(), source })?;
        let bad = |message: String| Error::BadHead { path: dir.to_owned(), message };
        if !super::READABLE_FORMATS.contains(&info.format.as_str()) {
            return Err(bad(format!("format `{}`, expected `{FORMAT}`: train it again", info.format)));
        }
        let weights_path = dir.join(WEIGHTS_FILE);
        let bytes = read(WEIGHTS_FILE)?;
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
        let (k, d) = (info.architecture.outputs(), info.architecture.dim());
        let model = match &info.architecture {
            Architecture::LogisticRegression { .. } | Architecture::Ridge { .. } => {
                let weight =
                    Array2::from_shape_vec((k, d), f64s(&get("weight", Dtype::F64, &[k, d])?)).expect("checked");
                let bias = Array1::from(f64s(&get("bias", Dtype::F64, &[k])?));
                Model::Linear(Linear { weight, bias })
            }
            Architecture::Mlp { hidden, activation, .. } => {
                let dims: Vec<usize> = std::iter::once(d).chain(hidden.iter().copied()).chain([k]).collect();
                let mut layers = Vec::new();
                for (i, w) in dims.windows(2).enumerate() {
                    let weight = get(&format!("layers.{i}.weight"), Dtype::F32, &[w[0], w[1]])?;
                    let weight = Array2::from_shape_vec((w[0], w[1]), f32s(&weight)).expect("checked");
                    let bias = Array1::from(f32s(&get(&format!("layers.{i}.bias"), Dtype::F32, &[w[1]])?));
                    layers.push(Dense { weight, bias });
                }
                Model::Mlp(Mlp { layers, activation: *activation })
            }
        };
        let scaling = if info.standardize {
            let mean = Array1::from(f64s(&get("mean", Dtype::F64, &[d])?));
            Some((mean, Array1::from(f64s(&get("scale", Dtype::F64, &[d])?))))
        } else {
            None
        };
        let timing = if manifest.files.contains_key(timing::FILE) {
            let bytes = read(timing::FILE)?;
            let path = dir.join(timing::FILE);
            Some(serde_json::from_slice(&bytes).map_err(|source| Error::HeadJson { path, source })?)
        } else {
            None
        };
        let head = Self { info, model, scaling, timing };
        match head.defect() {
            Some(message) => Err(bad(message)),
            None => Ok(head),
        }
    }
}

fn f64s(b: &[u8]) -> Vec<f64> {
    b.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))).collect()
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect()
}

fn le64<'a>(values: impl Iterator<Item = &'a f64>) -> Vec<u8> {
    values.flat_map(|v| v.to_le_bytes()).collect()
}

fn le32<'a>(values: impl Iterator<Item = &'a f32>) -> Vec<u8> {
    values.flat_map(|v| v.to_le_bytes()).collect()
}
