//! Parquet copies of an evaluation, for SQL engines that read Parquet but not Arrow IPC
//! files (DuckDB without extensions): `predictions.parquet` (the rows of predictions.arrow,
//! its provenance in the schema metadata) and `metrics.parquet` (one row per number of
//! metrics.json: `metric`, `class` for per-class numbers, `value`, and the interval's `low`
//! and `high` where the report has one).

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use graft_core::metrics::Report;

use crate::{Error, Result};

pub const PREDICTIONS_FILE: &str = "predictions.parquet";
pub const METRICS_FILE: &str = "metrics.parquet";

/// `batch` as the bytes of a Parquet file (written to `path` by the caller).
pub fn parquet_bytes(batch: &RecordBatch, path: &Path) -> Result<Vec<u8>> {
    let bad = |e: parquet::errors::ParquetError| Error::Parquet { path: path.to_owned(), message: e.to_string() };
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .build();
    let mut writer = parquet::arrow::ArrowWriter::try_new(Vec::new(), batch.schema(), Some(props)).map_err(bad)?;
    writer.write(batch).map_err(bad)?;
    writer.into_inner().map_err(bad)
}

/// The report's numbers as rows (metric, class, value, low, high).
pub fn metrics_batch(report: &Report) -> RecordBatch {
    let mut rows: Vec<(String, Option<String>, f64)> = Vec::new();
    let mut flatten = |prefix: &str, value: &serde_json::Value| {
        let serde_json::Value::Object(map) = value else { return };
        for (key, v) in map {
            let name = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
            match v {
                serde_json::Value::Number(n) => rows.extend(n.as_f64().map(|x| (name, None, x))),
                serde_json::Value::Array(items) if key == "per_class" => {
                    for item in items {
                        let label = item.get("label").and_then(|l| l.as_str()).map(str::to_owned);
                        for (k, x) in item.as_object().into_iter().flatten() {
                            if let Some(x) = x.as_f64() {
                                rows.push((k.clone(), label.clone(), x));
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    };
    if let Ok(metrics) = serde_json::to_value(&report.metrics) {
        flatten("", &metrics);
    }
    if let Some(p) = report.probabilities.as_ref().and_then(|p| serde_json::to_value(p).ok()) {
        flatten("", &p);
    }
    let interval = |name: &str, class: &Option<String>| {
        class.is_none().then(|| report.intervals.as_ref()?.metrics.get(name).copied()).flatten()
    };
    let schema = Arc::new(Schema::new(vec![
        Field::new("metric", DataType::Utf8, false),
        Field::new("class", DataType::Utf8, true),
        Field::new("value", DataType::Float64, false),
        Field::new("low", DataType::Float64, true),
        Field::new("high", DataType::Float64, true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0.as_str()))),
        Arc::new(StringArray::from_iter(rows.iter().map(|r| r.1.as_deref()))),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2))),
        Arc::new(Float64Array::from_iter(rows.iter().map(|r| interval(&r.0, &r.1).map(|i| i.low)))),
        Arc::new(Float64Array::from_iter(rows.iter().map(|r| interval(&r.0, &r.1).map(|i| i.high)))),
    ];
    RecordBatch::try_new(schema, columns).expect("columns match the schema")
}
