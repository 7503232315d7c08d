//! Features of images. `graft-preprocess` named each image (a path under the split's root,
//! or encoded bytes) with the blake3 of its bytes; here reader threads read each image once,
//! check its blake3, decode, resize, crop, normalise and augment it (rayon), while this
//! thread runs inference on the batch before: a bounded channel of two batches of
//! `--batch-size` images keeps memory flat. Batches go to the spec's image input as
//! `[batch, 3, S, S]` (or channels last) and the chosen outputs are pooled (`gap` for feature
//! maps, `none` for pooled vectors), or with `--tokens` one output's feature map is written
//! whole, a vector per spatial position (the cut for `graft-finetune layers`).

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use graft_core::artifact::{ArtifactReader, ArtifactWriter, BackboneId, ImageSource, Provenance, REJECTS};
use graft_core::atomic::Pending;
use graft_core::columns::{ImageRef, ImageRefs};
use graft_core::config::backbone::TokensDtype;
use graft_core::progress::Progress;
use graft_core::spec::{BackboneSpec, ImageSpec};
use graft_core::spill::SpillFile;
use ort::session::{HasSelectedOutputs, OutputSelector, RunOptions, Session};
use ort::value::TensorRef;
use rayon::prelude::*;

use crate::embed::{FeatureSpec, combine};
use crate::error::EmbedError;
use crate::error::{Error, Result};
use crate::pool::{normalize_rows, pool_tensor};

pub struct ImageEmbedder {
    session: Session,
    input: String,
    image: ImageSpec,
    features: FeatureSpec,
    run_options: RunOptions<HasSelectedOutputs>,
    pub inference: std::time::Duration,
}

impl std::fmt::Debug for ImageEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageEmbedder").field("input", &self.input).field("features", &self.features).finish()
    }
}

impl ImageEmbedder {
    pub fn new(session: Session, spec: &BackboneSpec, features: &FeatureSpec) -> Result<Self> {
        let path = spec.model.as_path();
        let image = spec.image();
        let names = |outlets: &[ort::value::Outlet]| {
            outlets.iter().map(|o| format!("`{}`", o.name())).collect::<Vec<_>>().join(", ")
        };
        if !session.inputs().iter().any(|i| i.name() == image.input) {
            return Err(Error::MissingInput {
                path: path.to_owned(),
                name: image.input.clone(),
                available: names(session.inputs()),
            });
        }
        let mut selector = OutputSelector::no_default();
        for name in &features.outputs {
            selector = selector.with(name.clone());
        }
        let run_options =
            RunOptions::new().map_err(|source| Error::Model { path: path.to_owned(), source })?.with_outputs(selector);
        Ok(Self {
            session,
            input: image.input.clone(),
            image: image.clone(),
            features: features.clone(),
            run_options,
            inference: std::time::Duration::ZERO,
        })
    }

    /// Features `[rows, dim]` of `rows` images laid out `[rows, 3, S, S]` (or `[rows, S, S, 3]`)
    /// in `pixels`.
    pub fn embed(&mut self, pixels: &[f32], rows: usize) -> Result<(Vec<f32>, usize), EmbedError> {
        let s = self.image.size as usize;
        let shape = if self.image.layout == graft_core::spec::Layout::Nhwc { [rows, s, s, 3] } else { [rows, 3, s, s] };
        let inputs = vec![(self.input.as_str(), TensorRef::from_array_view((shape, pixels))?.into_dyn())];
        let started = std::time::Instant::now();
        let outputs = self.session.run_with_options(inputs, &self.run_options)?;
        self.inference += started.elapsed();
        if self.features.tokens.is_some() {
            let name = &self.features.outputs[0];
            let (dims, data) = outputs[name.as_str()].try_extract_tensor::<f32>()?;
            let dims: Vec<i64> = dims.iter().copied().collect();
            return match dims[..] {
                [b, c, h, w] if b as usize == rows => {
                    Ok((channels_last(data, rows, c as usize, (h * w) as usize), c as usize))
                }
                _ => Err(EmbedError::Rank {
                    name: name.clone(),
                    shape: dims,
                    expected: "[batch, channels, height, width]",
                }),
            };
        }
        let mut pooled = Vec::with_capacity(self.features.outputs.len());
        for name in &self.features.outputs {
            let (dims, data) = outputs[name.as_str()].try_extract_tensor::<f32>()?;
            let dims: Vec<i64> = dims.iter().copied().collect();
            pooled.push(
                pool_tensor(&dims, data, rows, None, self.features.pooling).map_err(|expected| EmbedError::Rank {
                    name: name.clone(),
                    shape: dims.clone(),
                    expected,
                })?,
            );
        }
        let (mut features, dim) = combine(pooled, rows, self.features.combine, &self.features.outputs)?;
        if self.features.normalize {
            normalize_rows(&mut features, dim);
        }
        Ok((features, dim))
    }
}

