use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Core(#[from] graft_core::Error),
    #[error("`{key}`: {message}")]
    BadParam { key: &'static str, message: String },
    #[error("head config `{}`: {message}", path.display())]
    ConfigFile { path: PathBuf, message: String },
    /// A key set explicitly that the chosen head would ignore.
    #[error("{why}: remove it, or choose a head that uses it")]
    Unused { why: String },
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
