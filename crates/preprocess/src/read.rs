//! Reads raw tables row by row with flat memory: CSV and TSV (csv crate) stream line by line,
//! and JSONL too once a first pass has gathered its keys; Parquet is read by polars in slices
//! of [`PARQUET_SLICE`] rows, only the needed columns. Each pass over the input opens a fresh
//! [`Rows`].

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::Config;
use crate::error::{Error, Result};

/// What to read from a table.
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    pub input: PathBuf,
    pub text: String,
    pub label: String,
    /// Training needs a label column and at least one row. Scoring reads tables that may
    /// have no label column, and an empty file (a JSONL night with no rows has no bytes) as
    /// one of no rows.
    pub training: bool,
    pub id: Option<String>,
    /// `COLUMN=VALUE` conditions every kept row meets.
    pub filters: Vec<String>,
    /// Further columns to carry through as text; `*` for every column.
    pub extra: Vec<String>,
}

impl Wanted {
    /// What training reads: the text, label and id columns of the config.
    pub fn of(cfg: &Config) -> Self {
        Self {
            input: cfg.input.clone(),
            text: cfg.text_column.clone(),
            label: cfg.label_column.clone(),
            training: true,
            id: cfg.id_column.clone(),
            filters: cfg.filters.clone(),
            extra: Vec::new(),
        }
    }

    /// The columns a file with no bytes but whitespace has when scoring: every column named,
    /// the label left absent.
    fn named_columns(&self) -> Result<Vec<String>> {
        let mut names = vec![self.text.clone()];
        names.extend(self.id.clone());
        names.extend(filters(self)?.into_iter().map(|(c, _)| c));
        names.extend(self.extra.iter().filter(|e| *e != "*").cloned());
        let mut seen = std::collections::HashSet::new();
        names.retain(|n| seen.insert(n.clone()));
        Ok(names)
    }
}

/// One input row that passed the filters, its fields as strings.
#[derive(Debug, Clone, PartialEq)]
pub struct RawRow {
    /// The id column's value (`None` where it is null or blank), or the row's 0-based index
    /// among all data rows when no id column is read.
    pub id: Option<String>,
    pub text: Option<String>,
    pub label: Option<String>,
    /// The [`Wanted::extra`] columns' values, in [`Rows::extra`] order.
    pub extra: Vec<Option<String>>,
}

/// The input's rows, in file order.
pub struct Rows {
    source: Source,
    path: PathBuf,
    /// Names of the extra columns read, in order.
    extra: Vec<String>,
    /// Data rows read so far, filtered or not.
    read: usize,
}

enum Source {
    Csv { reader: csv::Reader<BufReader<File>>, columns: Columns, record: csv::StringRecord },
    Jsonl { lines: std::io::Split<BufReader<File>>, names: Names, line: usize },
    Parquet { reader: ParquetSlices, chunk: Chunk, pos: usize },
}

/// Rows of one Parquet slice.
#[derive(Default)]
struct Chunk {
    ids: Option<Vec<Option<String>>>,
    texts: Vec<Option<String>>,
    labels: Option<Vec<Option<String>>>,
    extra: Vec<Vec<Option<String>>>,
    keep: Vec<bool>,
}

/// Parquet rows per slice read.
pub const PARQUET_SLICE: usize = 65_536;

/// Where the next Parquet slice starts, and which columns to read.
struct ParquetSlices {
    path: PathBuf,
    total: usize,
    offset: usize,
    text: String,
    label: Option<String>,
    id: Option<String>,
    filters: Vec<(String, String)>,
    extra: Vec<String>,
}

/// Positions of the needed CSV columns.
struct Columns {
    text: usize,
    label: Option<usize>,
    id: Option<usize>,
    filters: Vec<(usize, String)>,
    extra: Vec<usize>,
}

/// Names of the needed JSONL keys.
struct Names {
    text: String,
    label: Option<String>,
    id: Option<String>,
    filters: Vec<(String, String)>,
    extra: Vec<String>,
}

impl std::fmt::Debug for Rows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rows").field("path", &self.path).field("read", &self.read).finish_non_exhaustive()
    }
}

fn filters(cfg: &Wanted) -> Result<Vec<(String, String)>> {
    cfg.filters
        .iter()
        .map(|f| {
            f.split_once('=').map(|(c, v)| (c.to_owned(), v.to_owned())).ok_or_else(|| Error::BadFilter(f.clone()))
        })
        .collect()
}