/// Opens the image session.
pub type Open<'a> = Box<dyn FnOnce() -> Result<(ImageEmbedder, String)> + 'a>;

/// The image model, opened by the first split once its reader threads have started, so that
/// building the session overlaps decoding the first images.
pub struct ImageModel<'a> {
    image: ImageSpec,
    tokens: Option<TokensDtype>,
    open: Option<Open<'a>>,
    embedder: Option<ImageEmbedder>,
}

impl std::fmt::Debug for ImageModel<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageModel").field("image", &self.image).field("embedder", &self.embedder).finish()
    }
}

impl<'a> ImageModel<'a> {
    pub fn new(open: Open<'a>, image: &ImageSpec, features: &FeatureSpec) -> Self {
        Self { image: image.clone(), tokens: features.tokens, open: Some(open), embedder: None }
    }

    /// The embedder, opened on first use with its execution provider set in `backbone`.
    fn get(&mut self, backbone: &mut BackboneId) -> Result<&mut ImageEmbedder> {
        if let Some(open) = self.open.take() {
            let (embedder, provider) = open()?;
            backbone.provider = provider;
            self.embedder = Some(embedder);
        }
        Ok(self.embedder.as_mut().expect("opened before, or the error returned then"))
    }

    pub fn inference(&self) -> std::time::Duration {
        self.embedder.as_ref().map_or(std::time::Duration::ZERO, |e| e.inference)
    }
}

/// `[rows, channels, positions]` as `[rows, positions, channels]`: each spatial position of a
/// feature map is one token vector.
fn channels_last(data: &[f32], rows: usize, channels: usize, positions: usize) -> Vec<f32> {
    let mut out = vec![0f32; rows * positions * channels];
    for r in 0..rows {
        let (src, dst) = (&data[r * channels * positions..], &mut out[r * positions * channels..]);
        for c in 0..channels {
            for p in 0..positions {
                dst[p * channels + c] = src[c * positions + p];
            }
        }
    }
    out
}

/// The reason a row to score gets when its image cannot be decoded.
pub const UNDECODABLE: &str = "undecodable image";

/// A row whose image cannot be decoded: its index in its record batch, and why.
type Undecodable = (usize, String);

/// Decoded model input for consecutive rows of one record batch.
struct Chunk {
    pixels: Vec<f32>,
    rows: usize,
    /// Rows whose input is blank because their image cannot be decoded.
    undecodable: Vec<Undecodable>,
    /// The record batch the rows belong to, with the last chunk of each.
    batch: Option<RecordBatch>,
}

