use std::path::PathBuf;

/// Errors of the shared artifact, spec and hashing code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write `{}`", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{}` is not a readable Arrow IPC file", path.display())]
    Arrow {
        path: PathBuf,
        #[source]
        source: arrow::error::ArrowError,
    },
    #[error("cannot write Arrow IPC file `{}`", path.display())]
    ArrowWrite {
        path: PathBuf,
        #[source]
        source: arrow::error::ArrowError,
    },
    #[error("`{}` is corrupt: {message}", path.display())]
    Corrupt { path: PathBuf, message: String },
    #[error("`{}` batch {batch} is not valid Arrow data", path.display())]
    ArrowBatch {
        path: PathBuf,
        batch: usize,
        #[source]
        source: arrow::error::ArrowError,
    },
    #[error("`{}` batch {batch} column `{column}` is not valid Arrow data", path.display())]
    ArrowColumn {
        path: PathBuf,
        batch: usize,
        column: String,
        #[source]
        source: arrow::error::ArrowError,
    },
    #[error("`{}` batch {batch} column `{column}` row {row}: {message}", path.display())]
    BadValue { path: PathBuf, batch: usize, column: String, row: usize, message: String },
    #[error("`{}` holds {found} rows but its metadata says {expected}: the file is truncated or was altered", path.display())]
    RowCount { path: PathBuf, found: u64, expected: u64 },
    #[error("`{}` is format `{found}`, expected `{expected}`: make it again with this graft", path.display())]
    Format { path: PathBuf, found: String, expected: &'static str },
    #[error("`{}` has no graft metadata: it was not written by a graft stage", path.display())]
    NoProvenance { path: PathBuf },
    #[error("graft metadata of `{}` is malformed", path.display())]
    BadProvenance {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("`{}` lacks column `{column}` ({expected})", path.display())]
    Column { path: PathBuf, column: String, expected: String },
    #[error("invalid backbone spec `{}`", path.display())]
    Spec {
        path: PathBuf,
        #[source]
        source: serde_norway::Error,
    },
    #[error("backbone spec `{}`: {message}", path.display())]
    SpecValue { path: PathBuf, message: String },
    #[error("lock file `{}` is unreadable ({message}); delete it to rerun every stage", path.display())]
    LockFile { path: PathBuf, message: String },
    #[error("manifest `{}` {message}", path.display())]
    Manifest { path: PathBuf, message: String },
    #[error("`{}` is not the file `{}` lists (blake3 {found}, listed {expected}): the folder mixes files of two runs or was altered", path.display(), manifest.display())]
    Mixed { path: PathBuf, manifest: PathBuf, found: String, expected: String },
    #[error("`{}` holds only shard {shard} of its split: join the shards with `graft-backbone merge` first", path.display())]
    Shard { path: PathBuf, shard: String },
    #[error("`{}` is not a features file: it has no backbone provenance", path.display())]
    NotFeatures { path: PathBuf },
    #[error("`{}` comes from another backbone than `{}`: {found} vs {expected}", path.display(), reference.display())]
    FeaturesMismatch { path: PathBuf, reference: PathBuf, found: String, expected: String },
    #[error("`{}` has labels {found:?}, `{}` has {expected:?}", path.display(), reference.display())]
    LabelsMismatch { path: PathBuf, reference: PathBuf, found: Vec<String>, expected: Vec<String> },
    #[error("`{}` row {row} (id `{id}`): {message}", path.display())]
    BadRow { path: PathBuf, row: usize, id: String, message: String },
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
    #[error("`{}` is not a readable {what}: {message}", path.display())]
    Document { path: PathBuf, what: &'static str, message: String },
    #[error("`{}`: {message}", path.display())]
    OutputFormat { path: PathBuf, message: String },
    #[error("`{}` is not a regular file (a device, a pipe or a folder): outputs are written to a temporary file and renamed into place; name a file", path.display())]
    NotAFileOutput { path: PathBuf },
    #[error("`--out {}` is `{flag} {}`: the outputs would replace or mix with what the stage reads; choose another folder", out.display(), input.display())]
    OutIsInput { out: PathBuf, flag: &'static str, input: PathBuf },
    #[error("cannot serialise {what}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Sorts errors into the user's mistakes (exit 1) and graft's own (exit 2).
pub trait UserFacing {
    /// True when the input or configuration is at fault, false for an internal error.
    fn is_user_error(&self) -> bool;
}

impl UserFacing for Error {
    fn is_user_error(&self) -> bool {
        !matches!(self, Error::Json { .. })
    }
}
