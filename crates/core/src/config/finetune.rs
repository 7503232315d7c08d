//! `graft-finetune`: the head and how it is trained. `HeadConfig` is also recorded in
//! `head.json`, so it is read back as well as parsed from flags and `--config` files.

use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum HeadKind {
    /// L2-regularised logistic regression (L-BFGS), scikit-learn's objective.
    #[value(name = "logistic_regression", alias = "logreg")]
    LogisticRegression,
    /// Multi-layer perceptron trained by SGD, Adam or AdamW (classification or regression).
    Mlp,
    /// Ridge regression in closed form, scikit-learn's `Ridge(alpha)` (regression).
    Ridge,
}

impl std::fmt::Display for HeadKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HeadKind::LogisticRegression => "logistic_regression",
            HeadKind::Mlp => "mlp",
            HeadKind::Ridge => "ridge",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RegressionLoss {
    Mse,
    Huber,
}

/// One entry of the C grid: a number, or `auto`: ten values from 1e-4 to 1e4 (as
/// scikit-learn's `LogisticRegressionCV`), chosen by 5-fold cross-validation unless
/// `--folds` says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CValue {
    Value(f64),
    Auto(AutoWord),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AutoWord {
    Auto,
}

impl FromStr for CValue {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "auto" => Ok(CValue::Auto(AutoWord::Auto)),
            v => v.parse().map(CValue::Value).map_err(|_| format!("`{v}` is neither a number nor `auto`")),
        }
    }
}

/// The C values to try, and whether the grid is the automatic one.
pub fn c_grid(values: &[CValue]) -> (Vec<f64>, bool) {
    if values.iter().any(|v| matches!(v, CValue::Auto(_))) {
        ((0..10).map(|i| 10f64.powf(-4.0 + 8.0 * f64::from(i) / 9.0)).collect(), true)
    } else {
        (values.iter().map(|v| if let CValue::Value(c) = v { *c } else { unreachable!() }).collect(), false)
    }
}

/// Row weights by class: `none`, `balanced` (n / (classes * count), as scikit-learn) or
/// `LABEL=WEIGHT,...` (unlisted classes weigh 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClassWeight {
    None,
    Balanced,
    #[serde(untagged)]
    Given(std::collections::BTreeMap<String, f64>),
}

impl ClassWeight {
    /// Each class's loss weight given the class ids of the training rows; an error names a
    /// label that is not a class or a weight that is not a positive number.
    pub fn weights(&self, labels: &[String], classes: &[usize]) -> Result<Vec<f64>, String> {
        let k = labels.len();
        match self {
            ClassWeight::None => Ok(vec![1.0; k]),
            ClassWeight::Balanced => {
                let mut counts = vec![0usize; k];
                classes.iter().for_each(|&c| counts[c] += 1);
                Ok(counts.iter().map(|&n| classes.len() as f64 / (k as f64 * n.max(1) as f64)).collect())
            }
            ClassWeight::Given(map) => {
                let mut w = vec![1.0; k];
                for (label, weight) in map {
                    let Some(i) = labels.iter().position(|l| l == label) else {
                        return Err(format!("`{label}` is not a class; classes are {labels:?}"));
                    };
                    if !(weight.is_finite() && *weight > 0.0) {
                        return Err(format!("`{label}` weight {weight}"));
                    }
                    w[i] = *weight;
                }
                Ok(w)
            }
        }
    }
}

impl FromStr for ClassWeight {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "none" => Ok(ClassWeight::None),
            "balanced" => Ok(ClassWeight::Balanced),
            list => list
                .split(',')
                .map(|pair| {
                    let (label, weight) = pair.split_once('=').ok_or(format!("`{pair}` is not LABEL=WEIGHT"))?;
                    let w: f64 = weight.trim().parse().map_err(|_| format!("`{weight}` is not a number"))?;
                    Ok((label.trim().to_owned(), w))
                })
                .collect::<Result<_, String>>()
                .map(ClassWeight::Given),
        }
    }
}

/// What `graft-finetune` runs on. Every training key can be given on the command line
/// (`--label-smoothing 0.1`), in a pipeline file, or in a YAML file passed with `--config`
/// (`label_smoothing: 0.1`); the command line wins over the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Folder of `graft-backbone` output (`train.arrow`, and `val.arrow` for model selection).
    pub features: PathBuf,
    /// Output folder for `head.safetensors` and `head.json`.
    pub out: PathBuf,
    pub params: HeadConfig,
}

