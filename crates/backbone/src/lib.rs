//! `graft-backbone`: token ids or images -> pooled features from a pretrained ONNX backbone.

mod batching;
pub mod cache;
pub mod device;
mod embed;
mod error;
pub mod export;
pub use graft_core::onnx as graph;
pub mod image;
pub mod merge;
mod mlflow;
mod pool;
pub mod runtime;
mod sessions;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use graft_core::artifact::{ArtifactReader, ArtifactWriter, BackboneId, Provenance, REJECTS, ROWS, SPLITS, Shard};
use graft_core::atomic::Pending;
use graft_core::config::backbone::TokensDtype;
use graft_core::progress::Progress;
use graft_core::spec::{BackboneSpec, Kind, Pooling};
use graft_core::spill::SpillFile;

/// Rows per inference batch when `--batch-size` is not given.
const TEXT_BATCH: usize = 32;
const IMAGE_BATCH: usize = 8;

pub use embed::{Embedder, FeatureSpec};
pub use error::{EmbedError, Error, Result};
pub use graft_core::config::backbone::{Config, Optimization};
pub use pool::{normalize_rows, pool};
use sessions::Embedders;

/// What a run wrote, for the binary to report.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Rows whose features came from the feature cache.
    pub cached: u64,
    /// Seconds spent inside ONNX Runtime (the rest: reading, batching, pooling, writing).
    pub inference_seconds: f64,
    /// ONNX Runtime sessions run side by side.
    pub sessions: usize,
    pub runtime: std::path::PathBuf,
    /// Execution provider used (`cpu`, `cuda:N`).
    pub provider: String,
    pub dim: usize,
    /// Rows per inference batch (at most).
    pub batch_size: usize,
    /// Rows and real (unpadded) tokens embedded, by split.
    pub rows: BTreeMap<&'static str, (u64, u64)>,
    /// Rows to score left out because their image cannot be decoded (`rejects.arrow`).
    pub rejected: u64,
}

/// The model's bytes with exactly `outputs` as its graph outputs (intermediate tensors
/// included), so ONNX Runtime keeps no other tensor past its last use, and the blake3 of the
/// file as it is. A name the graph does not produce is refused.
fn serving(model: &Path, outputs: &[String]) -> Result<(Vec<u8>, String)> {
    let bytes = fs_err::read(model).map_err(|source| graft_core::Error::Read { path: model.to_owned(), source })?;
    let g = graph::read(&bytes).ok_or_else(|| Error::NotOnnx { path: model.to_owned() })?;
    let declared: Vec<&str> = g.outputs.iter().map(|o| o.name.as_str()).collect();
    if let Some(name) = outputs.iter().find(|n| !declared.contains(&n.as_str()) && !g.produces(n)) {
        return Err(Error::NoTensor { path: model.to_owned(), name: name.clone(), outputs: declared.join(", ") });
    }
    let edited = graph::with_only_outputs(&bytes, outputs).ok_or_else(|| Error::NotOnnx { path: model.to_owned() })?;
    Ok((edited, graft_core::hash::bytes(&bytes)))
}

