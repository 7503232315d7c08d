//! Image splits for a `kind: image` backbone, from a folder per class (`root/<label>/*.png|jpg`),
//! a CSV/Parquet/JSONL table of image paths and labels or numeric targets (`--path-column`),
//! or a CSV of raw grey pixel rows (the way MNIST-like sets ship: a label column and one
//! column per pixel of a square image).
//!
//! No pixels are written: each row names its image (path under the input folder, or the
//! pixel row PNG-encoded) with the blake3 of its bytes, and train rows repeat it once per
//! augmented view; the backbone decodes, transforms and augments. Every file is read once
//! here to hash it and check its header; an unreadable one is skipped and listed (or fails
//! the run with `--strict`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray};
use graft_core::artifact::{ArtifactWriter, Augment, ImageSource, Provenance, Task};
use graft_core::progress::Progress;
use graft_core::spec::BackboneSpec;
use graft_imaging::EXTENSIONS;

use crate::image_refs::{ImageRef, Source};
use crate::{Config, Error, Result, Split, Summary, split};

const BATCH_ROWS: usize = 256;

#[derive(Debug, Clone)]
struct Item {
    id: String,
    label: String,
    source: Source,
}

fn read_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| graft_core::Error::Read { path: path.to_owned(), source }.into()
}

/// Images under `root/<label>/`, labels and files in name order; ids are `label/file`.
fn list_folder(root: &Path) -> Result<Vec<Item>> {
    let mut classes: Vec<PathBuf> = fs_err::read_dir(root)
        .map_err(read_err(root))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    classes.sort();
    let mut items = Vec::new();
    for class in classes {
        let label = class.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut files: Vec<PathBuf> = fs_err::read_dir(&class)
            .map_err(read_err(&class))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().is_some_and(|e| EXTENSIONS.contains(&e.to_string_lossy().to_ascii_lowercase().as_str()))
            })
            .collect();
        files.sort();
        for file in files {
            let id = format!("{label}/{}", file.file_name().map(|n| n.to_string_lossy()).unwrap_or_default());
            items.push(Item { id: id.clone(), label: label.clone(), source: Source::File(id) });
        }
    }
    Ok(items)
}

/// Rows of a CSV or Parquet table naming image files (`--path-column`, relative to the
/// table's folder) and their labels; ids are the id column's or the paths.
fn read_paths(cfg: &Config, column: &str) -> Result<Vec<Item>> {
    let table = Config { text_column: column.to_owned(), ..cfg.clone() };
    let mut rows = crate::read::Rows::open(&table)?;
    let mut items = Vec::new();
    while let Some(row) = rows.next_row()? {
        let Some(path) = row.text.filter(|p| !p.trim().is_empty()) else { continue };
        let id = if cfg.id_column.is_some() { row.id } else { path.trim().to_owned() };
        let source = Source::File(path.trim().to_owned());
        items.push(Item { id, label: row.label.unwrap_or_default().trim().to_owned(), source });
    }
    Ok(items)
}

/// Rows of a pixel CSV: the label column, an optional id column, and N x N grey values.
fn read_pixels(cfg: &Config) -> Result<Vec<Item>> {
    let path = &cfg.input;
    let csv_err = |e: csv::Error| Error::Csv { path: path.clone(), source: e };
    let mut reader = csv::Reader::from_path(path).map_err(csv_err)?;
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
        items.push(Item {
            id: id.and_then(|i| record.get(i)).map_or_else(|| row.to_string(), str::to_owned),
            label: record.get(label).unwrap_or("").trim().to_owned(),
            source: Source::Pixels(Ok(values), side),
        });
    }
    Ok(items)
}

struct Writer {
    inner: ArtifactWriter,
    /// Rows waiting: item index, view, image.
    buffer: Vec<(usize, i32, ImageRef)>,
}

impl Writer {
    fn flush(&mut self, items: &[Item]) -> Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.buffer);
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| items[r.0].id.as_str()))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| items[r.0].label.as_str()))),
            Arc::new(Int32Array::from(rows.iter().map(|r| r.1).collect::<Vec<i32>>())),
        ];
        columns.extend(crate::image_refs::columns(rows.iter().map(|r| &r.2)));
        let batch = RecordBatch::try_new(self.inner.schema(), columns).expect("matching columns");
        self.inner.write(&batch)?;
        Ok(())
    }
}

