use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("`{}`: {message}", path.display())]
    Image { path: PathBuf, message: String },
    #[error(transparent)]
    Core(#[from] graft_core::Error),
    #[error("cannot tell the format of `{}`: expected a .csv, .tsv, .jsonl, .ndjson or .parquet file", path.display())]
    UnknownFormat { path: PathBuf },
    #[error("cannot parse `{}`", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: polars::error::PolarsError,
    },
    #[error("cannot parse `{}`", path.display())]
    Csv {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },
    #[error("`{}` column `{column}` holds {found}: expected text, numbers or booleans", path.display())]
    ColumnType { path: PathBuf, column: String, found: String },
    #[error("`{}` line {line} is not a JSON object", path.display())]
    Json {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("`{}` is not valid UTF-8 at line {line}", path.display())]
    NotUtf8 { path: PathBuf, line: usize },
    #[error("`{}` has no column `{column}` (columns: {available})", path.display())]
    MissingColumn { path: PathBuf, column: String, available: String },
    #[error("`{}` has more than one column named `{column}`: rename one, so that which to read is clear", path.display())]
    DuplicateColumn { path: PathBuf, column: String },
    #[error("`--keep` names `{0}` twice")]
    KeepTwice(String),
    #[error("`{}` has no data rows", path.display())]
    Empty { path: PathBuf },
    #[error("`{}` has no column names: its first line, the header, is blank", path.display())]
    BlankHeader { path: PathBuf },
    #[error("`{}`: no rows left after cleaning and filtering ({dropped})", path.display())]
    NothingLeft { path: PathBuf, dropped: String },
    #[error("label column `{column}` of `{}` has a single class (`{label}`): classification needs at least two", path.display())]
    OneClass { path: PathBuf, column: String, label: String },
    #[error("`{}` changed while it was being read", path.display())]
    Changed { path: PathBuf },
    #[error("`--filter {0}` is malformed: expected COLUMN=VALUE")]
    BadFilter(String),
    #[error("id column `{column}` of `{}` repeats `{id}` (data row {row}, counting from 0)", path.display())]
    DuplicateId { path: PathBuf, column: String, id: String, row: usize },
    #[error("`{}` data row {row} (counting from 0): column `{column}` holds `{value}`, not a number (the task is regression)", path.display())]
    NotNumeric { path: PathBuf, column: String, row: usize, value: String },
    #[error("`{flag}` applies to {applies} backbone; `{}` is {kind} one", spec.display())]
    DoesNotApply { flag: &'static str, applies: &'static str, spec: PathBuf, kind: &'static str },
    #[error("`--max-length {given}`: expected 1 to {most}, the most that spec `{}` accepts (`text.max_length`)", spec.display())]
    BadMaxLength { given: usize, most: usize, spec: PathBuf },
    #[error("`{}`: the label column `{column}` is also the column of the inputs; the label must be a column of its own", path.display())]
    LabelIsInput { path: PathBuf, column: String },
    #[error("fractions must lie in [0, 1) and sum below 1: val {val}, test {test}")]
    BadFractions { val: f64, test: f64 },
    #[error("`--keep` needs a table; `{}` is a folder or archive of images", path.display())]
    KeepFolder { path: PathBuf },
    #[error("`{}` row {row} ({}counting from 0) cannot be scored: {reason}", path.display(),
        id.as_deref().map(|id| format!("id `{id}`, ")).unwrap_or_default())]
    Unscorable { path: PathBuf, row: u64, id: Option<String>, reason: &'static str },
    #[error("cannot load tokenizer `{}`", path.display())]
    Tokenizer {
        path: PathBuf,
        #[source]
        source: tokenizers::Error,
    },
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
