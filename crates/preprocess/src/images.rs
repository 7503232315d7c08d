//! Image splits for a `kind: image` backbone, from a folder per class (`root/<label>/*.png|jpg`),
//! the same inside a `.zip`, `.tar` or `.tar.gz` archive, a CSV/Parquet/JSONL table of image
//! paths and labels or numeric targets (`--path-column`), or a CSV of raw grey pixel rows (the
//! way MNIST-like sets ship: a label column and one column per pixel of a square image).
//!
//! No pixels are written: each row names its image (path under the input folder; for pixel
//! rows the image PNG-encoded, for archives the entry's bytes) with the blake3 of its bytes, and train rows repeat it once per
//! augmented view; the backbone decodes, transforms and augments. Every file is read once
//! here to hash it and check its header; an unreadable one is skipped and listed (or fails
//! the run with `--strict`).
//!
//! Flat memory: the input is listed a chunk at a time (a folder one class at a time), each
//! chunk's readable images spilled in input order to a temporary file, and only a class
//! index per image kept. Then the split is drawn and the spilled rows go to their split's
//! file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray};
use graft_core::artifact::{ArtifactWriter, Augment, ImageSource, Provenance, Task};
use graft_core::progress::Progress;
use graft_core::spill::SpillFile;

use crate::image_refs::{ImageRef, Source};
use crate::{Config, Error, Result, Split, Summary, split};

const BATCH_ROWS: usize = 256;

#[derive(Debug, Clone)]
struct Item {
    id: String,
    label: String,
    source: Source,
    /// Why the row is dropped before its image is read (no path, no id), counted by reason.
    dropped: Option<&'static str>,
}

/// Images under `root/<label>/` at any depth, labels and paths in name order, a class at a
/// time; ids are the paths under `root`. Images directly in `root` have no class: they are
/// named in a warning and not read.
fn list_folder(root: &Path, each: &mut dyn FnMut(Vec<Item>) -> Result<()>) -> Result<()> {
    use crate::folder::Entry;
    let (entries, mut folder) = crate::folder::list(root)?;
    let loose: Vec<&String> =
        entries.iter().filter_map(|e| if let Entry::Image(n) = e { Some(n) } else { None }).collect();
    if let Some(first) = loose.first() {
        tracing::warn!(
            "skipping the images directly in {} ({}: `{first}`, ...): a training image goes in its class's folder",
            root.display(),
            loose.len()
        );
    }
    for class in entries.iter().filter_map(|e| if let Entry::Class(p) = e { Some(p) } else { None }) {
        let label = class.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let files = folder.class_images(class)?;
        for chunk in files.chunks(BATCH_ROWS) {
            let items = chunk.iter().map(|id| Item {
                id: id.clone(),
                label: label.clone(),
                source: Source::File(id.clone()),
                dropped: None,
            });
            each(items.collect())?;
        }
    }
    Ok(())
}

/// Images in an archive, `<label>/<file>` as in a folder; ids are the entries' names.
fn read_archive(cfg: &Config, each: &mut dyn FnMut(Vec<Item>) -> Result<()>) -> Result<()> {
    crate::archive::entries(&cfg.input, BATCH_ROWS, &mut |entries| {
        let items = entries.into_iter().map(|(name, bytes)| Item {
            label: crate::archive::label(&name).unwrap_or_default(),
            id: name,
            source: Source::Encoded(bytes),
            dropped: None,
        });
        each(items.collect())
    })
}

/// Rows of a CSV or Parquet table naming image files (`--path-column`, relative to the
/// table's folder) and their labels; ids are the id column's or the paths.
fn read_paths(cfg: &Config, column: &str, each: &mut dyn FnMut(Vec<Item>) -> Result<()>) -> Result<()> {
    let table = Config { text_column: column.to_owned(), ..cfg.clone() };
    let mut rows = crate::read::Rows::open(&table)?;
    let mut items = Vec::new();
    while let Some(row) = rows.next_row()? {
        let path = row.text.as_deref().map(str::trim).unwrap_or_default().to_owned();
        let id = if cfg.id_column.is_some() { row.id } else { Some(path.clone()) };
        let dropped = match (path.is_empty(), &id) {
            (true, _) => Some("missing path"),
            (false, None) => Some("missing id"),
            (false, Some(_)) => None,
        };
        let label = row.label.unwrap_or_default().trim().to_owned();
        items.push(Item { id: id.unwrap_or_default(), label, source: Source::File(path), dropped });
        if items.len() == BATCH_ROWS {
            each(std::mem::take(&mut items))?;
        }
    }
    each(items)
}

