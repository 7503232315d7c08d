//! The top layers of graft's BERT graph (`scripts/bert_onnx.py`, which every imported
//! encoder goes through) as trainable tensors: recognised in and read from the ONNX model's
//! initializers, run forward with autograd, and handed back for writing into a copy.

use std::path::Path;

use candle_core::{D, DType, Device, Tensor, Var};
use graft_core::onnx::{self, Graph};
use graft_core::rng::SplitMix64;

use crate::bias_act::Act;
use crate::error::{Error, Result};

/// Each layer's weights under `encoder.layer.{i}.`, in the order [`Layer::params`] holds
/// them; `_t` weights are stored `[in, out]`, as the graph's MatMuls read them.
pub const LAYER_TENSORS: [&str; 16] = [
    "attention.self.query.weight_t",
    "attention.self.query.bias",
    "attention.self.key.weight_t",
    "attention.self.key.bias",
    "attention.self.value.weight_t",
    "attention.self.value.bias",
    "attention.output.dense.weight_t",
    "attention.output.dense.bias",
    "attention.output.LayerNorm.weight",
    "attention.output.LayerNorm.bias",
    "intermediate.dense.weight_t",
    "intermediate.dense.bias",
    "output.dense.weight_t",
    "output.dense.bias",
    "output.LayerNorm.weight",
    "output.LayerNorm.bias",
];

/// What a recognised model looks like, for messages.
pub(crate) const EXPECTED: &str = "graft's BERT graph as scripts/import_encoder.py writes it (`encoder.layer.{i}.*` weights, \
                        `hidden_state_{i}` layer outputs, `split_heads_shape`)";

/// One transformer layer: its index in the model and its 16 tensors.
#[derive(Debug)]
pub struct Layer {
    pub index: usize,
    pub eps: [f64; 2],
    pub params: Vec<Var>,
}

/// The embeddings, when they are trained too: the word and position tables, the token-type
/// vector (row 0 of the table, as every row is fed type 0; absent without token types), and
/// their layer norm, each with its initializer name.
#[derive(Debug)]
pub struct Embeddings {
    pub params: Vec<(String, Var)>,
    pub eps: f64,
    /// RoBERTa's position ids: the padding index plus the count of real tokens so far.
    pub position_offset: Option<i64>,
    /// Whether the token type is a `[types, hidden]` table (its row 0 is used) rather than a
    /// `[hidden]` vector.
    pub type_table: bool,
}

/// The top layers of a BERT-family encoder.
#[derive(Debug)]
pub struct Encoder {
    /// Layers in the whole model.
    pub depth: usize,
    pub hidden: usize,
    pub heads: usize,
    /// The trained embeddings (full fine-tuning), below the layers.
    pub embeddings: Option<Embeddings>,
    /// The trained layers, lowest first.
    pub layers: Vec<Layer>,
    /// MPNet's attention bias by key-minus-query distance, `[2P - 1, heads]` (row `d + P - 1`
    /// for distance `d`), shared by every layer and not trained.
    pub relative_bias: Option<Tensor>,
}

/// Dropout masks drawn from a seeded generator, so that a run is reproducible.
#[derive(Debug)]
pub struct Dropout {
    pub p: f64,
    pub rng: SplitMix64,
}

impl Dropout {
    /// `x` with each element zeroed with probability `p`, the rest scaled by `1 / (1 - p)`.
    pub fn apply(&mut self, x: &Tensor) -> Result<Tensor> {
        if self.p <= 0.0 {
            return Ok(x.clone());
        }
        let keep = 1.0 / (1.0 - self.p);
        let mask: Vec<f32> =
            (0..x.elem_count()).map(|_| if self.rng.next_f64() < self.p { 0.0 } else { keep as f32 }).collect();
        let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
        Ok(x.mul(&mask)?)
    }
}

/// MPNet's relative position bias table, by distance (`scripts/bert_onnx.py`).
const RELATIVE_BIAS: &str = "relative_bias_by_distance";

fn weight_name(layer: usize, tensor: &str) -> String {
    format!("encoder.layer.{layer}.{tensor}")
}