/// `graft-backbone inspect`: the model's inputs, outputs and intermediate tensors.
pub fn inspect(model: &Path) -> Result<String> {
    use std::fmt::Write;
    let bytes = fs_err::read(model).map_err(|source| graft_core::Error::Read { path: model.to_owned(), source })?;
    let g = graph::read(&bytes).ok_or_else(|| Error::NotOnnx { path: model.to_owned() })?;
    let mut out = String::new();
    let _ = writeln!(out, "inputs:");
    for i in &g.inputs {
        let _ = writeln!(out, "  {:<40} {}", i.name, i.describe());
    }
    let _ = writeln!(out, "outputs:");
    for o in &g.outputs {
        let _ = writeln!(out, "  {:<40} {}", o.name, o.describe());
    }
    // Shapes ONNX Runtime infers, from a session with every intermediate tensor exposed;
    // the file's own `value_info` where that session cannot be built.
    let intermediate: Vec<String> = g
        .nodes
        .iter()
        .flat_map(|n| n.outputs.iter())
        .filter(|n| !n.is_empty() && !g.outputs.iter().any(|o| &o.name == *n))
        .cloned()
        .collect();
    let inferred: BTreeMap<String, String> = runtime::init()
        .ok()
        .zip(graph::with_outputs(&bytes, &intermediate))
        .and_then(|((env, _), exposed)| device::open_plain(env, &exposed).ok())
        .map(|session| session.outputs().iter().map(|o| (o.name().to_owned(), o.dtype().to_string())).collect())
        .unwrap_or_default();
    let _ = writeln!(out, "intermediate tensors ({} nodes; any can be a feature with --outputs NAME):", g.nodes.len());
    for node in &g.nodes {
        for name in node.outputs.iter().filter(|n| intermediate.contains(n)) {
            let shape = inferred
                .get(name)
                .cloned()
                .or_else(|| g.value_info.get(name).map(|v| v.describe()))
                .unwrap_or_else(|| "shape unknown".to_owned());
            let _ = writeln!(out, "  {name:<40} {:<22} {shape}", node.op_type);
        }
    }
    Ok(out)
}

/// The session wrapper of the spec's kind.
enum Runner<'a> {
    Text(Embedders),
    Image(Box<image::ImageModel<'a>>),
}

/// The spec and feature space to embed with: the spec's own settings overridden by the
/// flags, or a model bundle's (`--spec` names its folder), which no flag may override.
fn feature_space(cfg: &Config) -> Result<(BackboneSpec, FeatureSpec)> {
    if !cfg.spec.join(graft_core::bundle::INFO_FILE).is_file() {
        let spec = BackboneSpec::load(&cfg.spec)?;
        let outputs = if cfg.outputs.is_empty() { vec![spec.output.clone()] } else { cfg.outputs.clone() };
        if cfg.tokens {
            let refused = if outputs.len() != 1 {
                Some(format!("give one output, not {}", outputs.len()))
            } else if cfg.pooling.is_some() || cfg.normalize.is_some() {
                Some("drop `--pooling` and `--normalize`".into())
            } else if cfg.cache.is_some() {
                Some("drop `--cache` (it holds pooled features)".into())
            } else {
                None
            };
            if let Some(why) = refused {
                return Err(Error::TokensFlags(why));
            }
            let tokens = Some(cfg.tokens_dtype);
            let features =
                FeatureSpec { outputs, combine: cfg.combine, pooling: Pooling::None, normalize: false, tokens };
            return Ok((spec, features));
        }
        let pooling = cfg.pooling.unwrap_or(spec.pooling);
        let normalize = cfg.normalize.unwrap_or(spec.normalize);
        return Ok((spec, FeatureSpec { outputs, combine: cfg.combine, pooling, normalize, tokens: None }));
    }
    if cfg.tokens {
        return Err(Error::TokensFlags(format!("`--spec {}` is a model bundle, which pools", cfg.spec.display())));
    }
    if !cfg.outputs.is_empty() || cfg.pooling.is_some() || cfg.normalize.is_some() {
        return Err(Error::BundleFlags { bundle: cfg.spec.clone() });
    }
    let bundle = graft_core::bundle::Bundle::load(&cfg.spec)?;
    let f = &bundle.info.features;
    let parse = |what: &str, value: &str| Error::BundleFeatures {
        bundle: cfg.spec.clone(),
        what: what.into(),
        value: value.into(),
    };
    let pooling = <graft_core::spec::Pooling as clap::ValueEnum>::from_str(&f.pooling, false)
        .map_err(|_| parse("pooling", &f.pooling))?;
    let combine = match &f.combine {
        Some(c) => {
            <graft_core::spec::Combine as clap::ValueEnum>::from_str(c, false).map_err(|_| parse("combine", c))?
        }
        None => graft_core::spec::Combine::default(),
    };
    let features = FeatureSpec { outputs: f.outputs.clone(), combine, pooling, normalize: f.normalize, tokens: None };
    Ok((bundle.spec, features))
}

