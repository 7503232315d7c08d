//! `graft-preprocess`: raw labelled text -> cleaned, split, tokenised Arrow IPC files.

mod clean;
mod config;
mod error;
mod read;
mod split;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Builder, ListBuilder, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field};
use graft_core::artifact::{ArtifactWriter, Provenance, TokenizerId};
use graft_core::atomic::Pending;
use graft_core::progress::Progress;
use graft_core::spec::BackboneSpec;
use tokenizers::{Encoding, Tokenizer, TruncationParams};

pub use clean::clean_text;
pub use config::Config;
pub use error::{Error, Result};
pub use split::Split;

/// Rows per record batch in the written files.
const BATCH_ROWS: usize = 4096;

/// What a run did, for the binary to report.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Summary {
    pub rows_read: usize,
    /// Rows dropped, by reason.
    pub dropped: BTreeMap<&'static str, usize>,
    pub labels: Vec<String>,
    /// Rows written, by split name.
    pub written: BTreeMap<&'static str, usize>,
    /// Rows whose token sequence was cut at the maximum length.
    pub truncated: usize,
}

/// A row kept after cleaning.
#[derive(Debug)]
struct Row {
    /// 0-based index among the input's (filtered) rows.
    index: usize,
    id: String,
    text: String,
    label: String,
}

pub fn run(cfg: &Config, progress: &dyn Progress) -> Result<Summary> {
    let (val, test) = (cfg.val_fraction, cfg.test_fraction);
    if !(0.0..1.0).contains(&val) || !(0.0..1.0).contains(&test) || val + test >= 1.0 {
        return Err(Error::BadFractions { val, test });
    }
    let spec = BackboneSpec::load(&cfg.spec)?;
    let tokenizer_path = &spec.text().tokenizer;
    let max_length = cfg.max_length.unwrap_or(spec.text().max_length);
    let tokenizer = load_tokenizer(tokenizer_path, max_length)?;
    let table = read::read_table(cfg)?;

    let mut summary = Summary { rows_read: table.ids.len(), ..Summary::default() };
    let rows = clean_rows(table, &mut summary);
    if rows.is_empty() {
        return Err(Error::NothingLeft { path: cfg.input.clone(), dropped: format!("{:?}", summary.dropped) });
    }
    if let Some(column) = &cfg.id_column {
        check_unique_ids(&rows, cfg, column)?;
    }
    let labels = vocabulary(&rows, cfg)?;
    let classes: Vec<usize> =
        rows.iter().map(|r| labels.binary_search(&r.label).expect("label in vocabulary")).collect();
    let assignment = split::stratified(&classes, labels.len(), val, test, cfg.seed);

    let inputs = BTreeMap::from([
        ("input".to_owned(), graft_core::hash::file(&cfg.input)?),
        ("tokenizer".to_owned(), graft_core::hash::file(tokenizer_path)?),
    ]);
    let provenance = Provenance {
        stage: "preprocess".into(),
        graft_version: graft_core::VERSION.into(),
        labels: labels.clone(),
        rows: 0,
        params: serde_json::to_value(cfg).map_err(|source| graft_core::Error::Json { what: "config", source })?,
        tokenizer: Some(TokenizerId { blake3: inputs["tokenizer"].clone(), max_length }),
        inputs,
        backbone: None,
        shard: None,
    };
    progress.start("tokenising", rows.len() as u64);
    let mut pending = Vec::new();
    for split in Split::ALL {
        let members: Vec<&Row> = rows.iter().zip(&assignment).filter(|(_, s)| **s == split).map(|(r, _)| r).collect();
        if members.is_empty() {
            continue;
        }
        let provenance = Provenance { rows: members.len() as u64, ..provenance.clone() };
        let dest = cfg.out.join(format!("{}.arrow", split.name()));
        let tokenise = |texts: Vec<&str>| {
            tokenizer
                .encode_batch(texts, true)
                .map_err(|source| Error::Tokenizer { path: tokenizer_path.clone(), source })
        };
        pending.push(write_split(&dest, &provenance, &members, tokenise, progress, &mut summary.truncated)?);
        summary.written.insert(split.name(), members.len());
    }
    progress.finish();
    graft_core::atomic::commit_all(pending)?;
    summary.labels = labels;
    Ok(summary)
}

