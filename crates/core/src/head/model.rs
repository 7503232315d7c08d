//! What a head computes: a linear map or a multi-layer perceptron from (standardised)
//! features to logits. Training lives in `graft-finetune`; applying a head needs only this.

use ndarray::{Array1, Array2, ArrayView2};

use crate::config::finetune::Activation;

/// A linear map over `dim` features to `outputs` logits.
#[derive(Debug, Clone, PartialEq)]
pub struct Linear {
    /// `[outputs, dim]`; for two classes row 0 is zero.
    pub weight: Array2<f64>,
    /// `[outputs]`.
    pub bias: Array1<f64>,
}

impl Linear {
    /// Logits `[n, outputs]`.
    pub fn logits(&self, x: ArrayView2<'_, f32>) -> Array2<f64> {
        let mut z = x.mapv(f64::from).dot(&self.weight.t());
        z += &self.bias;
        z
    }
}

/// One dense layer: `y = x W + b`, `W` is `[in, out]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Dense {
    pub weight: Array2<f32>,
    pub bias: Array1<f32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Mlp {
    pub layers: Vec<Dense>,
    pub activation: Activation,
}

const GELU_K: f32 = 0.797_884_6; // sqrt(2 / pi)

/// The activation function between layers.
pub fn activate(a: Activation, v: f32) -> f32 {
    match a {
        Activation::Relu => v.max(0.0),
        Activation::Gelu => 0.5 * v * (1.0 + (GELU_K * (v + 0.044_715 * v * v * v)).tanh()),
    }
}

/// Its derivative, for training.
pub fn derivative(a: Activation, v: f32) -> f32 {
    match a {
        Activation::Relu => f32::from(u8::from(v > 0.0)),
        Activation::Gelu => {
            let t = (GELU_K * (v + 0.044_715 * v * v * v)).tanh();
            0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * GELU_K * (1.0 + 3.0 * 0.044_715 * v * v)
        }
    }
}

impl Mlp {
    /// Logits `[n, outputs]`, without dropout.
    pub fn logits(&self, x: ArrayView2<'_, f32>) -> Array2<f32> {
        let mut h = x.to_owned();
        for (i, layer) in self.layers.iter().enumerate() {
            h = h.dot(&layer.weight) + &layer.bias;
            if i + 1 < self.layers.len() {
                h.mapv_inplace(|v| activate(self.activation, v));
            }
        }
        h
    }

    pub fn parameter_count(&self) -> usize {
        self.layers.iter().map(|l| l.weight.len() + l.bias.len()).sum()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Model {
    Linear(Linear),
    Mlp(Mlp),
}

impl Model {
    /// Logits `[n, outputs]` of (already standardised) features.
    pub fn logits(&self, x: ArrayView2<'_, f32>) -> Array2<f64> {
        match self {
            Model::Linear(m) => m.logits(x),
            Model::Mlp(m) => m.logits(x).mapv(f64::from),
        }
    }

    pub fn parameter_count(&self) -> usize {
        match self {
            Model::Linear(m) => m.weight.len() + m.bias.len(),
            Model::Mlp(m) => m.parameter_count(),
        }
    }

    /// Width of the output.
    pub fn outputs(&self) -> usize {
        match self {
            Model::Linear(m) => m.bias.len(),
            Model::Mlp(m) => m.layers.last().map_or(0, |l| l.bias.len()),
        }
    }
}
