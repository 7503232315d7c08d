//! Reading an ONNX model's graph (inputs, outputs, every node's tensors with shapes where the
//! file records them, float32 weights) and editing it: intermediate tensors exposed as extra
//! graph outputs, weights replaced, by editing the protobuf wire format in memory; the rest of
//! the file is copied byte for byte.

use std::collections::HashMap;

/// Field numbers of the ONNX protobuf messages used here (onnx/onnx.proto).
mod field {
    pub const MODEL_GRAPH: u64 = 7;
    pub const MODEL_OPSET_IMPORT: u64 = 8;
    pub const OPSET_DOMAIN: u64 = 1;
    pub const OPSET_VERSION: u64 = 2;
    pub const GRAPH_NODE: u64 = 1;
    pub const GRAPH_INITIALIZER: u64 = 5;
    pub const GRAPH_INPUT: u64 = 11;
    pub const GRAPH_OUTPUT: u64 = 12;
    pub const GRAPH_VALUE_INFO: u64 = 13;
    pub const NODE_INPUT: u64 = 1;
    pub const NODE_OUTPUT: u64 = 2;
    pub const NODE_ATTRIBUTE: u64 = 5;
    pub const ATTRIBUTE_NAME: u64 = 1;
    pub const ATTRIBUTE_FLOAT: u64 = 2;
    pub const ATTRIBUTE_INT: u64 = 3;
    pub const ATTRIBUTE_INTS: u64 = 8;
    pub const TENSOR_DIMS: u64 = 1;
    pub const TENSOR_DATA_TYPE: u64 = 2;
    pub const TENSOR_FLOAT_DATA: u64 = 4;
    pub const TENSOR_RAW_DATA: u64 = 9;
    pub const NODE_NAME: u64 = 3;
    pub const NODE_OP_TYPE: u64 = 4;
    pub const VALUE_NAME: u64 = 1;
    pub const VALUE_TYPE: u64 = 2;
    pub const TYPE_TENSOR: u64 = 1;
    pub const TENSOR_ELEM_TYPE: u64 = 1;
    pub const TENSOR_SHAPE: u64 = 2;
    pub const SHAPE_DIM: u64 = 1;
    pub const DIM_VALUE: u64 = 1;
    pub const DIM_PARAM: u64 = 2;
    pub const INITIALIZER_NAME: u64 = 8;
}

/// One field of a protobuf message: its number and payload (varint value or bytes), and the
/// whole encoded field.
#[derive(Debug, Clone, Copy)]
struct Field<'a> {
    number: u64,
    varint: u64,
    bytes: &'a [u8],
    raw: &'a [u8],
}

fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*pos)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

pub fn encode_varint(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// The fields of a message, or `None` when `buf` is not valid protobuf.
fn fields(buf: &[u8]) -> Option<Vec<Field<'_>>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let start = pos;
        let key = varint(buf, &mut pos)?;
        let (number, wire) = (key >> 3, key & 7);
        let (mut v, mut bytes) = (0, &buf[0..0]);
        match wire {
            0 => v = varint(buf, &mut pos)?,
            1 | 5 => {
                let end = pos.checked_add(if wire == 1 { 8 } else { 4 }).filter(|&p| p <= buf.len())?;
                bytes = &buf[pos..end];
                pos = end;
            }
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?).ok()?;
                let end = pos.checked_add(len).filter(|&e| e <= buf.len())?;
                bytes = &buf[pos..end];
                pos = end;
            }
            _ => return None,
        }
        out.push(Field { number, varint: v, bytes, raw: &buf[start..pos] });
    }
    Some(out)
}

fn string(f: &Field<'_>) -> String {
    String::from_utf8_lossy(f.bytes).into_owned()
}

/// A dimension of a tensor shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    Value(i64),
    Param(String),
    Unknown,
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Value(v) => write!(f, "{v}"),
            Dim::Param(p) => f.write_str(p),
            Dim::Unknown => f.write_str("?"),
        }
    }
}

/// A named tensor with its element type (ONNX `TensorProto.DataType`) and shape when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub elem_type: Option<i64>,
    pub shape: Option<Vec<Dim>>,
}

