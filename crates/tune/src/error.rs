use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Core(#[from] graft_core::Error),
    #[error("tensor computation failed: {0}")]
    Tensor(#[from] candle_core::Error),
    #[error("model `{}` is not a backbone whose layers graft can train: {what}; expected {expected}", path.display())]
    NotRecognised { path: PathBuf, what: String, expected: &'static str },
    #[error("`--layers {k}`: model `{}` has {depth} transformer layers; train 1 to {depth}", path.display())]
    Layers { path: PathBuf, k: usize, depth: usize },
    #[error("`--layers {k}`: model `{}` has {depth} MBConv blocks; train 1 to {depth}", path.display())]
    Blocks { path: PathBuf, k: usize, depth: usize },
    #[error("the cut holds {0} vectors a row, not the positions of a square feature map")]
    NotSquare(usize),
    #[error("`{}` is not a cut for these layers: {message}", path.display())]
    Cut { path: PathBuf, message: String },
    #[error("`{}` row {row} (id `{id}`): {message}", path.display())]
    BadRow { path: PathBuf, row: usize, id: String, message: String },
    #[error("`{key}`: {message}")]
    BadParam { key: &'static str, message: String },
    #[error("training diverged at epoch {epoch}: the train loss is {loss}; lower `--lr`/`--layer-lr`")]
    Diverged { epoch: usize, loss: f64 },
}

impl graft_core::UserFacing for Error {
    fn is_user_error(&self) -> bool {
        match self {
            Error::Core(e) => e.is_user_error(),
            Error::Tensor(_) => false,
            _ => true,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
