//! The token vectors at the cut (`graft-backbone --tokens`), read and checked: one output of
//! the model the trained layers come from, `[tokens, dim]` float16 per row, a known label.

use std::path::Path;

use arrow::array::{Array, StringArray};
use graft_core::artifact::{ArtifactReader, Provenance, Task};
use graft_core::columns::VectorValues;
use half::f16;

use crate::error::{Error, Result};

/// One row's `[tokens, dim]` vectors, as stored (float16 takes half the memory), or its
/// token ids when the embeddings are trained too.
#[derive(Debug, Clone)]
pub enum Row {
    Half(Vec<f16>),
    Single(Vec<f32>),
    Ids(Vec<u32>),
}

impl Row {
    /// Values held: tokens x width for vectors, tokens for ids.
    pub fn len(&self) -> usize {
        match self {
            Row::Half(v) => v.len(),
            Row::Single(v) => v.len(),
            Row::Ids(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies the vectors into `dst` (of the same length) as float32; ids are not vectors.
    pub fn fill(&self, dst: &mut [f32]) {
        match self {
            Row::Half(v) => dst.iter_mut().zip(v).for_each(|(d, x)| *d = x.to_f32()),
            Row::Single(v) => dst.copy_from_slice(v),
            Row::Ids(_) => unreachable!("token ids are batched as ids"),
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
        match &self.rows[i] {
            Row::Ids(ids) => ids.len(),
            row => row.len() / dim,
        }
    }

    /// Whether the rows are token ids (the embeddings are trained).
    pub fn ids(&self) -> bool {
        matches!(self.rows.first(), Some(Row::Ids(_)))
    }
}

/// What the cut must be.
#[derive(Debug, Clone, Copy)]
pub enum Expected<'a> {
    /// Token vectors of `tensor` by the model of this blake3, `dim` wide.
    Vectors { tensor: &'a str, model_blake3: &'a str, dim: usize },
    /// Token ids made with the tokenizer of this blake3, below `vocab` (the word table's rows).
    Ids { tokenizer_blake3: &'a str, vocab: usize },
}

/// Reads `dir/{split}.arrow`; `None` when the split is absent. A file other than `expected`
/// is refused, naming what differs.
pub fn read(dir: &Path, split: &str, expected: Expected<'_>) -> Result<Option<(Provenance, Split)>> {
    let path = dir.join(format!("{split}.arrow"));
    if !path.exists() {
        return Ok(None);
    }
    let (tensor, model_blake3, dim) = match expected {
        Expected::Vectors { tensor, model_blake3, dim } => (tensor, model_blake3, dim),
        Expected::Ids { tokenizer_blake3, vocab } => return read_ids(&path, tokenizer_blake3, vocab).map(Some),
    };
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
            push_row(&mut out, &prov, &path, (view.ids, view.labels, i), vectors(view.row(i), dim))?;
        }
    }
    if out.len() as u64 != prov.rows {
        return Err(cut_error(format!("it holds {} rows, its metadata says {}", out.len(), prov.rows)));
    }
    Ok(Some((prov, out)))
}

/// A row's token vectors, or why they are unusable: a value that is not finite, or not a
/// positive multiple of the width.
fn vectors(values: VectorValues<'_>, dim: usize) -> std::result::Result<Row, String> {
    fn finite<T: Copy + Into<f32>>(v: &[T]) -> std::result::Result<(), String> {
        match v.iter().position(|x| !(*x).into().is_finite()) {
            Some(j) => Err(format!("value {j} is {}", v[j].into())),
            None => Ok(()),
        }
    }
    let row = match values {
        VectorValues::Half(v) => finite(v).map(|()| Row::Half(v.to_vec()))?,
        VectorValues::Single(v) => finite(v).map(|()| Row::Single(v.to_vec()))?,
    };
    if row.is_empty() || row.len() % dim != 0 {
        return Err(format!("has {} values, not a positive multiple of the width {dim}", row.len()));
    }
    Ok(row)
}

/// Adds row `i` of a batch (its id and label columns) to `out` with `values`, or refuses it
/// naming the file, row and id: no label, an unusable label, unusable values.
fn push_row(
    out: &mut Split,
    prov: &Provenance,
    path: &Path,
    (ids, labels, i): (&StringArray, &StringArray, usize),
    values: std::result::Result<Row, String>,
) -> Result<()> {
    let row = out.ids.len();
    let id = if ids.is_null(i) { String::new() } else { ids.value(i).to_owned() };
    let bad = |message: String| Error::BadRow { path: path.to_owned(), row, id: id.clone(), message };
    if labels.is_null(i) {
        return Err(bad("has no label".into()));
    }
    push_label(out, prov, labels.value(i)).map_err(bad)?;
    out.rows.push(values.map_err(bad)?);
    out.ids.push(id);
    Ok(())
}

/// Adds a row's class or target to `out`; the message says why a label is unusable.
fn push_label(out: &mut Split, prov: &Provenance, label: &str) -> std::result::Result<(), String> {
    if prov.task == Task::Regression {
        match label.trim().parse::<f64>() {
            Ok(t) if t.is_finite() => out.targets.push(t),
            _ => return Err(format!("regression target `{label}` is not a finite number")),
        }
    } else {
        let class = prov
            .labels
            .iter()
            .position(|l| l == label)
            .ok_or_else(|| format!("label `{label}` is not in the label set {:?}", prov.labels))?;
        out.classes.push(class);
    }
    Ok(())
}

/// A `graft-preprocess` split: token ids made with the spec's tokenizer.
fn read_ids(path: &Path, tokenizer_blake3: &str, vocab: usize) -> Result<(Provenance, Split)> {
    let cut_error = |message: String| Error::Cut { path: path.to_owned(), message };
    let mut reader = ArtifactReader::open(path)?;
    let prov = reader.provenance().clone();
    let found = prov.tokenizer.as_ref().map(|t| t.blake3.clone());
    if found.as_deref() != Some(tokenizer_blake3) {
        return Err(cut_error(format!(
            "training the embeddings reads token ids made with the spec's tokenizer (blake3 {}); this file has {}",
            &tokenizer_blake3[..12.min(tokenizer_blake3.len())],
            found.map_or("no token ids".into(), |b| format!("ids of tokenizer blake3 {}", &b[..12.min(b.len())]))
        )));
    }
    let mut out = Split { ids: Vec::new(), classes: Vec::new(), targets: Vec::new(), rows: Vec::new() };
    while let Some(batch) = reader.next_batch()? {
        let view = graft_core::columns::Tokens::of(&batch, path)?;
        for i in 0..view.len() {
            let tokens = view.row(i);
            let values = if tokens.is_empty() {
                Err("has no tokens".to_owned())
            } else if let Some(t) = tokens.iter().find(|&&t| t < 0 || t as usize >= vocab) {
                Err(format!("token id {t} is outside the model's {vocab} word embeddings"))
            } else {
                Ok(Row::Ids(tokens.iter().map(|&t| t as u32).collect()))
            };
            push_row(&mut out, &prov, path, (view.ids, view.labels, i), values)?;
        }
    }
    if out.len() as u64 != prov.rows {
        return Err(cut_error(format!("it holds {} rows, its metadata says {}", out.len(), prov.rows)));
    }
    Ok((prov, out))
}
