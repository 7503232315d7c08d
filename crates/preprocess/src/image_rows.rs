//! `graft-preprocess rows` for image bundles: new images (a folder, an archive of one, a
//! table naming image files, or a CSV of grey pixel rows) named as in training splits (path or encoded bytes,
//! blake3; view 0), in input order, for the backbone to decode exactly as at training time;
//! an image whose header cannot be read goes to `rejects.arrow` with its reason.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray, UInt64Array};
use graft_core::artifact::{ArtifactWriter, ImageSource, Provenance, REJECTS, ROWS};
use graft_core::bundle::Bundle;
use graft_core::columns;
use graft_core::progress::Progress;
use graft_core::spill::SpillFile;

use crate::error::{Error, Result};
use crate::image_refs::Source;
use crate::read::{Rows, Wanted};
use crate::rows::{RowsConfig, RowsSummary};

/// Images read, hashed and checked at a time.
const CHUNK: usize = 256;

/// One image to score: its id, label when known, where it comes from and carried columns.
struct Image {
    /// `None` where the id column is null or blank.
    id: Option<String>,
    label: Option<String>,
    source: Source,
    extra: Vec<Option<String>>,
}

/// Images directly in `root` (no label) and under its subfolders at any depth (the
/// subfolder's name as the label), in name order; ids are the paths under `root`.
fn folder(root: &Path) -> Result<Vec<Image>> {
    let mut images = Vec::new();
    let (entries, mut folder) = crate::folder::list(root)?;
    for entry in entries {
        match entry {
            crate::folder::Entry::Class(class) => {
                let label = class.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                for id in folder.class_images(&class)? {
                    let source = Source::File(id.clone());
                    images.push(Image { id: Some(id), label: Some(label.clone()), source, extra: Vec::new() });
                }
            }
            crate::folder::Entry::Image(name) => images.push(Image {
                id: Some(name.clone()),
                label: None,
                source: Source::File(name),
                extra: Vec::new(),
            }),
        }
    }
    Ok(images)
}

/// Images in an archive, as in a folder (`<label>/<file>`, or no label at its top); their
/// bytes are read later, a chunk at a time.
fn archived(path: &Path) -> Result<Vec<Image>> {
    let names = crate::archive::names(path)?;
    let unread = || Source::Encoded(Err("not read yet".into()));
    Ok(names
        .into_iter()
        .map(|name| Image { label: crate::archive::label(&name), id: Some(name), source: unread(), extra: Vec::new() })
        .collect())
}

/// Rows of a table naming image files (relative to the table's folder) in `path_column`.
fn table(cfg: &RowsConfig, path_column: &str, bundle: &Bundle) -> Result<(Vec<Image>, Vec<String>)> {
    let wanted = Wanted {
        input: cfg.rows.input.clone(),
        text: path_column.to_owned(),
        label: bundle.info.input.label_column().to_owned(),
        training: false,
        id: cfg.rows.id_column.clone().or_else(|| bundle.info.input.id_column().map(str::to_owned)),
        filters: cfg.rows.filters.clone(),
        extra: cfg.rows.keep.clone(),
    };
    let mut rows = Rows::open_wanted(&wanted)?;
    let extra = rows.extra().to_vec();
    let mut images = Vec::new();
    while let Some(row) = rows.next_row()? {
        let path = row.text.as_deref().map(str::trim).unwrap_or_default().to_owned();
        let label = crate::clean_label(row.label.as_deref()).map(str::to_owned);
        images.push(Image { id: row.id, label, source: Source::File(path), extra: row.extra });
    }
    Ok((images, extra))
}

