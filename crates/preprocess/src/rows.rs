//! `graft-preprocess rows`: new rows to score with a model bundle. Each row is read, cleaned
//! and tokenised exactly as the bundle's training rows were (its columns, tokenizer and
//! maximum length), in input order; a row that cannot be scored goes to `rejects.arrow`
//! with its reason, so rows read = rows written + rows rejected.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Builder, ListBuilder, RecordBatch, StringArray, UInt64Array};
use graft_core::artifact::{ArtifactWriter, Provenance, REJECTS, ROWS, TokenizerId};
use graft_core::bundle::{Bundle, Input};
use graft_core::columns;
use graft_core::progress::Progress;

use crate::error::{Error, Result};
use crate::read::{RawRow, Rows, Wanted};
use crate::{BATCH_ROWS, clean_text, load_tokenizer};

pub use graft_core::config::preprocess::RowsConfig;

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RowsSummary {
    /// Rows read (after filters; of this shard when sharded).
    pub read: u64,
    pub written: u64,
    /// Rows that cannot be scored, by reason.
    pub rejected: BTreeMap<&'static str, u64>,
    pub truncated: u64,
}

/// The row's cleaned text, or why it cannot be scored.
fn cleaned(row: &RawRow) -> std::result::Result<String, &'static str> {
    match row.text.as_deref().map(clean_text) {
        None => Err(REASONS[1]),
        Some(t) if t.is_empty() => Err(REASONS[2]),
        Some(_) if row.id.is_none() => Err(REASONS[3]),
        Some(t) => Ok(t),
    }
}

/// Reasons by code: 0 is a scorable row. The first pass keeps one code byte per row.
const REASONS: [&str; 4] = ["", "no text", "empty text", "no id"];

fn code(reason: Option<&'static str>) -> u8 {
    reason.map_or(0, |r| REASONS.iter().position(|c| *c == r).expect("a known reason") as u8)
}

