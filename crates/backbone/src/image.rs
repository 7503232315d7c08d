//! Features of images. `graft-preprocess` named each image (a path under the split's root,
//! or encoded bytes) with the blake3 of its bytes; here each image is read once, its blake3
//! checked, then decoded, resized, cropped, normalised and augmented, in batches of
//! `--batch-size` images. One session is fed by reader threads (rayon) that decode the next
//! batch while it runs this one; sessions side by side (the CPU) each decode their own
//! batches in their own thread. Either way a bounded channel keeps memory flat. Batches go to
//! the spec's image input as `[batch, 3, S, S]` (or channels last) and the chosen outputs are
//! pooled (`gap` for feature maps, `none` for pooled vectors), or with `--tokens` one output's
//! feature map is written whole, a vector per spatial position (the cut for `graft-finetune
//! layers`).

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

/// Opens a session of the image model with the given intra-op threads: the embedder and the
/// execution provider it runs on.
pub type Open<'a> = Box<dyn Fn(usize) -> Result<(ImageEmbedder, String)> + Sync + 'a>;

/// The image model's sessions, each opened on its first batch, so that building it overlaps
/// decoding the first images. One session is fed by reader threads that decode beside it;
/// several run side by side on the CPU, each decoding its own batches in its thread, so that
/// no operator waits on a core that is decoding (EfficientNet-Lite0 alone on 2 cores: two
/// sessions of one thread 4.8 ms an image, one of two threads 5.2-5.8 ms).
pub struct ImageModel<'a> {
    image: ImageSpec,
    tokens: Option<TokensDtype>,
    opener: Opener<'a>,
    sessions: Vec<Option<ImageEmbedder>>,
}

/// Opens sessions (side by side, each in the thread that runs it), and keeps the execution
/// provider the first one got.
struct Opener<'a> {
    open: Open<'a>,
    threads: Vec<usize>,
    provider: std::sync::OnceLock<String>,
}

impl Opener<'_> {
    /// The execution provider the sessions run on (empty before one is opened).
    fn provider(&self) -> String {
        self.provider.get().cloned().unwrap_or_default()
    }

    /// Session `k`, opened now if it was not before.
    fn get<'s>(&self, k: usize, slot: &'s mut Option<ImageEmbedder>) -> Result<&'s mut ImageEmbedder> {
        if slot.is_none() {
            let (embedder, provider) = (self.open)(self.threads[k])?;
            let _ = self.provider.set(provider);
            *slot = Some(embedder);
        }
        Ok(slot.as_mut().expect("opened above"))
    }
}

impl std::fmt::Debug for ImageModel<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageModel").field("image", &self.image).field("sessions", &self.sessions).finish()
    }
}

impl<'a> ImageModel<'a> {
    /// A model of sessions of `threads` intra-op threads each (one session per entry).
    pub fn new(open: Open<'a>, threads: Vec<usize>, image: &ImageSpec, features: &FeatureSpec) -> Self {
        assert!(!threads.is_empty(), "at least one session");
        Self {
            image: image.clone(),
            tokens: features.tokens,
            sessions: threads.iter().map(|_| None).collect(),
            opener: Opener { open, threads, provider: std::sync::OnceLock::new() },
        }
    }

    /// The first session, opened on first use, its execution provider set in `backbone`.
    fn first(&mut self, backbone: &mut BackboneId) -> Result<&mut ImageEmbedder> {
        let embedder = self.opener.get(0, &mut self.sessions[0])?;
        backbone.provider = self.opener.provider();
        Ok(embedder)
    }