/// Rows of a CSV of grey pixel values: every column but the id, label and kept ones is a
/// pixel, and their count must be a square.
fn pixel_rows(cfg: &RowsConfig, bundle: &Bundle) -> Result<(Vec<Image>, Vec<String>)> {
    let path = &cfg.rows.input;
    let csv_err = |e: csv::Error| Error::Csv { path: path.clone(), source: e };
    let mut reader = csv::Reader::from_path(path).map_err(csv_err)?;
    let headers: Vec<String> = reader.headers().map_err(csv_err)?.iter().map(str::to_owned).collect();
    let find = |name: &str| headers.iter().position(|h| h == name);
    let missing = |name: &str| Error::MissingColumn {
        path: path.clone(),
        column: name.to_owned(),
        available: headers.iter().map(|h| format!("`{h}`")).collect::<Vec<_>>().join(", "),
    };
    let label = find(bundle.info.input.label_column());
    let id_name = cfg.rows.id_column.clone().or_else(|| bundle.info.input.id_column().map(str::to_owned));
    let id = id_name.as_deref().map(|n| find(n).ok_or_else(|| missing(n))).transpose()?;
    let keep: Vec<usize> = cfg.rows.keep.iter().map(|k| find(k).ok_or_else(|| missing(k))).collect::<Result<_>>()?;
    let pixels: Vec<usize> =
        (0..headers.len()).filter(|&i| Some(i) != label && Some(i) != id && !keep.contains(&i)).collect();
    let side = (pixels.len() as f64).sqrt().round() as u32;
    if side == 0 || (side * side) as usize != pixels.len() {
        let message = format!(
            "{} pixel columns do not make a square image (an image model scores a folder of images, a table naming image files, or grey pixel rows)",
            pixels.len()
        );
        return Err(Error::Image { path: path.clone(), message });
    }
    let mut images = Vec::new();
    for (row, record) in reader.records().enumerate() {
        let record = record.map_err(csv_err)?;
        let values: std::result::Result<Vec<u8>, String> =
            pixels.iter().map(|&i| crate::image_refs::grey(record.get(i).unwrap_or(""))).collect();
        images.push(Image {
            id: id.map_or_else(|| Some(row.to_string()), |i| crate::read::present(record.get(i).map(str::to_owned))),
            label: crate::clean_label(label.and_then(|i| record.get(i))).map(str::to_owned),
            source: Source::Pixels(values, side),
            extra: keep.iter().map(|&i| record.get(i).map(str::to_owned)).collect(),
        });
    }
    Ok((images, cfg.rows.keep.clone()))
}

