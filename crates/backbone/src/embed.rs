//! One ONNX Runtime session and the padding, feeding and pooling around it.

use graft_core::config::backbone::TokensDtype;
use graft_core::spec::{BackboneSpec, Combine, Pooling};
use ort::session::{HasSelectedOutputs, OutputSelector, RunOptions, Session};
use ort::value::Tensor;

use crate::error::{EmbedError, Error, Result};
use crate::pool::{normalize_rows, pool_tensor};

/// Which graph outputs become features, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureSpec {
    /// Graph outputs, each `[batch, seq, dim]`.
    pub outputs: Vec<String>,
    pub combine: Combine,
    pub pooling: Pooling,
    pub normalize: bool,
    /// Every real token's vector of the one output, unpooled and stored so (`--tokens`).
    pub tokens: Option<TokensDtype>,
}

pub struct Embedder {
    session: Session,
    input_ids: String,
    attention_mask: Option<String>,
    token_type_ids: Option<String>,
    outputs: Vec<String>,
    combine: Combine,
    run_options: RunOptions<HasSelectedOutputs>,
    pooling: Pooling,
    normalize: bool,
    tokens: Option<TokensDtype>,
    /// Time spent inside ONNX Runtime.
    pub inference: std::time::Duration,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("outputs", &self.outputs)
            .field("pooling", &self.pooling)
            .finish_non_exhaustive()
    }
}

impl Embedder {
    /// Wraps an open session of the spec's model, checking that its inputs are the spec's and
    /// that it has the `outputs` to pool features from.
    pub fn new(session: Session, spec: &BackboneSpec, features: &FeatureSpec) -> Result<Self> {
        let path = spec.model.as_path();
        let names = |outlets: &[ort::value::Outlet]| {
            outlets.iter().map(|o| format!("`{}`", o.name())).collect::<Vec<_>>().join(", ")
        };
        let fed: Vec<&String> = std::iter::once(&spec.inputs.input_ids)
            .chain(spec.inputs.attention_mask.as_ref())
            .chain(spec.inputs.token_type_ids.as_ref())
            .collect();
        for name in &fed {
            if !session.inputs().iter().any(|i| i.name() == name.as_str()) {
                return Err(Error::MissingInput {
                    path: path.to_owned(),
                    name: (*name).clone(),
                    available: names(session.inputs()),
                });
            }
        }
        if let Some(unfed) = session.inputs().iter().find(|i| !fed.iter().any(|f| f.as_str() == i.name())) {
            return Err(Error::UnfedInput { path: path.to_owned(), name: unfed.name().to_owned() });
        }
        let mut selector = OutputSelector::no_default();
        for name in &features.outputs {
            if !session.outputs().iter().any(|o| o.name() == name) {
                return Err(Error::MissingOutput {
                    path: path.to_owned(),
                    name: name.clone(),
                    available: names(session.outputs()),
                });
            }
            selector = selector.with(name.clone());
        }
        let run_options =
            RunOptions::new().map_err(|source| Error::Model { path: path.to_owned(), source })?.with_outputs(selector);
        Ok(Self {
            session,
            input_ids: spec.inputs.input_ids.clone(),
            attention_mask: spec.inputs.attention_mask.clone(),
            token_type_ids: spec.inputs.token_type_ids.clone(),
            outputs: features.outputs.clone(),
            combine: features.combine,
            run_options,
            pooling: features.pooling,
            normalize: features.normalize,
            tokens: features.tokens,
            inference: std::time::Duration::ZERO,
        })
    }

    /// How token vectors are stored when [`Embedder::embed`] returns them instead of pooled
    /// features; `None` for pooled features.
    pub fn tokens(&self) -> Option<TokensDtype> {
        self.tokens
    }