impl TensorInfo {
    fn parse(buf: &[u8]) -> Option<Self> {
        let mut info = TensorInfo { name: String::new(), elem_type: None, shape: None };
        for f in fields(buf)? {
            match f.number {
                field::VALUE_NAME => info.name = string(&f),
                field::VALUE_TYPE => {
                    for t in fields(f.bytes)?.iter().filter(|t| t.number == field::TYPE_TENSOR) {
                        for tf in fields(t.bytes)? {
                            match tf.number {
                                field::TENSOR_ELEM_TYPE => info.elem_type = Some(tf.varint as i64),
                                field::TENSOR_SHAPE => {
                                    let mut dims = Vec::new();
                                    for d in fields(tf.bytes)?.iter().filter(|d| d.number == field::SHAPE_DIM) {
                                        let mut dim = Dim::Unknown;
                                        for df in fields(d.bytes)? {
                                            match df.number {
                                                field::DIM_VALUE => dim = Dim::Value(df.varint as i64),
                                                field::DIM_PARAM => dim = Dim::Param(string(&df)),
                                                _ => {}
                                            }
                                        }
                                        dims.push(dim);
                                    }
                                    info.shape = Some(dims);
                                }
                                _ => {}
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        Some(info)
    }

    /// `float32 [batch, sequence, 384]`, or what is known of it.
    pub fn describe(&self) -> String {
        let ty = match self.elem_type {
            Some(1) => "float32",
            Some(7) => "int64",
            Some(6) => "int32",
            Some(10) => "float16",
            Some(9) => "bool",
            Some(3) => "int8",
            Some(2) => "uint8",
            Some(_) => "other",
            None => "?",
        };
        match &self.shape {
            Some(dims) => format!("{ty} [{}]", dims.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")),
            None => ty.to_owned(),
        }
    }
}

/// A node, the tensors it reads and produces, and its float attributes (`epsilon`, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: String,
    pub op_type: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub float_attributes: Vec<(String, f32)>,
    /// Integer attributes (`i` and `ints`), each as a list.
    pub int_attributes: Vec<(String, Vec<i64>)>,
}

impl Node {
    /// The integer attribute `name` (one value for `i`, several for `ints`).
    pub fn ints(&self, name: &str) -> Option<&[i64]> {
        self.int_attributes.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice())
    }
}

/// What `graft-backbone inspect` shows of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    pub inputs: Vec<TensorInfo>,
    pub outputs: Vec<TensorInfo>,
    pub nodes: Vec<Node>,
    /// Shapes recorded for intermediate tensors (`value_info`), by name.
    pub value_info: HashMap<String, TensorInfo>,
    /// Version of the default (`ai.onnx`) operator set the model imports.
    pub opset: Option<i64>,
}

fn graph_field(model: &[u8]) -> Option<Field<'_>> {
    fields(model)?.into_iter().find(|f| f.number == field::MODEL_GRAPH)
}

/// Reads the graph of an ONNX model file's bytes; `None` when they are not an ONNX model.
pub fn read(model: &[u8]) -> Option<Graph> {
    let graph = graph_field(model)?;
    let mut g = Graph { inputs: vec![], outputs: vec![], nodes: vec![], value_info: HashMap::new(), opset: None };
    for import in fields(model)?.iter().filter(|f| f.number == field::MODEL_OPSET_IMPORT) {
        let parts = fields(import.bytes)?;
        let domain = parts.iter().find(|p| p.number == field::OPSET_DOMAIN).map(string).unwrap_or_default();
        if domain.is_empty() || domain == "ai.onnx" {
            g.opset = parts.iter().find(|p| p.number == field::OPSET_VERSION).map(|p| p.varint as i64);
        }
    }
    let mut initializers = Vec::new();
    for f in fields(graph.bytes)? {
        match f.number {
            field::GRAPH_NODE => {
                let mut node = Node {
                    name: String::new(),
                    op_type: String::new(),
                    inputs: vec![],
                    outputs: vec![],
                    float_attributes: vec![],
                    int_attributes: vec![],
                };
                for nf in fields(f.bytes)? {
                    match nf.number {
                        field::NODE_INPUT => node.inputs.push(string(&nf)),
                        field::NODE_OUTPUT => node.outputs.push(string(&nf)),
                        field::NODE_ATTRIBUTE => {
                            let parts = fields(nf.bytes)?;
                            let name = parts.iter().find(|p| p.number == field::ATTRIBUTE_NAME).map(string);
                            let value = parts.iter().find(|p| p.number == field::ATTRIBUTE_FLOAT && p.bytes.len() == 4);
                            if let (Some(name), Some(v)) = (name.clone(), value) {
                                node.float_attributes.push((name, f32::from_le_bytes(v.bytes.try_into().ok()?)));
                            }
                            let mut ints = Vec::new();
                            for p in &parts {
                                match (p.number, p.bytes.is_empty()) {
                                    (field::ATTRIBUTE_INT, true) | (field::ATTRIBUTE_INTS, true) => {
                                        ints.push(p.varint as i64);
                                    }
                                    // Packed `ints`.
                                    (field::ATTRIBUTE_INTS, false) => {
                                        let mut pos = 0;
                                        while pos < p.bytes.len() {
                                            ints.push(varint(p.bytes, &mut pos)? as i64);
                                        }
                                    }
                                    _ => {}
                                }
                            }
                            if let (Some(name), false) = (name, ints.is_empty()) {
                                node.int_attributes.push((name, ints));
                            }
                        }
                        field::NODE_NAME => node.name = string(&nf),
                        field::NODE_OP_TYPE => node.op_type = string(&nf),
                        _ => {}
                    }
                }
                g.nodes.push(node);
            }
            field::GRAPH_INITIALIZER => {
                if let Some(name) = fields(f.bytes)?.iter().find(|t| t.number == field::INITIALIZER_NAME) {
                    initializers.push(string(name));
                }
            }
            field::GRAPH_INPUT => g.inputs.push(TensorInfo::parse(f.bytes)?),
            field::GRAPH_OUTPUT => g.outputs.push(TensorInfo::parse(f.bytes)?),
            field::GRAPH_VALUE_INFO => {
                let info = TensorInfo::parse(f.bytes)?;
                g.value_info.insert(info.name.clone(), info);
            }
            _ => {}
        }
    }
    // Older exporters list initializers among the inputs; they are weights, not inputs.
    g.inputs.retain(|i| !initializers.contains(&i.name));
    Some(g)
}

impl Graph {
    /// Whether some node produces `name`.
    pub fn produces(&self, name: &str) -> bool {
        self.nodes.iter().any(|n| n.outputs.iter().any(|o| o == name))
    }

    /// The node that produces `name`.
    pub fn producer(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.outputs.iter().any(|o| o == name))
    }
}

/// A float32 tensor: its shape and values in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct FloatTensor {
    pub dims: Vec<usize>,
    pub values: Vec<f32>,
}

const FLOAT: u64 = 1;

/// The float32 initializers of a model whose names `wanted` accepts, by name; `None` when
/// the bytes are not an ONNX model or such an initializer's data does not match its shape.
pub fn float_initializers(model: &[u8], wanted: impl Fn(&str) -> bool) -> Option<HashMap<String, FloatTensor>> {
    let mut out = HashMap::new();
    for f in fields(graph_field(model)?.bytes)?.iter().filter(|f| f.number == field::GRAPH_INITIALIZER) {
        let parts = fields(f.bytes)?;
        let Some(name) = parts.iter().find(|p| p.number == field::INITIALIZER_NAME).map(string) else { continue };
        let data_type = parts.iter().find(|p| p.number == field::TENSOR_DATA_TYPE).map_or(0, |p| p.varint);
        if !wanted(&name) || data_type != FLOAT {
            continue;
        }
        let mut dims = Vec::new();
        for p in parts.iter().filter(|p| p.number == field::TENSOR_DIMS) {
            if p.raw[0] & 7 == 0 {
                dims.push(usize::try_from(p.varint).ok()?);
            } else {
                let mut pos = 0;
                while pos < p.bytes.len() {
                    dims.push(usize::try_from(varint(p.bytes, &mut pos)?).ok()?);
                }
            }
        }
        let data = parts
            .iter()
            .find(|p| p.number == field::TENSOR_RAW_DATA)
            .or_else(|| parts.iter().find(|p| p.number == field::TENSOR_FLOAT_DATA))
            .map_or(&[][..], |p| p.bytes);
        let values: Vec<f32> = data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        if data.len() % 4 != 0 || values.len() != dims.iter().product::<usize>() {
            return None;
        }
        out.insert(name, FloatTensor { dims, values });
    }
    Some(out)
}

/// The names of a model's initializers (weights are not decoded).
pub fn initializer_names(model: &[u8]) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for f in fields(graph_field(model)?.bytes)?.iter().filter(|f| f.number == field::GRAPH_INITIALIZER) {
        if let Some(name) = fields(f.bytes)?.iter().find(|p| p.number == field::INITIALIZER_NAME) {
            out.push(string(name));
        }
    }
    Some(out)
}