/// Where to read and write.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct Paths {
    /// Folder of `graft-backbone` output (`train.arrow`, and `val.arrow` for model selection).
    #[arg(long)]
    pub features: PathBuf,
    /// Output folder for `head.safetensors` and `head.json`.
    #[arg(long)]
    pub out: PathBuf,
    /// YAML file of training keys (the options below, in snake_case); the command line wins.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// How the head is built and trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields, default)]
pub struct HeadConfig {
    /// Head architecture.
    #[arg(long, value_enum, default_value = "logistic_regression")]
    pub head: HeadKind,
    /// Standardise features with the train split's mean and standard deviation
    /// (`--standardize` or `--standardize true|false`).
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, default_value_t = false, default_missing_value = "true")]
    pub standardize: bool,
    /// Class weights: `none`, `balanced`, or `LABEL=WEIGHT,...`.
    #[arg(long, default_value = "none")]
    pub class_weight: ClassWeight,
    /// Keep this fraction of each class of the train split (seeded by `--seed`).
    #[arg(long)]
    pub train_fraction: Option<f64>,
    /// Keep at most K train rows per class (seeded by `--seed`).
    #[arg(long, value_name = "K")]
    pub per_class: Option<usize>,
    /// Fit a softmax temperature on val so that probabilities are calibrated.
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, default_value_t = false, default_missing_value = "true")]
    pub calibrate: bool,
    /// Seed of subsampling, initialisation, shuffling, dropout and folds.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Logistic regression: inverse L2 strength(s), as scikit-learn's `C`; with several, the
    /// best on val (or by `--folds`) is kept; `auto`: ten values from 1e-4 to 1e4 by 5-fold CV.
    #[arg(long, value_delimiter = ',', default_value = "0.01,0.1,1,10,100")]
    pub c: Vec<CValue>,
    /// Logistic regression: choose C by k-fold cross-validation on train (0: on val; 5 with `auto`).
    #[arg(long, default_value_t = 0)]
    pub folds: usize,
    /// Logistic regression: most L-BFGS iterations per fit.
    #[arg(long, default_value_t = 1000)]
    pub max_iter: usize,
    /// Logistic regression: stop when no gradient component exceeds this.
    #[arg(long, default_value_t = 1e-6)]
    pub tol: f64,

    /// Ridge: L2 strength(s), as scikit-learn's `alpha`; with several, the lowest val MSE wins.
    #[arg(long, value_delimiter = ',', default_value = "0.1,1,10")]
    pub alpha: Vec<f64>,
    /// MLP regression: loss on the (standardised) target.
    #[arg(long, value_enum, default_value = "mse")]
    pub loss: RegressionLoss,
    /// MLP regression, Huber loss: where squared turns linear (in target standard deviations).
    #[arg(long, default_value_t = 1.0)]
    pub huber_delta: f64,
    /// MLP regression: train on the target standardised with train's mean and deviation.
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, default_value_t = true, default_missing_value = "true")]
    pub standardize_target: bool,

    /// MLP: hidden layer widths.
    #[arg(long, value_delimiter = ',', default_value = "256")]
    pub hidden: Vec<usize>,
    /// MLP: activation between layers.
    #[arg(long, value_enum, default_value = "relu")]
    pub activation: Activation,
    /// MLP: dropout probability after each hidden layer.
    #[arg(long, default_value_t = 0.1)]
    pub dropout: f64,
    /// MLP: optimiser.
    #[arg(long, value_enum, default_value = "adamw")]
    pub optimizer: Optimizer,
    /// MLP: peak learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// MLP: SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    /// MLP: weight decay (decoupled for AdamW, L2 otherwise); biases are not decayed.
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,
    /// MLP: learning-rate schedule after warm-up.
    #[arg(long, value_enum, default_value = "cosine")]
    pub schedule: Schedule,
    /// MLP: epochs of linear warm-up.
    #[arg(long, default_value_t = 1)]
    pub warmup_epochs: usize,
    /// MLP, step schedule: epochs between decays.
    #[arg(long, default_value_t = 10)]
    pub lr_step: usize,
    /// MLP, step schedule: factor of each decay.
    #[arg(long, default_value_t = 0.1)]
    pub lr_gamma: f64,
    /// MLP: most epochs.
    #[arg(long, default_value_t = 50)]
    pub epochs: usize,
    /// MLP: rows per mini-batch.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// MLP: clip the gradient's global L2 norm to this.
    #[arg(long)]
    pub clip_norm: Option<f64>,
    /// MLP: label smoothing of the cross-entropy targets.
    #[arg(long, default_value_t = 0.0)]
    pub label_smoothing: f64,
    /// MLP: stop after this many epochs without improvement on val, keeping the best epoch.
    #[arg(long, default_value_t = 8)]
    pub patience: usize,
    /// MLP: early-stop on this fraction of train, held out per class (seeded by `--seed`),
    /// instead of on val, so that val stays unseen by every choice and can rank heads
    /// honestly (scikit-learn's `validation_fraction`).
    #[arg(long)]
    pub early_stopping_fraction: Option<f64>,
    /// MLP: what early stopping watches on val.
    #[arg(long, value_enum, default_value = "loss")]
    pub monitor: Monitor,
}