pub fn run(cfg: &Config, progress: &dyn Progress) -> Result<Summary> {
    let cache = cfg.cache.as_deref().map(|c| ("--cache", c));
    graft_core::atomic::check_out_is_no_input(
        &cfg.out,
        &[[("--input", cfg.input.as_path())].as_slice(), cache.as_slice()].concat(),
    )?;
    let (env, runtime) = runtime::init()?;
    let (spec, features) = feature_space(cfg)?;
    if let Some(why) = cfg.unused_by(spec.kind) {
        return Err(Error::DoesNotApply(why));
    }
    let (outputs, pooling, normalize) = (features.outputs.clone(), features.pooling, features.normalize);
    let shard = cfg.shard.as_deref().map(str::parse::<Shard>).transpose().map_err(Error::BadShard)?;
    let device: device::Device = cfg.device.parse()?;
    // The splits are read, and checked against the spec's tokenizer, before the model loads.
    let tokenizer_blake3 = match spec.kind {
        Kind::Text => Some(graft_core::hash::file(&spec.text().tokenizer)?),
        Kind::Image => None,
    };
    let mut readers = Vec::new();
    for split in SPLITS.into_iter().chain([ROWS]) {
        let path = cfg.input.join(format!("{split}.arrow"));
        if path.exists() {
            let reader = ArtifactReader::open(&path)?;
            let found = reader.provenance().tokenizer.clone();
            if let Some(expected) = &tokenizer_blake3
                && found.as_ref().map(|t| &t.blake3) != Some(expected)
            {
                return Err(Error::TokenizerMismatch {
                    path,
                    spec: cfg.spec.clone(),
                    found: found.map_or("none".into(), |t| format!("blake3 {}", &t.blake3[..12])),
                    expected: format!("blake3 {}", &expected[..12]),
                });
            }
            readers.push((split, reader));
        }
    }
    if readers.is_empty() {
        return Err(Error::NoSplits { path: cfg.input.clone() });
    }
    let (model, model_blake3) = serving(&spec.model, &outputs)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = sessions::plan(cfg.threads, cfg.sessions, device == device::Device::Cpu, cores)?;
    let options = device::SessionOptions {
        threads: threads[0],
        optimization: cfg.graph_optimization,
        cpu_skip_layer_norm_fusion: cfg.cpu_skip_layer_norm_fusion,
        spinning: spec.kind == Kind::Text,
    };
    let (mut model_runner, provider) = match spec.kind {
        Kind::Text => {
            let (mut members, mut provider) = (Vec::new(), String::new());
            let shared = (threads.len() > 1)
                .then(|| device::SharedWeights::of(&model))
                .flatten()
                .transpose()
                .map_err(|source| Error::Model { path: spec.model.clone(), source })?;
            for &threads in &threads {
                let options = device::SessionOptions { threads, ..options };
                let opened = device::open(
                    env,
                    &spec.model,
                    Some(&model),
                    options,
                    device,
                    cfg.allow_cpu_fallback,
                    shared.as_ref(),
                )?;
                members.push(Embedder::new(opened.session, &spec, &features)?);
                provider = opened.provider;
            }
            drop(model);
            (Runner::Text(Embedders::new(members)), provider)
        }
        Kind::Image => {
            if cfg.cache.is_some() {
                return Err(Error::ImageCache);
            }
            // Opened by the first split while its first images decode. Each session holds its
            // own weights: ONNX Runtime lays a convolution's weights out anew (NCHWc) in each
            // session, so giving them the originals to share saves nothing (EfficientNet-Lite0,
            // 2 sessions: peak 359 MB shared, 344 MB not).
            let (spec, features) = (&spec, &features);
            let open = move |threads| -> Result<(image::ImageEmbedder, String)> {
                let options = device::SessionOptions { threads, ..options };
                let opened =
                    device::open(env, &spec.model, Some(&model), options, device, cfg.allow_cpu_fallback, None)?;
                Ok((image::ImageEmbedder::new(opened.session, spec, features)?, opened.provider))
            };
            let model = image::ImageModel::new(Box::new(open), threads.clone(), spec.image(), features);
            (Runner::Image(Box::new(model)), String::new())
        }
    };
    let mut backbone = BackboneId {
        spec: spec.name.clone(),
        model_blake3,
        combine: (outputs.len() > 1).then(|| features.combine.as_str().to_owned()),
        outputs,
        pooling: if features.tokens.is_some() {
            graft_core::columns::TOKENS_POOLING.into()
        } else {
            pooling.as_str().into()
        },
        normalize,
        dim: 0,
        provider,
    };
    let params = serde_json::to_value(cfg).map_err(|source| graft_core::Error::Json { what: "config", source })?;
    let batch_size = cfg.batch_size.or(spec.batch_size).unwrap_or(match spec.kind {
        Kind::Text => TEXT_BATCH,
        Kind::Image => IMAGE_BATCH,
    });
    let mut summary = Summary {
        runtime,
        provider: String::new(),
        dim: 0,
        batch_size,
        rows: BTreeMap::new(),
        cached: 0,
        inference_seconds: 0.0,
        sessions: threads.len(),
        rejected: 0,
    };
    let limits = batching::Limits { rows: batch_size, tokens: cfg.batch_tokens };
    let mut cache = cfg.cache.as_deref().map(|dir| cache::FeatureCache::open(dir, &backbone)).transpose()?;
    let mut pending = Vec::new();
    for (split, mut reader) in readers {
        progress.start(split, reader.provenance().rows);
        let input_hash = graft_core::hash::file(reader.path())?;
        let mut prov = reader.provenance().clone();
        prov.stage = "backbone".into();
        prov.graft_version = graft_core::VERSION.into();
        prov.params = params.clone();
        prov.shard = shard;
        if let Some(shard) = shard {
            let (rows, index, count) = (prov.rows, u64::from(shard.index), u64::from(shard.count));
            prov.rows = (rows + count - 1).saturating_sub(index) / count;
        }
        prov.inputs = BTreeMap::from([("model".into(), backbone.model_blake3.clone()), (split.into(), input_hash)]);
        let dest = cfg.out.join(format!("{split}.arrow"));
        let to_score = split == ROWS;
        let extra = graft_core::columns::extra_names(&reader.schema());
        // Rows to score reject an undecodable image unless `graft-preprocess rows --strict`.
        let purpose = match to_score {
            true => image::Purpose::Score { reject: !rows_strict(&reader)? },
            false => image::Purpose::Train,
        };
        let (mut rejects, mut rejected) = (None, 0);
        let (done, written) = match &mut model_runner {
            Runner::Text(embedder) => {
                let max_tokens = (spec.text().max_length, cfg.spec.as_path());
                embed_split(
                    &mut reader,
                    embedder,
                    limits,
                    max_tokens,
                    &dest,
                    &mut prov,
                    &mut backbone,
                    cache.as_mut(),
                    to_score,
                    progress,
                )?
            }
            Runner::Image(model) => {
                let embedded = image::embed_split(
                    &mut reader,
                    model,
                    batch_size,
                    purpose,
                    &dest,
                    &mut prov,
                    &mut backbone,
                    progress,
                )?;
                (rejects, rejected) = (embedded.rejects, embedded.rejected);
                ((embedded.rows, 0), embedded.pending)
            }
        };
        progress.finish();
        summary.rows.insert(split, done);
        pending.push(written);
        if to_score {
            summary.rejected = rejected;
            pending.push(rejects_file(&cfg.out, &prov, &extra, rejects, rejected)?);
        }
    }
    summary.inference_seconds = match &model_runner {
        Runner::Text(e) => e.inference.as_secs_f64(),
        Runner::Image(m) => m.inference().as_secs_f64(),
    };
    summary.provider = backbone.provider.clone();
    if let Some(c) = cache {
        tracing::info!("feature cache: {} rows reused, {} embedded", c.hits, c.misses);
        summary.cached = c.hits;
        pending.extend(c.finish()?);
    }
    graft_core::atomic::commit_all(pending)?;
    summary.dim = backbone.dim;
    Ok(summary)
}

