//! The token vectors at the cut (`graft-backbone --tokens`), read and checked: one output of
//! the model the trained layers come from, `[tokens, dim]` float16 per row, a known label.
//! The values are spilled to a temporary file (in `TMPDIR`) and read back a batch at a time.

use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use arrow::array::{Array, StringArray};
use graft_core::artifact::{ArtifactReader, Provenance, Task};
use graft_core::columns::VectorValues;
use half::f16;

use crate::error::{Error, Result};

/// How each row's values are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Values {
    /// Token vectors in float16 (half the disk of float32).
    Half,
    /// Token vectors in float32.
    Single,
    /// Token ids, when the embeddings are trained too.
    Ids,
}

impl Values {
    fn width(self) -> usize {
        match self {
            Values::Half => 2,
            Values::Single | Values::Ids => 4,
        }
    }
}

/// The rows' values, spilled to an unnamed temporary file as the split is read and read back
/// a batch at a time, so memory stays flat however large the cut (IMDB's train cut is about
/// 3 GB); the file goes when the split is dropped.
#[derive(Debug)]
pub struct Rows {
    kind: Values,
    /// The cut split the rows came from, for errors.
    source: PathBuf,
    file: std::fs::File,
    /// Row `i`'s values are elements `starts[i]..starts[i + 1]` of the file.
    starts: Vec<u64>,
    writer: Option<BufWriter<std::fs::File>>,
}

impl Rows {
    fn new(kind: Values, source: &Path) -> Result<Self> {
        let spilled = || -> std::io::Result<_> {
            let file = tempfile::tempfile()?;
            let writer = BufWriter::with_capacity(1 << 20, file.try_clone()?);
            Ok((file, writer))
        };
        let (file, writer) = spilled().map_err(|e| spill_error(source, e))?;
        Ok(Self { kind, source: source.to_owned(), file, starts: vec![0], writer: Some(writer) })
    }

    fn push(&mut self, bytes: &[u8]) -> Result<()> {
        let writer = self.writer.as_mut().expect("rows are pushed before they are read");
        writer.write_all(bytes).map_err(|e| spill_error(&self.source, e))?;
        let end = self.starts[self.starts.len() - 1] + (bytes.len() / self.kind.width()) as u64;
        self.starts.push(end);
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        match self.writer.take() {
            Some(mut w) => w.flush().map_err(|e| spill_error(&self.source, e)),
            None => Ok(()),
        }
    }

    pub fn kind(&self) -> Values {
        self.kind
    }