    /// Wall time spent in inference: the busiest session's.
    pub fn inference(&self) -> std::time::Duration {
        self.sessions.iter().flatten().map(|e| e.inference).max().unwrap_or_default()
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

/// Consecutive rows of one record batch, to go through the model as one batch.
struct Work {
    batch: RecordBatch,
    /// The split's row of the record batch's first row.
    first: u64,
    rows: std::ops::Range<usize>,
}

/// The decoded model input of a [`Work`].
struct Chunk {
    pixels: Vec<f32>,
    rows: usize,
    /// The split's row of the chunk's first row.
    first_row: u64,
    /// Rows whose input is blank because their image cannot be decoded.
    undecodable: Vec<Undecodable>,
    /// The record batch the rows belong to, with the last chunk of each.
    batch: Option<RecordBatch>,
}

/// How a split's images are decoded.
#[derive(Clone, Copy)]
struct Decoding<'s> {
    source: &'s ImageSource,
    spec: &'s ImageSpec,
    split: &'s Path,
    /// Whether an image that cannot be decoded blanks its rows (returned) rather than
    /// failing the split.
    reject: bool,
}

impl Decoding<'_> {
    /// The model input of `work`, written into `pixels` (grown as needed); its images
    /// decoded in parallel (rayon) when `parallel`.
    fn decode(self, work: Work, mut pixels: Vec<f32>, parallel: bool) -> Result<Chunk> {
        pixels.resize(work.rows.len() * 3 * (self.spec.size * self.spec.size) as usize, 0.0);
        let refs = ImageRefs::of(&work.batch, self.split)?;
        let undecodable = decode_rows(&refs, work.rows.clone(), self, work.first, parallel, &mut pixels)?;
        let last = work.rows.end == work.batch.num_rows();
        Ok(Chunk {
            pixels,
            rows: work.rows.len(),
            first_row: work.first + work.rows.start as u64,
            undecodable,
            batch: last.then_some(work.batch),
        })
    }
}

