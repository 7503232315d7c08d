//! Where inference runs. CUDA is used only when asked for, and never falls back to the CPU
//! silently: without `--allow-cpu-fallback` a CUDA request that cannot be met is an error
//! carrying ONNX Runtime's reason, and the provider actually used is recorded.

use std::path::Path;
use std::sync::Arc;

use graft_core::config::backbone::Optimization;
use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::{GraphOptimizationLevel, PrepackedWeights, SessionBuilder};
use ort::value::{DynValue, Tensor};

use crate::error::{Error, Result};

/// `--device`: `cpu`, `cuda`, `cuda:N` or `auto` (CUDA when it can be used, else the CPU).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Cuda(i32),
    Auto,
}

impl std::str::FromStr for Device {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            "auto" => Ok(Device::Auto),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Device::Cuda)
                .ok_or_else(|| Error::BadDevice(s.to_owned())),
        }
    }
}

/// An open session and the execution provider it runs on (`cpu` or `cuda:N`).
#[derive(Debug)]
pub struct Opened {
    pub session: Session,
    pub provider: String,
}

/// How sessions are built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionOptions {
    /// Intra-op threads; 0 lets ONNX Runtime choose (one per core).
    pub threads: usize,
    pub optimization: Optimization,
    /// Whether a CPU session may fuse Add + LayerNormalization into SkipLayerNormalization.
    pub cpu_skip_layer_norm_fusion: bool,
    /// Whether idle intra-op threads spin between parallel sections. Off for images: their
    /// decoding threads need the cores meanwhile (EfficientNet on 400 photos, 2 cores: 4%
    /// less wall time, 11% less CPU time).
    pub spinning: bool,
}

fn builder(env: &Environment, options: SessionOptions) -> ort::Result<SessionBuilder> {
    let level = match options.optimization {
        Optimization::Disable => GraphOptimizationLevel::Disable,
        Optimization::Basic => GraphOptimizationLevel::Level1,
        Optimization::Extended => GraphOptimizationLevel::Level2,
        Optimization::All => GraphOptimizationLevel::All,
    };
    let mut builder = Session::builder(env)?.with_optimization_level(level)?;
    if options.threads > 0 {
        builder = builder.with_intra_threads(options.threads)?;
    }
    if !options.spinning {
        builder = builder.with_intra_op_spinning(false)?;
    }
    Ok(builder)
}

/// A CPU session of `bytes` without graph optimisations: for reading tensor types and shapes.
pub fn open_plain(env: &Environment, bytes: &[u8]) -> ort::Result<Session> {
    let options = SessionOptions {
        threads: 1,
        optimization: Optimization::Disable,
        cpu_skip_layer_norm_fusion: true,
        spinning: true,
    };
    builder(env, options)?.commit_from_memory(bytes)
}

/// Weights that sessions of one model hold once between them: its float32 initializers, and
/// ONNX Runtime's prepacked copies of those (it caches prepacking only for initializers
/// given to the session). Other initializers (an int8 model's weights) stay each session's.
#[derive(Debug)]
pub struct SharedWeights {
    prepacked: PrepackedWeights,
    initializers: Vec<(String, Arc<DynValue>)>,
}

impl SharedWeights {
    /// `None` when `model` is not an ONNX model.
    pub fn of(model: &[u8]) -> Option<ort::Result<Self>> {
        let tensors = graft_core::onnx::float_initializers(model, |_| true)?;
        let initializers = tensors
            .into_iter()
            .map(|(name, t)| Ok((name, Arc::new(Tensor::from_array((t.dims, t.values))?.into_dyn()))))
            .collect::<ort::Result<Vec<_>>>();
        Some(initializers.map(|initializers| Self { prepacked: PrepackedWeights::new(), initializers }))
    }

    fn apply(&self, mut builder: SessionBuilder) -> ort::Result<SessionBuilder> {
        for (name, value) in &self.initializers {
            builder = builder.with_initializer(name, Arc::clone(value))?;
        }
        Ok(builder.with_prepacked_weights(&self.prepacked)?)
    }
}

/// Opens the model at `path`, or its edited `bytes` when given, on `device`.
pub fn open(
    env: &Environment,
    path: &Path,
    bytes: Option<&[u8]>,
    options: SessionOptions,
    device: Device,
    allow_cpu_fallback: bool,
    shared: Option<&SharedWeights>,
) -> Result<Opened> {
    let model_err = |source| Error::Model { path: path.to_owned(), source };
    if device != Device::Cpu {
        match open_cuda(env, path, bytes, options, device) {
            Ok(opened) => return Ok(opened),
            Err(reason) if device == Device::Auto || allow_cpu_fallback => {
                tracing::warn!("CUDA cannot be used ({reason}); running on the CPU");
            }
            Err(reason) => return Err(Error::CudaUnavailable { reason }),
        }
    }
    let session = builder(env, options)
        .and_then(|b| match options.cpu_skip_layer_norm_fusion {
            true => Ok(b),
            false => Ok(b.with_disabled_optimizers("SkipLayerNormFusion")?),
        })
        .and_then(|b| match shared {
            Some(weights) => weights.apply(b),
            None => Ok(b),
        })
        .and_then(|mut b| commit(&mut b, path, bytes))
        .map_err(model_err)?;
    Ok(Opened { session, provider: "cpu".into() })
}

fn commit(builder: &mut SessionBuilder, path: &Path, bytes: Option<&[u8]>) -> ort::Result<Session> {
    match bytes {
        Some(b) => builder.commit_from_memory(b),
        None => builder.commit_from_file(path),
    }
}

#[cfg(feature = "cuda")]
fn open_cuda(
    env: &Environment,
    path: &Path,
    bytes: Option<&[u8]>,
    options: SessionOptions,
    device: Device,
) -> Result<Opened, String> {
    let id = match device {
        Device::Cuda(id) => id,
        _ => 0,
    };
    let cuda = ort::ep::CUDA::default().with_device_id(id).build().error_on_failure();
    let session = builder(env, options)
        .and_then(|b| Ok(b.with_execution_providers([cuda])?))
        .and_then(|mut b| commit(&mut b, path, bytes))
        .map_err(|e| e.to_string())?;
    Ok(Opened { session, provider: format!("cuda:{id}") })
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(_: &Environment, _: &Path, _: Option<&[u8]>, _: SessionOptions, _: Device) -> Result<Opened, String> {
    Err("this graft-backbone was built without the `cuda` feature".into())
}

/// Whether this build can use CUDA, and if not, why.
pub fn cuda_status() -> Result<(), String> {
    #[cfg(feature = "cuda")]
    {
        use ort::ep::ExecutionProvider;
        match ort::ep::CUDA::is_available() {
            Ok(true) => Ok(()),
            Ok(false) => Err("the loaded ONNX Runtime library has no CUDA execution provider".into()),
            Err(e) => Err(e.to_string()),
        }
    }
    #[cfg(not(feature = "cuda"))]
    Err("built without the `cuda` feature".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_names() {
        assert_eq!("cpu".parse::<Device>().unwrap(), Device::Cpu);
        assert_eq!("cuda".parse::<Device>().unwrap(), Device::Cuda(0));
        assert_eq!("cuda:3".parse::<Device>().unwrap(), Device::Cuda(3));
        assert_eq!("auto".parse::<Device>().unwrap(), Device::Auto);
        assert!("gpu".parse::<Device>().unwrap_err().to_string().contains("`--device gpu`"));
    }
}