/// Cleans texts and drops rows with an empty text or no label, counting them by reason.
fn clean_rows(table: read::Table, summary: &mut Summary) -> Vec<Row> {
    let mut rows = Vec::new();
    let columns = table.ids.into_iter().zip(table.texts).zip(table.labels);
    for (index, ((id, text), label)) in columns.enumerate() {
        let Some(label) = label.as_deref().map(str::trim).filter(|l| !l.is_empty()) else {
            *summary.dropped.entry("missing label").or_default() += 1;
            continue;
        };
        let text = clean_text(text.as_deref().unwrap_or(""));
        if text.is_empty() {
            *summary.dropped.entry("empty text").or_default() += 1;
            continue;
        }
        rows.push(Row { index, id, text, label: label.to_owned() });
    }
    rows
}

fn check_unique_ids(rows: &[Row], cfg: &Config, column: &str) -> Result<()> {
    let mut seen = HashSet::new();
    match rows.iter().find(|r| !seen.insert(r.id.as_str())) {
        Some(r) => Err(Error::DuplicateId {
            path: cfg.input.clone(),
            column: column.to_owned(),
            id: r.id.clone(),
            row: r.index,
        }),
        None => Ok(()),
    }
}

/// The sorted label set; classification needs at least two labels.
fn vocabulary(rows: &[Row], cfg: &Config) -> Result<Vec<String>> {
    let labels: Vec<String> = rows.iter().map(|r| r.label.clone()).collect::<BTreeSet<_>>().into_iter().collect();
    if labels.len() < 2 {
        return Err(Error::OneClass {
            path: cfg.input.clone(),
            column: cfg.label_column.clone(),
            label: labels[0].clone(),
        });
    }
    Ok(labels)
}

/// Tokenises one split's rows batch by batch into `dest` (committed later by the caller).
fn write_split(
    dest: &Path,
    provenance: &Provenance,
    rows: &[&Row],
    tokenise: impl Fn(Vec<&str>) -> Result<Vec<Encoding>>,
    progress: &dyn Progress,
    truncated: &mut usize,
) -> Result<Pending> {
    let token_ids = DataType::List(Arc::new(Field::new("item", DataType::Int32, true)));
    let schema = provenance.attach(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("label", DataType::Utf8, false),
        Field::new("text", DataType::Utf8, false),
        Field::new("input_ids", token_ids, false),
    ])?;
    let mut writer = ArtifactWriter::create(dest, &schema)?;
    for chunk in rows.chunks(BATCH_ROWS) {
        let texts: Vec<&str> = chunk.iter().map(|r| r.text.as_str()).collect();
        let mut ids = ListBuilder::new(Int32Builder::new());
        for enc in tokenise(texts.clone())? {
            *truncated += usize::from(!enc.get_overflowing().is_empty());
            ids.values().extend(enc.get_ids().iter().map(|&t| Some(t as i32)));
            ids.append(true);
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(chunk.iter().map(|r| r.id.as_str()))),
            Arc::new(StringArray::from_iter_values(chunk.iter().map(|r| r.label.as_str()))),
            Arc::new(StringArray::from(texts)),
            Arc::new(ids.finish()),
        ];
        let batch = RecordBatch::try_new(schema.clone(), columns)
            .map_err(|source| graft_core::Error::Arrow { path: dest.to_owned(), source })?;
        writer.write(&batch)?;
        progress.advance(chunk.len() as u64);
    }
    Ok(writer.finish()?)
}

/// The spec's tokenizer with its own padding removed and truncation at `max_length`.
pub fn load_tokenizer(path: &Path, max_length: usize) -> Result<Tokenizer> {
    let err = |source| Error::Tokenizer { path: path.to_owned(), source };
    let mut tokenizer = Tokenizer::from_file(path).map_err(err)?;
    tokenizer.with_padding(None);
    tokenizer.with_truncation(Some(TruncationParams { max_length, ..TruncationParams::default() })).map_err(err)?;
    Ok(tokenizer)
}