/// Writes the model input of rows `rows` of `refs` into `pixels`: rows naming the same image
/// one after another (its augmented views) share one read and one decode. An image that
/// cannot be decoded fails the split, or with `reject` blanks its rows and returns them (by
/// their index in the record batch).
fn decode_rows(
    refs: &ImageRefs,
    rows: std::ops::Range<usize>,
    how: Decoding,
    first_row: u64,
    parallel: bool,
    pixels: &mut [f32],
) -> Result<Vec<Undecodable>> {
    let Decoding { source, spec, split, reject } = how;
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
    let each = |(g, place): (std::ops::Range<usize>, &mut [f32])| -> Result<Vec<Undecodable>> {
        let bad = |message: String| Error::BadRow { path: split.to_owned(), row: first_row + g.start as u64, message };
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
        let views: Vec<u32> = g.clone().map(|i| refs.view(i)).collect::<std::result::Result<_, _>>().map_err(bad)?;
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
    };
    let decoded: Vec<Result<Vec<Undecodable>>> = match parallel {
        true => places.into_par_iter().map(each).collect(),
        false => places.into_iter().map(each).collect(),
    };
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
    let spec = model.image.clone();
    let how = Decoding { source: &source, spec: &spec, split: &path, reject };
    let shard = prov.shard;
    let mut sink = Sink {
        path: &path,
        dest,
        tokens: model.tokens,
        progress,
        reject,
        out: None,
        features: Vec::new(),
        undecodable: Vec::new(),
        written: 0,
        rejects: None,
        rejected: 0,
    };
    std::thread::scope(|scope| -> Result<()> {
        let batching = Batching { rows: batch_size, sessions: model.sessions.len(), expected: prov.rows };
        if batching.sessions == 1 {
            // One session: reader threads decode the next batches while it runs this one; a
            // bounded channel of two batches keeps memory flat, and inputs the model is done
            // with come back to be written again.
            let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Chunk>>(2);
            let (done_tx, done_rx) = std::sync::mpsc::channel::<Vec<f32>>();
            scope.spawn(move || {
                read_work(reader, shard, batching, &mut |work| {
                    let chunk = work.and_then(|w| how.decode(w, done_rx.try_recv().unwrap_or_default(), true));
                    let failed = chunk.is_err();
                    tx.send(chunk).is_ok() && !failed
                })
            });
            let embedder = model.first(backbone)?;
            for chunk in rx {
                let mut chunk = chunk?;
                let (features, dim) = embed(embedder, &chunk, &path)?;
                let _ = done_tx.send(std::mem::take(&mut chunk.pixels));
                sink.absorb(chunk, features, dim, prov, backbone)?;
            }
            return Ok(());
        }
        // Sessions side by side, each decoding its batches in its own thread, taking the next
        // one as it is done; their features are written in the batches' order.
        let ImageModel { opener, sessions, .. } = &mut *model;
        let (work_tx, work_rx) = std::sync::mpsc::sync_channel::<(usize, Result<Work>)>(sessions.len());
        let work_rx = Arc::new(std::sync::Mutex::new(work_rx));
        let (done_tx, done_rx) = std::sync::mpsc::channel::<(usize, Result<(Chunk, Vec<f32>, usize)>)>();
        let opener = &*opener;
        for (k, slot) in sessions.iter_mut().enumerate() {
            let (work_rx, done_tx, path) = (Arc::clone(&work_rx), done_tx.clone(), &path);
            // A session of several threads would leave all but one idle while it decodes.
            let parallel = opener.threads[k] != 1;
            scope.spawn(move || {
                let mut pixels = Vec::new();
                loop {
                    let next = work_rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner).recv();
                    let Ok((seq, work)) = next else { return };
                    let embedded = work.and_then(|w| how.decode(w, std::mem::take(&mut pixels), parallel)).and_then(
                        |mut chunk| {
                            let (features, dim) = embed(opener.get(k, slot)?, &chunk, path)?;
                            pixels = std::mem::take(&mut chunk.pixels);
                            Ok((chunk, features, dim))
                        },
                    );
                    let failed = embedded.is_err();
                    if done_tx.send((seq, embedded)).is_err() || failed {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        scope.spawn(move || {
            let mut seq = 0;
            read_work(reader, shard, batching, &mut |work| {
                seq += 1;
                work_tx.send((seq - 1, work)).is_ok()
            })
        });
        let (mut waiting, mut next) = (std::collections::BTreeMap::new(), 0);
        for (seq, embedded) in done_rx {
            waiting.insert(seq, embedded);
            while let Some(embedded) = waiting.remove(&next) {
                next += 1;
                let (chunk, features, dim) = embedded?;
                backbone.provider = opener.provider();
                sink.absorb(chunk, features, dim, prov, backbone)?;
            }
        }
        Ok(())
    })?;
    let Sink { out, written, rejects, rejected, tokens, .. } = sink;
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
            let (_, dim) = model
                .first(backbone)?
                .embed(&vec![0.0; 3 * s * s], 1)
                .map_err(|source| Error::Inference { path: path.clone(), row: 0, source })?;
            backbone.dim = dim;
            ArtifactWriter::create(dest, &crate::output_schema(prov, backbone, tokens, true)?)?
        }
        None => return Err(Error::BadRow { path: path.clone(), row: 0, message: "the split has no rows".into() }),
    };
    Ok(Embedded { rows: written, pending: writer.finish()?, rejects, rejected })
}

/// How a split's rows are cut into inference batches.
#[derive(Debug, Clone, Copy)]
struct Batching {
    /// The most rows in a batch.
    rows: usize,
    /// Sessions taking batches side by side: the split's last `rows * sessions` rows are cut
    /// smaller and smaller (each batch at most half of what is left for each session), so
    /// that the sessions finish together rather than one running a whole last batch alone.
    sessions: usize,
    /// The rows the split says it has (a guide for the cut only).
    expected: u64,
}

impl Batching {
    /// Rows of the next batch, `left_in_batch` rows being left in the record batch and
    /// `done` rows of the split before.
    fn next(&self, left_in_batch: usize, done: u64) -> usize {
        let left = self.expected.saturating_sub(done) as usize;
        let guided = if self.sessions > 1 { left.div_ceil(2 * self.sessions).max(1) } else { self.rows };
        self.rows.min(guided).min(left_in_batch)
    }
}

/// The split's rows as [`Work`], in order, each given to `send` (which says whether to go
/// on); a failure to read is given too, and ends the reading.
fn read_work(
    reader: &mut ArtifactReader,
    shard: Option<graft_core::artifact::Shard>,
    batching: Batching,
    send: &mut dyn FnMut(Result<Work>) -> bool,
) {
    let (mut read, mut done) = (0u64, 0u64);
    loop {
        let (batch, first) = match crate::next_in_shard(reader, &mut read, shard) {
            Ok(Some(b)) => b,
            Ok(None) => return,
            Err(e) => {
                send(Err(e));
                return;
            }
        };
        let (n, mut start) = (batch.num_rows(), 0);
        while start < n {
            let end = start + batching.next(n - start, done);
            if !send(Ok(Work { batch: batch.clone(), first, rows: start..end })) {
                return;
            }
            done += (end - start) as u64;
            start = end;
        }
    }
}

/// The features of a decoded chunk.
fn embed(embedder: &mut ImageEmbedder, chunk: &Chunk, split: &Path) -> Result<(Vec<f32>, usize)> {
    embedder.embed(&chunk.pixels, chunk.rows).map_err(|source| Error::Inference {
        path: split.to_owned(),
        row: chunk.first_row,
        source,
    })
}

/// The features of a split, taken in order chunk by chunk and written a record batch at a
/// time, less the rows whose image cannot be decoded (spilled as rejects).
struct Sink<'s> {
    path: &'s Path,
    dest: &'s Path,
    tokens: Option<TokensDtype>,
    progress: &'s dyn Progress,
    reject: bool,
    out: Option<Output>,
    /// The features and the undecodable rows of the record batch's chunks so far.
    features: Vec<f32>,
    undecodable: Vec<Undecodable>,
    written: u64,
    rejects: Option<SpillFile>,
    rejected: u64,
}

impl Sink<'_> {
    fn absorb(
        &mut self,
        chunk: Chunk,
        features: Vec<f32>,
        dim: usize,
        prov: &mut Provenance,
        backbone: &mut BackboneId,
    ) -> Result<()> {
        backbone.dim = dim;
        self.features.extend(features);
        self.undecodable.extend(chunk.undecodable);
        self.progress.advance(chunk.rows as u64);
        let Some(batch) = chunk.batch else { return Ok(()) };
        let (path, dest, tokens) = (self.path, self.dest, self.tokens);
        let out = match &mut self.out {
            Some(o) => o,
            None => {
                let schema = crate::output_schema(prov, backbone, tokens, true)?;
                self.out.insert(match self.reject {
                    true => Output::Spilled(Box::new(SpillFile::create(dest.with_extension("spill"), &schema)?)),
                    false => Output::Direct(Box::new(ArtifactWriter::create(dest, &schema)?)),
                })
            }
        };
        let refs = ImageRefs::of(&batch, path)?;
        let values = std::mem::take(&mut self.features);
        let arrow_err = |source| graft_core::Error::Arrow { path: dest.to_owned(), source };
        let vectors: ArrayRef = match tokens {
            Some(dtype) => {
                let width = values.len() / batch.num_rows().max(1);
                let rows: Vec<Vec<f32>> = values.chunks(width.max(1)).map(<[f32]>::to_vec).collect();
                Arc::new(graft_core::columns::vector_lists(&rows, dtype == TokensDtype::Float16))
            }
            None => Arc::new(graft_core::columns::float_list(values, backbone.dim).map_err(arrow_err)?),
        };
        let columns: Vec<ArrayRef> =
            vec![Arc::new(refs.ids.clone()), Arc::new(refs.labels.clone()), Arc::new(refs.views.clone()), vectors];
        let mut embedded = RecordBatch::try_new(out.schema(), columns).map_err(arrow_err)?;
        if !self.undecodable.is_empty() {
            for (_, why) in &self.undecodable {
                tracing::warn!("{why}; the row is rejected");
            }
            let bad: Vec<usize> = self.undecodable.drain(..).map(|(i, _)| i).collect();
            let mut keep = vec![true; batch.num_rows()];
            bad.iter().for_each(|&i| keep[i] = false);
            embedded = arrow::compute::filter_record_batch(&embedded, &keep.into()).map_err(arrow_err)?;
            let these = rejected_rows(&batch, &bad, path)?;
            let spill = match &mut self.rejects {
                Some(s) => s,
                None => self
                    .rejects
                    .insert(SpillFile::create(dest.with_file_name(format!("{REJECTS}.spill")), &these.schema())?),
            };
            spill.write(&these)?;
            self.rejected += bad.len() as u64;
        }
        self.written += embedded.num_rows() as u64;
        out.write(&embedded)?;
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The batch sizes [`read_work`] cuts a split of `rows` rows into (one record batch).
    fn cut(batching: Batching, rows: usize) -> Vec<usize> {
        let (mut sizes, mut done) = (Vec::new(), 0);
        while done < rows {
            sizes.push(batching.next(rows - done, done as u64));
            done += sizes.last().unwrap();
        }
        sizes
    }

    #[test]
    fn side_by_side_the_last_batches_are_cut_smaller() {
        let one = Batching { rows: 8, sessions: 1, expected: 20 };
        assert_eq!(cut(one, 20), [8, 8, 4], "one session: whole batches");
        let two = Batching { rows: 8, sessions: 2, expected: 40 };
        assert_eq!(cut(two, 40), [8, 8, 6, 5, 4, 3, 2, 1, 1, 1, 1]);
        // A record batch's end ends a batch; a split longer than it said is still cut whole.
        assert_eq!(two.next(3, 0), 3);
        assert_eq!(cut(Batching { expected: 10, ..two }, 12), [3, 2, 2, 1, 1, 1, 1, 1]);
    }
}