/// Writes the model input of rows `rows` of `refs` into `pixels`: rows naming the same image
/// one after another (its augmented views) share one read and one decode. An image that
/// cannot be decoded fails the split, or with `reject` blanks its rows and returns them.
#[allow(clippy::too_many_arguments)]
fn decode_rows(
    refs: &ImageRefs,
    rows: std::ops::Range<usize>,
    source: &ImageSource,
    spec: &ImageSpec,
    split: &Path,
    first_row: u64,
    reject: bool,
    pixels: &mut [f32],
) -> Result<Vec<Undecodable>> {
    let per = 3 * (spec.size * spec.size) as usize;
    let mut groups: Vec<std::ops::Range<usize>> = Vec::new();
    for i in rows {
        match groups.last_mut() {
            Some(g) if refs.blake3(g.start) == refs.blake3(i) && refs.source(g.start) == refs.source(i) => {
                g.end = i + 1
            }
            _ => groups.push(i..i + 1),
        }
    }
    let mut places = Vec::with_capacity(groups.len());
    let mut rest = pixels;
    for g in &groups {
        let (place, after) = rest.split_at_mut(g.len() * per);
        places.push((g.clone(), place));
        rest = after;
    }
    let decoded: Vec<Result<Vec<Undecodable>>> = places
        .into_par_iter()
        .map(|(g, place)| {
            let bad =
                |message: String| Error::BadRow { path: split.to_owned(), row: first_row + g.start as u64, message };
            let (bytes, name) = match refs.source(g.start).map_err(bad)? {
                ImageRef::File(p) => {
                    let file = source.root.join(p);
                    let bytes = graft_imaging::read_file(&file)
                        .map_err(|e| bad(format!("cannot read its image {}: {e}", file.display())))?;
                    (std::borrow::Cow::Owned(bytes), file.display().to_string())
                }
                ImageRef::Bytes(b) => {
                    (std::borrow::Cow::Borrowed(b), format!("the encoded image of `{}`", refs.ids.value(g.start)))
                }
            };
            if blake3::hash(&bytes).to_hex().as_str() != refs.blake3(g.start) {
                return Err(bad(format!(
                    "{name} changed since graft-preprocess read it (blake3 differs); rerun graft-preprocess"
                )));
            }
            let views: Vec<u32> =
                g.clone().map(|i| refs.view(i)).collect::<std::result::Result<_, _>>().map_err(bad)?;
            let decoded = graft_imaging::views_into(
                &bytes,
                spec,
                refs.ids.value(g.start),
                &views,
                source.seed,
                &source.augment,
                place,
            );
            match decoded {
                Ok(()) => Ok(Vec::new()),
                Err(why) if reject => {
                    place.fill(0.0);
                    let why = bad(format!("{name} cannot be decoded: {why}")).to_string();
                    Ok(g.map(|i| (i, why.clone())).collect())
                }
                Err(why) => Err(bad(format!("{name} cannot be decoded: {why}"))),
            }
        })
        .collect();
    Ok(decoded.into_iter().collect::<Result<Vec<_>>>()?.concat())
}

/// The rejects of `rows` of a record batch of rows to score: position, id, reason and the
/// carried columns, as `graft-preprocess rows` writes its own.
fn rejected_rows(batch: &RecordBatch, rows: &[usize], path: &Path) -> Result<RecordBatch> {
    use graft_core::columns::{self, ID, ROW};
    let indices = arrow::array::UInt32Array::from_iter_values(rows.iter().map(|&i| i as u32));
    let arrow_err = |source| graft_core::Error::Arrow { path: path.to_owned(), source };
    let pick = |name: &str| -> Result<ArrayRef> {
        let column = batch.column_by_name(name).ok_or_else(|| graft_core::Error::Column {
            path: path.to_owned(),
            column: name.to_owned(),
            expected: "the column of a rows file".into(),
        })?;
        Ok(arrow::compute::take(column, &indices, None).map_err(arrow_err)?)
    };
    let extra = columns::extra_names(&batch.schema());
    let mut values =
        vec![pick(ROW)?, pick(ID)?, Arc::new(arrow::array::StringArray::from(vec![UNDECODABLE; rows.len()]))];
    for name in &extra {
        values.push(pick(&columns::extra(name))?);
    }
    let schema = Arc::new(arrow::datatypes::Schema::new(columns::rejects_fields(&extra)));
    Ok(RecordBatch::try_new(schema, values).map_err(arrow_err)?)
}