/// `hidden_state_{i}`: the output of layer `i` (0: the embeddings).
pub fn layer_output(i: usize) -> String {
    format!("hidden_state_{i}")
}

impl Encoder {
    /// The top `k` layers of the model in `bytes` (read from `path`), as `dtype` variables.
    pub fn load(bytes: &[u8], path: &Path, k: usize, dtype: DType) -> Result<Self> {
        let not_recognised = |what: String| Error::NotRecognised { path: path.to_owned(), what, expected: EXPECTED };
        let graph = onnx::read(bytes).ok_or_else(|| not_recognised("not a readable ONNX model".into()))?;
        let names = onnx::initializer_names(bytes).unwrap_or_default();
        let depth = (0..).take_while(|&i| names.contains(&weight_name(i, LAYER_TENSORS[0]))).count();
        if depth == 0 {
            return Err(not_recognised(format!("no tensor `{}`", weight_name(0, LAYER_TENSORS[0]))));
        }
        if k == 0 || k > depth {
            return Err(Error::Layers { path: path.to_owned(), k, depth });
        }
        let split = onnx::int64_initializer(bytes, "split_heads_shape")
            .ok_or_else(|| not_recognised("no int64 tensor `split_heads_shape`".into()))?;
        let [_, _, heads, head_dim] = split[..] else {
            return Err(not_recognised(format!("`split_heads_shape` is {split:?}, expected 4 values")));
        };
        let (heads, head_dim) = (usize::try_from(heads).unwrap_or(0), usize::try_from(head_dim).unwrap_or(0));
        let hidden = heads * head_dim;
        let first = depth - k;
        let wanted =
            |n: &str| n == RELATIVE_BIAS || (first..depth).any(|i| n.starts_with(&format!("encoder.layer.{i}.")));
        let weights = onnx::float_initializers(bytes, wanted)
            .ok_or_else(|| not_recognised("a layer weight whose data does not match its shape".into()))?;
        let device = Device::Cpu;
        let relative_bias = match weights.get(RELATIVE_BIAS) {
            Some(t) if t.dims.len() == 2 && t.dims[1] == heads && t.dims[0] % 2 == 1 => {
                Some(Tensor::from_vec(t.values.clone(), t.dims.clone(), &device)?.to_dtype(dtype)?)
            }
            Some(t) => {
                return Err(not_recognised(format!(
                    "`{RELATIVE_BIAS}` has shape {:?}, expected [2P - 1, {heads}]",
                    t.dims
                )));
            }
            None => None,
        };
        let mut layers = Vec::with_capacity(k);
        for index in first..depth {
            check_layer(&graph, index, relative_bias.is_some()).map_err(not_recognised)?;
            let ffn = weights.get(&weight_name(index, "intermediate.dense.bias")).map_or(0, |t| t.values.len());
            let mut params = Vec::with_capacity(LAYER_TENSORS.len());
            for tensor in LAYER_TENSORS {
                let name = weight_name(index, tensor);
                let t = weights.get(&name).ok_or_else(|| not_recognised(format!("no float tensor `{name}`")))?;
                let expected = expected_shape(tensor, hidden, ffn);
                if t.dims != expected {
                    return Err(not_recognised(format!("`{name}` has shape {:?}, expected {expected:?}", t.dims)));
                }
                let value = Tensor::from_vec(t.values.clone(), t.dims.clone(), &device)?.to_dtype(dtype)?;
                params.push(Var::from_tensor(&value)?);
            }
            let eps = |out: &str| -> std::result::Result<f64, String> {
                let node = graph.producer(out).filter(|n| n.op_type == "LayerNormalization");
                let node = node.ok_or_else(|| format!("`{out}` is not made by a LayerNormalization"))?;
                Ok(node.float_attributes.iter().find(|(k, _)| k == "epsilon").map_or(1e-5, |(_, v)| f64::from(*v)))
            };
            let eps = [
                eps(&format!("layer{index}/attn_norm")).map_err(not_recognised)?,
                eps(&layer_output(index + 1)).map_err(not_recognised)?,
            ];
            layers.push(Layer { index, eps, params });
        }
        Ok(Self { depth, hidden, heads, embeddings: None, layers, relative_bias })
    }

