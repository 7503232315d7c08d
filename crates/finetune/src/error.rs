use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Core(#[from] graft_core::Error),
    #[error("`{}` holds only shard {shard} of its split: join the shards with `graft-backbone merge` first", path.display())]
    Shard { path: PathBuf, shard: String },
    #[error("`{}` is not a features file: it has no backbone provenance", path.display())]
    NotFeatures { path: PathBuf },
    #[error("`{}` comes from another backbone than `{}`: {found} vs {expected}", path.display(), reference.display())]
    BackboneMismatch { path: PathBuf, reference: PathBuf, found: String, expected: String },
    #[error("`{}` has labels {found:?}, `{}` has {expected:?}", path.display(), reference.display())]
    LabelMismatch { path: PathBuf, reference: PathBuf, found: Vec<String>, expected: Vec<String> },
    #[error("`{}` row {row} (id `{id}`): {message}", path.display())]
    BadRow { path: PathBuf, row: usize, id: String, message: String },
    #[error("`{key}`: {message}")]
    BadParam { key: &'static str, message: String },
    #[error("head config `{}`: {message}", path.display())]
    ConfigFile { path: PathBuf, message: String },
    #[error("`{}` is missing: training needs a train split", path.display())]
    NoTrain { path: PathBuf },
    #[error("{what} needs a validation split, and `{}` is missing", path.display())]
    NoVal { path: PathBuf, what: String },
    #[error("train split `{}` lacks class `{class}` of the label set", path.display())]
    MissingClass { path: PathBuf, class: String },
    #[error("train split `{}`: class `{class}` has {count} rows, fewer than the {folds} folds", path.display())]
    TooFewForFolds { path: PathBuf, class: String, count: usize, folds: usize },
    #[error(
        "training diverged at epoch {epoch}: train loss {train_loss}{}; no head written (lower `lr`, or clip with `clip_norm`)",
        val_loss.map(|l| format!(", val loss {l}")).unwrap_or_default()
    )]
    Diverged { epoch: usize, train_loss: f64, val_loss: Option<f64> },
    #[error("head `{}`: {message}", path.display())]
    BadHead { path: PathBuf, message: String },
    #[error("cannot read head `{}`", path.display())]
    HeadJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot read head weights `{}`", path.display())]
    HeadWeights {
        path: PathBuf,
        #[source]
        source: safetensors::SafeTensorError,
    },
}

impl From<crate::mlp::Diverged> for Error {
    fn from(d: crate::mlp::Diverged) -> Self {
        Error::Diverged { epoch: d.epoch, train_loss: d.train_loss, val_loss: d.val_loss }
    }
}

impl graft_core::UserFacing for Error {
    fn is_user_error(&self) -> bool {
        match self {
            Error::Core(e) => e.is_user_error(),
            _ => true,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