fn missing(path: &Path, column: &str, available: impl Iterator<Item = String>) -> Error {
    let available: Vec<String> = available.map(|c| format!("`{c}`")).collect();
    Error::MissingColumn { path: path.to_owned(), column: column.to_owned(), available: available.join(", ") }
}

pub(crate) fn open_file(path: &Path) -> Result<BufReader<File>> {
    let file = fs_err::File::open(path).map_err(|source| graft_core::Error::Read { path: path.to_owned(), source })?;
    Ok(BufReader::with_capacity(1 << 16, file.into_parts().0))
}

/// The table's columns to resolve `wanted` against: each named column must exist (`*` in
/// the extras means all of them); the label may be absent unless required.
struct Resolver<'a> {
    path: &'a Path,
    names: Vec<String>,
}

impl Resolver<'_> {
    /// The one column named `name`; two of that name leave it unclear which is meant.
    fn find(&self, name: &str) -> Result<usize> {
        let mut found = self.names.iter().enumerate().filter(|(_, n)| *n == name).map(|(i, _)| i);
        match (found.next(), found.next()) {
            (Some(i), None) => Ok(i),
            (Some(_), Some(_)) => Err(Error::DuplicateColumn { path: self.path.to_owned(), column: name.to_owned() }),
            (None, _) => Err(missing(self.path, name, self.names.iter().cloned())),
        }
    }

    fn label(&self, wanted: &Wanted) -> Result<Option<usize>> {
        match self.find(&wanted.label) {
            Ok(i) => Ok(Some(i)),
            Err(Error::MissingColumn { .. }) if !wanted.training => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn extra(&self, wanted: &Wanted) -> Result<Vec<usize>> {
        if let Some(twice) = wanted.extra.iter().enumerate().find(|(i, e)| wanted.extra[..*i].contains(e)) {
            return Err(Error::KeepTwice(twice.1.clone()));
        }
        if wanted.extra.iter().any(|e| e == "*") {
            return self.names.iter().map(|name| self.find(name)).collect();
        }
        wanted.extra.iter().map(|e| self.find(e)).collect()
    }
}

impl Rows {
    /// Reads training rows as `cfg` says.
    pub fn open(cfg: &Config) -> Result<Self> {
        Self::open_wanted(&Wanted::of(cfg))
    }

    pub fn open_wanted(wanted: &Wanted) -> Result<Self> {
        let path = wanted.input.as_path();
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        let (source, extra) = match (ext.as_deref(), delimited(path)) {
            (_, Some(dialect)) => open_csv(wanted, path, dialect)?,
            (Some("jsonl" | "ndjson"), _) => open_jsonl(wanted, path)?,
            (Some("parquet"), _) => open_parquet(wanted, path)?,
            _ => return Err(Error::UnknownFormat { path: path.to_owned() }),
        };
        Ok(Self { source, path: path.to_owned(), extra, read: 0 })
    }

    /// Names of the extra columns each row carries.
    pub fn extra(&self) -> &[String] {
        &self.extra
    }

    /// Data rows read so far, including those the filters dropped.
    pub fn read(&self) -> usize {
        self.read
    }

    /// The next row that passes the filters.
    pub fn next_row(&mut self) -> Result<Option<RawRow>> {
        loop {
            let index = self.read;
            let row = match &mut self.source {
                Source::Csv { reader, columns, record } => {
                    if !reader.read_record(record).map_err(|e| csv_error(&self.path, e))? {
                        return Ok(None);
                    }
                    let field = |i: usize| record.get(i).map(str::to_owned);
                    let keep = columns.filters.iter().all(|(c, v)| record.get(*c) == Some(v.as_str()));
                    keep.then(|| RawRow {
                        id: columns.id.map_or_else(|| Some(index.to_string()), |c| present(field(c))),
                        text: field(columns.text),
                        label: columns.label.and_then(field),
                        extra: columns.extra.iter().map(|&i| field(i)).collect(),
                    })
                }
                Source::Jsonl { lines, names, line } => {
                    let Some(Object(object)) = next_object(lines, line, &self.path)? else { return Ok(None) };
                    let field = |k: &str| object.get(k).and_then(scalar);
                    let keep = names.filters.iter().all(|(c, v)| field(c).as_deref() == Some(v.as_str()));
                    keep.then(|| RawRow {
                        id: names.id.as_deref().map_or_else(|| Some(index.to_string()), |c| present(field(c))),
                        text: field(&names.text),
                        label: names.label.as_deref().and_then(field),
                        extra: names.extra.iter().map(|k| field(k)).collect(),
                    })
                }
                Source::Parquet { reader, chunk, pos } => {
                    if *pos >= chunk.texts.len() {
                        if reader.offset >= reader.total {
                            return Ok(None);
                        }
                        *chunk = reader.next_slice()?;
                        *pos = 0;
                        continue;
                    }
                    let i = *pos;
                    *pos += 1;
                    chunk.keep[i].then(|| RawRow {
                        id: chunk.ids.as_ref().map_or_else(|| Some(index.to_string()), |ids| present(ids[i].clone())),
                        text: chunk.texts[i].take(),
                        label: chunk.labels.as_mut().and_then(|l| l[i].take()),
                        extra: chunk.extra.iter_mut().map(|column| column[i].take()).collect(),
                    })
                }
            };
            self.read += 1;
            if let Some(row) = row {
                return Ok(Some(row));
            }
        }
    }
}

fn csv_error(path: &Path, e: csv::Error) -> Error {
    if let csv::ErrorKind::Utf8 { pos, .. } = e.kind() {
        let line = pos.as_ref().map_or(0, |p| p.line() as usize);
        return Error::NotUtf8 { path: path.to_owned(), line };
    }
    Error::Csv { path: path.to_owned(), source: e }
}

/// A reader of a delimited file with a header row, by its extension; `None` for any other
/// file. A `.csv` splits on commas and honours RFC 4180 quotes; a `.tsv` or `.tab` splits on
/// tabs, one row a line, and quotes are text (IANA's text/tab-separated-values, read as
/// Python's `csv.QUOTE_NONE` reads the GLUE sets), so that a stray quote in one row cannot
/// join it to the next.
pub fn delimited(path: &Path) -> Option<csv::ReaderBuilder> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    let mut builder = csv::ReaderBuilder::new();
    builder.has_headers(true);
    match ext.as_str() {
        "csv" => {}
        "tsv" | "tab" => {
            builder.delimiter(b'\t').quoting(false);
        }
        _ => return None,
    }
    Some(builder)
}

