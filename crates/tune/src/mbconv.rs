//! The top MBConv blocks of graft's EfficientNet-Lite graph (`scripts/export_efficientnet.py`:
//! batch normalisation folded into each convolution, ReLU6, no squeeze-excitation) and the 1x1
//! head convolution above them, as trainable tensors: recognised in and read from the ONNX
//! model, run forward channels-last with autograd (depthwise filters by [`crate::depthwise`]),
//! and handed back for writing into a copy.
//! The cut is the feature map a block reads, one token vector per spatial position.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use graft_core::onnx::{self, FloatTensor, Graph, Node};

use crate::bias_act::Act;
use crate::error::{Error, Result};

/// What a recognised model looks like, for messages.
pub(crate) const EXPECTED: &str = "graft's EfficientNet-Lite graph as scripts/export_efficientnet.py writes it (an \
                        output Flatten(GlobalAveragePool(head map)) above a 1x1 Conv + Clip(0, 6), MBConv blocks of \
                        1x1, depthwise and 1x1 Conv with Clip(0, 6) between and an optional Add skip)";

/// One convolution with its batch normalisation folded in, optionally followed by ReLU6.
#[derive(Debug)]
pub struct Conv {
    /// Initializer names of the weight `[out, in / groups, k, k]` and the bias `[out]`.
    pub names: [String; 2],
    pub weight: Var,
    pub bias: Var,
    /// One filter per channel (`group` = channels) rather than a 1x1 mixing of channels.
    pub depthwise: bool,
    pub stride: usize,
    /// Zero padding: top, left, bottom, right.
    pub pads: [usize; 4],
    pub relu6: bool,
}

/// An MBConv block: expand (absent in the first block), depthwise, project, and whether its
/// input is added to its output.
#[derive(Debug)]
pub struct Block {
    /// The graph tensor the block reads.
    pub input: String,
    pub convs: Vec<Conv>,
    pub skip: bool,
}

/// The top blocks and the head convolution.
#[derive(Debug)]
pub struct ConvTop {
    /// MBConv blocks in the whole model.
    pub depth: usize,
    /// The trained blocks, lowest first.
    pub blocks: Vec<Block>,
    pub head: Conv,
    /// Channels of the cut.
    pub channels: usize,
    /// Channels of the head convolution: the width of the pooled features.
    pub width: usize,
    /// The graph output holding the pooled features.
    pub output: String,
}

/// A convolution node as found in the graph, before its weights are read.
struct Found {
    input: String,
    names: [String; 2],
    group: usize,
    kernel: usize,
    stride: usize,
    pads: [usize; 4],
    relu6: bool,
}

/// The Conv (with the ReLU6 after it, if any) whose output is `tensor`.
fn conv_making(graph: &Graph, clips: &HashMap<String, f32>, tensor: &str) -> std::result::Result<Found, String> {
    let mut node = graph.producer(tensor).ok_or_else(|| format!("nothing makes `{tensor}`"))?;
    let relu6 = node.op_type == "Clip";
    if relu6 {
        let bound = |i: usize| node.inputs.get(i).and_then(|n| clips.get(n)).copied();
        if (bound(1), bound(2)) != (Some(0.0), Some(6.0)) {
            return Err(format!("`{tensor}` is a Clip whose bounds are not the initializers 0 and 6 (ReLU6)"));
        }
        node = graph
            .producer(&node.inputs[0])
            .ok_or_else(|| format!("nothing makes `{}`, the input of the Clip making `{tensor}`", node.inputs[0]))?;
    }
    let mut conv = found(node).ok_or_else(|| {
        format!("`{tensor}` is made by a {} node, not a Conv with a weight, a bias and unit dilations", node.op_type)
    })?;
    conv.relu6 = relu6;
    Ok(conv)
}

fn found(node: &Node) -> Option<Found> {
    if node.op_type != "Conv"
        || node.inputs.len() != 3
        || node.ints("dilations").is_some_and(|d| d.iter().any(|&v| v != 1))
    {
        return None;
    }
    let one = |name: &str, default: i64| -> Option<usize> {
        let values = node.ints(name).unwrap_or(&[]);
        let v = values.first().copied().unwrap_or(default);
        (values.iter().all(|&x| x == v) && v >= 0).then_some(v as usize)
    };
    let kernel = one("kernel_shape", 0)?;
    let pads = node.ints("pads").unwrap_or(&[0, 0, 0, 0]);
    let &[top, left, bottom, right] = pads else { return None };
    let pad = |v: i64| usize::try_from(v).ok();
    Some(Found {
        input: node.inputs[0].clone(),
        names: [node.inputs[1].clone(), node.inputs[2].clone()],
        group: one("group", 1)?,
        kernel,
        stride: one("strides", 1)?.max(1),
        pads: [pad(top)?, pad(left)?, pad(bottom)?, pad(right)?],
        relu6: false,
    })
    .filter(|f| f.kernel > 0)
}

