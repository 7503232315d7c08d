use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("`{}` has no stage `{stage}`; its stages are {known:?}", path.display())]
    UnknownStage { path: PathBuf, stage: String, known: Vec<String> },
    #[error("`{}`: {selection} select no stage together", path.display())]
    NothingSelected { path: PathBuf, selection: String },
    #[error("cannot read `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid pipeline `{}`", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_norway::Error,
    },
    #[error("invalid pipeline `{}`: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("stage `{stage}` reads `{}`, which does not exist and no stage writes", path.display())]
    MissingDep { stage: String, path: PathBuf },
    #[error("stage `{stage}`: cannot start `{}`", program.display())]
    Spawn {
        stage: String,
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("stage `{stage}` failed ({status})")]
    StageFailed { stage: String, status: std::process::ExitStatus },
    #[error("stage `{stage}` did not write its output `{}`", path.display())]
    MissingOut { stage: String, path: PathBuf },
    #[error("`{}` is not a regular file or a folder (a pipe or a device?): stage inputs and outputs are hashed", path.display())]
    NotAFile { path: PathBuf },
    #[error("`{}` is the input: the predictions would replace the rows they score; name another --out", path.display())]
    OutIsInput { path: PathBuf },
    #[error(transparent)]
    Core(#[from] graft_core::Error),
    #[error("pipeline `{}` is being run by process {pid} (lock `{}`); wait for it to finish", pipeline.display(), lock.display())]
    Busy { pipeline: PathBuf, lock: PathBuf, pid: String },
}

impl graft_core::UserFacing for Error {
    fn is_user_error(&self) -> bool {
        match self {
            Error::Core(e) => e.is_user_error(),
            // A stage's own message has already been printed; its failure is the user's to fix
            // unless the stage said otherwise through its exit code.
            Error::StageFailed { status, .. } => status.code() != Some(2),
            _ => true,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