/// An int64 initializer's values (shape tensors, axes); `None` when there is none by `name`.
pub fn int64_initializer(model: &[u8], name: &str) -> Option<Vec<i64>> {
    const INT64: u64 = 7;
    const TENSOR_INT64_DATA: u64 = 7;
    for f in fields(graph_field(model)?.bytes)?.iter().filter(|f| f.number == field::GRAPH_INITIALIZER) {
        let parts = fields(f.bytes)?;
        if parts.iter().find(|p| p.number == field::INITIALIZER_NAME).map(string).as_deref() != Some(name) {
            continue;
        }
        if parts.iter().find(|p| p.number == field::TENSOR_DATA_TYPE).map(|p| p.varint) != Some(INT64) {
            return None;
        }
        if let Some(raw) = parts.iter().find(|p| p.number == field::TENSOR_RAW_DATA) {
            return Some(
                raw.bytes.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes"))).collect(),
            );
        }
        let mut out = Vec::new();
        for p in parts.iter().filter(|p| p.number == TENSOR_INT64_DATA) {
            if p.raw[0] & 7 == 0 {
                out.push(p.varint as i64);
            } else {
                let mut pos = 0;
                while pos < p.bytes.len() {
                    out.push(varint(p.bytes, &mut pos)? as i64);
                }
            }
        }
        return Some(out);
    }
    None
}