pub fn run(cfg: &RowsConfig, progress: &dyn Progress) -> Result<RowsSummary> {
    let inputs = [("--bundle", cfg.rows.bundle.as_path()), ("--input", &cfg.rows.input)];
    graft_core::atomic::check_out_is_no_input(&cfg.out, &inputs)?;
    let bundle = Bundle::load(&cfg.rows.bundle)?;
    let (text_column, label_column, id_column, max_length) = match &bundle.info.input {
        Input::Text { text_column, label_column, id_column, max_length } => {
            (text_column, label_column, id_column, max_length)
        }
        Input::Image { path_column, .. } => {
            return crate::image_rows::run(cfg, &bundle, path_column.as_deref(), progress);
        }
    };
    let wanted = Wanted {
        input: cfg.rows.input.clone(),
        text: text_column.clone(),
        label: label_column.clone(),
        training: false,
        id: cfg.rows.id_column.clone().or_else(|| id_column.clone()),
        filters: cfg.rows.filters.clone(),
        extra: cfg.rows.keep.clone(),
    };
    let tokenizer_path = bundle.spec.text().tokenizer.clone();
    let tokenizer = load_tokenizer(&tokenizer_path, *max_length)?;
    // First pass: which rows can be scored, so that each file's row count is known before
    // it is written (and a shard's block of rows, from the total).
    let mut reasons: Vec<u8> = Vec::new();
    let mut rows = Rows::open_wanted(&wanted)?;
    while let Some(row) = rows.next_row()? {
        reasons.push(code(cleaned(&row).err()));
    }
    let total = reasons.len();
    let range = match cfg.rows.shard {
        Some(shard) => {
            let (i, n) = (shard.index as usize, shard.count as usize);
            total * i / n..total * (i + 1) / n
        }
        None => 0..total,
    };
    let rejected_count = reasons[range.clone()].iter().filter(|&&r| r != 0).count() as u64;
    let read = range.len() as u64;

    let mut rows = Rows::open_wanted(&wanted)?;
    let extra = rows.extra().to_vec();
    let tokenizer_id = TokenizerId {
        blake3: graft_core::hash::file(&tokenizer_path)?,
        max_length: *max_length,
        vocab_size: tokenizer.get_vocab_size(true),
    };
    let base = provenance(cfg, &bundle, Some(tokenizer_id))?;
    let with_rows = |rows: u64| Provenance { rows, ..base.clone() };
    let mut scored_out = Output::new(&cfg.out, ROWS, columns::rows_fields(&extra), &with_rows(read - rejected_count))?;
    let mut rejects_out = Output::new(&cfg.out, REJECTS, columns::rejects_fields(&extra), &with_rows(rejected_count))?;

    // Second pass: the rows of the block, written in input order.
    let mut summary = RowsSummary { read, ..RowsSummary::default() };
    let mut scored: Vec<(u64, RawRow, String)> = Vec::new();
    let mut rejected: Vec<(u64, RawRow, &'static str)> = Vec::new();
    progress.start("rows", read);
    let mut position = 0usize;
    while let Some(row) = rows.next_row()? {
        let at = position;
        position += 1;
        if !range.contains(&at) {
            continue;
        }
        let text = cleaned(&row);
        if reasons.get(at) != Some(&code(text.as_ref().err().copied())) {
            return Err(Error::Changed { path: cfg.rows.input.clone() });
        }
        match text {
            Err(reason) if cfg.rows.strict => {
                return Err(Error::Unscorable { path: cfg.rows.input.clone(), row: at as u64, id: row.id, reason });
            }
            Err(reason) => {
                *summary.rejected.entry(reason).or_default() += 1;
                rejected.push((at as u64, row, reason));
            }
            Ok(text) => scored.push((at as u64, row, text)),
        }
        if scored.len() >= BATCH_ROWS {
            progress.advance(scored.len() as u64);
            summary.truncated += scored_out.tokens(std::mem::take(&mut scored), &extra, &tokenizer, &tokenizer_path)?;
        }
        if rejected.len() >= BATCH_ROWS {
            progress.advance(rejected.len() as u64);
            rejects_out.rejects(std::mem::take(&mut rejected), &extra)?;
        }
    }
    if position != total {
        return Err(Error::Changed { path: cfg.rows.input.clone() });
    }
    progress.advance((scored.len() + rejected.len()) as u64);
    summary.truncated += scored_out.tokens(scored, &extra, &tokenizer, &tokenizer_path)?;
    rejects_out.rejects(rejected, &extra)?;
    progress.finish();
    summary.written = scored_out.rows;
    let pending = vec![scored_out.finish()?, rejects_out.finish()?];
    graft_core::atomic::commit_all(pending)?;
    Ok(summary)
}

/// The provenance of rows to score (its `rows` still to be set): the bundle's task and labels,
/// the blake3 of the bundle's manifest and of the input when it is a file.
pub(crate) fn provenance(cfg: &RowsConfig, bundle: &Bundle, tokenizer: Option<TokenizerId>) -> Result<Provenance> {
    let mut inputs = BTreeMap::from([(
        "bundle".to_owned(),
        graft_core::hash::file(&cfg.rows.bundle.join(graft_core::manifest::FILE))?,
    )]);
    if cfg.rows.input.is_file() {
        inputs.insert("input".to_owned(), graft_core::hash::file(&cfg.rows.input)?);
    }
    Ok(Provenance {
        format: graft_core::artifact::FORMAT.into(),
        stage: "preprocess".into(),
        graft_version: graft_core::VERSION.into(),
        task: bundle.info.task,
        labels: bundle.info.labels.clone(),
        rows: 0,
        params: serde_json::to_value(cfg).map_err(|source| graft_core::Error::Json { what: "config", source })?,
        inputs,
        tokenizer,
        backbone: None,
        shard: cfg.rows.shard,
        images: None,
    })
}

/// One output file, written batch by batch.
struct Output {
    writer: ArtifactWriter,
    dest: std::path::PathBuf,
    rows: u64,
}

impl Output {
    fn new(dir: &std::path::Path, name: &str, fields: Vec<arrow::datatypes::Field>, prov: &Provenance) -> Result<Self> {
        let dest = dir.join(format!("{name}.arrow"));
        let schema = prov.attach(fields)?;
        Ok(Self { writer: ArtifactWriter::create(&dest, &schema)?, dest, rows: 0 })
    }

    fn write(&mut self, columns: Vec<ArrayRef>) -> Result<()> {
        let batch = RecordBatch::try_new(self.writer.schema(), columns)
            .map_err(|source| graft_core::Error::Arrow { path: self.dest.clone(), source })?;
        self.rows += batch.num_rows() as u64;
        self.writer.write(&batch)?;
        Ok(())
    }

    /// Tokenises and writes scorable rows; returns how many were truncated.
    fn tokens(
        &mut self,
        chunk: Vec<(u64, RawRow, String)>,
        extra: &[String],
        tokenizer: &tokenizers::Tokenizer,
        path: &std::path::Path,
    ) -> Result<u64> {
        if chunk.is_empty() {
            return Ok(0);
        }
        let texts: Vec<&str> = chunk.iter().map(|(_, _, t)| t.as_str()).collect();
        let encodings = crate::tokenise::encode_batch(tokenizer, &texts)
            .map_err(|source| Error::Tokenizer { path: path.to_owned(), source })?;
        let mut ids = ListBuilder::new(Int32Builder::new());
        let mut truncated = 0;
        for enc in encodings {
            truncated += u64::from(!enc.get_overflowing().is_empty());
            ids.values().extend(enc.get_ids().iter().map(|&t| Some(t as i32)));
            ids.append(true);
        }
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from_iter_values(chunk.iter().map(|(at, _, _)| *at))),
            Arc::new(StringArray::from_iter_values(chunk.iter().map(|(_, r, _)| r.id.as_deref().unwrap_or_default()))),
            Arc::new(StringArray::from_iter(chunk.iter().map(|(_, r, _)| crate::clean_label(r.label.as_deref())))),
            Arc::new(StringArray::from(texts)),
            Arc::new(ids.finish()),
        ];
        columns.extend(extra_columns(chunk.iter().map(|(_, r, _)| r), extra.len()));
        self.write(columns)?;
        Ok(truncated)
    }

    fn rejects(&mut self, chunk: Vec<(u64, RawRow, &'static str)>, extra: &[String]) -> Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from_iter_values(chunk.iter().map(|(at, _, _)| *at))),
            Arc::new(StringArray::from_iter_values(chunk.iter().map(|(_, r, _)| r.id.as_deref().unwrap_or_default()))),
            Arc::new(StringArray::from_iter_values(chunk.iter().map(|(_, _, reason)| *reason))),
        ];
        columns.extend(extra_columns(chunk.iter().map(|(_, r, _)| r), extra.len()));
        self.write(columns)
    }

    fn finish(self) -> Result<graft_core::atomic::Pending> {
        Ok(self.writer.finish()?)
    }
}

/// One utf8 column per carried input column.
fn extra_columns<'a>(rows: impl Iterator<Item = &'a RawRow> + Clone, count: usize) -> Vec<ArrayRef> {
    (0..count)
        .map(|k| Arc::new(StringArray::from_iter(rows.clone().map(|r| r.extra[k].as_deref()))) as ArrayRef)
        .collect()
}