/// How a value is written on the command line.
fn value_name<T: clap::ValueEnum>(value: &T) -> String {
    value.to_possible_value().map(|p| p.get_name().to_owned()).unwrap_or_default()
}

/// Keys only one head uses.
const LOGISTIC_REGRESSION_KEYS: [&str; 4] = ["c", "folds", "max_iter", "tol"];
const RIDGE_KEYS: [&str; 1] = ["alpha"];
const MLP_KEYS: [&str; 21] = [
    "loss",
    "huber_delta",
    "standardize_target",
    "hidden",
    "activation",
    "dropout",
    "optimizer",
    "lr",
    "momentum",
    "weight_decay",
    "schedule",
    "warmup_epochs",
    "lr_step",
    "lr_gamma",
    "epochs",
    "batch_size",
    "clip_norm",
    "label_smoothing",
    "patience",
    "monitor",
    "early_stopping_fraction",
];

impl HeadConfig {
    /// Why `key` (snake_case) is not used by this configuration, or `None` when it is: a key
    /// of another head (`c` with `--head mlp`), `momentum` without SGD, `lr_step`/`lr_gamma`
    /// without the step schedule, `huber_delta` without the Huber loss.
    pub fn unused_because(&self, key: &str) -> Option<String> {
        let owner = if LOGISTIC_REGRESSION_KEYS.contains(&key) {
            HeadKind::LogisticRegression
        } else if RIDGE_KEYS.contains(&key) {
            HeadKind::Ridge
        } else if MLP_KEYS.contains(&key) {
            HeadKind::Mlp
        } else {
            return None;
        };
        if owner != self.head {
            return Some(format!("`{key}` is a key of the {owner} head, and the head is {}", self.head));
        }
        match key {
            "momentum" if self.optimizer != Optimizer::Sgd => Some(format!(
                "`momentum` is used by the sgd optimizer only, and the optimizer is {}",
                value_name(&self.optimizer)
            )),
            "lr_step" | "lr_gamma" if self.schedule != Schedule::Step => Some(format!(
                "`{key}` is used by the step schedule only, and the schedule is {}",
                value_name(&self.schedule)
            )),
            "huber_delta" if self.loss != RegressionLoss::Huber => {
                Some("`huber_delta` is used by the huber loss only, and the loss is mse".to_owned())
            }
            _ => None,
        }
    }

    /// The first of `given` (keys set explicitly, snake_case) that this configuration does
    /// not use, and why: a setting that would otherwise be silently ignored.
    pub fn first_unused(&self, given: &[String]) -> Option<(String, String)> {
        given.iter().find_map(|k| self.unused_because(k).map(|why| (k.clone(), why)))
    }
}