fn open_csv(cfg: &Wanted, path: &Path, dialect: csv::ReaderBuilder) -> Result<(Source, Vec<String>)> {
    let mut reader = dialect.from_reader(open_file(path)?);
    let headers = reader.headers().map_err(|e| csv_error(path, e))?.clone();
    let mut names: Vec<String> = headers.iter().map(str::to_owned).collect();
    if headers.iter().all(|h| h.trim().is_empty()) {
        names = match (blank(path)?, cfg.training) {
            (false, _) => return Err(Error::BlankHeader { path: path.to_owned() }),
            (true, true) => return Err(Error::Empty { path: path.to_owned() }),
            (true, false) => cfg.named_columns()?,
        };
    }
    let table = Resolver { path, names };
    let extra = table.extra(cfg)?;
    let columns = Columns {
        text: table.find(&cfg.text)?,
        label: table.label(cfg)?,
        id: cfg.id.as_deref().map(|c| table.find(c)).transpose()?,
        filters: filters(cfg)?.into_iter().map(|(c, v)| Ok((table.find(&c)?, v))).collect::<Result<_>>()?,
        extra: extra.clone(),
    };
    let names = extra.iter().map(|&i| table.names[i].clone()).collect();
    Ok((Source::Csv { reader, columns, record: csv::StringRecord::new() }, names))
}

/// A JSON scalar as text; null and nested values are absent.
/// An id that is there: not null and not blank.
pub(crate) fn present(id: Option<String>) -> Option<String> {
    id.filter(|id| !id.trim().is_empty())
}

fn scalar(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A JSON object whose keys are distinct. Parsers disagree on which value a repeated key
/// means (Python's and serde's take the last, others the first), so one is refused.
struct Object(serde_json::Map<String, serde_json::Value>);

/// The keys of a JSON object, distinct as [`Object`]'s; the values are checked, not kept.
struct Keys(Vec<String>);

/// Visits an object's entries, refusing a repeated key: `V` is what each value is read as.
struct Entries<V>(std::marker::PhantomData<V>);

impl<'de, V: serde::Deserialize<'de>> serde::de::Visitor<'de> for Entries<V> {
    type Value = Vec<(String, V)>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<Self::Value, A::Error> {
        let mut entries: Vec<(String, V)> = Vec::new();
        while let Some(entry) = map.next_entry::<String, V>()? {
            entries.push(entry);
        }
        let mut keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
        keys.sort_unstable();
        if let Some(twice) = keys.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(serde::de::Error::custom(format!("key `{}` appears twice", twice[0])));
        }
        Ok(entries)
    }
}