    /// Adds the embeddings to what is trained (all layers must be): read from the model in
    /// `bytes` as `dtype` variables.
    pub fn with_embeddings(mut self, bytes: &[u8], path: &Path, dtype: DType) -> Result<Self> {
        let not_recognised = |what: String| Error::NotRecognised { path: path.to_owned(), what, expected: EXPECTED };
        let graph = onnx::read(bytes).ok_or_else(|| not_recognised("not a readable ONNX model".into()))?;
        let reads = |out: &str, inputs: &[&str]| {
            graph.producer(out).is_some_and(|n| n.op_type == "Gather" && n.inputs == inputs)
        };
        if !reads("emb/word", &["embeddings.word", "input_ids"]) {
            return Err(not_recognised("`emb/word` is not a Gather of `embeddings.word` by `input_ids`".into()));
        }
        let weights = onnx::float_initializers(bytes, |n| n.starts_with("embeddings."))
            .ok_or_else(|| not_recognised("an embedding whose data does not match its shape".into()))?;
        let type_table = reads("emb/type", &["embeddings.token_type", "token_type_ids"]);
        let mut names = vec!["embeddings.word", "embeddings.position"];
        if type_table {
            names.push("embeddings.token_type");
        } else if weights.contains_key("embeddings.token_type_0") {
            names.push("embeddings.token_type_0");
        }
        names.extend(["embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias"]);
        let mut params = Vec::new();
        for name in names {
            let t = weights.get(name).ok_or_else(|| not_recognised(format!("no float tensor `{name}`")))?;
            if t.dims.last() != Some(&self.hidden) || t.dims.len() > 2 {
                return Err(not_recognised(format!("`{name}` has shape {:?}, expected [*, {}]", t.dims, self.hidden)));
            }
            let value = Tensor::from_vec(t.values.clone(), t.dims.clone(), &Device::Cpu)?.to_dtype(dtype)?;
            params.push((name.to_owned(), Var::from_tensor(&value)?));
        }
        let node = graph.producer(&layer_output(0)).filter(|n| n.op_type == "LayerNormalization");
        let node = node.ok_or_else(|| not_recognised("`hidden_state_0` is not made by a LayerNormalization".into()))?;
        let eps = node.float_attributes.iter().find(|(k, _)| k == "epsilon").map_or(1e-5, |(_, v)| f64::from(*v));
        let position_offset = onnx::int64_initializer(bytes, "position_offset").and_then(|v| v.first().copied());
        self.embeddings = Some(Embeddings { params, eps, position_offset, type_table });
        Ok(self)
    }

    /// Rows of the word table: token ids must be below this.
    pub fn vocab(&self) -> Option<usize> {
        self.embeddings.as_ref().map(|e| e.params[0].1.as_tensor().dims()[0])
    }

    /// The graph tensor the trained part reads: the output of the layer below the trained
    /// layers, or the token ids when the embeddings are trained.
    pub fn cut(&self) -> String {
        if self.embeddings.is_some() { "input_ids".into() } else { layer_output(self.layers[0].index) }
    }

    /// Every trained tensor with its initializer name.
    pub fn named_vars(&self) -> Vec<(String, &Var)> {
        let embeddings = self.embeddings.iter().flat_map(|e| e.params.iter().map(|(n, v)| (n.clone(), v)));
        let layers = self
            .layers
            .iter()
            .flat_map(|l| LAYER_TENSORS.iter().zip(&l.params).map(|(t, v)| (weight_name(l.index, t), v)));
        embeddings.chain(layers).collect()
    }