pub fn run(cfg: &Config, spec: &BackboneSpec, progress: &dyn Progress) -> Result<Summary> {
    spec.image();
    let (mut items, root) = match (&cfg.path_column, cfg.input.is_dir()) {
        (_, true) => (list_folder(&cfg.input)?, cfg.input.clone()),
        (Some(column), false) => (read_paths(cfg, column)?, crate::image_refs::table_root(&cfg.input)),
        (None, false) => (read_pixels(cfg)?, PathBuf::new()),
    };
    let mut summary = Summary { rows_read: items.len(), ..Summary::default() };
    if items.is_empty() {
        return Err(Error::Empty { path: cfg.input.clone() });
    }
    items.retain(|item| {
        let keep = !item.label.is_empty();
        if !keep {
            *summary.dropped.entry("missing label").or_default() += 1;
        }
        keep
    });
    if cfg.task == Task::Regression
        && let Some(item) = items.iter().find(|i| !i.label.parse::<f64>().is_ok_and(f64::is_finite))
    {
        let message = format!(
            "image `{}`: column `{}` holds `{}`, not a number (the task is regression)",
            item.id, cfg.label_column, item.label
        );
        return Err(Error::Image { path: cfg.input.clone(), message });
    }
    // Read, hash and check every image, in parallel batches; the unreadable are listed and
    // skipped, or fail the run with --strict.
    let mut refs: Vec<Option<ImageRef>> = Vec::with_capacity(items.len());
    progress.start("reading", items.len() as u64);
    for chunk in items.chunks(BATCH_ROWS) {
        let sources: Vec<&Source> = chunk.iter().map(|i| &i.source).collect();
        for (item, result) in chunk.iter().zip(crate::image_refs::resolve(&root, &sources)) {
            match result {
                Ok(r) => refs.push(Some(r)),
                Err(why) => {
                    let name = item.source.describe(&root, &item.id);
                    if cfg.strict {
                        return Err(Error::Image { path: PathBuf::from(name), message: why });
                    }
                    tracing::warn!("skipping unreadable image {name}: {why}");
                    summary.skipped.push(name);
                    refs.push(None);
                }
            }
        }
        progress.advance(chunk.len() as u64);
    }
    progress.finish();
    let (items, refs): (Vec<Item>, Vec<ImageRef>) =
        items.into_iter().zip(refs).filter_map(|(item, r)| r.map(|r| (item, r))).unzip();
    if items.is_empty() {
        return Err(Error::NothingLeft { path: cfg.input.clone(), dropped: "no image could be read".into() });
    }
    // Regression splits at random: every row in one stratum.
    let (labels, classes): (Vec<String>, Vec<usize>) = match cfg.task {
        Task::Classification => {
            let labels = crate::vocabulary(items.iter().map(|i| &i.label), cfg)?;
            let classes = items.iter().map(|i| labels.binary_search(&i.label).expect("in vocabulary")).collect();
            (labels, classes)
        }
        Task::Regression => (Vec::new(), vec![0; items.len()]),
    };
    let assignment = split::stratified(&classes, labels.len().max(1), cfg.val_fraction, cfg.test_fraction, cfg.seed);
    let mut all = blake3::Hasher::new();
    refs.iter().for_each(|r| {
        all.update(r.blake3.as_bytes());
    });
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
            ("images".to_owned(), all.finalize().to_hex().to_string()),
        ]),
        tokenizer: None,
        backbone: None,
        shard: None,
        images: Some(ImageSource { root, seed: cfg.seed, augment }),
    };
    let mut writers: Vec<Option<Writer>> = Vec::new();
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
    for (i, (image, split)) in refs.into_iter().zip(&assignment).enumerate() {
        let writer = writers[*split as usize].as_mut().expect("a writer for every split with rows");
        let views = if *split == Split::Train { cfg.augment_views } else { 0 };
        for view in 1..=views {
            writer.buffer.push((i, view as i32, image.clone()));
        }
        writer.buffer.push((i, 0, image));
        if writer.buffer.len() >= BATCH_ROWS {
            writer.flush(&items)?;
        }
    }
    let mut pending = Vec::new();
    for mut w in writers.into_iter().flatten() {
        w.flush(&items)?;
        pending.push(w.inner.finish()?);
    }
    graft_core::atomic::commit_all(pending)?;
    summary.labels = labels;
    Ok(summary)
}