pub fn run(
    cfg: &RowsConfig,
    bundle: &Bundle,
    path_column: Option<&str>,
    progress: &dyn Progress,
) -> Result<RowsSummary> {
    let archive = crate::archive::is_archive(&cfg.rows.input) && cfg.rows.input.is_file();
    let ((images, extra), root) = if cfg.rows.input.is_dir() || archive {
        if !cfg.rows.keep.is_empty() {
            return Err(Error::KeepFolder { path: cfg.rows.input.clone() });
        }
        let images = if archive { archived(&cfg.rows.input)? } else { folder(&cfg.rows.input)? };
        ((images, Vec::new()), cfg.rows.input.clone())
    } else {
        match path_column {
            Some(column) => (table(cfg, column, bundle)?, crate::image_refs::table_root(&cfg.rows.input)),
            None => (pixel_rows(cfg, bundle)?, PathBuf::new()),
        }
    };
    let total = images.len();
    let range = match cfg.rows.shard {
        Some(s) => total * s.index as usize / s.count as usize..total * (s.index as usize + 1) / s.count as usize,
        None => 0..total,
    };
    // Read, hash and check a chunk at a time in parallel; the readable rows are spilled in
    // input order (their count goes in the file's header), the others kept by position.
    progress.start("images", range.len() as u64);
    let mut summary = RowsSummary { read: range.len() as u64, ..RowsSummary::default() };
    let text = |f: &dyn Fn(&Image) -> Option<&str>, rows: &[usize]| -> ArrayRef {
        Arc::new(StringArray::from_iter(rows.iter().map(|&i| f(&images[i]))))
    };
    let extras = |rows: &[usize]| -> Vec<ArrayRef> {
        (0..extra.len()).map(|k| text(&|img: &Image| img.extra[k].as_deref(), rows)).collect()
    };
    let fields = columns::image_rows_fields(&extra);
    let mut spill = SpillFile::create(cfg.out.join("spill.arrow"), &arrow::datatypes::Schema::new(fields.clone()))?;
    let (mut written, mut bad) = (0u64, Vec::new());
    let mut chunk_of = |start: usize, sources: Vec<&Source>| -> Result<()> {
        let chunk = start..start + sources.len();
        let mut ok = Vec::new();
        for (at, result) in chunk.clone().zip(crate::image_refs::resolve(&root, &sources)) {
            let described = || images[at].source.describe(&root, images[at].id.as_deref().unwrap_or_default());
            let (reason, message) = match (&images[at].id, result) {
                (None, _) => ("no id", "no id".to_owned()),
                (Some(_), Ok(image)) => {
                    ok.push((at, image));
                    continue;
                }
                (Some(_), Err(message)) => ("unreadable image", message),
            };
            if cfg.rows.strict {
                let message = format!("row {at} (`{}`): {message}", described());
                return Err(Error::Image { path: cfg.rows.input.clone(), message });
            }
            tracing::warn!("cannot score {}: {message}", described());
            *summary.rejected.entry(reason).or_default() += 1;
            bad.push((at, reason));
        }
        progress.advance(chunk.len() as u64);
        if ok.is_empty() {
            return Ok(());
        }
        let rows: Vec<usize> = ok.iter().map(|(at, _)| *at).collect();
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|&r| r as u64))),
            text(&|img: &Image| img.id.as_deref(), &rows),
            text(&|img: &Image| img.label.as_deref(), &rows),
            Arc::new(Int32Array::from(vec![0; rows.len()])),
        ];
        columns.extend(crate::image_refs::columns(ok.iter().map(|(_, r)| r)));
        columns.extend(extras(&rows));
        let batch = RecordBatch::try_new(spill.schema(), columns)
            .map_err(|source| graft_core::Error::Arrow { path: spill.path.clone(), source })?;
        spill.write(&batch)?;
        written += rows.len() as u64;
        Ok(())
    };
    if archive {
        // An archive's bytes are read a chunk at a time, in the listing's order.
        crate::archive::entries_in(
            &cfg.rows.input,
            range.clone(),
            CHUNK,
            crate::archive::Hidden::Quiet,
            &mut |start, entries| {
                if entries.iter().zip(&images[start..]).any(|((name, _), listed)| listed.id.as_ref() != Some(name)) {
                    return Err(Error::Changed { path: cfg.rows.input.clone() });
                }
                let sources: Vec<Source> = entries.into_iter().map(|(_, bytes)| Source::Encoded(bytes)).collect();
                chunk_of(start, sources.iter().collect())
            },
        )?;
    } else {
        for start in range.clone().step_by(CHUNK) {
            chunk_of(start, images[start..(start + CHUNK).min(range.end)].iter().map(|i| &i.source).collect())?;
        }
    }
    progress.finish();
    let source = ImageSource { root: crate::image_refs::absolute(root), seed: 0, augment: Default::default() };
    let base = Provenance { rows: written, images: Some(source), ..crate::rows::provenance(cfg, bundle, None)? };
    let dest = cfg.out.join(format!("{ROWS}.arrow"));
    let schema = base.attach(fields)?;
    let mut writer = ArtifactWriter::create(&dest, &schema)?;
    spill.drain(|batch| writer.write_columns(&batch))?;
    let rejects_dest = cfg.out.join(format!("{REJECTS}.arrow"));
    let rejects_schema =
        Provenance { rows: bad.len() as u64, ..base.clone() }.attach(columns::rejects_fields(&extra))?;
    let mut rejects = ArtifactWriter::create(&rejects_dest, &rejects_schema)?;
    if !bad.is_empty() {
        let (at, reasons): (Vec<usize>, Vec<&str>) = bad.into_iter().unzip();
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from_iter_values(at.iter().map(|&r| r as u64))),
            text(&|img: &Image| Some(img.id.as_deref().unwrap_or_default()), &at),
            Arc::new(StringArray::from(reasons)),
        ];
        columns.extend(extras(&at));
        let batch = RecordBatch::try_new(rejects_schema.clone(), columns)
            .map_err(|source| graft_core::Error::Arrow { path: rejects_dest.clone(), source })?;
        rejects.write(&batch)?;
    }
    summary.written = written;
    graft_core::atomic::commit_all(vec![writer.finish()?, rejects.finish()?])?;
    Ok(summary)
}
