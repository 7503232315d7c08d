use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the feature cache keys rows by their token ids; it does not cover image backbones")]
    ImageCache,
    #[error(transparent)]
    Core(#[from] graft_core::Error),
    #[error("ONNX Runtime library not found; looked at {looked}. Run `make setup`, or set ORT_DYLIB_PATH")]
    RuntimeMissing { looked: String },
    #[error("cannot load ONNX Runtime from `{}`: {reason}", path.display())]
    RuntimeLoad { path: PathBuf, reason: String },
    #[error("cannot load ONNX model `{}`", path.display())]
    Model {
        path: PathBuf,
        #[source]
        source: ort::Error,
    },
    #[error("model `{}` has no input `{name}` named by the spec (model inputs: {available})", path.display())]
    MissingInput { path: PathBuf, name: String, available: String },
    #[error("model `{}` has no output `{name}` named by the spec (model outputs: {available})", path.display())]
    MissingOutput { path: PathBuf, name: String, available: String },
    #[error("`{}` is not an ONNX model (its protobuf cannot be read)", path.display())]
    NotOnnx { path: PathBuf },
    #[error("model `{}` has no tensor `{name}` (outputs: {outputs}); `graft-backbone inspect {}` lists every tensor", path.display(), path.display())]
    NoTensor { path: PathBuf, name: String, outputs: String },
    #[error("model `{}` needs input `{name}`, which the spec does not provide", path.display())]
    UnfedInput { path: PathBuf, name: String },
    #[error("inference failed on `{}` at row {row}", path.display())]
    Inference {
        path: PathBuf,
        row: u64,
        #[source]
        source: EmbedError,
    },
    #[error("`{}` was tokenised with another tokenizer or length ({found}) than spec `{}` ({expected})", path.display(), spec.display())]
    TokenizerMismatch { path: PathBuf, spec: PathBuf, found: String, expected: String },
    #[error("`{}` has no split files (train.arrow, val.arrow, test.arrow)", path.display())]
    NoSplits { path: PathBuf },
    #[error("`--device {0}` is not a device: expected `cpu`, `cuda`, `cuda:N` or `auto`")]
    BadDevice(String),
    #[error("CUDA was asked for and cannot be used: {reason} (pass `--allow-cpu-fallback` to run on the CPU instead)")]
    CudaUnavailable { reason: String },
    #[error("`--shard {0}`")]
    BadShard(String),
    #[error("{0}")]
    DoesNotApply(String),
    #[error("`--sessions`: {0}")]
    Sessions(String),
    #[error("cannot merge shards: {0}")]
    Merge(String),
    #[error("`{}` row {row}: {message}", path.display())]
    BadRow { path: PathBuf, row: u64, message: String },
    #[error("`--tokens` writes one output's token vectors as they are: {0}")]
    TokensFlags(String),
    #[error("`--spec {}` is a model bundle: its outputs, pooling and normalisation are fixed; drop `--outputs`, `--pooling` and `--normalize`", bundle.display())]
    BundleFlags { bundle: PathBuf },
    #[error("cannot export bundle `{}` as one ONNX model: {message}", bundle.display())]
    Export { bundle: PathBuf, message: String },
    #[error("bundle `{}` records {what} `{value}`, which this graft does not know", bundle.display())]
    BundleFeatures { bundle: PathBuf, what: String, value: String },
}

impl graft_core::UserFacing for Error {
    fn is_user_error(&self) -> bool {
        match self {
            Error::Core(e) => e.is_user_error(),
            Error::Inference { source, .. } => {
                matches!(source, EmbedError::Rank { .. })
            }
            _ => true,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a batch could not be embedded.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error(transparent)]
    Ort(#[from] ort::Error),
    #[error("output `{name}` has shape {shape:?}, not {expected}")]
    Rank { name: String, shape: Vec<i64>, expected: &'static str },
    #[error("`--combine mean` needs outputs of one size: `{first}` has {dim}, `{other}` has {other_dim}")]
    Dims { first: String, dim: usize, other: String, other_dim: usize },
}