    pub fn len(&self) -> usize {
        self.starts.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Elements of row `i`: tokens x width for vectors, tokens for ids.
    pub fn elements(&self, i: usize) -> usize {
        (self.starts[i + 1] - self.starts[i]) as usize
    }

    fn bytes(&self, i: usize, buf: &mut Vec<u8>) -> Result<()> {
        let width = self.kind.width() as u64;
        buf.resize(self.elements(i) * width as usize, 0);
        self.file.read_exact_at(buf, self.starts[i] * width).map_err(|e| spill_error(&self.source, e))
    }

    /// Row `i`'s vectors as float32 into `dst` (of its length); `buf` is scratch space.
    pub fn fill(&self, i: usize, dst: &mut [f32], buf: &mut Vec<u8>) -> Result<()> {
        self.bytes(i, buf)?;
        match self.kind {
            Values::Half => dst
                .iter_mut()
                .zip(buf.chunks_exact(2))
                .for_each(|(d, b)| *d = f16::from_le_bytes([b[0], b[1]]).to_f32()),
            Values::Single => dst
                .iter_mut()
                .zip(buf.chunks_exact(4))
                .for_each(|(d, b)| *d = f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            Values::Ids => unreachable!("token ids are batched as ids"),
        }
        Ok(())
    }

    /// Row `i`'s token ids into `dst` (of its length); `buf` is scratch space.
    pub fn fill_ids(&self, i: usize, dst: &mut [u32], buf: &mut Vec<u8>) -> Result<()> {
        debug_assert_eq!(self.kind, Values::Ids);
        self.bytes(i, buf)?;
        dst.iter_mut().zip(buf.chunks_exact(4)).for_each(|(d, b)| *d = u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        Ok(())
    }
}

/// One split of the cut.
#[derive(Debug)]
pub struct Split {
    pub ids: Vec<String>,
    /// Class ids (classification).
    pub classes: Vec<usize>,
    /// Target values (regression).
    pub targets: Vec<f64>,
    pub rows: Rows,
}

impl Split {
    fn new(path: &Path, kind: Values) -> Result<Self> {
        Ok(Self { ids: Vec::new(), classes: Vec::new(), targets: Vec::new(), rows: Rows::new(kind, path)? })
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Tokens of row `i`.
    pub fn tokens(&self, i: usize, dim: usize) -> usize {
        match self.rows.kind {
            Values::Ids => self.rows.elements(i),
            _ => self.rows.elements(i) / dim,
        }
    }

    /// Whether the rows are token ids (the embeddings are trained).
    pub fn ids(&self) -> bool {
        self.rows.kind == Values::Ids
    }
}

/// Checks that every row of an image cut holds the same square feature map's positions.
pub fn check_square(split: &Split, dim: usize, path: &Path) -> Result<()> {
    let Some(first) = (0..split.len()).next().map(|i| split.tokens(i, dim)) else { return Ok(()) };
    if crate::mbconv::square_side(first).is_none() {
        return Err(Error::Cut {
            path: path.to_owned(),
            message: format!("row 0 holds {first} vectors, not the positions of a square feature map"),
        });
    }
    match (0..split.len()).find(|&i| split.tokens(i, dim) != first) {
        Some(i) => Err(Error::BadRow {
            path: path.to_owned(),
            row: i,
            id: split.ids[i].clone(),
            message: format!("holds {} positions; row 0 holds {first}", split.tokens(i, dim)),
        }),
        None => Ok(()),
    }
}

/// The spill file could not be made, written or read back.
fn spill_error(path: &Path, source: std::io::Error) -> Error {
    Error::Cut {
        path: path.to_owned(),
        message: format!("its rows could not be spilled to a temporary file: {source}"),
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
    let mut out: Option<Split> = None;
    let mut bytes = Vec::new();
    while let Some(batch) = reader.next_batch()? {
        let view = graft_core::columns::TokenVectors::of(&batch, &path)?;
        if view.is_empty() {
            continue;
        }
        let kind = match view.row(0) {
            VectorValues::Half(_) => Values::Half,
            VectorValues::Single(_) => Values::Single,
        };
        let split = match &mut out {
            Some(split) if split.rows.kind != kind => {
                return Err(cut_error("its record batches mix float16 and float32 token vectors".into()));
            }
            Some(split) => split,
            None => out.insert(Split::new(&path, kind)?),
        };
        for i in 0..view.len() {
            let values = vectors(view.row(i), dim, &mut bytes).map(|()| bytes.as_slice());
            push_row(split, &prov, &path, (view.ids, view.labels, i), values)?;
        }
    }
    let mut out = match out {
        Some(split) => split,
        None => Split::new(&path, Values::Half)?,
    };
    out.rows.finish()?;
    if out.len() as u64 != prov.rows {
        return Err(cut_error(format!("it holds {} rows, its metadata says {}", out.len(), prov.rows)));
    }
    Ok(Some((prov, out)))
}

/// A row's token vectors as little-endian bytes in `out`, or why they are unusable: a value
/// that is not finite, or not a positive multiple of the width.
fn vectors(values: VectorValues<'_>, dim: usize, out: &mut Vec<u8>) -> std::result::Result<(), String> {
    fn finite<T: Copy + Into<f32>>(v: &[T]) -> std::result::Result<(), String> {
        match v.iter().position(|x| !(*x).into().is_finite()) {
            Some(j) => Err(format!("value {j} is {}", v[j].into())),
            None => Ok(()),
        }
    }
    out.clear();
    let len = match values {
        VectorValues::Half(v) => {
            finite(v)?;
            out.extend(v.iter().flat_map(|x| x.to_le_bytes()));
            v.len()
        }
        VectorValues::Single(v) => {
            finite(v)?;
            out.extend(v.iter().flat_map(|x| x.to_le_bytes()));
            v.len()
        }
    };
    if len == 0 || len % dim != 0 {
        return Err(format!("has {len} values, not a positive multiple of the width {dim}"));
    }
    Ok(())
}

/// Adds row `i` of a batch (its id and label columns) to `out` with `values`, or refuses it
/// naming the file, row and id: no label, an unusable label, unusable values.
fn push_row(
    out: &mut Split,
    prov: &Provenance,
    path: &Path,
    (ids, labels, i): (&StringArray, &StringArray, usize),
    values: std::result::Result<&[u8], String>,
) -> Result<()> {
    let row = out.ids.len();
    let id = if ids.is_null(i) { String::new() } else { ids.value(i).to_owned() };
    let bad = |message: String| Error::BadRow { path: path.to_owned(), row, id: id.clone(), message };
    if labels.is_null(i) {
        return Err(bad("has no label".into()));
    }
    push_label(out, prov, labels.value(i)).map_err(bad)?;
    out.rows.push(values.map_err(bad)?)?;
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
    let mut out = Split::new(path, Values::Ids)?;
    let mut bytes = Vec::new();
    while let Some(batch) = reader.next_batch()? {
        let view = graft_core::columns::Tokens::of(&batch, path)?;
        for i in 0..view.len() {
            let tokens = view.row(i);
            let values = if tokens.is_empty() {
                Err("has no tokens".to_owned())
            } else if let Some(t) = tokens.iter().find(|&&t| t < 0 || t as usize >= vocab) {
                Err(format!("token id {t} is outside the model's {vocab} word embeddings"))
            } else {
                bytes.clear();
                bytes.extend(tokens.iter().flat_map(|&t| (t as u32).to_le_bytes()));
                Ok(bytes.as_slice())
            };
            push_row(&mut out, &prov, path, (view.ids, view.labels, i), values)?;
        }
    }
    out.rows.finish()?;
    if out.len() as u64 != prov.rows {
        return Err(cut_error(format!("it holds {} rows, its metadata says {}", out.len(), prov.rows)));
    }
    Ok((prov, out))
}