/// Rows of a pixel CSV: the label column, an optional id column, and N x N grey values.
fn read_pixels(cfg: &Config, each: &mut dyn FnMut(Vec<Item>) -> Result<()>) -> Result<()> {
    let path = &cfg.input;
    let csv_err = |e: csv::Error| Error::Csv { path: path.clone(), source: e };
    let file = crate::read::open_file(path)?;
    let Some(dialect) = crate::read::delimited(path) else {
        let message = "expected a folder of class folders, an archive of them, a .csv or .tsv of pixel rows, or a \
                       table of image paths with --path-column"
            .into();
        return Err(Error::Image { path: path.clone(), message });
    };
    let mut reader = dialect.from_reader(file);
    let headers = reader.headers().map_err(csv_err)?.clone();
    let position = |name: &str| headers.iter().position(|h| h == name);
    let label = position(&cfg.label_column).ok_or_else(|| Error::MissingColumn {
        path: path.clone(),
        column: cfg.label_column.clone(),
        available: headers.iter().map(|h| format!("`{h}`")).collect::<Vec<_>>().join(", "),
    })?;
    let id = cfg.id_column.as_deref().and_then(position);
    let pixels: Vec<usize> = (0..headers.len()).filter(|&i| i != label && Some(i) != id).collect();
    let side = (pixels.len() as f64).sqrt().round() as u32;
    if (side * side) as usize != pixels.len() || side == 0 {
        return Err(Error::Image {
            path: path.clone(),
            message: format!("{} pixel columns do not make a square image", pixels.len()),
        });
    }
    let mut items = Vec::new();
    for (row, record) in reader.records().enumerate() {
        let record = record.map_err(csv_err)?;
        let values: Vec<u8> = pixels
            .iter()
            .map(|&i| {
                crate::image_refs::grey(record.get(i).unwrap_or(""))
                    .map_err(|why| Error::Image { path: path.clone(), message: format!("data row {row}: {why}") })
            })
            .collect::<Result<_>>()?;
        let id = id.map_or_else(|| Some(row.to_string()), |i| crate::read::present(record.get(i).map(str::to_owned)));
        items.push(Item {
            dropped: id.is_none().then_some("missing id"),
            id: id.unwrap_or_default(),
            label: record.get(label).unwrap_or("").trim().to_owned(),
            source: Source::Pixels(Ok(values), side),
        });
        if items.len() == BATCH_ROWS {
            each(std::mem::take(&mut items))?;
        }
    }
    each(items)
}

/// Rows waiting for one output file, written a batch at a time.
struct Writer<W: Output> {
    inner: W,
    /// Id, label, view, image.
    buffer: Vec<(String, String, i32, ImageRef)>,
}

/// Where a [`Writer`]'s batches go: a split file, or the spill.
trait Output {
    fn schema(&self) -> arrow::datatypes::SchemaRef;
    fn write(&mut self, batch: &RecordBatch) -> Result<()>;
}

impl Output for ArtifactWriter {
    fn schema(&self) -> arrow::datatypes::SchemaRef {
        ArtifactWriter::schema(self)
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        Ok(ArtifactWriter::write(self, batch)?)
    }
}

impl Output for SpillFile {
    fn schema(&self) -> arrow::datatypes::SchemaRef {
        SpillFile::schema(self)
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        Ok(SpillFile::write(self, batch)?)
    }
}

impl<W: Output> Writer<W> {
    fn flush(&mut self) -> Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.buffer);
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0.as_str()))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1.as_str()))),
            Arc::new(Int32Array::from(rows.iter().map(|r| r.2).collect::<Vec<i32>>())),
        ];
        columns.extend(crate::image_refs::columns(rows.iter().map(|r| &r.3)));
        let batch = RecordBatch::try_new(self.inner.schema(), columns).expect("matching columns");
        self.inner.write(&batch)?;
        Ok(())
    }

    fn push(&mut self, row: (String, String, i32, ImageRef)) -> Result<()> {
        self.buffer.push(row);
        if self.buffer.len() >= BATCH_ROWS {
            self.flush()?;
        }
        Ok(())
    }
}

