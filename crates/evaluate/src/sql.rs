//! Parquet copies of an evaluation, for SQL engines that read Parquet but not Arrow IPC
//! files (DuckDB without extensions): `predictions.parquet` (the rows of predictions.arrow,
//! its provenance in the schema metadata) and `metrics.parquet` (the report as a table,
//! `graft_core::metrics::Report::table`).

use std::path::Path;

use arrow::array::RecordBatch;

use crate::{Error, Result};

pub const PREDICTIONS_FILE: &str = "predictions.parquet";
pub const METRICS_FILE: &str = "metrics.parquet";

/// How graft writes Parquet: Snappy-compressed, which every engine reads.
pub fn properties() -> parquet::file::properties::WriterProperties {
    parquet::file::properties::WriterProperties::builder().set_compression(parquet::basic::Compression::SNAPPY).build()
}

/// `batch` as the bytes of a Parquet file (written to `path` by the caller).
pub fn parquet_bytes(batch: &RecordBatch, path: &Path) -> Result<Vec<u8>> {
    let bad = |e: parquet::errors::ParquetError| Error::Parquet { path: path.to_owned(), message: e.to_string() };
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(Vec::new(), batch.schema(), Some(properties())).map_err(bad)?;
    writer.write(batch).map_err(bad)?;
    writer.into_inner().map_err(bad)
}
