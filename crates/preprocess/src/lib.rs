//! `graft-preprocess`: raw labelled text -> cleaned, split, tokenised Arrow IPC files.

mod archive;
mod clean;
mod error;
mod folder;
mod image_refs;
mod image_rows;
pub mod images;
pub mod read;
pub mod rows;
mod split;
pub mod tokenise;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Builder, ListBuilder, RecordBatch, StringArray};
use graft_core::artifact::{ArtifactWriter, Provenance, Task, TokenizerId};
use graft_core::atomic::Pending;
use graft_core::progress::Progress;
use graft_core::spec::{BackboneSpec, Kind};
use tokenizers::{Encoding, Tokenizer, TruncationParams};

pub use clean::clean_text;
pub use error::{Error, Result};
pub use graft_core::config::preprocess::Config;
pub use split::Split;

/// Rows per record batch in the written files.
pub(crate) const BATCH_ROWS: usize = 4096;

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
    /// Images that could not be decoded and were skipped.
    pub skipped: Vec<String>,
}

/// A row kept after cleaning.
#[derive(Debug)]
struct Row {
    id: String,
    text: String,
    label: String,
}

/// A label as training reads it, and scoring too: trimmed; a blank one is none.
pub(crate) fn clean_label(label: Option<&str>) -> Option<&str> {
    label.map(str::trim).filter(|l| !l.is_empty())
}

/// The row's id, trimmed label and cleaned text, or `None` (counted by reason) when one is missing.
fn keep(row: read::RawRow, dropped: &mut BTreeMap<&'static str, usize>) -> Option<Row> {
    let Some(label) = clean_label(row.label.as_deref()) else {
        *dropped.entry("missing label").or_default() += 1;
        return None;
    };
    let text = clean_text(row.text.as_deref().unwrap_or(""));
    if text.is_empty() {
        *dropped.entry("empty text").or_default() += 1;
        return None;
    }
    let Some(id) = row.id else {
        *dropped.entry("missing id").or_default() += 1;
        return None;
    };
    Some(Row { id, text, label: label.to_owned() })
}

/// Reads the input twice, holding only labels between the passes: the first pass decides
/// which rows are kept and the split of each, the second cleans, tokenises and writes them
/// batch by batch.
pub fn run(cfg: &Config, progress: &dyn Progress) -> Result<Summary> {
    graft_core::atomic::check_out_is_no_input(&cfg.out, &[("--input", &cfg.input)])?;
    let (val, test) = (cfg.val_fraction, cfg.test_fraction);
    if !(0.0..1.0).contains(&val) || !(0.0..1.0).contains(&test) || val + test >= 1.0 {
        return Err(Error::BadFractions { val, test });
    }
    let spec = BackboneSpec::load(&cfg.spec)?;
    if let Some(flag) = cfg.unused_by(spec.kind) {
        let (applies, kind) = if spec.kind == Kind::Text { ("an image", "a text") } else { ("a text", "an image") };
        return Err(Error::DoesNotApply { flag, applies, spec: cfg.spec.clone(), kind });
    }
    let inputs = if spec.kind == Kind::Image { cfg.path_column.as_ref() } else { Some(&cfg.text_column) };
    if inputs == Some(&cfg.label_column) {
        return Err(Error::LabelIsInput { path: cfg.input.clone(), column: cfg.label_column.clone() });
    }
    if spec.kind == Kind::Image {
        return images::run(cfg, progress);
    }
    let tokenizer_path = &spec.text().tokenizer;
    let most = spec.text().max_length;
    if let Some(given) = cfg.max_length.filter(|&m| m == 0 || m > most) {
        return Err(Error::BadMaxLength { given, most, spec: cfg.spec.clone() });
    }
    let max_length = cfg.max_length.unwrap_or(most);
    let tokenizer = load_tokenizer(tokenizer_path, max_length)?;

    let mut summary = Summary::default();
    let mut rows = read::Rows::open(cfg)?;
    // Per row that passes the filters: its label when kept.
    let mut kept: Vec<Option<String>> = Vec::new();
    let mut ids = HashSet::new();
    while let Some(raw) = rows.next_row()? {
        let row = keep(raw, &mut summary.dropped);
        if let (Some(column), Some(row)) = (&cfg.id_column, &row)
            && !ids.insert(row.id.clone())
        {
            let id = row.id.clone();
            return Err(Error::DuplicateId {
                path: cfg.input.clone(),
                column: column.clone(),
                id,
                row: rows.read() - 1,
            });
        }
        if cfg.task == Task::Regression
            && let Some(r) = &row
            && !r.label.trim().parse::<f64>().is_ok_and(f64::is_finite)
        {
            return Err(Error::NotNumeric {
                path: cfg.input.clone(),
                column: cfg.label_column.clone(),
                row: rows.read() - 1,
                value: r.label.clone(),
            });
        }
        kept.push(row.map(|r| r.label));
    }
    drop(ids);
    summary.rows_read = kept.len();
    if rows.read() == 0 {
        return Err(Error::Empty { path: cfg.input.clone() });
    }
    // Regression splits at random: every row in one stratum.
    let (labels, classes): (Vec<String>, Vec<usize>) = match cfg.task {
        Task::Classification => {
            let labels = vocabulary(kept.iter().flatten(), cfg)?;
            let classes =
                kept.iter().flatten().map(|l| labels.binary_search(l).expect("label in vocabulary")).collect();
            (labels, classes)
        }
        Task::Regression => (Vec::new(), vec![0; kept.iter().flatten().count()]),
    };
    let assignment = split::stratified(&classes, labels.len().max(1), val, test, cfg.seed);
    drop(classes);

    let inputs = BTreeMap::from([
        ("input".to_owned(), graft_core::hash::file(&cfg.input)?),
        ("tokenizer".to_owned(), graft_core::hash::file(tokenizer_path)?),
    ]);
    let provenance = Provenance {
        format: graft_core::artifact::FORMAT.into(),
        stage: "preprocess".into(),
        graft_version: graft_core::VERSION.into(),
        task: cfg.task,
        labels: labels.clone(),
        rows: 0,
        params: serde_json::to_value(cfg).map_err(|source| graft_core::Error::Json { what: "config", source })?,
        tokenizer: Some(TokenizerId {
            blake3: inputs["tokenizer"].clone(),
            max_length,
            vocab_size: tokenizer.get_vocab_size(true),
        }),
        inputs,
        backbone: None,
        shard: None,
        images: None,
    };
    let mut writers: Vec<Option<SplitWriter>> = Vec::new();
    for split in Split::ALL {
        let count = assignment.iter().filter(|s| **s == split).count();
        summary.written.insert(split.name(), count);
        let dest = cfg.out.join(format!("{}.arrow", split.name()));
        let provenance = Provenance { rows: count as u64, ..provenance.clone() };
        writers.push(if count > 0 { Some(SplitWriter::create(dest, &provenance)?) } else { None });
    }
    summary.written.retain(|_, n| *n > 0);

    let tokenise = |texts: Vec<&str>| {
        tokenise::encode_batch(&tokenizer, &texts)
            .map_err(|source| Error::Tokenizer { path: tokenizer_path.clone(), source })
    };
    progress.start("tokenising", assignment.len() as u64);
    let mut rows = read::Rows::open(cfg)?;
    let mut splits = assignment.iter();
    for label in &kept {
        let raw = rows.next_row()?.ok_or_else(|| Error::Changed { path: cfg.input.clone() })?;
        if label.is_none() {
            continue;
        }
        let row = keep(raw, &mut BTreeMap::new()).ok_or_else(|| Error::Changed { path: cfg.input.clone() })?;
        let split = *splits.next().expect("one split per kept row");
        let writer = writers[split as usize].as_mut().expect("a writer for every split with rows");
        writer.push(row, &tokenise, progress, &mut summary.truncated)?;
    }
    let mut pending = Vec::new();
    for writer in writers.into_iter().flatten() {
        pending.push(writer.finish(&tokenise, progress, &mut summary.truncated)?);
    }
    progress.finish();
    graft_core::atomic::commit_all(pending)?;
    summary.labels = labels;
    Ok(summary)
}