    /// The embeddings' output `[batch, seq, hidden]` of token ids `[batch, seq]` (u32).
    fn embed(&self, e: &Embeddings, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, s) = ids.dims2()?;
        let p: Vec<&Tensor> = e.params.iter().map(|(_, v)| v.as_tensor()).collect();
        let word = p[0].index_select(&ids.flatten_all()?, 0)?.reshape((b, s, self.hidden))?;
        let positions = match e.position_offset {
            None => p[1].narrow(0, 0, s)?.unsqueeze(0)?,
            Some(offset) => {
                let mask = mask.to_dtype(DType::F32)?.to_vec2::<f32>()?;
                let mut ids = Vec::with_capacity(b * s);
                for row in mask {
                    let mut counted = 0;
                    for m in row {
                        counted += i64::from(m > 0.5);
                        ids.push(u32::try_from(if m > 0.5 { counted + offset } else { offset }).unwrap_or(0));
                    }
                }
                let ids = Tensor::from_vec(ids, b * s, &Device::Cpu)?;
                p[1].index_select(&ids, 0)?.reshape((b, s, self.hidden))?
            }
        };
        let mut x = word.broadcast_add(&positions)?;
        let norm = p.len() - 2;
        if norm == 3 {
            let types = if e.type_table { p[2].narrow(0, 0, 1)? } else { p[2].unsqueeze(0)? };
            x = x.broadcast_add(&types)?;
        }
        layer_norm(&x, p[norm], p[norm + 1], e.eps)
    }

    /// The last layer's output `[batch, seq, hidden]` of the cut's `x` `[batch, seq, hidden]`
    /// (token ids `[batch, seq]` when the embeddings are trained) where `mask` `[batch, seq]`
    /// is 1 on real tokens and 0 on padding; dropout while training.
    pub fn forward(&self, x: &Tensor, mask: &Tensor, mut dropout: Option<&mut Dropout>) -> Result<Tensor> {
        let (b, s) = (x.dim(0)?, x.dim(1)?);
        // 0 where a key is a real token, a large negative number on padding.
        let bias = mask.affine(1e9, -1e9)?.reshape((b, 1, 1, s))?;
        let head_dim = self.hidden / self.heads;
        let scale = 1.0 / (head_dim as f64).sqrt();
        let mut x = match &self.embeddings {
            Some(e) => {
                let embedded = self.embed(e, x, mask)?;
                match dropout.as_deref_mut() {
                    Some(d) => d.apply(&embedded)?,
                    None => embedded,
                }
            }
            None => x.clone(),
        };
        let position_bias = self.relative_bias.as_ref().map(|t| position_bias(t, s)).transpose()?;
        for layer in &self.layers {
            let p: Vec<&Tensor> = layer.params.iter().map(|v| v.as_tensor()).collect();
            let heads = |t: Tensor| -> Result<Tensor> {
                Ok(t.reshape((b, s, self.heads, head_dim))?.transpose(1, 2)?.contiguous()?)
            };
            let q = heads(linear(&x, p[0], p[1], Act::Identity)?)?;
            let k = heads(linear(&x, p[2], p[3], Act::Identity)?)?;
            let v = heads(linear(&x, p[4], p[5], Act::Identity)?)?;
            let mut scores = q.matmul(&k.t()?.contiguous()?)?.affine(scale, 0.0)?;
            if let Some(position) = &position_bias {
                scores = scores.broadcast_add(position)?;
            }
            let scores = scores.broadcast_add(&bias)?;
            let probs = softmax_last(&scores)?;
            let context = probs.matmul(&v)?.transpose(1, 2)?.contiguous()?.reshape((b, s, self.hidden))?;
            let mut attention = linear(&context, p[6], p[7], Act::Identity)?;
            if let Some(d) = dropout.as_deref_mut() {
                attention = d.apply(&attention)?;
            }
            x = layer_norm(&(attention + &x)?, p[8], p[9], layer.eps[0])?;
            let inner = linear(&x, p[10], p[11], Act::Gelu)?;
            let mut out = linear(&inner, p[12], p[13], Act::Identity)?;
            if let Some(d) = dropout.as_deref_mut() {
                out = d.apply(&out)?;
            }
            x = layer_norm(&(out + &x)?, p[14], p[15], layer.eps[1])?;
        }
        Ok(x)
    }
}

