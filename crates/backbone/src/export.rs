//! One ONNX file for serving: a bundle's backbone with the pooling, combination,
//! normalisation, standardisation, head, temperature and softmax appended as ONNX nodes, so
//! any ONNX Runtime (Python, C#, JavaScript) computes graft's predictions with no graft code.
//!
//! Inputs are the backbone's (token ids, mask and types, or pixels); outputs are
//! `probabilities` (classification, float64 `[batch, classes]`) or `value` (regression,
//! float64 `[batch]`), and `embedding` (the pooled features, float32 `[batch, dim]`); a name
//! the backbone already uses gets a `graft_` prefix, and metadata `graft.outputs` says which. The head runs in float64 as
//! graft's own does; labels and the task are in the model's metadata. Nodes are appended to
//! the graph in the protobuf wire format; every other byte of the backbone is copied.

use std::path::Path;

use graft_core::artifact::Task;
use graft_core::bundle::Bundle;
use graft_core::config::finetune::Activation;
use graft_core::head::model::Model;
use graft_core::spec::{Combine, Kind, Pooling};

use crate::error::{Error, Result};
use crate::{graph, mlflow};

/// ONNX `TensorProto.DataType` values used here.
const FLOAT: i64 = 1;
const BOOL: i64 = 9;
const INT64: i64 = 7;
const DOUBLE: i64 = 11;

/// The appended part of the graph: nodes and initializers, encoded.
#[derive(Default)]
struct Builder {
    nodes: Vec<Vec<u8>>,
    initializers: Vec<Vec<u8>>,
    count: usize,
}