/// Whether `graft-preprocess rows --strict` made the rows file `reader` reads.
fn rows_strict(reader: &ArtifactReader) -> Result<bool> {
    let params = reader.provenance().params.clone();
    let config: graft_core::config::preprocess::RowsConfig = serde_json::from_value(params)
        .map_err(|source| graft_core::Error::BadProvenance { path: reader.path().to_owned(), source })?;
    Ok(config.rows.strict)
}

/// `DIR/rejects.arrow` beside the features of rows to score: the rows left out and why, with
/// the features' provenance (`rows` their count), so that `graft-evaluate predict` puts them
/// back in place. `rejects` holds the `rows` rejected, spilled as they came.
fn rejects_file(
    out: &Path,
    features: &Provenance,
    extra: &[String],
    rejects: Option<SpillFile>,
    rows: u64,
) -> Result<Pending> {
    let dest = out.join(format!("{REJECTS}.arrow"));
    let schema = Provenance { rows, ..features.clone() }.attach(graft_core::columns::rejects_fields(extra))?;
    let mut writer = ArtifactWriter::create(&dest, &schema)?;
    if let Some(spill) = rejects {
        spill.drain(|batch| writer.write_columns(&batch))?;
    }
    Ok(writer.finish()?)
}

/// Embeds one split file, batch by batch; returns (rows, tokens) and the pending output.
/// A reader thread and a writer thread overlap reading and writing record batches with
/// inference on this one (bounded channels of two batches each way).
/// `max_tokens` is the spec's `text.max_length` and the spec's path: longer rows are refused
/// before the model sees them.
#[allow(clippy::too_many_arguments)]
fn embed_split(
    reader: &mut ArtifactReader,
    embedder: &mut Embedders,
    limits: batching::Limits,
    max_tokens: (usize, &Path),
    dest: &Path,
    prov: &mut Provenance,
    backbone: &mut BackboneId,
    mut cache: Option<&mut cache::FeatureCache>,
    empty_ok: bool,
    progress: &dyn Progress,
) -> Result<((u64, u64), Pending)> {
    let path = reader.path().to_owned();
    let shard = prov.shard;
    let vocab_size = prov.tokenizer.as_ref().map_or(0, |t| t.vocab_size);
    let (mut rows_done, mut tokens) = (0u64, 0u64);
    let written = std::thread::scope(|scope| -> Result<Option<ArtifactWriter>> {
        let (read_tx, read_rx) = std::sync::mpsc::sync_channel::<Result<RecordBatch>>(2);
        scope.spawn(move || {
            let mut rows_read = 0u64;
            loop {
                let batch = match next_in_shard(reader, &mut rows_read, shard) {
                    Ok(Some((b, _))) => Ok(b),
                    Ok(None) => break,
                    Err(e) => Err(e),
                };
                let failed = batch.is_err();
                if read_tx.send(batch).is_err() || failed {
                    break;
                }
            }
        });
        let (write_tx, write_rx) = std::sync::mpsc::sync_channel::<RecordBatch>(2);
        let writer_thread = scope.spawn(move || -> Result<Option<ArtifactWriter>> {
            let mut writer: Option<ArtifactWriter> = None;
            for batch in write_rx {
                let w = match &mut writer {
                    Some(w) => w,
                    None => writer.insert(ArtifactWriter::create(dest, &batch.schema())?),
                };
                w.write(&batch)?;
            }
            Ok(writer)
        });
        let mut schema = None;
        for batch in read_rx {
            let batch = batch?;
            if batch.num_rows() == 0 {
                continue;
            }
            let token_batch = graft_core::columns::Tokens::of(&batch, &path)?;
            let (ids, labels) = (token_batch.ids, token_batch.labels);
            let rows: Vec<&[i32]> = (0..token_batch.len()).map(|i| token_batch.row(i)).collect();
            if let Some(i) = rows.iter().position(|r| r.is_empty()) {
                return Err(Error::BadRow {
                    path: path.clone(),
                    row: rows_done + i as u64,
                    message: "no tokens".into(),
                });
            }
            if let Some(i) = rows.iter().position(|r| r.len() > max_tokens.0) {
                let message = format!(
                    "(id `{}`) has {} tokens; spec `{}` accepts at most {} (`text.max_length`)",
                    ids.value(i),
                    rows[i].len(),
                    max_tokens.1.display(),
                    max_tokens.0
                );
                return Err(Error::BadRow { path: path.clone(), row: rows_done + i as u64, message });
            }
            if let Some(i) = rows.iter().position(|r| r.iter().any(|&t| t < 0 || t as usize >= vocab_size)) {
                let bad = rows[i].iter().find(|&&t| t < 0 || t as usize >= vocab_size).expect("found");
                let message =
                    format!("(id `{}`) has token id {bad}, outside the tokenizer's {vocab_size} ids", ids.value(i));
                return Err(Error::BadRow { path: path.clone(), row: rows_done + i as u64, message });
            }
            // Rows already in the feature cache are not embedded again.
            let keys: Option<Vec<cache::Key>> = cache.as_deref().map(|c| rows.iter().map(|r| c.key(r)).collect());
            let mut out: Vec<Option<Vec<f32>>> = vec![None; rows.len()];
            if let (Some(c), Some(keys)) = (cache.as_deref_mut(), &keys) {
                for (slot, key) in out.iter_mut().zip(keys) {
                    *slot = c.get(key)?;
                }
            }
            let todo: Vec<usize> = (0..rows.len()).filter(|&i| out[i].is_none()).collect();
            progress.advance((rows.len() - todo.len()) as u64);
            // Batches of similar length waste less compute on padding; results go back in input order.
            let lengths: Vec<usize> = todo.iter().map(|&i| rows[i].len()).collect();
            let plan = batching::plan(&lengths, limits);
            let batches: Vec<Vec<&[i32]>> =
                plan.iter().map(|chunk| chunk.iter().map(|&j| rows[todo[j]]).collect()).collect();
            let mut advance = |batch: &[&[i32]]| {
                progress.advance_tokens(batch.len() as u64, batch.iter().map(|r| r.len() as u64).sum());
            };
            let embedded = embedder.embed_all(&batches, &mut advance).map_err(|(k, source)| Error::Inference {
                path: path.clone(),
                row: rows_done + todo[plan[k][0]] as u64,
                source,
            })?;
            tokens += lengths.iter().sum::<usize>() as u64;
            for (chunk, (f, dim)) in plan.iter().zip(embedded) {
                let picked: Vec<usize> = chunk.iter().map(|&j| todo[j]).collect();
                backbone.dim = dim;
                let mut start = 0;
                for &i in &picked {
                    let width = if embedder.tokens().is_some() { rows[i].len() * dim } else { dim };
                    let v = &f[start..start + width];
                    start += width;
                    if let (Some(c), Some(keys)) = (cache.as_deref_mut(), &keys) {
                        c.put(keys[i], v)?;
                    }
                    out[i] = Some(v.to_vec());
                }
            }
            if backbone.dim == 0 {
                backbone.dim = out.first().and_then(|f| f.as_ref()).map_or(0, Vec::len);
            }
            let schema = match &schema {
                Some(s) => std::sync::Arc::clone(s),
                None => schema.insert(output_schema(prov, backbone, embedder.tokens(), false)?).clone(),
            };
            let vectors: ArrayRef = if let Some(dtype) = embedder.tokens() {
                let rows: Vec<Vec<f32>> = out.into_iter().flatten().collect();
                Arc::new(graft_core::columns::vector_lists(&rows, dtype == TokensDtype::Float16))
            } else {
                let features: Vec<f32> = out.into_iter().flatten().flatten().collect();
                Arc::new(
                    graft_core::columns::float_list(features, backbone.dim)
                        .map_err(|source| graft_core::Error::Arrow { path: dest.to_owned(), source })?,
                )
            };
            let columns: Vec<ArrayRef> = vec![Arc::new(ids.clone()), Arc::new(labels.clone()), vectors];
            let out = RecordBatch::try_new(schema, columns)
                .map_err(|source| graft_core::Error::Arrow { path: dest.to_owned(), source })?;
            rows_done += out.num_rows() as u64;
            if write_tx.send(out).is_err() {
                // The writer stopped on an error, which joining it returns.
                break;
            }
        }
        drop(write_tx);
        writer_thread.join().expect("the writer thread does not panic")
    })?;
    let writer = match written {
        Some(w) => w,
        // A shard of a split with fewer rows than shards, or rows to score of which none is
        // left (no new rows tonight, or every one rejected), is empty but valid: its file
        // needs the feature width, which one embedded token gives.
        None if prov.shard.is_some() || empty_ok => {
            let (_, dim) = embedder
                .embed_all(&[vec![&[0]]], &mut |_| {})
                .map_err(|(_, source)| Error::Inference { path: path.clone(), row: 0, source })?
                .remove(0);
            backbone.dim = dim;
            ArtifactWriter::create(dest, &output_schema(prov, backbone, embedder.tokens(), false)?)?
        }
        None => return Err(Error::BadRow { path: path.clone(), row: 0, message: "the split has no rows".into() }),
    };
    Ok(((rows_done, tokens), writer.finish()?))
}