    /// Features `[rows, dim]` of a batch of token-id rows, padded to the longest row; with
    /// `tokens`, each row's real tokens' vectors one row after the other (`[tokens, dim]`).
    pub fn embed(&mut self, rows: &[&[i32]]) -> Result<(Vec<f32>, usize), EmbedError> {
        let seq = rows.iter().map(|r| r.len()).max().unwrap_or(0);
        let shape = [rows.len(), seq];
        let mut ids = vec![0i64; rows.len() * seq];
        let mut mask = vec![0i64; rows.len() * seq];
        for (r, row) in rows.iter().enumerate() {
            for (t, &id) in row.iter().enumerate() {
                ids[r * seq + t] = i64::from(id);
                mask[r * seq + t] = 1;
            }
        }
        let mut inputs = vec![(self.input_ids.as_str(), Tensor::from_array((shape, ids))?.into_dyn())];
        if let Some(name) = &self.attention_mask {
            inputs.push((name.as_str(), Tensor::from_array((shape, mask))?.into_dyn()));
        }
        if let Some(name) = &self.token_type_ids {
            inputs.push((name.as_str(), Tensor::from_array((shape, vec![0i64; rows.len() * seq]))?.into_dyn()));
        }
        let started = std::time::Instant::now();
        let outputs = self.session.run_with_options(inputs, &self.run_options)?;
        self.inference += started.elapsed();
        let lengths: Vec<usize> = rows.iter().map(|r| r.len()).collect();
        if self.tokens.is_some() {
            let name = &self.outputs[0];
            let (dims, hidden) = outputs[name.as_str()].try_extract_tensor::<f32>()?;
            let dims: Vec<i64> = dims.iter().copied().collect();
            if dims.len() != 3 || dims[0] as usize != rows.len() || dims[1] as usize != seq {
                return Err(EmbedError::Rank { name: name.clone(), shape: dims, expected: "[batch, sequence, dim]" });
            }
            let dim = dims[2] as usize;
            let mut out = Vec::with_capacity(lengths.iter().sum::<usize>() * dim);
            for (r, &len) in lengths.iter().enumerate() {
                out.extend_from_slice(&hidden[r * seq * dim..(r * seq + len) * dim]);
            }
            return Ok((out, dim));
        }
        let mut pooled: Vec<(Vec<f32>, usize)> = Vec::with_capacity(self.outputs.len());
        for name in &self.outputs {
            let (dims, hidden) = outputs[name.as_str()].try_extract_tensor::<f32>()?;
            let dims: Vec<i64> = dims.iter().copied().collect();
            if dims.len() == 3 && dims[1] as usize != seq {
                return Err(EmbedError::Rank { name: name.clone(), shape: dims, expected: "[batch, sequence, dim]" });
            }
            let pooled_output = pool_tensor(&dims, hidden, rows.len(), Some(&lengths), self.pooling)
                .map_err(|expected| EmbedError::Rank { name: name.clone(), shape: dims.clone(), expected })?;
            pooled.push(pooled_output);
        }
        let (mut features, dim) = combine(pooled, rows.len(), self.combine, &self.outputs)?;
        if self.normalize {
            normalize_rows(&mut features, dim);
        }
        Ok((features, dim))
    }
}

/// Joins the pooled `[rows, dim_i]` matrices of several outputs into one `[rows, dim]`.
pub(crate) fn combine(
    mut pooled: Vec<(Vec<f32>, usize)>,
    rows: usize,
    how: Combine,
    names: &[String],
) -> Result<(Vec<f32>, usize), EmbedError> {
    if pooled.len() == 1 {
        return Ok(pooled.pop().expect("one output"));
    }
    match how {
        Combine::Concat => {
            let dim: usize = pooled.iter().map(|p| p.1).sum();
            let mut out = Vec::with_capacity(rows * dim);
            for r in 0..rows {
                for (values, d) in &pooled {
                    out.extend_from_slice(&values[r * d..(r + 1) * d]);
                }
            }
            Ok((out, dim))
        }
        Combine::Mean => {
            let dim = pooled[0].1;
            if let Some(i) = pooled.iter().position(|p| p.1 != dim) {
                return Err(EmbedError::Dims {
                    first: names[0].clone(),
                    dim,
                    other: names[i].clone(),
                    other_dim: pooled[i].1,
                });
            }
            let scale = 1.0 / pooled.len() as f32;
            let mut out = vec![0f32; rows * dim];
            for (values, _) in &pooled {
                out.iter_mut().zip(values).for_each(|(o, v)| *o += v * scale);
            }
            Ok((out, dim))
        }
    }
}
