//! `graft-preprocess`: raw labelled text -> cleaned, split, tokenised Arrow IPC files.

mod clean;
mod config;
mod error;
mod read;
mod split;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Builder, ListBuilder, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field};
use graft_core::artifact::{ArtifactWriter, Provenance, TokenizerId};
use graft_core::progress::Progress;
use graft_core::spec::BackboneSpec;
use tokenizers::{Tokenizer, TruncationParams};

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

pub fn run(cfg: &Config, progress: &dyn Progress) -> Result<Summary> {
    let (val, test) = (cfg.val_fraction, cfg.test_fraction);
    if !(0.0..1.0).contains(&val) || !(0.0..1.0).contains(&test) || val + test >= 1.0 {
        return Err(Error::BadFractions { val, test });
    }
    let spec = BackboneSpec::load(&cfg.spec)?;
    let max_length = cfg.max_length.unwrap_or(spec.text().max_length);
    let tokenizer = load_tokenizer(&spec.text().tokenizer, max_length)?;
    let table = read::read_table(cfg)?;

    let mut summary = Summary {
        rows_read: table.ids.len(),
        ..Summary::default()
    };
    let mut rows = Vec::new();
    for (i, (text, label)) in table.texts.iter().zip(&table.labels).enumerate() {
        let Some(label) = label.as_deref().map(str::trim).filter(|l| !l.is_empty()) else {
            *summary.dropped.entry("missing label").or_default() += 1;
            continue;
        };
        let text = clean_text(text.as_deref().unwrap_or(""));
        if text.is_empty() {
            *summary.dropped.entry("empty text").or_default() += 1;
            continue;
        }
        rows.push((i, text, label.to_owned()));
    }
    if rows.is_empty() {
        return Err(Error::NothingLeft {
            path: cfg.input.clone(),
            dropped: format!("{:?}", summary.dropped),
        });
    }
    if let Some(column) = &cfg.id_column {
        let mut seen = HashSet::new();
        for (i, _, _) in &rows {
            if !seen.insert(&table.ids[*i]) {
                return Err(Error::DuplicateId {
                    path: cfg.input.clone(),
                    column: column.clone(),
                    id: table.ids[*i].clone(),
                    row: *i,
                });
            }
        }
    }
    let labels: Vec<String> = rows
        .iter()
        .map(|r| r.2.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if labels.len() < 2 {
        return Err(Error::OneClass {
            path: cfg.input.clone(),
            column: cfg.label_column.clone(),
            label: labels[0].clone(),
        });
    }
    let class_of = |l: &str| {
        labels
            .binary_search_by(|x| x.as_str().cmp(l))
            .expect("label in vocabulary")
    };
    let classes: Vec<usize> = rows.iter().map(|r| class_of(&r.2)).collect();
    let assignment = split::stratified(&classes, labels.len(), val, test, cfg.seed);

    let inputs = BTreeMap::from([
        ("input".to_owned(), graft_core::hash::file(&cfg.input)?),
        (
            "tokenizer".to_owned(),
            graft_core::hash::file(&spec.text().tokenizer)?,
        ),
    ]);
    let tokenizer_id = TokenizerId {
        blake3: inputs["tokenizer"].clone(),
        max_length,
    };
    let params = serde_json::to_value(cfg).map_err(|source| graft_core::Error::Json {
        what: "config",
        source,
    })?;
    progress.start("tokenising", rows.len() as u64);
    let mut pending = Vec::new();
    for split in Split::ALL {
        let members: Vec<&(usize, String, String)> = rows
            .iter()
            .zip(&assignment)
            .filter(|(_, s)| **s == split)
            .map(|(r, _)| r)
            .collect();
        if members.is_empty() {
            continue;
        }
        let provenance = Provenance {
            stage: "preprocess".into(),
            graft_version: graft_core::VERSION.into(),
            labels: labels.clone(),
            rows: members.len() as u64,
            params: params.clone(),
            inputs: inputs.clone(),
            tokenizer: Some(tokenizer_id.clone()),
            backbone: None,
        };
        let schema = provenance.attach(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("label", DataType::Utf8, false),
            Field::new("text", DataType::Utf8, false),
            Field::new(
                "input_ids",
                DataType::List(Arc::new(Field::new("item", DataType::Int32, true))),
                false,
            ),
        ])?;
        let dest = cfg.out.join(format!("{}.arrow", split.name()));
        let mut writer = ArtifactWriter::create(&dest, &schema)?;
        for chunk in members.chunks(BATCH_ROWS) {
            let texts: Vec<&str> = chunk.iter().map(|r| r.1.as_str()).collect();
            let encodings = tokenizer
                .encode_batch(texts.clone(), true)
                .map_err(|source| Error::Tokenizer {
                    path: spec.text().tokenizer.clone(),
                    source,
                })?;
            let mut ids = ListBuilder::new(Int32Builder::new());
            for enc in &encodings {
                summary.truncated += usize::from(!enc.get_overflowing().is_empty());
                ids.values()
                    .append_slice(&enc.get_ids().iter().map(|&t| t as i32).collect::<Vec<_>>());
                ids.append(true);
            }
            let columns: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from_iter_values(
                    chunk.iter().map(|r| table.ids[r.0].as_str()),
                )),
                Arc::new(StringArray::from_iter_values(
                    chunk.iter().map(|r| r.2.as_str()),
                )),
                Arc::new(StringArray::from(texts)),
                Arc::new(ids.finish()),
            ];
            let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|source| {
                graft_core::Error::Arrow {
                    path: dest.clone(),
                    source,
                }
            })?;
            writer.write(&batch)?;
            progress.advance(chunk.len() as u64);
        }
        pending.push(writer.finish()?);
        summary.written.insert(split.name(), members.len());
    }
    progress.finish();
    graft_core::atomic::commit_all(pending)?;
    summary.labels = labels;
    Ok(summary)
}

/// The spec's tokenizer with its own padding removed and truncation at `max_length`.
pub fn load_tokenizer(path: &std::path::Path, max_length: usize) -> Result<Tokenizer> {
    let err = |source| Error::Tokenizer {
        path: path.to_owned(),
        source,
    };
    let mut tokenizer = Tokenizer::from_file(path).map_err(err)?;
    tokenizer.with_padding(None);
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length,
            ..TruncationParams::default()
        }))
        .map_err(err)?;
    Ok(tokenizer)
}
