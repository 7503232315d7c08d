//! What `graft-finetune layers` trains below the head: the top transformer layers of a
//! BERT-family encoder, or the top MBConv blocks of an EfficientNet-Lite.

use std::collections::HashMap;

use candle_core::{DType, Tensor, Var};
use graft_core::onnx::FloatTensor;

use crate::encoder::{Dropout, Encoder};
use crate::error::Result;
use crate::mbconv::ConvTop;

#[derive(Debug)]
pub enum Trunk {
    Layers(Encoder),
    Blocks(ConvTop),
}

impl Trunk {
    /// The graph tensor the trained part reads.
    pub fn cut(&self) -> String {
        match self {
            Trunk::Layers(e) => e.cut(),
            Trunk::Blocks(c) => c.cut(),
        }
    }

    /// Width of the cut's vectors.
    pub fn input_width(&self) -> usize {
        match self {
            Trunk::Layers(e) => e.hidden,
            Trunk::Blocks(c) => c.channels,
        }
    }

    /// Width of the vectors the head pools.
    pub fn output_width(&self) -> usize {
        match self {
            Trunk::Layers(e) => e.hidden,
            Trunk::Blocks(c) => c.width,
        }
    }

    /// Every trained tensor with its initializer name.
    pub fn named_vars(&self) -> Vec<(String, &Var)> {
        match self {
            Trunk::Layers(e) => e.named_vars(),
            Trunk::Blocks(c) => c.named_vars(),
        }
    }

    /// The top's output `[batch, seq, width]` of a batch of the cut (see [`Encoder::forward`]
    /// and [`ConvTop::forward`]); dropout inside the layers while training.
    pub fn forward(&self, x: &Tensor, mask: &Tensor, dropout: Option<&mut Dropout>) -> Result<Tensor> {
        match self {
            Trunk::Layers(e) => e.forward(x, mask, dropout),
            Trunk::Blocks(c) => c.forward(x),
        }
    }

    /// The vector the head reads, `[batch, width]`, of the top's output `out`: the mean over
    /// each row's real tokens (`mask`), or over every position of a feature map (all real, and
    /// fewer than the cut's below a stride).
    pub fn pool(&self, out: &Tensor, mask: &Tensor) -> Result<Tensor> {
        match self {
            Trunk::Layers(_) => crate::encoder::mean_pool(out, mask),
            Trunk::Blocks(_) => Ok(out.mean(1)?),
        }
    }

    /// What is trained, for the log.
    pub fn describe(&self) -> String {
        match self {
            Trunk::Layers(e) => format!(
                "layers {}..{} of {}{}",
                e.layers[0].index,
                e.depth - 1,
                e.depth,
                if e.embeddings.is_some() { " and the embeddings" } else { "" }
            ),
            Trunk::Blocks(c) => format!(
                "MBConv blocks {}..{} of {} and the head convolution",
                c.depth - c.blocks.len(),
                c.depth - 1,
                c.depth
            ),
        }
    }

    /// What a recognised model looks like, for messages.
    pub fn expected(&self) -> &'static str {
        match self {
            Trunk::Layers(_) => crate::encoder::EXPECTED,
            Trunk::Blocks(_) => crate::mbconv::EXPECTED,
        }
    }

    /// The trained tensors as float32 initializers, for writing into the model.
    pub fn initializers(&self) -> Result<HashMap<String, FloatTensor>> {
        let mut out = HashMap::new();
        for (name, var) in self.named_vars() {
            let t = var.as_tensor().to_dtype(DType::F32)?;
            let values = t.flatten_all()?.to_vec1::<f32>()?;
            out.insert(name, FloatTensor { dims: t.dims().to_vec(), values });
        }
        Ok(out)
    }
}