/// One MBConv block whose output is `tensor`, or why it is not one.
fn block_making(graph: &Graph, clips: &HashMap<String, f32>, tensor: &str) -> std::result::Result<Vec<Found>, String> {
    let node = graph.producer(tensor).ok_or_else(|| format!("nothing makes `{tensor}`"))?;
    let (projected, skipped) = if node.op_type == "Add" && node.inputs.len() == 2 {
        // The projection is the Conv without an activation; the other input is the block's.
        let is_projection = |t: &str| graph.producer(t).is_some_and(|n| n.op_type == "Conv");
        match (is_projection(&node.inputs[0]), is_projection(&node.inputs[1])) {
            (true, _) => (node.inputs[0].clone(), Some(node.inputs[1].clone())),
            (_, true) => (node.inputs[1].clone(), Some(node.inputs[0].clone())),
            _ => return Err(format!("`{tensor}` is an Add of no projection Conv")),
        }
    } else {
        (tensor.to_owned(), None)
    };
    let project = conv_making(graph, clips, &projected)?;
    if project.relu6 || project.kernel != 1 || project.group != 1 {
        return Err(format!("`{projected}` is not a 1x1 projection without activation"));
    }
    let depthwise = conv_making(graph, clips, &project.input)?;
    if !depthwise.relu6 || depthwise.group < 2 {
        return Err(format!("`{}` is not a depthwise Conv followed by ReLU6", project.input));
    }
    let mut convs = vec![depthwise, project];
    if let Ok(expand) = conv_making(graph, clips, &convs[0].input)
        && expand.relu6
        && expand.kernel == 1
        && expand.group == 1
    {
        convs.insert(0, expand);
    }
    if let Some(skipped) = skipped
        && convs[0].input != skipped
    {
        return Err(format!("`{tensor}` adds `{skipped}`, not the block's input `{}`", convs[0].input));
    }
    Ok(convs)
}