/// The readable images in input order, spilled to a temporary file, and what is known of
/// them: a class index per image (in first-seen order), the labels seen, the hash of all.
struct Spill {
    writer: Writer<SpillFile>,
    classes: Vec<u32>,
    seen: BTreeMap<String, u32>,
    hasher: blake3::Hasher,
}

/// Writes the image splits; `cfg.spec` is an image backbone's.
pub fn run(cfg: &Config, progress: &dyn Progress) -> Result<Summary> {
    let archive = crate::archive::is_archive(&cfg.input) && cfg.input.is_file();
    if archive && cfg.path_column.is_some() {
        let message = "`--path-column` names a column of a table; this is an archive of images".into();
        return Err(Error::Image { path: cfg.input.clone(), message });
    }
    // For an archive the root only names it: its rows hold their bytes.
    let root = match (&cfg.path_column, cfg.input.is_dir()) {
        (_, true) => cfg.input.clone(),
        _ if archive => cfg.input.clone(),
        (Some(_), false) => crate::image_refs::table_root(&cfg.input),
        (None, false) => PathBuf::new(),
    };
    let mut summary = Summary::default();
    let schema = arrow::datatypes::Schema::new(graft_core::columns::images_fields());
    let mut spill = Spill {
        writer: Writer { inner: SpillFile::create(cfg.out.join("spill.arrow"), &schema)?, buffer: Vec::new() },
        classes: Vec::new(),
        seen: BTreeMap::new(),
        hasher: blake3::Hasher::new(),
    };
    // First pass: read, hash and check every image, a chunk at a time in parallel; the
    // unreadable are listed and skipped, or fail the run with --strict.
    progress.start("reading", 0);
    let mut each = |chunk: Vec<Item>| -> Result<()> {
        summary.rows_read += chunk.len();
        progress.advance(chunk.len() as u64);
        let (dropped, chunk): (Vec<Item>, Vec<Item>) = chunk.into_iter().partition(|i| i.dropped.is_some());
        for reason in dropped.iter().filter_map(|i| i.dropped) {
            *summary.dropped.entry(reason).or_default() += 1;
        }
        let (chunk, unlabelled): (Vec<Item>, Vec<Item>) = chunk.into_iter().partition(|i| !i.label.is_empty());
        if !unlabelled.is_empty() {
            *summary.dropped.entry("missing label").or_default() += unlabelled.len();
        }
        if cfg.task == Task::Regression
            && let Some(item) = chunk.iter().find(|i| !i.label.parse::<f64>().is_ok_and(f64::is_finite))
        {
            let message = format!(
                "image `{}`: column `{}` holds `{}`, not a number (the task is regression)",
                item.id, cfg.label_column, item.label
            );
            return Err(Error::Image { path: cfg.input.clone(), message });
        }
        let sources: Vec<&Source> = chunk.iter().map(|i| &i.source).collect();
        let resolved = crate::image_refs::resolve(&root, &sources);
        for (item, result) in chunk.into_iter().zip(resolved) {
            match result {
                Ok(image) => {
                    spill.hasher.update(image.blake3.as_bytes());
                    let next = spill.seen.len() as u32;
                    spill.classes.push(match cfg.task {
                        Task::Classification => *spill.seen.entry(item.label.clone()).or_insert(next),
                        Task::Regression => 0,
                    });
                    spill.writer.push((item.id, item.label, 0, image))?;
                }
                Err(why) => {
                    let name = item.source.describe(&root, &item.id);
                    if cfg.strict {
                        return Err(Error::Image { path: PathBuf::from(name), message: why });
                    }
                    tracing::warn!("skipping unreadable image {name}: {why}");
                    summary.skipped.push(name);
                }
            }
        }
        Ok(())
    };
    match (&cfg.path_column, cfg.input.is_dir()) {
        (_, true) => list_folder(&cfg.input, &mut each)?,
        _ if archive => read_archive(cfg, &mut each)?,
        (Some(column), false) => read_paths(cfg, column, &mut each)?,
        (None, false) => read_pixels(cfg, &mut each)?,
    }
    progress.finish();
    spill.writer.flush()?;
    let spilled = spill.writer.inner;
    if summary.rows_read == 0 {
        return Err(Error::Empty { path: cfg.input.clone() });
    }
    if spill.classes.is_empty() {
        return Err(Error::NothingLeft { path: cfg.input.clone(), dropped: "no image could be read".into() });
    }
    // Regression splits at random: every row in one stratum.
    let (labels, classes): (Vec<String>, Vec<usize>) = match cfg.task {
        Task::Classification => {
            let labels = crate::vocabulary(spill.seen.keys(), cfg)?;
            // First-seen index -> index in the sorted vocabulary.
            let mut sorted = vec![0; spill.seen.len()];
            for (label, first) in &spill.seen {
                sorted[*first as usize] = labels.binary_search(label).expect("in vocabulary");
            }
            (labels, spill.classes.iter().map(|&c| sorted[c as usize]).collect())
        }
        Task::Regression => (Vec::new(), vec![0; spill.classes.len()]),
    };
    drop(spill.classes);
    let assignment = split::stratified(&classes, labels.len().max(1), cfg.val_fraction, cfg.test_fraction, cfg.seed);
    drop(classes);
    let augment = Augment {
        pad: cfg.augment_pad,
        flip: cfg.augment_flip,
        rotate: cfg.augment_rotate,
        jitter: cfg.augment_jitter,
    };
    let base = Provenance {
        format: graft_core::artifact::FORMAT.into(),
        stage: "preprocess".into(),
        graft_version: graft_core::VERSION.into(),
        task: cfg.task,
        labels: labels.clone(),
        rows: 0,
        params: serde_json::to_value(cfg).map_err(|source| graft_core::Error::Json { what: "config", source })?,
        inputs: BTreeMap::from([
            ("spec".to_owned(), graft_core::hash::file(&cfg.spec)?),
            ("images".to_owned(), spill.hasher.finalize().to_hex().to_string()),
        ]),
        tokenizer: None,
        backbone: None,
        shard: None,
        images: Some(ImageSource { root: crate::image_refs::absolute(root), seed: cfg.seed, augment }),
    };
    let mut writers: Vec<Option<Writer<ArtifactWriter>>> = Vec::new();
    for split in Split::ALL {
        let count = assignment.iter().filter(|s| **s == split).count();
        if count == 0 {
            writers.push(None);
            continue;
        }
        // Augmented views are train rows only.
        let count = if split == Split::Train { count * (1 + cfg.augment_views) } else { count };
        summary.written.insert(split.name(), count);
        let provenance = Provenance { rows: count as u64, ..base.clone() };
        let schema = provenance.attach(graft_core::columns::images_fields())?;
        let dest = cfg.out.join(format!("{}.arrow", split.name()));
        writers.push(Some(Writer { inner: ArtifactWriter::create(&dest, &schema)?, buffer: Vec::new() }));
    }
    // Second pass: the spilled rows, in input order, go to their split's file.
    let mut splits = assignment.iter();
    let spill_path = spilled.path.clone();
    spilled.drain(|batch| {
        let refs = graft_core::columns::ImageRefs::of(&batch, &spill_path)?;
        for r in 0..batch.num_rows() {
            let split = *splits.next().expect("one split per spilled row");
            let writer = writers[split as usize].as_mut().expect("a writer for every split with rows");
            let (path, bytes) = match refs.source(r) {
                Ok(graft_core::columns::ImageRef::File(p)) => (Some(p.to_owned()), None),
                Ok(graft_core::columns::ImageRef::Bytes(b)) => (None, Some(b.to_vec())),
                Err(message) => return Err(Error::Image { path: spill_path.clone(), message }),
            };
            let image = ImageRef { path, bytes, blake3: refs.blake3(r).to_owned() };
            let (id, label) = (refs.ids.value(r), refs.labels.value(r));
            let views = if split == Split::Train { cfg.augment_views } else { 0 };
            for view in 1..=views {
                writer.push((id.to_owned(), label.to_owned(), view as i32, image.clone()))?;
            }
            writer.push((id.to_owned(), label.to_owned(), 0, image))?;
        }
        Ok(())
    })?;
    let mut pending = Vec::new();
    for mut w in writers.into_iter().flatten() {
        w.flush()?;
        pending.push(w.inner.finish()?);
    }
    graft_core::atomic::commit_all(pending)?;
    summary.labels = labels;
    Ok(summary)
}