/// What `graft-backbone doctor` prints: the library searched for and loaded, its build,
/// and whether CUDA can be used.
pub fn doctor() -> Result<String> {
    use std::fmt::Write;
    let mut out = String::from("ONNX Runtime library, looked for in order:\n");
    for candidate in runtime::candidates() {
        let state = if candidate.is_file() { "present" } else { "absent" };
        let _ = writeln!(out, "  {state:<8}{}", candidate.display());
    }
    let (_, loaded) = runtime::init()?;
    let _ = writeln!(out, "loaded: {}", loaded.display());
    let _ = writeln!(out, "build: {}", ort::info());
    let cuda = device::cuda_status().map_or_else(|why| format!("not usable: {why}"), |()| "usable".to_owned());
    let _ = writeln!(out, "execution providers: cpu usable; cuda {cuda}");
    Ok(out)
}

/// The next record batch of `reader` cut to `shard` (whole without one), and the split row
/// its first row was; `rows_read` counts the split's rows read so far.
pub(crate) fn next_in_shard(
    reader: &mut ArtifactReader,
    rows_read: &mut u64,
    shard: Option<Shard>,
) -> Result<Option<(RecordBatch, u64)>> {
    let Some(batch) = reader.next_batch()? else { return Ok(None) };
    let first = *rows_read;
    *rows_read += batch.num_rows() as u64;
    let batch = match shard {
        Some(shard) => take_shard(&batch, first, shard, reader.path())?,
        None => batch,
    };
    Ok(Some((batch, first)))
}