fn put_bytes(field: u64, bytes: &[u8], out: &mut Vec<u8>) {
    graph::encode_varint((field << 3) | 2, out);
    graph::encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

fn put_varint(field: u64, v: u64, out: &mut Vec<u8>) {
    graph::encode_varint(field << 3, out);
    graph::encode_varint(v, out);
}

/// A node attribute (integers are all the appended nodes need).
enum Attr {
    Int(i64),
    Ints(Vec<i64>),
}

impl Builder {
    fn name(&mut self, stem: &str) -> String {
        self.count += 1;
        format!("graft/{stem}_{}", self.count)
    }

    /// Appends `op(inputs) -> one new output`, returning the output's name.
    fn node(&mut self, op: &str, inputs: &[&str], attrs: &[(&str, Attr)]) -> String {
        let output = self.name(&op.to_ascii_lowercase());
        self.node_named(op, inputs, attrs, &output);
        output
    }

    fn node_named(&mut self, op: &str, inputs: &[&str], attrs: &[(&str, Attr)], output: &str) {
        let mut n = Vec::new();
        for i in inputs {
            put_bytes(1, i.as_bytes(), &mut n);
        }
        put_bytes(2, output.as_bytes(), &mut n);
        put_bytes(3, format!("{output}/node").as_bytes(), &mut n);
        put_bytes(4, op.as_bytes(), &mut n);
        for (name, value) in attrs {
            let mut a = Vec::new();
            put_bytes(1, name.as_bytes(), &mut a);
            match value {
                Attr::Int(v) => {
                    put_varint(3, *v as u64, &mut a);
                    put_varint(20, 2, &mut a); // AttributeProto.INT
                }
                Attr::Ints(vs) => {
                    vs.iter().for_each(|v| put_varint(8, *v as u64, &mut a));
                    put_varint(20, 7, &mut a); // AttributeProto.INTS
                }
            }
            put_bytes(5, &a, &mut n);
        }
        self.nodes.push(n);
    }

    /// Appends a constant tensor, returning its name.
    fn tensor(&mut self, stem: &str, dims: &[usize], data_type: i64, raw: Vec<u8>) -> String {
        let name = self.name(stem);
        let mut t = Vec::new();
        for d in dims {
            put_varint(1, *d as u64, &mut t);
        }
        put_varint(2, data_type as u64, &mut t);
        put_bytes(8, name.as_bytes(), &mut t);
        put_bytes(9, &raw, &mut t);
        self.initializers.push(t);
        name
    }

    fn f32s(&mut self, stem: &str, dims: &[usize], values: impl Iterator<Item = f32>) -> String {
        self.tensor(stem, dims, FLOAT, values.flat_map(f32::to_le_bytes).collect())
    }

    fn f64s(&mut self, stem: &str, dims: &[usize], values: impl Iterator<Item = f64>) -> String {
        self.tensor(stem, dims, DOUBLE, values.flat_map(f64::to_le_bytes).collect())
    }

    fn i64s(&mut self, stem: &str, values: &[i64]) -> String {
        self.tensor(stem, &[values.len()], INT64, values.iter().flat_map(|v| v.to_le_bytes()).collect())
    }
}

/// Writes the bundle at `bundle_dir` as one ONNX model at `out`, or as an MLflow model
/// folder `out` (atomically).
pub fn export(bundle_dir: &Path, out: &Path, format: ExportFormat) -> Result<()> {
    let bundle = Bundle::load(bundle_dir)?;
    let bad = |message: String| Error::Export { bundle: bundle_dir.to_owned(), message };
    let model_path = &bundle.spec.model;
    let bytes =
        std::fs::read(model_path).map_err(|source| graft_core::Error::Read { path: model_path.clone(), source })?;
    let features = &bundle.info.features;
    let pooling = <Pooling as clap::ValueEnum>::from_str(&features.pooling, false)
        .map_err(|_| bad(format!("unknown pooling `{}`", features.pooling)))?;
    let combine = match &features.combine {
        Some(c) => {
            <Combine as clap::ValueEnum>::from_str(c, false).map_err(|_| bad(format!("unknown combine `{c}`")))?
        }
        None => Combine::Concat,
    };
    let graph =
        graph::read(&bytes).ok_or_else(|| bad(format!("`{}` is not a readable ONNX model", model_path.display())))?;
    let mut b = Builder::default();
    let axis1 = b.i64s("axis1", &[1]);
    let pooled: Vec<String> = match (bundle.spec.kind, pooling) {
        (Kind::Text, Pooling::Mean | Pooling::Max | Pooling::MeanMax) => {
            let mask_name = bundle.spec.inputs.attention_mask.clone().ok_or_else(|| {
                bad(format!(
                    "`{}` pooling needs the attention mask, and the spec names no mask input",
                    pooling.as_str()
                ))
            })?;
            let axis2 = b.i64s("axis2", &[2]);
            let mask = b.node("Cast", &[&mask_name], &[("to", Attr::Int(FLOAT))]);
            let mask3 = b.node("Unsqueeze", &[&mask, &axis2], &[]);
            let count = (pooling != Pooling::Max)
                .then(|| b.node("ReduceSum", &[&mask3, &axis1], &[("keepdims", Attr::Int(0))]));
            let present = (pooling != Pooling::Mean).then(|| {
                let present = b.node("Cast", &[&mask3], &[("to", Attr::Int(BOOL))]);
                (present, b.f32s("lowest", &[], std::iter::once(f32::NEG_INFINITY)))
            });
            // ReduceMax takes its axes as an attribute before opset 18 and as an input from it.
            let axes_input = graph.opset.is_some_and(|v| v >= 18);
            let mean = |b: &mut Builder, o: &str| {
                let masked = b.node("Mul", &[o, &mask3], &[]);
                let sum = b.node("ReduceSum", &[&masked, &axis1], &[("keepdims", Attr::Int(0))]);
                b.node("Div", &[&sum, count.as_ref().expect("made for mean pooling")], &[])
            };
            let max = |b: &mut Builder, o: &str| {
                let (present, lowest) = present.as_ref().expect("made for max pooling");
                let masked = b.node("Where", &[present, o, lowest], &[]);
                if axes_input {
                    b.node("ReduceMax", &[&masked, &axis1], &[("keepdims", Attr::Int(0))])
                } else {
                    b.node("ReduceMax", &[&masked], &[("axes", Attr::Ints(vec![1])), ("keepdims", Attr::Int(0))])
                }
            };
            features
                .outputs
                .iter()
                .map(|o| match pooling {
                    Pooling::Max => max(&mut b, o),
                    Pooling::MeanMax => {
                        let (m, x) = (mean(&mut b, o), max(&mut b, o));
                        b.node("Concat", &[&m, &x], &[("axis", Attr::Int(1))])
                    }
                    _ => mean(&mut b, o),
                })
                .collect()
        }
        (Kind::Text, Pooling::Cls) => {
            let zero = b.tensor("zero", &[], INT64, 0i64.to_le_bytes().to_vec());
            features.outputs.iter().map(|o| b.node("Gather", &[o, &zero], &[("axis", Attr::Int(1))])).collect()
        }
        (Kind::Image, Pooling::None) => features.outputs.clone(),
        (Kind::Image, Pooling::Gap) => features
            .outputs
            .iter()
            .map(|o| {
                let pooled = b.node("GlobalAveragePool", &[o], &[]);
                b.node("Flatten", &[&pooled], &[("axis", Attr::Int(1))])
            })
            .collect(),
        (_, other) => {
            return Err(bad(format!(
                "`{}` pooling is not exported yet (mean, max, mean_max and cls for text, none and gap for images)",
                other.as_str()
            )));
        }
    };
    let refs: Vec<&str> = pooled.iter().map(String::as_str).collect();
    let mut x = match (refs.len(), combine) {
        (1, _) => pooled[0].clone(),
        (_, Combine::Concat) => b.node("Concat", &refs, &[("axis", Attr::Int(1))]),
        (k, Combine::Mean) => {
            let sum = b.node("Sum", &refs, &[]);
            let k = b.f32s("count", &[], std::iter::once(k as f32));
            b.node("Div", &[&sum, &k], &[])
        }
    };
    if features.normalize {
        let squares = b.node("Mul", &[&x, &x], &[]);
        let sum = b.node("ReduceSum", &[&squares, &axis1], &[("keepdims", Attr::Int(1))]);
        let norm = b.node("Sqrt", &[&sum], &[]);
        x = b.node("Div", &[&x, &norm], &[]);
    }
    // Output names the backbone does not use already (an image model may call its own
    // output `embedding`: then it is the embedding).
    let taken = |name: &str| graph.produces(name) || graph.inputs.iter().any(|i| i.name == name);
    let free = |name: &str| if taken(name) { format!("graft_{name}") } else { name.to_owned() };
    let embedding = if x == "embedding" { x.clone() } else { free("embedding") };
    if embedding != x {
        b.node_named("Identity", &[&x], &[], &embedding);
    }
    let head = &bundle.head;
    let dim = features.dim;
    if let Some((mean, scale)) = &head.scaling {
        // graft standardises in float64 and keeps float32, as here.
        let x64 = b.node("Cast", &[&x], &[("to", Attr::Int(DOUBLE))]);
        let m = b.f64s("mean", &[dim], mean.iter().copied());
        let s = b.f64s("scale", &[dim], scale.iter().copied());
        let centred = b.node("Sub", &[&x64, &m], &[]);
        let scaled = b.node("Div", &[&centred, &s], &[]);
        x = b.node("Cast", &[&scaled], &[("to", Attr::Int(FLOAT))]);
    }
    let logits = match &head.model {
        Model::Linear(m) => {
            let x64 = b.node("Cast", &[&x], &[("to", Attr::Int(DOUBLE))]);
            let (k, d) = m.weight.dim();
            let w = b.f64s("weight", &[d, k], m.weight.t().iter().copied());
            let bias = b.f64s("bias", &[k], m.bias.iter().copied());
            let z = b.node("MatMul", &[&x64, &w], &[]);
            b.node("Add", &[&z, &bias], &[])
        }
        Model::Mlp(m) => {
            let mut h = x.clone();
            for (i, layer) in m.layers.iter().enumerate() {
                let (rows, cols) = layer.weight.dim();
                let w = b.f32s("weight", &[rows, cols], layer.weight.iter().copied());
                let bias = b.f32s("bias", &[cols], layer.bias.iter().copied());
                let z = b.node("MatMul", &[&h, &w], &[]);
                h = b.node("Add", &[&z, &bias], &[]);
                if i + 1 < m.layers.len() {
                    h = activation(&mut b, &h, m.activation);
                }
            }
            b.node("Cast", &[&h], &[("to", Attr::Int(DOUBLE))])
        }
    };
    let temperature = b.f64s("temperature", &[], std::iter::once(head.info.temperature));
    let z = b.node("Div", &[&logits, &temperature], &[]);
    let output = match bundle.info.task {
        Task::Classification => {
            let name = free("probabilities");
            b.node_named("Softmax", &[&z], &[("axis", Attr::Int(1))], &name);
            name
        }
        Task::Regression => {
            let col = b.node("Squeeze", &[&z, &axis1], &[]);
            let scale = b.f64s("target_scale", &[], std::iter::once(head.info.target_scale));
            let mean = b.f64s("target_mean", &[], std::iter::once(head.info.target_mean));
            let scaled = b.node("Mul", &[&col, &scale], &[]);
            let name = free("value");
            b.node_named("Add", &[&scaled, &mean], &[], &name);
            name
        }
    };
    let metadata = [
        ("graft.task", bundle.info.task.to_string()),
        ("graft.labels", serde_json::to_string(&bundle.info.labels).expect("strings")),
        ("graft.graft_version", graft_core::VERSION.to_owned()),
        ("graft.features", serde_json::to_string(features).expect("serialisable")),
        ("graft.outputs", serde_json::to_string(&[&output, &embedding]).expect("strings")),
    ];
    let edited = graph::append(&bytes, &b.nodes, &b.initializers, &[&output, &embedding], &metadata)
        .ok_or_else(|| bad(format!("`{}` is not a readable ONNX model", model_path.display())))?;
    match format {
        ExportFormat::Onnx => graft_core::atomic::write_bytes(out, &edited)?,
        ExportFormat::Mlflow => {
            let signature = mlflow::Signature {
                inputs: inputs(&bundle, &graph),
                outputs: vec![
                    match bundle.info.task {
                        Task::Classification => (output.clone(), "float64", vec![-1, bundle.info.labels.len() as i64]),
                        Task::Regression => (output.clone(), "float64", vec![-1]),
                    },
                    (embedding.clone(), "float32", vec![-1, dim as i64]),
                ],
            };
            let mut pending = vec![graft_core::atomic::pending_bytes(&out.join(mlflow::MODEL_FILE), &edited)?];
            for (name, text) in mlflow::files(&signature) {
                pending.push(graft_core::atomic::pending_bytes(&out.join(name), text.as_bytes())?);
            }
            graft_core::atomic::commit_all(pending)?;
        }
    }
    Ok(())
}

/// What `graft-backbone export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// One ONNX file.
    Onnx,
    /// An MLflow model folder: the ONNX file with an `MLmodel` (`onnx` and `python_function`
    /// flavors, a tensor signature) and pinned requirements.
    Mlflow,
}