/// The sorted label set; classification needs at least two labels.
pub(crate) fn vocabulary<'a>(labels: impl Iterator<Item = &'a String>, cfg: &Config) -> Result<Vec<String>> {
    let labels: Vec<String> = labels.cloned().collect::<BTreeSet<_>>().into_iter().collect();
    match labels.len() {
        0 => Err(Error::NothingLeft { path: cfg.input.clone(), dropped: "every row lacks a label or a text".into() }),
        1 => {
            Err(Error::OneClass { path: cfg.input.clone(), column: cfg.label_column.clone(), label: labels[0].clone() })
        }
        _ => Ok(labels),
    }
}

/// One split's output file, written a batch of rows at a time.
struct SplitWriter {
    writer: ArtifactWriter,
    dest: std::path::PathBuf,
    buffer: Vec<Row>,
}

impl SplitWriter {
    fn create(dest: std::path::PathBuf, provenance: &Provenance) -> Result<Self> {
        let schema = provenance.attach(graft_core::columns::tokens_fields())?;
        Ok(Self { writer: ArtifactWriter::create(&dest, &schema)?, dest, buffer: Vec::with_capacity(BATCH_ROWS) })
    }

    fn push(
        &mut self,
        row: Row,
        tokenise: &Tokenise<'_>,
        progress: &dyn Progress,
        truncated: &mut usize,
    ) -> Result<()> {
        self.buffer.push(row);
        if self.buffer.len() >= BATCH_ROWS {
            self.flush(tokenise, progress, truncated)?;
        }
        Ok(())
    }

    fn flush(&mut self, tokenise: &Tokenise<'_>, progress: &dyn Progress, truncated: &mut usize) -> Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::take(&mut self.buffer);
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
        let batch = RecordBatch::try_new(self.writer.schema(), columns)
            .map_err(|source| graft_core::Error::Arrow { path: self.dest.clone(), source })?;
        self.writer.write(&batch)?;
        progress.advance(chunk.len() as u64);
        Ok(())
    }

    fn finish(mut self, tokenise: &Tokenise<'_>, progress: &dyn Progress, truncated: &mut usize) -> Result<Pending> {
        self.flush(tokenise, progress, truncated)?;
        Ok(self.writer.finish()?)
    }
}

/// Tokenises a batch of texts.
type Tokenise<'a> = dyn Fn(Vec<&str>) -> Result<Vec<Encoding>> + 'a;

/// The spec's tokenizer with its own padding removed and truncation at `max_length`.
pub fn load_tokenizer(path: &Path, max_length: usize) -> Result<Tokenizer> {
    let err = |source| Error::Tokenizer { path: path.to_owned(), source };
    let mut tokenizer = Tokenizer::from_file(path).map_err(err)?;
    tokenizer.with_padding(None);
    tokenizer.with_truncation(Some(TruncationParams { max_length, ..TruncationParams::default() })).map_err(err)?;
    Ok(tokenizer)
}