/// The model with the named float32 initializers' values replaced (same shapes; written as
/// raw data); every other byte of the file copied. `None` when a name is not an initializer
/// of the model.
pub fn with_float_initializers(model: &[u8], replaced: &HashMap<String, FloatTensor>) -> Option<Vec<u8>> {
    let put = |number: u64, bytes: &[u8], out: &mut Vec<u8>| {
        encode_varint((number << 3) | 2, out);
        encode_varint(bytes.len() as u64, out);
        out.extend_from_slice(bytes);
    };
    let mut graph = Vec::new();
    let mut found = 0;
    for f in fields(graph_field(model)?.bytes)? {
        let name = (f.number == field::GRAPH_INITIALIZER)
            .then(|| fields(f.bytes)?.iter().find(|p| p.number == field::INITIALIZER_NAME).map(string))
            .flatten();
        let Some(tensor) = name.as_ref().and_then(|n| replaced.get(n)) else {
            graph.extend_from_slice(f.raw);
            continue;
        };
        found += 1;
        let mut proto = Vec::new();
        for &d in &tensor.dims {
            encode_varint(field::TENSOR_DIMS << 3, &mut proto);
            encode_varint(d as u64, &mut proto);
        }
        encode_varint(field::TENSOR_DATA_TYPE << 3, &mut proto);
        encode_varint(FLOAT, &mut proto);
        put(field::INITIALIZER_NAME, name.as_deref().unwrap_or_default().as_bytes(), &mut proto);
        let raw: Vec<u8> = tensor.values.iter().flat_map(|v| v.to_le_bytes()).collect();
        put(field::TENSOR_RAW_DATA, &raw, &mut proto);
        put(field::GRAPH_INITIALIZER, &proto, &mut graph);
    }
    if found != replaced.len() {
        return None;
    }
    with_graph(model, &[&graph])
}