/// The model's inputs as the signature lists them: name, dtype, shape.
fn inputs(bundle: &Bundle, graph: &graph::Graph) -> Vec<(String, &'static str, Vec<i64>)> {
    match bundle.spec.kind {
        Kind::Text => graph.inputs.iter().map(|i| (i.name.clone(), "int64", vec![-1, -1])).collect(),
        Kind::Image => {
            let image = bundle.spec.image();
            let s = i64::from(image.size);
            let shape = match image.layout {
                graft_core::spec::Layout::Nchw => vec![-1, 3, s, s],
                graft_core::spec::Layout::Nhwc => vec![-1, s, s, 3],
            };
            vec![(image.input.clone(), "float32", shape)]
        }
    }
}

/// `activation(h)` as ONNX nodes, in float32 as graft's MLP computes it.
fn activation(b: &mut Builder, h: &str, a: Activation) -> String {
    match a {
        Activation::Relu => b.node("Relu", &[h], &[]),
        Activation::Gelu => {
            // 0.5 h (1 + tanh(sqrt(2/pi) (h + 0.044715 h^3))), the tanh form graft trains with.
            let c = |b: &mut Builder, v: f32| b.f32s("c", &[], std::iter::once(v));
            let (k, cubic, half, one) = (c(b, 0.797_884_6), c(b, 0.044_715), c(b, 0.5), c(b, 1.0));
            let h2 = b.node("Mul", &[h, h], &[]);
            let h3 = b.node("Mul", &[&h2, h], &[]);
            let t = b.node("Mul", &[&h3, &cubic], &[]);
            let inner = b.node("Add", &[h, &t], &[]);
            let scaled = b.node("Mul", &[&inner, &k], &[]);
            let tanh = b.node("Tanh", &[&scaled], &[]);
            let plus = b.node("Add", &[&tanh, &one], &[]);
            let half_h = b.node("Mul", &[h, &half], &[]);
            b.node("Mul", &[&half_h, &plus], &[])
        }
    }
}