/// The rows of `batch` in `shard`, given that the batch starts at row `first` of its split.
fn take_shard(batch: &RecordBatch, first: u64, shard: Shard, path: &Path) -> Result<RecordBatch> {
    let keep: arrow::array::BooleanArray = (0..batch.num_rows() as u64)
        .map(|i| Some((first + i) % u64::from(shard.count) == u64::from(shard.index)))
        .collect();
    arrow::compute::filter_record_batch(batch, &keep)
        .map_err(|source| graft_core::Error::Arrow { path: path.to_owned(), source }.into())
}

/// The schema of a features file, or of a token-vectors file of values `tokens`, with the
/// backbone recorded in its provenance: id, label, the augmented view's index where there is
/// one (images), and the features or token vectors.
pub(crate) fn output_schema(
    prov: &mut Provenance,
    backbone: &BackboneId,
    tokens: Option<TokensDtype>,
    with_view: bool,
) -> Result<arrow::datatypes::SchemaRef> {
    prov.backbone = Some(backbone.clone());
    let fields = match tokens {
        None => graft_core::columns::features_fields(backbone.dim, with_view),
        Some(dtype) => graft_core::columns::token_vectors_fields(dtype == TokensDtype::Float16, with_view),
    };
    Ok(prov.attach(fields)?)
}