impl<'de> serde::Deserialize<'de> for Object {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let entries = deserializer.deserialize_map(Entries::<serde_json::Value>(std::marker::PhantomData))?;
        Ok(Object(entries.into_iter().collect()))
    }
}

impl<'de> serde::Deserialize<'de> for Keys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let entries = deserializer.deserialize_map(Entries::<serde::de::IgnoredAny>(std::marker::PhantomData))?;
        Ok(Keys(entries.into_iter().map(|(k, _)| k).collect()))
    }
}

/// The next non-blank line's object; `line` counts lines read (1-based after the call).
fn next_object<T: serde::de::DeserializeOwned>(
    lines: &mut std::io::Split<BufReader<File>>,
    line: &mut usize,
    path: &Path,
) -> Result<Option<T>> {
    for bytes in lines.by_ref() {
        *line += 1;
        let bytes = bytes.map_err(|source| graft_core::Error::Read { path: path.to_owned(), source })?;
        let text = std::str::from_utf8(&bytes).map_err(|_| Error::NotUtf8 { path: path.to_owned(), line: *line })?;
        // A byte order mark, as editors on Windows write one, opens the file, not the object.
        let text = if *line == 1 { text.strip_prefix('\u{feff}').unwrap_or(text) } else { text };
        if text.trim().is_empty() {
            continue;
        }
        return serde_json::from_str(text).map(Some).map_err(|source| Error::Json {
            path: path.to_owned(),
            line: *line,
            source,
        });
    }
    Ok(None)
}

/// Every key of a JSONL file's objects, in the order first met. A key some lines leave out
/// (writers that drop nulls do) is a column all the same, as for pandas: a label only later
/// lines hold is read, and a line without it has none. `None` when there is no object.
fn jsonl_keys(path: &Path) -> Result<Option<Vec<String>>> {
    let (mut lines, mut line) = (open_file(path)?.split(b'\n'), 0);
    let (mut keys, mut seen, mut objects) = (Vec::new(), std::collections::HashSet::new(), 0usize);
    while let Some(Keys(these)) = next_object(&mut lines, &mut line, path)? {
        objects += 1;
        for key in these {
            if seen.insert(key.clone()) {
                keys.push(key);
            }
        }
    }
    Ok((objects > 0).then_some(keys))
}

/// Whether the file holds nothing but whitespace, after a byte order mark if it opens with one.
fn blank(path: &Path) -> Result<bool> {
    let mut reader = open_file(path)?;
    let read_err = |source| graft_core::Error::Read { path: path.to_owned(), source };
    if reader.fill_buf().map_err(read_err)?.starts_with(b"\xEF\xBB\xBF") {
        reader.consume(3);
    }
    loop {
        let buf = reader.fill_buf().map_err(read_err)?;
        if buf.is_empty() {
            return Ok(true);
        }
        if !buf.iter().all(u8::is_ascii_whitespace) {
            return Ok(false);
        }
        let n = buf.len();
        reader.consume(n);
    }
}

fn open_jsonl(cfg: &Wanted, path: &Path) -> Result<(Source, Vec<String>)> {
    let names = match jsonl_keys(path)? {
        Some(keys) => keys,
        None if !cfg.training => cfg.named_columns()?,
        None => return Err(Error::Empty { path: path.to_owned() }),
    };
    let table = Resolver { path, names };
    let name = |i: usize| table.names[i].clone();
    let extra: Vec<String> = table.extra(cfg)?.into_iter().map(name).collect();
    let names = Names {
        text: name(table.find(&cfg.text)?),
        label: table.label(cfg)?.map(name),
        id: cfg.id.as_deref().map(|c| table.find(c).map(name)).transpose()?,
        filters: filters(cfg)?.into_iter().map(|(c, v)| Ok((name(table.find(&c)?), v))).collect::<Result<_>>()?,
        extra: extra.clone(),
    };
    Ok((Source::Jsonl { lines: open_file(path)?.split(b'\n'), names, line: 0 }, extra))
}

