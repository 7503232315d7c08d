//! Features of images: `graft-preprocess` wrote each as `[3, S, S]` floats (`pixels`); they
//! are fed in batches of `--batch-size` as `[batch, 3, S, S]` to the spec's image input, and
//! the chosen outputs pooled (`gap` for feature maps, `none` for pooled vectors).

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use graft_core::artifact::{ArtifactReader, ArtifactWriter, BackboneId, Provenance};
use graft_core::atomic::Pending;
use graft_core::progress::Progress;
use graft_core::spec::BackboneSpec;
use ort::session::{HasSelectedOutputs, OutputSelector, RunOptions, Session};
use ort::value::Tensor;

use crate::embed::{FeatureSpec, combine};
use crate::error::EmbedError;
use crate::error::{Error, Result};
use crate::pool::{normalize_rows, pool_tensor};

pub struct ImageEmbedder {
    session: Session,
    input: String,
    size: usize,
    channels_last: bool,
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
            size: image.size as usize,
            channels_last: image.layout == graft_core::spec::Layout::Nhwc,
            features: features.clone(),
            run_options,
            inference: std::time::Duration::ZERO,
        })
    }

    /// Features `[rows, dim]` of `rows` images laid out `[rows, 3, S, S]` (or `[rows, S, S, 3]`)
    /// in `pixels`.
    pub fn embed(&mut self, pixels: Vec<f32>, rows: usize) -> Result<(Vec<f32>, usize), EmbedError> {
        let s = self.size;
        let shape = if self.channels_last { [rows, s, s, 3] } else { [rows, 3, s, s] };
        let inputs = vec![(self.input.as_str(), Tensor::from_array((shape, pixels))?.into_dyn())];
        let started = std::time::Instant::now();
        let outputs = self.session.run_with_options(inputs, &self.run_options)?;
        self.inference += started.elapsed();
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

/// Embeds one split of images; returns the rows embedded and the pending output.
pub fn embed_split(
    reader: &mut ArtifactReader,
    embedder: &mut ImageEmbedder,
    batch_size: usize,
    dest: &Path,
    prov: &mut Provenance,
    backbone: &mut BackboneId,
    progress: &dyn Progress,
) -> Result<(u64, Pending)> {
    let path = reader.path().to_owned();
    let width = 3 * embedder.size * embedder.size;
    let mut writer: Option<ArtifactWriter> = None;
    let mut done = 0u64;
    while let Some(batch) = reader.next_batch()? {
        let batch_pixels = graft_core::columns::Pixels::of(&batch, width, &path)?;
        let (ids, labels, pixels, values) =
            (batch_pixels.ids, batch_pixels.labels, batch_pixels.list, batch_pixels.values);
        // Augmented views keep their view number.
        let view: Option<ArrayRef> = batch_pixels.view.cloned();
        let mut features = Vec::with_capacity(batch.num_rows());
        let mut dim = 0;
        for start in (0..batch.num_rows()).step_by(batch_size.max(1)) {
            let end = (start + batch_size.max(1)).min(batch.num_rows());
            let offset = pixels.value_offset_at(start);
            let chunk = values[offset..offset + (end - start) * width].to_vec();
            let (f, d) = embedder.embed(chunk, end - start).map_err(|source| Error::Inference {
                path: path.clone(),
                row: done + start as u64,
                source,
            })?;
            dim = d;
            features.extend(f);
            progress.advance((end - start) as u64);
        }
        backbone.dim = dim;
        let writer = match &mut writer {
            Some(w) => w,
            None => {
                writer.insert(ArtifactWriter::create(dest, &crate::features_schema(prov, backbone, view.is_some())?)?)
            }
        };
        let features = graft_core::columns::float_list(features, dim)
            .map_err(|source| graft_core::Error::Arrow { path: dest.to_owned(), source })?;
        let mut columns: Vec<ArrayRef> = vec![Arc::new(ids.clone()), Arc::new(labels.clone())];
        columns.extend(view.clone());
        columns.push(Arc::new(features));
        let out = RecordBatch::try_new(writer.schema(), columns)
            .map_err(|source| graft_core::Error::Arrow { path: dest.to_owned(), source })?;
        writer.write(&out)?;
        done += batch.num_rows() as u64;
    }
    let writer =
        writer.ok_or_else(|| Error::BadRow { path: path.clone(), row: 0, message: "the split has no rows".into() })?;
    Ok((done, writer.finish()?))
}