/// MPNet's bias `[1, heads, s, s]` of each (query, key) pair of a sequence of `s`: the row of
/// `table` for their key-minus-query distance, as the graph's `rel/bias`.
fn position_bias(table: &Tensor, s: usize) -> Result<Tensor> {
    let (rows, heads) = table.dims2()?;
    let offset = rows / 2;
    let index: Vec<u32> =
        (0..s).flat_map(|q| (0..s).map(move |k| (k + offset).saturating_sub(q).min(rows - 1) as u32)).collect();
    let index = Tensor::from_vec(index, s * s, table.device())?;
    Ok(table.index_select(&index, 0)?.reshape((s, s, heads))?.permute((2, 0, 1))?.unsqueeze(0)?.contiguous()?)
}

/// The shape of one of [`LAYER_TENSORS`] for hidden size `h` and feed-forward size `f`.
fn expected_shape(tensor: &str, h: usize, f: usize) -> Vec<usize> {
    match tensor {
        "intermediate.dense.weight_t" => vec![h, f],
        "intermediate.dense.bias" => vec![f],
        "output.dense.weight_t" => vec![f, h],
        t if t.ends_with("weight_t") => vec![h, h],
        _ => vec![h],
    }
}

/// Layer `i` of the graph reads `hidden_state_{i}` into its query, key and value MatMuls,
/// uses the exact (erf) GELU and ends in the LayerNormalization making `hidden_state_{i+1}`:
/// the computation [`Encoder::forward`] reproduces.
fn check_layer(graph: &Graph, i: usize, relative: bool) -> std::result::Result<(), String> {
    let positioned = format!("layer{i}/scores_positioned");
    let adds_bias = graph.producer(&positioned).is_some_and(|n| n.op_type == "Add" && n.inputs[1] == "rel/bias");
    if adds_bias != relative {
        return Err(format!(
            "`{RELATIVE_BIAS}` is {}, but layer {i} {} it (`{positioned}`)",
            if relative { "present" } else { "absent" },
            if adds_bias { "adds" } else { "does not add" }
        ));
    }
    for (part, tensor) in [("q", "query"), ("k", "key"), ("v", "value")] {
        let out = format!("layer{i}/{part}/matmul");
        let node = graph.producer(&out).filter(|n| n.op_type == "MatMul");
        let reads = node.is_some_and(|n| {
            n.inputs == [layer_output(i), weight_name(i, &format!("attention.self.{tensor}.weight_t"))]
        });
        if !reads {
            return Err(format!("`{out}` is not a MatMul of `{}` by the {tensor} weight", layer_output(i)));
        }
    }
    if graph.producer(&format!("layer{i}/gelu_erf")).is_none_or(|n| n.op_type != "Erf") {
        return Err(format!("layer {i} has no exact GELU (`layer{i}/gelu_erf`)"));
    }
    Ok(())
}

/// `act(x W + b)` over the last dimension of `[batch, seq, in]`.
fn linear(x: &Tensor, w: &Tensor, b: &Tensor, act: Act) -> Result<Tensor> {
    let (batch, seq, width) = x.dims3()?;
    let y = x.reshape((batch * seq, width))?.matmul(w)?;
    Ok(crate::bias_act::apply(&y, b, act)?.reshape((batch, seq, ()))?)
}

/// Layer normalisation over the last dimension (biased variance, as ONNX's operator).
fn layer_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Result<Tensor> {
    let centred = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    Ok(centred.broadcast_div(&var.affine(1.0, eps)?.sqrt()?)?.broadcast_mul(gamma)?.broadcast_add(beta)?)
}

/// Softmax over the last dimension; the shift by the maximum carries no gradient (softmax
/// does not depend on it).
pub fn softmax_last(x: &Tensor) -> Result<Tensor> {
    let e = x.broadcast_sub(&x.max_keepdim(D::Minus1)?.detach())?.exp()?;
    Ok(e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?)
}

/// Mean of `x` `[batch, seq, hidden]` over each row's real tokens (`mask` `[batch, seq]`).
pub fn mean_pool(x: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let summed = x.broadcast_mul(&mask.unsqueeze(2)?)?.sum(1)?;
    Ok(summed.broadcast_div(&mask.sum_keepdim(1)?)?)
}
