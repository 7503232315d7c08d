//! Reads raw tables (CSV, JSONL, Parquet) into the three columns graft needs.

use std::io::Cursor;
use std::path::Path;

use polars::prelude::*;

use crate::config::Config;
use crate::error::{Error, Result};

/// The rows of the input that pass the filters, as strings.
#[derive(Debug, Default)]
pub struct Table {
    pub ids: Vec<String>,
    pub texts: Vec<Option<String>>,
    pub labels: Vec<Option<String>>,
}

pub fn read_table(cfg: &Config) -> Result<Table> {
    let path = cfg.input.as_path();
    let parse = |source| Error::Parse { path: path.to_owned(), source };
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    let df = match ext.as_deref() {
        Some("csv") => CsvReadOptions::default()
            .with_has_header(true)
            .with_infer_schema_length(Some(0))
            .into_reader_with_file_handle(Cursor::new(read_utf8(path)?))
            .finish(),
        Some("jsonl" | "ndjson") => {
            JsonReader::new(Cursor::new(read_utf8(path)?)).with_json_format(JsonFormat::JsonLines).finish()
        }
        Some("parquet") => {
            let file =
                fs_err::File::open(path).map_err(|source| graft_core::Error::Read { path: path.to_owned(), source })?;
            ParquetReader::new(file.into_parts().0).finish()
        }
        _ => {
            return Err(Error::UnknownFormat { path: path.to_owned() });
        }
    }
    .map_err(parse)?;
    if df.height() == 0 {
        return Err(Error::Empty { path: path.to_owned() });
    }
    let strings = |name: &str| -> Result<Vec<Option<String>>> {
        let col = df.column(name).map_err(|_| Error::MissingColumn {
            path: path.to_owned(),
            column: name.to_owned(),
            available: df.get_column_names().iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", "),
        })?;
        let col = col.cast(&DataType::String).map_err(parse)?;
        Ok(col.str().map_err(parse)?.iter().map(|s| s.map(str::to_owned)).collect())
    };
    let mut keep = vec![true; df.height()];
    for filter in &cfg.filters {
        let (column, value) = filter.split_once('=').ok_or_else(|| Error::BadFilter(filter.clone()))?;
        for (k, v) in keep.iter_mut().zip(strings(column)?) {
            *k &= v.as_deref() == Some(value);
        }
    }
    let texts = strings(&cfg.text_column)?;
    let labels = strings(&cfg.label_column)?;
    let ids: Vec<String> = match &cfg.id_column {
        Some(c) => strings(c)?.into_iter().map(Option::unwrap_or_default).collect(),
        None => (0..df.height()).map(|i| i.to_string()).collect(),
    };
    let pick = |v: Vec<Option<String>>| v.into_iter().zip(&keep).filter(|(_, k)| **k).map(|(x, _)| x).collect();
    Ok(Table {
        ids: ids.into_iter().zip(&keep).filter(|(_, k)| **k).map(|(x, _)| x).collect(),
        texts: pick(texts),
        labels: pick(labels),
    })
}

/// The file's bytes, or an error naming the line of the first byte that is not UTF-8.
fn read_utf8(path: &Path) -> Result<Vec<u8>> {
    let bytes = fs_err::read(path).map_err(|source| graft_core::Error::Read { path: path.to_owned(), source })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::Empty { path: path.to_owned() });
    }
    if let Err(e) = std::str::from_utf8(&bytes) {
        let offset = e.valid_up_to();
        let line = 1 + bytes[..offset].iter().filter(|&&b| b == b'\n').count();
        return Err(Error::NotUtf8 { path: path.to_owned(), line, offset });
    }
    Ok(bytes)
}