impl Default for HeadConfig {
    fn default() -> Self {
        use clap::FromArgMatches;
        let matches = <Self as clap::Args>::augment_args(clap::Command::new("defaults")).get_matches_from(["defaults"]);
        Self::from_arg_matches(&matches).expect("defaults parse")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Relu,
    /// GELU, tanh approximation (as PyTorch's `approximate="tanh"`).
    Gelu,
}

/// Which val number early stopping watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Monitor {
    /// Higher is better.
    Accuracy,
    /// Val cross-entropy; lower is better.
    Loss,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Optimizer {
    /// Mini-batch SGD with (heavy-ball) momentum; weight decay as an L2 term in the gradient.
    Sgd,
    /// Adam; weight decay as an L2 term in the gradient.
    Adam,
    /// Adam with decoupled weight decay (Loshchilov & Hutter).
    Adamw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    Constant,
    /// Multiply the rate by `lr_gamma` every `lr_step` epochs.
    Step,
    /// Cosine decay to zero over the run.
    Cosine,
}

/// Parameters of `graft-finetune layers`: the top transformer layers of a BERT-family
/// backbone trained together with a linear head, from the token vectors at the cut below
/// them; the trained weights are written back into a copy of the ONNX model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct LayersConfig {
    /// Folder of `graft-backbone --tokens --outputs hidden_state_N` output: the token
    /// vectors below the trained layers (train, and val for early stopping).
    #[arg(long)]
    pub cut: PathBuf,
    /// The backbone spec the cut was made with; its ONNX model holds the starting weights.
    #[arg(long)]
    pub spec: PathBuf,
    /// Output folder: `model.onnx` (the backbone with the trained layers), `spec.yaml`
    /// (its spec, mean-pooled last layer), `tokenizer.json`, and the head in `head/`.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    #[serde(flatten)]
    pub train: LayersTraining,
}

impl LayersTraining {
    /// The first of `given` (keys set explicitly) that this configuration does not use, and
    /// why: `momentum` without SGD.
    pub fn first_unused(&self, given: &[String]) -> Option<(String, String)> {
        given.iter().find(|k| *k == "momentum" && self.optimizer != Optimizer::Sgd).map(|k| {
            (
                k.clone(),
                format!(
                    "`momentum` is used by the sgd optimizer only, and the optimizer is {}",
                    value_name(&self.optimizer)
                ),
            )
        })
    }
}

/// How the layers and the head are trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct LayersTraining {
    /// Transformer layers trained: the top K of the model, K from 1 to all; the cut must be
    /// the output of the layer below them (`hidden_state_{depth-K}`). For an EfficientNet-Lite,
    /// the top K MBConv blocks and the head convolution, the cut the feature map the lowest
    /// of them reads.
    #[arg(long)]
    pub layers: usize,
    /// Train the embeddings too (word, position and token-type tables and their layer norm):
    /// full fine-tuning, with `--layers` all of them and `--cut` the token ids
    /// (`graft-preprocess` output) instead of token vectors.
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, default_value_t = false, default_missing_value = "true")]
    #[serde(default)]
    pub embeddings: bool,
    /// Optimiser: `adamw` (decoupled weight decay) or `sgd` (with `--momentum`).
    #[arg(long, value_enum, default_value = "adamw")]
    pub optimizer: Optimizer,
    /// Peak learning rate of the head.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Peak learning rate of the trained layers (lower than the head's: they start trained;
    /// lower it too as more layers are trained).
    #[arg(long, default_value_t = 1e-4)]
    pub layer_lr: f64,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    /// Weight decay of weight matrices (not biases or layer-norm parameters).
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,
    /// Fraction of the steps of linear warm-up; the rate then decays linearly to zero.
    #[arg(long, default_value_t = 0.1)]
    pub warmup: f64,
    /// Most epochs.
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    /// Rows per step.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Dropout after each layer's attention and feed-forward outputs and before the head.
    #[arg(long, default_value_t = 0.1)]
    pub dropout: f64,
    /// Clip the gradient's global L2 norm to this (0: no clipping).
    #[arg(long, default_value_t = 1.0)]
    pub clip_norm: f64,
    /// Stop after this many epochs without a lower val loss, keeping the best epoch.
    #[arg(long, default_value_t = 2)]
    pub patience: usize,
    /// Class weights: `none`, `balanced`, or `LABEL=WEIGHT,...`.
    #[arg(long, default_value = "none")]
    pub class_weight: ClassWeight,
    /// Seed of the head's initialisation, shuffling and dropout.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Compute threads (0: one per core); results are reproducible for a given count.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}