/// The model with each of `names` (tensors its nodes produce) added as a graph output.
/// Names that already are outputs are left alone.
pub fn with_outputs(model: &[u8], names: &[String]) -> Option<Vec<u8>> {
    let mut graph = graph_field(model)?.bytes.to_vec();
    let existing: Vec<String> = read(model)?.outputs.into_iter().map(|o| o.name).collect();
    for name in names.iter().filter(|n| !existing.contains(n)) {
        push_output(name, &mut graph);
    }
    with_graph(model, &[&graph])
}

/// The model with exactly `names` as its graph outputs, in that order: declared outputs keep
/// their recorded type and shape, other tensors its nodes produce are added by name. ONNX
/// Runtime plans memory more freely when fewer tensors must outlive a run.
pub fn with_only_outputs(model: &[u8], names: &[String]) -> Option<Vec<u8>> {
    let graph_field = graph_field(model)?;
    let mut parts: Vec<std::borrow::Cow<[u8]>> = Vec::new();
    let mut declared: HashMap<String, &[u8]> = HashMap::new();
    for f in fields(graph_field.bytes)? {
        if f.number == field::GRAPH_OUTPUT {
            declared.insert(TensorInfo::parse(f.bytes)?.name, f.raw);
        } else {
            parts.push(f.raw.into());
        }
    }
    for name in names {
        parts.push(match declared.get(name) {
            Some(raw) => (*raw).into(),
            None => {
                let mut added = Vec::new();
                push_output(name, &mut added);
                added.into()
            }
        });
    }
    with_graph(model, &parts.iter().map(|p| &p[..]).collect::<Vec<_>>())
}

/// Appends a graph output naming `name` (no type or shape) to encoded graph fields.
fn push_output(name: &str, graph: &mut Vec<u8>) {
    let mut value_info = Vec::new();
    encode_varint((field::VALUE_NAME << 3) | 2, &mut value_info);
    encode_varint(name.len() as u64, &mut value_info);
    value_info.extend_from_slice(name.as_bytes());
    encode_varint((field::GRAPH_OUTPUT << 3) | 2, graph);
    encode_varint(value_info.len() as u64, graph);
    graph.extend_from_slice(&value_info);
}

/// The model with its graph replaced by the encoded graph fields `graph`, in order; every
/// other field copied.
fn with_graph(model: &[u8], graph: &[&[u8]]) -> Option<Vec<u8>> {
    let len: usize = graph.iter().map(|p| p.len()).sum();
    let mut out = Vec::with_capacity(model.len() + len);
    for f in fields(model)? {
        if f.number == field::MODEL_GRAPH {
            encode_varint((field::MODEL_GRAPH << 3) | 2, &mut out);
            encode_varint(len as u64, &mut out);
            graph.iter().for_each(|p| out.extend_from_slice(p));
        } else {
            out.extend_from_slice(f.raw);
        }
    }
    Some(out)
}