/// What [`embed_split`] wrote: the rows embedded, the pending features, and with `reject`
/// the rows whose image cannot be decoded, spilled to disk as they come (none: no spill).
#[derive(Debug)]
pub struct Embedded {
    pub rows: u64,
    pub pending: Pending,
    pub rejects: Option<SpillFile>,
    pub rejected: u64,
}

/// What a split of images is embedded for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A training, validation or test split: every image must decode.
    Train,
    /// Rows to score, which may be none. With `reject`, a row whose image cannot be decoded
    /// is left out of the features and returned among the rejects.
    Score { reject: bool },
}

/// Embeds one split of images. When rows may be rejected, the features go through a spill
/// file, as their count is known only at the end.
#[allow(clippy::too_many_arguments)]
pub fn embed_split(
    reader: &mut ArtifactReader,
    model: &mut ImageModel,
    batch_size: usize,
    purpose: Purpose,
    dest: &Path,
    prov: &mut Provenance,
    backbone: &mut BackboneId,
    progress: &dyn Progress,
) -> Result<Embedded> {
    let path = reader.path().to_owned();
    let source = reader.provenance().images.clone().ok_or_else(|| Error::BadRow {
        path: path.clone(),
        row: 0,
        message: "its metadata does not say where its images are (an image split from an older graft-preprocess?); rerun graft-preprocess".into(),
    })?;
    let batch_size = batch_size.max(1);
    let reject = purpose == Purpose::Score { reject: true };
    let (spec, tokens) = (&model.image.clone(), model.tokens);
    let shard = prov.shard;
    let mut out: Option<Output> = None;
    let rejects_spill = dest.with_file_name(format!("{REJECTS}.spill"));
    // Rows through the model, and rows written (those less the rejected).
    let (mut done, mut written, mut rejected) = (0u64, 0u64, 0u64);
    let mut rejects: Option<SpillFile> = None;
    std::thread::scope(|scope| -> Result<()> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Chunk>>(2);
        // Inputs the model is done with come back to be written again.
        let (done_tx, done_rx) = std::sync::mpsc::channel::<Vec<f32>>();
        let per = 3 * (spec.size * spec.size) as usize;
        let split = path.clone();
        scope.spawn(move || {
            let mut read = 0u64;
            loop {
                let (batch, first) = match crate::next_in_shard(reader, &mut read, shard) {
                    Ok(Some(b)) => b,
                    Ok(None) => return,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let refs = match ImageRefs::of(&batch, &split) {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = tx.send(Err(e.into()));
                        return;
                    }
                };
                let n = batch.num_rows();
                for start in (0..n).step_by(batch_size) {
                    let end = (start + batch_size).min(n);
                    let mut pixels = done_rx.try_recv().unwrap_or_default();
                    pixels.resize((end - start) * per, 0.0);
                    let chunk = decode_rows(&refs, start..end, &source, spec, &split, first, reject, &mut pixels).map(
                        |undecodable| Chunk {
                            pixels,
                            rows: end - start,
                            undecodable: undecodable.into_iter().map(|(i, why)| (start + i, why)).collect(),
                            batch: (end == n).then(|| batch.clone()),
                        },
                    );
                    let failed = chunk.is_err();
                    if tx.send(chunk).is_err() || failed {
                        return;
                    }
                }
            }
        });
        let embedder = model.get(backbone)?;
        let (mut features, mut undecodable) = (Vec::new(), Vec::new());
        for chunk in rx {
            let chunk = chunk?;
            let (f, d) = embedder.embed(&chunk.pixels, chunk.rows).map_err(|source| Error::Inference {
                path: path.clone(),
                row: done,
                source,
            })?;
            let _ = done_tx.send(chunk.pixels);
            backbone.dim = d;
            features.extend(f);
            undecodable.extend(chunk.undecodable);
            done += chunk.rows as u64;
            progress.advance(chunk.rows as u64);
            let Some(batch) = chunk.batch else { continue };
            let out = match &mut out {
                Some(o) => o,
                None => {
                    let schema = crate::output_schema(prov, backbone, tokens, true)?;
                    out.insert(match reject {
                        true => Output::Spilled(Box::new(SpillFile::create(dest.with_extension("spill"), &schema)?)),
                        false => Output::Direct(Box::new(ArtifactWriter::create(dest, &schema)?)),
                    })
                }
            };
            let refs = ImageRefs::of(&batch, &path)?;
            let values = std::mem::take(&mut features);
            let vectors: ArrayRef = match tokens {
                Some(dtype) => {
                    let width = values.len() / batch.num_rows().max(1);
                    let rows: Vec<Vec<f32>> = values.chunks(width.max(1)).map(<[f32]>::to_vec).collect();
                    Arc::new(graft_core::columns::vector_lists(&rows, dtype == TokensDtype::Float16))
                }
                None => Arc::new(
                    graft_core::columns::float_list(values, backbone.dim)
                        .map_err(|source| graft_core::Error::Arrow { path: dest.to_owned(), source })?,
                ),
            };
            let columns: Vec<ArrayRef> =
                vec![Arc::new(refs.ids.clone()), Arc::new(refs.labels.clone()), Arc::new(refs.views.clone()), vectors];
            let arrow_err = |source| graft_core::Error::Arrow { path: dest.to_owned(), source };
            let mut embedded = RecordBatch::try_new(out.schema(), columns).map_err(arrow_err)?;
            if !undecodable.is_empty() {
                for (_, why) in &undecodable {
                    tracing::warn!("{why}; the row is rejected");
                }
                let bad: Vec<usize> = undecodable.drain(..).map(|(i, _)| i).collect();
                let mut keep = vec![true; batch.num_rows()];
                bad.iter().for_each(|&i| keep[i] = false);
                embedded = arrow::compute::filter_record_batch(&embedded, &keep.into()).map_err(arrow_err)?;
                let these = rejected_rows(&batch, &bad, &path)?;
                let spill = match &mut rejects {
                    Some(s) => s,
                    None => rejects.insert(SpillFile::create(rejects_spill.clone(), &these.schema())?),
                };
                spill.write(&these)?;
                rejected += bad.len() as u64;
            }
            written += embedded.num_rows() as u64;
            out.write(&embedded)?;
        }
        Ok(())
    })?;
    let writer = match out {
        Some(Output::Direct(w)) => *w,
        Some(Output::Spilled(spill)) => {
            prov.rows = written;
            let schema = crate::output_schema(prov, backbone, tokens, true)?;
            let mut writer = ArtifactWriter::create(dest, &schema)?;
            spill.drain(|batch| writer.write_columns(&batch))?;
            writer
        }
        // A shard of a split with fewer rows than shards, or rows to score of which none is
        // left, is empty but valid: its file needs the feature width, which one blank image
        // gives.
        None if shard.is_some() || purpose != Purpose::Train => {
            let s = spec.size as usize;
            let (_, dim) = model.get(backbone)?.embed(&vec![0.0; 3 * s * s], 1).map_err(|source| Error::Inference {
                path: path.clone(),
                row: 0,
                source,
            })?;
            backbone.dim = dim;
            ArtifactWriter::create(dest, &crate::output_schema(prov, backbone, tokens, true)?)?
        }
        None => return Err(Error::BadRow { path: path.clone(), row: 0, message: "the split has no rows".into() }),
    };
    Ok(Embedded { rows: written, pending: writer.finish()?, rejects, rejected })
}

/// Where the features of a split go: straight into the artifact, or first into a spill file.
enum Output {
    Direct(Box<ArtifactWriter>),
    Spilled(Box<SpillFile>),
}

impl Output {
    fn schema(&self) -> arrow::datatypes::SchemaRef {
        match self {
            Output::Direct(w) => w.schema(),
            Output::Spilled(s) => s.schema(),
        }
    }

    fn write(&mut self, batch: &RecordBatch) -> graft_core::Result<()> {
        match self {
            Output::Direct(w) => w.write(batch),
            Output::Spilled(s) => s.write(batch),
        }
    }
}
