//! `graft-backbone`.

use std::path::PathBuf;

use serde::Serialize;

use crate::spec::{Combine, Kind, Pooling};

/// Parameters of `graft-backbone`.
#[derive(Debug, Clone, PartialEq, Serialize, clap::Args)]
pub struct Config {
    /// Backbone spec (models/*.yaml), or a model bundle folder: its backbone with the layers,
    /// pooling and normalisation it was trained on.
    #[arg(long)]
    pub spec: PathBuf,
    /// Folder of `graft-preprocess` output (`train.arrow`, `val.arrow`, `test.arrow`).
    #[arg(long)]
    pub input: PathBuf,
    /// Output folder for the features of each split.
    #[arg(long)]
    pub out: PathBuf,
    /// Rows per inference batch: the spec's `batch_size` unless given, else 32 for text (rows
    /// are batched with rows of similar length within each record batch of the input and
    /// padded to the batch's longest row only) and 8 for images (EfficientNet-Lite0 on 2
    /// cores: 1.18x faster than 32 and 2.7x less memory, its activations staying in cache).
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub batch_size: Option<usize>,
    /// Also cap each batch at this many padded tokens (rows x longest row); 0 for no cap.
    /// Small batches of long rows keep attention's working set in cache: on MiniLM with 2
    /// threads, 512 ran 1.24x faster than no cap on 256-token reviews (and 5x less memory),
    /// 1.03x on short sentences.
    #[arg(long, default_value_t = BATCH_TOKENS)]
    pub batch_tokens: usize,
    /// Graph outputs to take features from, instead of the spec's `output` (comma-separated;
    /// e.g. `hidden_state_3` for layer 3 of MiniLM, or the last four layers).
    #[arg(long, value_delimiter = ',')]
    pub outputs: Vec<String>,
    /// How the pooled vectors of several outputs are joined.
    #[arg(long, value_enum, default_value = "concat")]
    pub combine: Combine,
    /// Pooling of token vectors, instead of the spec's.
    #[arg(long, value_enum)]
    pub pooling: Option<Pooling>,
    /// L2-normalise features (`true`/`false`), instead of the spec's setting.
    #[arg(long)]
    pub normalize: Option<bool>,
    /// Inference threads, split among the sessions; 0: one per core.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// ONNX Runtime sessions running batches side by side on the CPU, each with its share of
    /// the threads (a text model's float32 weights held once between them; each image
    /// session decodes its own batches). 0 picks: on the CPU one session a thread, at most one
    /// a core (2 cores: MiniLM as fast as one session of 2 threads at its best, and steadily
    /// so where that one ran up to 1.3x slower; EfficientNet-Lite0 on 400 photos 2.5-2.6 s
    /// against 2.55-2.85 s, with about 145 MB more memory a session at batch 8); else one.
    #[arg(long, default_value_t = 0)]
    pub sessions: usize,
    /// Row-level feature cache folder: rows embedded before with the same model, outputs,
    /// pooling and token ids are read back instead of embedded again.
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// ONNX Runtime graph optimisation: `disable`, `basic`, `extended` or `all`.
    #[arg(long, value_enum, default_value = "all")]
    pub graph_optimization: Optimization,
    /// Let ONNX Runtime fuse a residual Add and LayerNormalization into SkipLayerNormalization
    /// on the CPU. Off by default: ONNX Runtime 1.31's fused CPU kernel made MiniLM 1.12x
    /// (sentences) to 1.19x (256-token reviews) slower with 2 threads.
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, default_value_t = false, default_missing_value = "true")]
    pub cpu_skip_layer_norm_fusion: bool,
    /// `cpu`, `cuda`, `cuda:N`, or `auto` (CUDA when usable, else the CPU). The provider
    /// actually used is recorded in the output's metadata.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// When CUDA is asked for and cannot be used, run on the CPU instead of failing
    /// (`--allow-cpu-fallback` or `--allow-cpu-fallback true|false`).
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, default_value_t = false, default_missing_value = "true")]
    pub allow_cpu_fallback: bool,
    /// Write every real token's vector of the one output (`[tokens, dim]` per row, stored as
    /// `--tokens-dtype`; for images a `[batch, channels, height, width]` feature map, one
    /// vector per position) instead of pooled features: the cut below the layers that
    /// `graft-finetune layers` trains.
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, default_value_t = false, default_missing_value = "true")]
    pub tokens: bool,
    /// With `--tokens`: `float16` (half the disk and memory; rounding of about 5e-4
    /// relative) or `float32` (exact).
    #[arg(long, value_enum, default_value = "float16")]
    pub tokens_dtype: TokensDtype,
    /// Embed only shard I of N (`I/N`): the rows whose position in each split is I modulo N.
    /// `graft-backbone merge` joins the N outputs into what one run would have written.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
}

/// `--batch-tokens`'s default.
pub const BATCH_TOKENS: usize = 512;

impl Config {
    /// Why the first flag set that does not apply, given the other flags and a backbone of
    /// `kind`, does not: a flag that would otherwise be silently ignored. (A flag set to its
    /// default cannot be told from one not given, and changes nothing.)
    pub fn unused_by(&self, kind: Kind) -> Option<String> {
        let image = || format!("applies to a text backbone; `{}` is an image one", self.spec.display());
        if self.tokens_dtype != TokensDtype::default() && !self.tokens {
            Some("`--tokens-dtype` applies with `--tokens`, which is not given".into())
        } else if self.batch_tokens != BATCH_TOKENS && kind == Kind::Image {
            Some(format!("`--batch-tokens` {}", image()))
        } else if self.cpu_skip_layer_norm_fusion && kind == Kind::Image {
            Some(format!("`--cpu-skip-layer-norm-fusion` {}", image()))
        } else if self.allow_cpu_fallback && !self.device.starts_with("cuda") {
            Some(format!("`--allow-cpu-fallback` applies with `--device cuda` or `cuda:N`, not `{}`", self.device))
        } else {
            None
        }
    }
}

/// How `--tokens` stores each value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TokensDtype {
    #[default]
    Float16,
    Float32,
}

/// ONNX Runtime's graph optimisation level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Optimization {
    /// None: the graph runs as written.
    Disable,
    /// Constant folding and redundant-node elimination.
    Basic,
    /// Plus node fusions (attention, GELU, layer norm...).
    Extended,
    /// Everything, including layout optimisations.
    #[default]
    All,
}