/// The model with its graph outputs replaced by `outputs`, `nodes` and `initializers`
/// (encoded `NodeProto`s and `TensorProto`s) appended to its graph and `metadata` added to
/// its `metadata_props`.
pub fn append(
    model: &[u8],
    nodes: &[Vec<u8>],
    initializers: &[Vec<u8>],
    outputs: &[&str],
    metadata: &[(&str, String)],
) -> Option<Vec<u8>> {
    const MODEL_METADATA: u64 = 14;
    let put = |field: u64, bytes: &[u8], out: &mut Vec<u8>| {
        encode_varint((field << 3) | 2, out);
        encode_varint(bytes.len() as u64, out);
        out.extend_from_slice(bytes);
    };
    let mut graph = Vec::new();
    for f in fields(graph_field(model)?.bytes)? {
        if f.number != field::GRAPH_OUTPUT {
            graph.extend_from_slice(f.raw);
        }
    }
    for n in nodes {
        put(field::GRAPH_NODE, n, &mut graph);
    }
    for t in initializers {
        put(field::GRAPH_INITIALIZER, t, &mut graph);
    }
    for name in outputs {
        let mut value_info = Vec::new();
        put(field::VALUE_NAME, name.as_bytes(), &mut value_info);
        put(field::GRAPH_OUTPUT, &value_info, &mut graph);
    }
    let mut out = Vec::with_capacity(model.len() + graph.len());
    for f in fields(model)? {
        if f.number == field::MODEL_GRAPH {
            put(field::MODEL_GRAPH, &graph, &mut out);
        } else {
            out.extend_from_slice(f.raw);
        }
    }
    for (key, value) in metadata {
        let mut entry = Vec::new();
        put(1, key.as_bytes(), &mut entry);
        put(2, value.as_bytes(), &mut entry);
        put(MODEL_METADATA, &entry, &mut out);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Vec<u8> {
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/tiny/model.onnx")).unwrap()
    }

    #[test]
    fn reads_inputs_outputs_and_nodes() {
        let g = read(&tiny()).unwrap();
        let inputs: Vec<&str> = g.inputs.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(inputs, ["input_ids", "attention_mask", "token_type_ids"]);
        assert_eq!(g.outputs[0].name, "last_hidden_state");
        assert_eq!(g.outputs[0].describe(), "float32 [batch, sequence, 16]");
        assert!(g.produces("layer0/q") && !g.produces("no/such/tensor"));
        assert!(g.nodes.iter().any(|n| n.op_type == "LayerNormalization"));
    }

    #[test]
    fn adding_an_output_keeps_everything_else() {
        let model = tiny();
        let edited = with_outputs(&model, &["layer0/q".into(), "last_hidden_state".into()]).unwrap();
        let (before, after) = (read(&model).unwrap(), read(&edited).unwrap());
        assert_eq!(after.outputs.len(), before.outputs.len() + 1);
        assert_eq!(after.outputs.last().unwrap().name, "layer0/q");
        assert_eq!((after.nodes, after.inputs), (before.nodes, before.inputs));
        assert!(read(b"not a model").is_none());
    }

    #[test]
    fn only_the_named_outputs_remain_in_their_order() {
        let model = tiny();
        let before = read(&model).unwrap();
        let kept = before.outputs[0].clone();
        let edited = with_only_outputs(&model, &["layer0/q".into(), kept.name.clone()]).unwrap();
        let after = read(&edited).unwrap();
        let names: Vec<&str> = after.outputs.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["layer0/q", kept.name.as_str()]);
        assert_eq!(after.outputs[1], kept, "a declared output keeps its type and shape");
        assert_eq!((after.nodes, after.inputs, after.opset), (before.nodes, before.inputs, before.opset));
        assert_eq!(float_initializers(&edited, |_| true).unwrap(), float_initializers(&model, |_| true).unwrap());
    }

    #[test]
    fn weights_are_read_and_replaced_in_place() {
        let model = tiny();
        let name = "encoder.layer.0.attention.self.query.weight_t";
        let weights = float_initializers(&model, |n| n.starts_with("encoder.layer.0.")).unwrap();
        let w = &weights[name];
        assert_eq!(w.dims, [16, 16]);
        let ln = read(&model).unwrap();
        let eps =
            ln.producer("hidden_state_1").unwrap().float_attributes.iter().find(|(k, _)| k == "epsilon").unwrap().1;
        assert!((eps - 1e-12).abs() < 1e-15, "{eps}");
        let changed = FloatTensor { dims: w.dims.clone(), values: w.values.iter().map(|v| v * 2.0 + 1.0).collect() };
        let edited = with_float_initializers(&model, &HashMap::from([(name.to_owned(), changed.clone())])).unwrap();
        let after = float_initializers(&edited, |_| true).unwrap();
        assert_eq!(after[name], changed);
        let before = float_initializers(&model, |_| true).unwrap();
        assert_eq!(before.len(), after.len());
        assert!(before.iter().filter(|(n, _)| *n != name).all(|(n, t)| after[n] == *t));
        assert_eq!(read(&edited).unwrap().nodes, read(&model).unwrap().nodes);
        assert_eq!(int64_initializer(&model, "split_heads_shape"), Some(vec![0, 0, 2, 8]));
        let names = initializer_names(&model).unwrap();
        assert!(names.contains(&"split_heads_shape".to_owned()) && names.contains(&name.to_owned()));
        assert!(before.keys().all(|k| names.contains(k)) && names.len() > before.len());
        assert_eq!(int64_initializer(&model, "no_such_shape"), None);
        let unknown = HashMap::from([("no.such.weight".to_owned(), changed)]);
        assert!(with_float_initializers(&model, &unknown).is_none());
    }
}
