//! The token vectors at the cut (`graft-backbone --tokens`), read and checked: one output of
//! the model the trained layers come from, `[tokens, dim]` float16 per row, a known label.

use std::path::Path;

use arrow::array::Array;
use graft_core::artifact::{ArtifactReader, Provenance, Task};
use graft_core::columns::VectorValues;
use half::f16;

use crate::error::{Error, Result};

/// One row's `[tokens, dim]` vectors, as stored: float16 takes half the memory.
#[derive(Debug, Clone)]
pub enum Row {
    Half(Vec<f16>),
    Single(Vec<f32>),
}

impl Row {
    pub fn len(&self) -> usize {
        match self {
            Row::Half(v) => v.len(),
            Row::Single(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies the values into `dst` (of the same length) as float32.
    pub fn fill(&self, dst: &mut [f32]) {
        match self {
            Row::Half(v) => dst.iter_mut().zip(v).for_each(|(d, x)| *d = x.to_f32()),
            Row::Single(v) => dst.copy_from_slice(v),
        }
    }
}

/// One split of the cut.
#[derive(Debug, Clone)]
pub struct Split {
    pub ids: Vec<String>,
    /// Class ids (classification).
    pub classes: Vec<usize>,
    /// Target values (regression).
    pub targets: Vec<f64>,
    pub rows: Vec<Row>,
}

impl Split {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Tokens of row `i`.
    pub fn tokens(&self, i: usize, dim: usize) -> usize {
        self.rows[i].len() / dim
    }
}

/// Reads `dir/{split}.arrow`; `None` when the split is absent. `expected` is the cut tensor,
/// the model's blake3 and the hidden size; a file made otherwise is refused, naming what
/// differs.
pub fn read(dir: &Path, split: &str, expected: (&str, &str, usize)) -> Result<Option<(Provenance, Split)>> {
    let path = dir.join(format!("{split}.arrow"));
    if !path.exists() {
        return Ok(None);
    }
    let (tensor, model_blake3, dim) = expected;
    let cut_error = |message: String| Error::Cut { path: path.clone(), message };
    let mut reader = ArtifactReader::open(&path)?;
    let prov = reader.provenance().clone();
    let backbone = prov.backbone.clone().ok_or_else(|| cut_error("it records no backbone".into()))?;
    if backbone.pooling != graft_core::columns::TOKENS_POOLING {
        return Err(cut_error(format!(
            "it holds `{}`-pooled features; make it with `graft-backbone --tokens --outputs {tensor}`",
            backbone.pooling
        )));
    }
    if backbone.outputs != [tensor] {
        return Err(cut_error(format!(
            "it holds {:?}; the layers trained read `{tensor}` (`graft-backbone --tokens --outputs {tensor}`)",
            backbone.outputs
        )));
    }
    if backbone.model_blake3 != model_blake3 || backbone.dim != dim {
        return Err(cut_error(format!(
            "it was made by model blake3 {} (width {}), not the spec's model blake3 {} (width {dim})",
            &backbone.model_blake3[..12.min(backbone.model_blake3.len())],
            backbone.dim,
            &model_blake3[..12.min(model_blake3.len())]
        )));
    }
    if let Some(shard) = prov.shard {
        return Err(cut_error(format!("it is shard {shard}; merge the shards first (`graft-backbone merge`)")));
    }
    let mut out = Split { ids: Vec::new(), classes: Vec::new(), targets: Vec::new(), rows: Vec::new() };
    while let Some(batch) = reader.next_batch()? {
        let view = graft_core::columns::TokenVectors::of(&batch, &path)?;
        for i in 0..view.len() {
            let row = out.ids.len();
            let id = if view.ids.is_null(i) { String::new() } else { view.ids.value(i).to_owned() };
            let bad = |message: String| Error::BadRow { path: path.clone(), row, id: id.clone(), message };
            if view.labels.is_null(i) {
                return Err(bad("has no label".into()));
            }
            let label = view.labels.value(i);
            if prov.task == Task::Regression {
                match label.trim().parse::<f64>() {
                    Ok(t) if t.is_finite() => out.targets.push(t),
                    _ => return Err(bad(format!("regression target `{label}` is not a finite number"))),
                }
            } else {
                let class = prov
                    .labels
                    .iter()
                    .position(|l| l == label)
                    .ok_or_else(|| bad(format!("label `{label}` is not in the label set {:?}", prov.labels)))?;
                out.classes.push(class);
            }
            let vectors = match view.row(i) {
                VectorValues::Half(v) => {
                    if let Some(j) = v.iter().position(|x| !x.is_finite()) {
                        return Err(bad(format!("value {j} is {}", v[j])));
                    }
                    Row::Half(v.to_vec())
                }
                VectorValues::Single(v) => {
                    if let Some(j) = v.iter().position(|x| !x.is_finite()) {
                        return Err(bad(format!("value {j} is {}", v[j])));
                    }
                    Row::Single(v.to_vec())
                }
            };
            if vectors.is_empty() || vectors.len() % dim != 0 {
                return Err(bad(format!("has {} values, not a positive multiple of the width {dim}", vectors.len())));
            }
            out.ids.push(id);
            out.rows.push(vectors);
        }
    }
    if out.len() as u64 != prov.rows {
        return Err(cut_error(format!("it holds {} rows, its metadata says {}", out.len(), prov.rows)));
    }
    Ok(Some((prov, out)))
}