/// `read`, a call into Polars' Parquet reader: a panic inside it (a corrupt footer or page)
/// is an error naming the file, like the reader's own errors.
fn parquet<T>(path: &Path, read: impl FnOnce() -> PolarsResult<T>) -> Result<T> {
    graft_core::guard::unwind_with_workers(read)
        .map_err(|panic| graft_core::Error::Corrupt {
            path: path.to_owned(),
            message: format!("not a readable Parquet file ({panic})"),
        })?
        .map_err(|source| Error::Parse { path: path.to_owned(), source })
}

fn open_parquet(cfg: &Wanted, path: &Path) -> Result<(Source, Vec<String>)> {
    let mut reader = ParquetReader::new(open_file(path)?.into_inner());
    let schema = parquet(path, || reader.schema())?;
    let table = Resolver { path, names: schema.iter_names().map(|n| n.to_string()).collect() };
    let name = |i: usize| table.names[i].clone();
    let extra: Vec<String> = table.extra(cfg)?.into_iter().map(name).collect();
    let slices = ParquetSlices {
        path: path.to_owned(),
        total: parquet(path, || reader.num_rows())?,
        offset: 0,
        text: name(table.find(&cfg.text)?),
        label: table.label(cfg)?.map(name),
        id: cfg.id.as_deref().map(|c| table.find(c).map(name)).transpose()?,
        filters: filters(cfg)?.into_iter().map(|(c, v)| Ok((name(table.find(&c)?), v))).collect::<Result<_>>()?,
        extra: extra.clone(),
    };
    // Each field is read as a string: a list, a struct or raw bytes is none.
    for column in slices.columns() {
        let dtype = schema.get(&column).map(DataType::from_arrow_field);
        if let Some(dtype) = dtype.filter(|t| t.is_nested() || matches!(t, DataType::Binary)) {
            return Err(Error::ColumnType { path: path.to_owned(), column, found: dtype.to_string() });
        }
    }
    Ok((Source::Parquet { reader: slices, chunk: Chunk::default(), pos: 0 }, extra))
}

impl ParquetSlices {
    /// The columns read, each once.
    fn columns(&self) -> Vec<String> {
        let mut columns: Vec<String> = Vec::new();
        let wanted = std::iter::once(&self.text)
            .chain(&self.label)
            .chain(&self.id)
            .chain(self.filters.iter().map(|(c, _)| c))
            .chain(&self.extra);
        for c in wanted {
            if !columns.contains(c) {
                columns.push(c.clone());
            }
        }
        columns
    }

    /// The next slice of rows, only the needed columns.
    fn next_slice(&mut self) -> Result<Chunk> {
        let path = self.path.clone();
        let parse = |source| Error::Parse { path: path.clone(), source };
        let columns = self.columns();
        let len = PARQUET_SLICE.min(self.total - self.offset);
        let reader = ParquetReader::new(open_file(&self.path)?.into_inner())
            .with_columns(Some(columns))
            .with_slice(Some((self.offset, len)));
        let df = parquet(&path, || reader.finish())?;
        let rows = self.offset..self.offset + len;
        self.offset += len;
        // A corrupt file can give columns shorter than its footer claims: each column must
        // hold every row asked for, so that no row is lost or misaligned.
        let strings = |name: &str| -> Result<Vec<Option<String>>> {
            let col = df.column(name).map_err(parse)?.cast(&DataType::String).map_err(parse)?;
            if col.len() != len {
                return Err(graft_core::Error::Corrupt {
                    path: path.clone(),
                    message: format!(
                        "column `{name}` holds {} values, not the {len} of rows {}..{} its footer declares",
                        col.len(),
                        rows.start,
                        rows.end
                    ),
                }
                .into());
            }
            Ok(col.str().map_err(parse)?.iter().map(|s| s.map(str::to_owned)).collect())
        };
        let mut keep = vec![true; len];
        for (column, value) in &self.filters {
            for (k, v) in keep.iter_mut().zip(strings(column)?) {
                *k &= v.as_deref() == Some(value.as_str());
            }
        }
        Ok(Chunk {
            ids: self.id.as_deref().map(strings).transpose()?,
            texts: strings(&self.text)?,
            labels: self.label.as_deref().map(strings).transpose()?,
            extra: self.extra.iter().map(|c| strings(c)).collect::<Result<_>>()?,
            keep,
        })
    }
}
