//! One ONNX Runtime session and the padding, feeding and pooling around it.

use graft_core::spec::{BackboneSpec, Pooling};
use ort::session::Session;
use ort::value::Tensor;

use crate::error::{Error, Result};
use crate::pool::pool;

#[derive(Debug)]
pub struct Embedder {
    session: Session,
    input_ids: String,
    attention_mask: Option<String>,
    token_type_ids: Option<String>,
    output: String,
    pooling: Pooling,
    normalize: bool,
}

impl Embedder {
    /// Wraps an open session of the spec's model, checking that its inputs and output are the spec's.
    pub fn new(session: Session, spec: &BackboneSpec, pooling: Pooling, normalize: bool) -> Result<Self> {
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
        if !session.outputs().iter().any(|o| o.name() == spec.output) {
            return Err(Error::MissingOutput {
                path: path.to_owned(),
                name: spec.output.clone(),
                available: names(session.outputs()),
            });
        }
        Ok(Self {
            session,
            input_ids: spec.inputs.input_ids.clone(),
            attention_mask: spec.inputs.attention_mask.clone(),
            token_type_ids: spec.inputs.token_type_ids.clone(),
            output: spec.output.clone(),
            pooling,
            normalize,
        })
    }

    /// Features `[rows, dim]` of a batch of token-id rows, padded to the longest row.
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
        let outputs = self.session.run(inputs)?;
        let (dims, hidden) = outputs[self.output.as_str()].try_extract_tensor::<f32>()?;
        let dims: Vec<i64> = dims.iter().copied().collect();
        if dims.len() != 3 || dims[0] as usize != rows.len() || dims[1] as usize != seq {
            return Err(EmbedError::Rank { name: self.output.clone(), shape: dims });
        }
        let dim = dims[2] as usize;
        let lengths: Vec<usize> = rows.iter().map(|r| r.len()).collect();
        Ok((pool(hidden, seq, dim, &lengths, self.pooling, self.normalize), dim))
    }
}

/// Why a batch could not be embedded.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error(transparent)]
    Ort(#[from] ort::Error),
    #[error("output `{name}` has shape {shape:?}; pooling needs [batch, sequence, dim]")]
    Rank { name: String, shape: Vec<i64> },
}
