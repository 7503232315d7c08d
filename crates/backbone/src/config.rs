use std::path::PathBuf;

use graft_core::spec::{Combine, Pooling};
use serde::{Deserialize, Serialize};

/// Parameters of `graft-backbone`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Backbone spec (models/*.yaml).
    #[arg(long)]
    pub spec: PathBuf,
    /// Folder of `graft-preprocess` output (`train.arrow`, `val.arrow`, `test.arrow`).
    #[arg(long)]
    pub input: PathBuf,
    /// Output folder for the features of each split.
    #[arg(long)]
    pub out: PathBuf,
    /// Rows per inference batch. Rows are batched with rows of similar length (within each
    /// record batch of the input) and padded to the batch's longest row only.
    #[arg(long, default_value_t = 32)]
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Also cap each batch at this many padded tokens (rows x longest row); 0 for no cap.
    #[arg(long, default_value_t = 0)]
    #[serde(default)]
    pub batch_tokens: usize,
    /// Graph outputs to take features from, instead of the spec's `output` (comma-separated;
    /// e.g. `hidden_state_3` for layer 3 of MiniLM, or the last four layers).
    #[arg(long, value_delimiter = ',')]
    #[serde(default)]
    pub outputs: Vec<String>,
    /// How the pooled vectors of several outputs are joined.
    #[arg(long, value_enum, default_value = "concat")]
    #[serde(default)]
    pub combine: Combine,
    /// Pooling of token vectors, instead of the spec's.
    #[arg(long, value_enum)]
    #[serde(default)]
    pub pooling: Option<Pooling>,
    /// L2-normalise features (`true`/`false`), instead of the spec's setting.
    #[arg(long)]
    #[serde(default)]
    pub normalize: Option<bool>,
    /// ONNX Runtime intra-op threads; 0 lets ONNX Runtime choose (one per core).
    #[arg(long, default_value_t = 0)]
    #[serde(default)]
    pub threads: usize,
    /// Row-level feature cache folder: rows embedded before with the same model, outputs,
    /// pooling and token ids are read back instead of embedded again.
    #[arg(long)]
    #[serde(default)]
    pub cache: Option<std::path::PathBuf>,
    /// ONNX Runtime graph optimisation: `disable`, `basic`, `extended` or `all`.
    #[arg(long, value_enum, default_value = "all")]
    #[serde(default)]
    pub graph_optimization: crate::device::Optimization,
    /// `cpu`, `cuda`, `cuda:N`, or `auto` (CUDA when usable, else the CPU). The provider
    /// actually used is recorded in the output's metadata.
    #[arg(long, default_value = "cpu")]
    #[serde(default = "default_device")]
    pub device: String,
    /// When CUDA is asked for and cannot be used, run on the CPU instead of failing
    /// (`--allow-cpu-fallback` or `--allow-cpu-fallback true|false`).
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, default_value_t = false, default_missing_value = "true")]
    #[serde(default)]
    pub allow_cpu_fallback: bool,
    /// Embed only shard I of N (`I/N`): the rows whose position in each split is I modulo N.
    /// `graft-backbone merge` joins the N outputs into what one run would have written.
    #[arg(long, value_name = "I/N")]
    #[serde(default)]
    pub shard: Option<String>,
}

fn default_device() -> String {
    "cpu".into()
}

fn default_batch_size() -> usize {
    32
}