impl ConvTop {
    /// The top `k` blocks and the head convolution of the model in `bytes` (read from
    /// `path`), as `dtype` variables.
    pub fn load(bytes: &[u8], path: &Path, k: usize, dtype: DType) -> Result<Self> {
        let not_recognised = |what: String| Error::NotRecognised { path: path.to_owned(), what, expected: EXPECTED };
        let graph = onnx::read(bytes).ok_or_else(|| not_recognised("not a readable ONNX model".into()))?;
        // The scalars that Clip nodes take as bounds.
        let bounds: Vec<&String> =
            graph.nodes.iter().filter(|n| n.op_type == "Clip").flat_map(|n| n.inputs.iter().skip(1)).collect();
        let scalars = onnx::float_initializers(bytes, |n| bounds.iter().any(|b| *b == n)).unwrap_or_default();
        let clips: HashMap<String, f32> =
            scalars.iter().filter(|(_, t)| t.values.len() == 1).map(|(n, t)| (n.clone(), t.values[0])).collect();
        // features = Flatten(GlobalAveragePool(head map)), the head map the head Conv's ReLU6.
        let pooled_output = graph.outputs.iter().find_map(|o| {
            let flatten = graph.producer(&o.name).filter(|n| n.op_type == "Flatten")?;
            let pool = graph.producer(&flatten.inputs[0]).filter(|n| n.op_type == "GlobalAveragePool")?;
            let mut map = pool.inputs[0].clone();
            while let Some(n) = graph.producer(&map).filter(|n| n.op_type == "Identity") {
                map = n.inputs[0].clone();
            }
            Some((o.name.clone(), map))
        });
        let (output, map) = pooled_output.ok_or_else(|| {
            not_recognised("no graph output is a Flatten of a GlobalAveragePool (the pooled features)".into())
        })?;
        let head = conv_making(&graph, &clips, &map).map_err(&not_recognised)?;
        if !head.relu6 || head.kernel != 1 || head.group != 1 {
            return Err(not_recognised(format!("`{map}` is not a 1x1 Conv followed by ReLU6")));
        }
        let mut blocks = Vec::new();
        let mut below = head.input.clone();
        while let Ok(convs) = block_making(&graph, &clips, &below) {
            let next = convs[0].input.clone();
            let skip = graph.producer(&below).is_some_and(|n| n.op_type == "Add");
            blocks.push((convs, skip));
            below = next;
        }
        let depth = blocks.len();
        if depth == 0 {
            let why = block_making(&graph, &clips, &head.input).err().unwrap_or_default();
            return Err(not_recognised(format!("no MBConv block below the head convolution: {why}")));
        }
        if k == 0 || k > depth {
            return Err(Error::Blocks { path: path.to_owned(), k, depth });
        }
        blocks.truncate(k);
        blocks.reverse();
        let mut wanted: Vec<String> = head.names.to_vec();
        for (convs, _) in &blocks {
            wanted.extend(convs.iter().flat_map(|c| c.names.clone()));
        }
        let weights = onnx::float_initializers(bytes, |n| wanted.iter().any(|w| w == n))
            .ok_or_else(|| not_recognised("a convolution weight whose data does not match its shape".into()))?;
        let variable = |f: Found| -> Result<Conv> {
            let [w, b] = [0, 1].map(|i| weights.get(&f.names[i]));
            let (Some(w), Some(b)) = (w, b) else {
                return Err(not_recognised(format!("no float initializers `{}` and `{}`", f.names[0], f.names[1])));
            };
            let (out, per_group) = (w.dims.first().copied().unwrap_or(0), w.dims.get(1).copied().unwrap_or(0));
            let depthwise = f.group > 1;
            let shape_ok = w.dims.len() == 4
                && w.dims[2..] == [f.kernel, f.kernel]
                && b.dims == [out]
                && if depthwise { per_group == 1 && f.group == out } else { f.group == 1 && f.kernel == 1 };
            if !shape_ok {
                return Err(not_recognised(format!(
                    "`{}` has shape {:?} (group {}), not a 1x1 or depthwise filter bank",
                    f.names[0], w.dims, f.group
                )));
            }
            if !depthwise && (f.stride != 1 || f.pads != [0; 4]) {
                return Err(not_recognised(format!("the 1x1 Conv of `{}` is strided or padded", f.names[0])));
            }
            let var = |t: &FloatTensor| -> Result<Var> {
                Ok(Var::from_tensor(
                    &Tensor::from_vec(t.values.clone(), t.dims.clone(), &Device::Cpu)?.to_dtype(dtype)?,
                )?)
            };
            Ok(Conv {
                weight: var(w)?,
                bias: var(b)?,
                names: f.names,
                depthwise,
                stride: f.stride,
                pads: f.pads,
                relu6: f.relu6,
            })
        };
        let mut trained = Vec::with_capacity(k);
        for (convs, skip) in blocks {
            let input = convs[0].input.clone();
            let convs = convs.into_iter().map(variable).collect::<Result<Vec<_>>>()?;
            trained.push(Block { input, convs, skip });
        }
        let head = variable(head)?;
        let channels = trained[0].convs[0].weight.as_tensor().dims()[if trained[0].convs[0].depthwise { 0 } else { 1 }];
        let width = head.weight.as_tensor().dims()[0];
        Ok(Self { depth, blocks: trained, head, channels, width, output })
    }

    /// The graph tensor the trained blocks read.
    pub fn cut(&self) -> String {
        self.blocks[0].input.clone()
    }

    /// Every trained tensor with its initializer name, the head convolution's last.
    pub fn named_vars(&self) -> Vec<(String, &Var)> {
        let convs = self.blocks.iter().flat_map(|b| b.convs.iter()).chain([&self.head]);
        convs.flat_map(|c| [(c.names[0].clone(), &c.weight), (c.names[1].clone(), &c.bias)]).collect()
    }

    /// The head map `[batch, positions, width]` of the cut's `x` `[batch, positions,
    /// channels]`, a square feature map's positions row by row.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, positions, channels) = x.dims3()?;
        let side = square_side(positions).ok_or(Error::NotSquare(positions))?;
        let mut x = x.reshape((b, side, side, channels))?;
        for block in &self.blocks {
            let input = x.clone();
            for conv in &block.convs {
                x = conv.forward(&x)?;
            }
            if block.skip {
                x = (x + input)?;
            }
        }
        x = self.head.forward(&x)?;
        let (_, h, w, c) = x.dims4()?;
        Ok(x.reshape((b, h * w, c))?)
    }
}

impl Conv {
    /// `x` `[batch, h, w, in]` -> `[batch, h', w', out]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, h, w, c) = x.dims4()?;
        let weight = self.weight.as_tensor();
        let y = if self.depthwise {
            crate::depthwise::conv(x, weight, self.stride, self.pads)?
        } else {
            let out = weight.dim(0)?;
            x.reshape((b * h * w, c))?.matmul(&weight.reshape((out, c))?.t()?)?.reshape((b, h, w, out))?
        };
        let act = if self.relu6 { Act::Relu6 } else { Act::Identity };
        crate::bias_act::apply(&y, self.bias.as_tensor(), act)
    }
}

/// The side of a square feature map of `positions` positions, if it is one.
pub fn square_side(positions: usize) -> Option<usize> {
    let side = (positions as f64).sqrt().round() as usize;
    (side * side == positions).then_some(side)
}
