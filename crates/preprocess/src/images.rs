//! Images for a `kind: image` backbone: a folder per class (`root/<label>/*.png|jpg`), a
//! CSV/Parquet/JSONL table of image paths and labels (`--path-column`), or a CSV of raw grey
//! pixel rows (the way MNIST-like sets ship: a label column and one column per pixel of a
//! square image). Each image becomes the spec's input: RGB, shorter side
//! resized, centre-cropped, scaled to [0, 1] and normalised per channel, `[3, S, S]`.
//!
//! Flat memory, one decode per image: the images are decoded and transformed in parallel in
//! batches of 256 and spilled in input order to a temporary file; unreadable ones are skipped
//! and listed (or fail the run with `--strict`). Then the split is drawn over the readable
//! images and the spilled rows are written to their split's file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, FixedSizeListArray, Float32Array, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field};
use graft_core::artifact::{ArtifactWriter, Provenance, Task};
use graft_core::progress::Progress;
use graft_core::spec::{BackboneSpec, ImageSpec};
use image::{DynamicImage, GrayImage};
use rayon::prelude::*;

use crate::{Config, Error, Result, Split, Summary, split};

const BATCH_ROWS: usize = 256;
pub(crate) const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// Where an image comes from.
#[derive(Debug, Clone)]
enum Source {
    File(PathBuf),
    /// Grey pixel values of a CSV row.
    Pixels(Vec<u8>, u32),
}

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
            items.push(Item { id, label: label.clone(), source: Source::File(file) });
        }
    }
    Ok(items)
}

/// Rows of a CSV or Parquet table naming image files (`--path-column`, relative to the
/// table's folder) and their labels; ids are the id column's or the paths.
fn read_paths(cfg: &Config, column: &str) -> Result<Vec<Item>> {
    let base = cfg.input.parent().map(Path::to_path_buf).unwrap_or_default();
    let table = Config { text_column: column.to_owned(), ..cfg.clone() };
    let mut rows = crate::read::Rows::open(&table)?;
    let mut items = Vec::new();
    while let Some(row) = rows.next_row()? {
        let Some(path) = row.text.filter(|p| !p.trim().is_empty()) else { continue };
        let file = base.join(path.trim());
        let id = if cfg.id_column.is_some() { row.id } else { path.trim().to_owned() };
        items.push(Item { id, label: row.label.unwrap_or_default().trim().to_owned(), source: Source::File(file) });
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
                let v = record.get(i).unwrap_or("").trim();
                v.parse::<f64>().ok().filter(|x| (0.0..=255.0).contains(x)).map(|x| x.round() as u8).ok_or_else(|| {
                    Error::Image {
                        path: path.clone(),
                        message: format!("data row {row}: pixel `{v}` is not in 0..=255"),
                    }
                })
            })
            .collect::<Result<_>>()?;
        items.push(Item {
            id: id.and_then(|i| record.get(i)).map_or_else(|| row.to_string(), str::to_owned),
            label: record.get(label).unwrap_or("").trim().to_owned(),
            source: Source::Pixels(values, side),
        });
    }
    Ok(items)
}

/// An image file decoded, or why it cannot be.
pub(crate) fn decode_file(path: &Path) -> std::result::Result<DynamicImage, String> {
    image::ImageReader::open(path)
        .map_err(|e| e.to_string())?
        .with_guessed_format()
        .map_err(|e| e.to_string())?
        .decode()
        .map_err(|e| e.to_string())
}

/// A square grey image from its row of pixel values.
pub(crate) fn decode_pixels(values: &[u8], side: u32) -> std::result::Result<DynamicImage, String> {
    GrayImage::from_raw(side, side, values.to_vec())
        .map(DynamicImage::ImageLuma8)
        .ok_or_else(|| "pixel count does not match the side".to_owned())
}

fn decode(source: &Source) -> std::result::Result<DynamicImage, String> {
    match source {
        Source::File(path) => decode_file(path),
        Source::Pixels(values, side) => decode_pixels(values, *side),
    }
}

/// The spec's transforms: RGB, shorter side to `resize` (bilinear), centre `size` crop,
/// [0, 1], `(x - mean) / std`, channels first.
pub fn transform(image: &DynamicImage, spec: &ImageSpec) -> Vec<f32> {
    let rgb = DynamicImage::ImageRgb8(image.to_rgb8());
    let (w, h) = (rgb.width(), rgb.height());
    let scale = spec.resize as f64 / w.min(h) as f64;
    let (nw, nh) =
        (((w as f64 * scale).round() as u32).max(spec.size), ((h as f64 * scale).round() as u32).max(spec.size));
    let resized = if (nw, nh) == (w, h) {
        rgb.into_rgb8().into_raw()
    } else {
        // SIMD bilinear convolution (fast_image_resize), as Pillow's BILINEAR.
        let mut dst = fast_image_resize::images::Image::new(nw, nh, fast_image_resize::PixelType::U8x3);
        let options = fast_image_resize::ResizeOptions::new()
            .resize_alg(fast_image_resize::ResizeAlg::Convolution(fast_image_resize::FilterType::Bilinear));
        fast_image_resize::Resizer::new().resize(&rgb, &mut dst, &options).expect("RGB to RGB of a positive size");
        dst.into_vec()
    };
    let (x0, y0) = (((nw - spec.size) / 2) as usize, ((nh - spec.size) / 2) as usize);
    let (s, row) = (spec.size as usize, nw as usize * 3);
    let mut out = vec![0f32; 3 * s * s];
    for y in 0..s {
        for x in 0..s {
            let p = &resized[(y0 + y) * row + (x0 + x) * 3..][..3];
            for c in 0..3 {
                out[c * s * s + y * s + x] = (f32::from(p[c]) / 255.0 - spec.mean[c]) / spec.std[c];
            }
        }
    }
    out
}

/// How augmented views differ from the image.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Augment {
    /// Zero-pad by this many pixels, then crop back at a random offset.
    pub pad: usize,
    /// Mirror horizontally half the time.
    pub flip: bool,
    /// Rotate by a random angle in [-rotate, rotate] degrees (bilinear, zero fill).
    pub rotate: f32,
    /// Scale brightness and contrast by random factors in [1 - jitter, 1 + jitter].
    pub jitter: f32,
}

/// A seeded augmented view of a transformed image `[3, s, s]` (normalised with `mean`/`std`).
pub fn augment(
    pixels: &[f32],
    s: usize,
    a: &Augment,
    mean: [f32; 3],
    std: [f32; 3],
    rng: &mut graft_core::rng::SplitMix64,
) -> Vec<f32> {
    let pad = a.pad;
    let (dx, dy) = (rng.below(2 * pad + 1), rng.below(2 * pad + 1));
    let mirror = a.flip && rng.below(2) == 1;
    let angle = (a.rotate * (2.0 * rng.next_f64() as f32 - 1.0)).to_radians();
    let (brightness, contrast) =
        (1.0 + a.jitter * (2.0 * rng.next_f64() as f32 - 1.0), 1.0 + a.jitter * (2.0 * rng.next_f64() as f32 - 1.0));
    let (sin, cos) = angle.sin_cos();
    let centre = (s as f32 - 1.0) / 2.0;
    // The source value of channel c at real position (x, y) of the padded, mirrored image.
    let sample = |c: usize, x: f32, y: f32| -> f32 {
        let (x0, y0) = (x.floor(), y.floor());
        let (fx, fy) = (x - x0, y - y0);
        let at = |xi: f32, yi: f32| -> f32 {
            let (px, py) = (xi as isize - pad as isize, yi as isize - pad as isize);
            if px < 0 || py < 0 || px >= s as isize || py >= s as isize {
                return 0.0;
            }
            pixels[c * s * s + py as usize * s + px as usize]
        };
        let top = at(x0, y0) * (1.0 - fx) + at(x0 + 1.0, y0) * fx;
        let bottom = at(x0, y0 + 1.0) * (1.0 - fx) + at(x0 + 1.0, y0 + 1.0) * fx;
        top * (1.0 - fy) + bottom * fy
    };
    let mut out = vec![0f32; pixels.len()];
    for c in 0..3 {
        for y in 0..s {
            for x in 0..s {
                // Rotate about the centre, then shift into the padded image and mirror.
                let (rx, ry) = (x as f32 - centre, y as f32 - centre);
                let (sx, sy) = (cos * rx + sin * ry + centre, -sin * rx + cos * ry + centre);
                let sx = if mirror { s as f32 - 1.0 - sx } else { sx };
                out[c * s * s + y * s + x] = sample(c, sx + dx as f32, sy + dy as f32);
            }
        }
    }
    if a.jitter > 0.0 {
        // In [0, 1] pixel space: contrast about the image's mean grey, then brightness.
        let grey = |v: &[f32]| -> f32 {
            (0..3).map(|c| v[c * s * s..(c + 1) * s * s].iter().map(|x| x * std[c] + mean[c]).sum::<f32>()).sum::<f32>()
                / (3 * s * s) as f32
        };
        let m = grey(&out);
        for c in 0..3 {
            for v in &mut out[c * s * s..(c + 1) * s * s] {
                let p = ((*v * std[c] + mean[c] - m) * contrast + m) * brightness;
                *v = (p - mean[c]) / std[c];
            }
        }
    }
    out
}

/// `[3, s, s]` as `[s, s, 3]`.
pub(crate) fn to_nhwc(chw: &[f32], s: usize) -> Vec<f32> {
    let mut out = vec![0f32; chw.len()];
    for c in 0..3 {
        for i in 0..s * s {
            out[i * 3 + c] = chw[c * s * s + i];
        }
    }
    out
}

/// The seed of view `view` of image `id`.
fn view_seed(seed: u64, id: &str, view: usize) -> u64 {
    let hash = blake3::hash(id.as_bytes());
    let bytes: [u8; 8] = hash.as_bytes()[..8].try_into().expect("8 bytes");
    seed ^ u64::from_le_bytes(bytes) ^ (view as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

struct Writer {
    inner: ArtifactWriter,
    buffer: Vec<(String, String, i32, Vec<f32>)>,
    width: usize,
}

impl Writer {
    fn flush(&mut self) -> Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.buffer);
        let item = Arc::new(Field::new("item", DataType::Float32, false));
        let values = Float32Array::from(rows.iter().flat_map(|r| r.3.iter().copied()).collect::<Vec<f32>>());
        let pixels =
            FixedSizeListArray::try_new(item, self.width as i32, Arc::new(values), None).expect("width values per row");
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0.as_str()))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1.as_str()))),
            Arc::new(Int32Array::from(rows.iter().map(|r| r.2).collect::<Vec<i32>>())),
            Arc::new(pixels),
        ];
        let batch = RecordBatch::try_new(self.inner.schema(), columns).expect("matching columns");
        self.inner.write(&batch)?;
        Ok(())
    }
}

pub fn run(cfg: &Config, spec: &BackboneSpec, progress: &dyn Progress) -> Result<Summary> {
    let image = spec.image();
    let mut items = match (&cfg.path_column, cfg.input.is_dir()) {
        (_, true) => list_folder(&cfg.input)?,
        (Some(column), false) => read_paths(cfg, column)?,
        (None, false) => read_pixels(cfg)?,
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
    // First pass: decode and transform every image in parallel, spilling the readable ones
    // in input order to a temporary file; the unreadable are listed and skipped, or fail the
    // run with --strict. The split, which needs the final row counts, comes after.
    let width = 3 * (image.size as usize).pow(2);
    let item_field = Arc::new(Field::new("item", DataType::Float32, false));
    let spill_schema = Arc::new(arrow::datatypes::Schema::new(vec![Field::new(
        "pixels",
        DataType::FixedSizeList(item_field.clone(), width as i32),
        false,
    )]));
    let spill_path = cfg.out.join("spill.arrow");
    let mut spill = graft_core::atomic::Pending::create(&spill_path)?;
    let write_err = |source| graft_core::Error::Write { path: spill_path.clone(), source };
    let arrow_err = |source| graft_core::Error::Arrow { path: spill_path.clone(), source };
    let mut spill_writer =
        arrow::ipc::writer::FileWriter::try_new(spill.file().try_clone().map_err(write_err)?, &spill_schema)
            .map_err(arrow_err)?;
    let mut unreadable: Vec<(usize, String)> = Vec::new();
    progress.start("decoding", items.len() as u64);
    for (c, chunk) in items.chunks(BATCH_ROWS).enumerate() {
        let decoded: Vec<std::result::Result<Vec<f32>, String>> =
            chunk.par_iter().map(|item| decode(&item.source).map(|img| transform(&img, image))).collect();
        let mut values = Vec::with_capacity(chunk.len() * width);
        for (i, d) in decoded.into_iter().enumerate() {
            match d {
                Ok(pixels) => values.extend(pixels),
                Err(why) => unreadable.push((c * BATCH_ROWS + i, why)),
            }
        }
        if !values.is_empty() {
            let list = FixedSizeListArray::try_new(
                item_field.clone(),
                width as i32,
                Arc::new(Float32Array::from(values)),
                None,
            )
            .map_err(arrow_err)?;
            let batch = RecordBatch::try_new(spill_schema.clone(), vec![Arc::new(list)]).map_err(arrow_err)?;
            spill_writer.write(&batch).map_err(arrow_err)?;
        }
        progress.advance(chunk.len() as u64);
    }
    spill_writer.finish().map_err(arrow_err)?;
    progress.finish();
    for (i, why) in unreadable.iter().rev() {
        let name = match &items[*i].source {
            Source::File(p) => p.display().to_string(),
            Source::Pixels(..) => format!("row {}", items[*i].id),
        };
        if cfg.strict {
            return Err(Error::Image { path: PathBuf::from(name), message: why.clone() });
        }
        tracing::warn!("skipping unreadable image {name}: {why}");
        summary.skipped.push(name);
        items.remove(*i);
    }
    summary.skipped.reverse();
    let labels = crate::vocabulary(items.iter().map(|i| &i.label), cfg)?;
    let classes: Vec<usize> = items.iter().map(|i| labels.binary_search(&i.label).expect("in vocabulary")).collect();
    let assignment = split::stratified(&classes, labels.len(), cfg.val_fraction, cfg.test_fraction, cfg.seed);
    let base = Provenance {
        format: graft_core::artifact::FORMAT.into(),
        stage: "preprocess".into(),
        graft_version: graft_core::VERSION.into(),
        task: Task::Classification,
        labels: labels.clone(),
        rows: 0,
        params: serde_json::to_value(cfg).map_err(|source| graft_core::Error::Json { what: "config", source })?,
        inputs: BTreeMap::from([("spec".to_owned(), graft_core::hash::file(&cfg.spec)?)]),
        tokenizer: None,
        backbone: None,
        shard: None,
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
        let schema = provenance.attach(graft_core::columns::pixels_fields(width))?;
        let dest = cfg.out.join(format!("{}.arrow", split.name()));
        writers.push(Some(Writer { inner: ArtifactWriter::create(&dest, &schema)?, buffer: Vec::new(), width }));
    }
    // Second pass: the spilled pixels, in input order, go to their split's file.
    let aug = Augment {
        pad: cfg.augment_pad,
        flip: cfg.augment_flip,
        rotate: cfg.augment_rotate,
        jitter: cfg.augment_jitter,
    };
    let nhwc = image.layout == graft_core::spec::Layout::Nhwc;
    let mut file = spill.file().try_clone().map_err(write_err)?;
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0)).map_err(write_err)?;
    let reader = arrow::ipc::reader::FileReader::try_new(file, None).map_err(arrow_err)?;
    let mut rows = items.iter().zip(&assignment);
    progress.start("writing", items.len() as u64);
    for batch in reader {
        let batch = batch.map_err(arrow_err)?;
        let list = batch.column(0).as_any().downcast_ref::<FixedSizeListArray>().expect("the spill's own column");
        let values = list.values().as_any().downcast_ref::<Float32Array>().expect("float32 pixels").values();
        for r in 0..batch.num_rows() {
            let (item, split) = rows.next().expect("one spilled row per readable image");
            let pixels = values[r * width..(r + 1) * width].to_vec();
            let writer = writers[*split as usize].as_mut().expect("a writer for every split with rows");
            let views = if *split == Split::Train { cfg.augment_views } else { 0 };
            let layout = |v: Vec<f32>| if nhwc { to_nhwc(&v, image.size as usize) } else { v };
            for view in 1..=views {
                let mut rng = graft_core::rng::SplitMix64::new(view_seed(cfg.seed, &item.id, view));
                let augmented = augment(&pixels, image.size as usize, &aug, image.mean, image.std, &mut rng);
                writer.buffer.push((item.id.clone(), item.label.clone(), view as i32, layout(augmented)));
            }
            writer.buffer.push((item.id.clone(), item.label.clone(), 0, layout(pixels)));
            if writer.buffer.len() >= BATCH_ROWS {
                writer.flush()?;
            }
            progress.advance(1);
        }
    }
    drop(spill);
    progress.finish();
    let mut pending = Vec::new();
    for mut w in writers.into_iter().flatten() {
        w.flush()?;
        pending.push(w.inner.finish()?);
    }
    graft_core::atomic::commit_all(pending)?;
    summary.labels = labels;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(size: u32, resize: u32) -> ImageSpec {
        ImageSpec {
            input: "x".into(),
            size,
            resize,
            mean: [0.5, 0.25, 0.0],
            std: [0.5, 0.25, 1.0],
            layout: Default::default(),
        }
    }

    #[test]
    fn grey_becomes_rgb_normalised_per_channel_channels_first() {
        let img = DynamicImage::ImageLuma8(GrayImage::from_pixel(4, 4, image::Luma([255])));
        let out = transform(&img, &spec(4, 4));
        assert_eq!(out.len(), 48);
        // (1 - mean) / std per channel: 1, 3, 1.
        assert!(out[..16].iter().all(|v| (v - 1.0).abs() < 1e-6));
        assert!(out[16..32].iter().all(|v| (v - 3.0).abs() < 1e-6));
        assert!(out[32..].iter().all(|v| (v - 1.0).abs() < 1e-6));
    }

    #[test]
    fn augmented_views_are_shifted_mirrored_rotated_or_jittered_and_seeded() {
        // One channel pattern: value = x + 10 y, on a 4x4 image (3 channels alike).
        let s = 4;
        let base: Vec<f32> = (0..3 * s * s).map(|i| ((i % (s * s)) % s + 10 * ((i % (s * s)) / s)) as f32).collect();
        let (mean, std) = ([0.0; 3], [1.0; 3]);
        let view = |a: Augment, seed| augment(&base, s, &a, mean, std, &mut graft_core::rng::SplitMix64::new(seed));
        assert_eq!(view(Augment::default(), 1), base, "no augmentation: unchanged");
        let shift_flip = Augment { pad: 1, flip: true, ..Augment::default() };
        assert_eq!(view(shift_flip, 5), view(shift_flip, 5), "seeded");
        let views: Vec<Vec<f32>> = (0..20).map(|seed| view(shift_flip, seed)).collect();
        assert!(views.iter().any(|v| *v != base), "some views differ");
        // Shifts and mirrors move whole pixels: every non-zero value is one of the image's.
        assert!(views.iter().all(|v| v.iter().all(|x| *x == 0.0 || base.contains(x))));
        let flipped: Vec<f32> = (0..3 * s * s).map(|i| base[(i / s) * s + (s - 1 - i % s)]).collect();
        let mirror_only = Augment { flip: true, ..Augment::default() };
        assert!((0..10).all(|seed| [base.clone(), flipped.clone()].contains(&view(mirror_only, seed))));
        // Rotation turns about the centre: on a 5x5 image the centre pixel stays, others move.
        let odd: Vec<f32> = (0..3 * 25).map(|i| (i % 25) as f32).collect();
        let turned = augment(
            &odd,
            5,
            &Augment { rotate: 30.0, ..Augment::default() },
            mean,
            std,
            &mut graft_core::rng::SplitMix64::new(3),
        );
        assert!((turned[12] - odd[12]).abs() < 1e-5 && turned != odd);
        // Jitter scales values about the mean grey; a constant image stays constant.
        let flat = vec![0.5f32; 3 * s * s];
        let jittered = augment(
            &flat,
            s,
            &Augment { jitter: 0.5, ..Augment::default() },
            mean,
            std,
            &mut graft_core::rng::SplitMix64::new(2),
        );
        assert!(jittered.windows(2).all(|w| (w[0] - w[1]).abs() < 1e-6) && (jittered[0] - 0.5).abs() > 1e-4);
    }

    #[test]
    fn channels_last_layout() {
        let chw: Vec<f32> = (0..12).map(|i| i as f32).collect(); // 3 channels of 2x2
        assert_eq!(to_nhwc(&chw, 2), [0., 4., 8., 1., 5., 9., 2., 6., 10., 3., 7., 11.]);
    }

    #[test]
    fn shorter_side_is_resized_then_the_centre_cropped() {
        // 8 wide, 4 high: left half black, right half white; resized to 4 high (no change),
        // then the centre 4x4 spans both halves equally.
        let img = GrayImage::from_fn(8, 4, |x, _| image::Luma([if x < 4 { 0 } else { 255 }]));
        let out = transform(&DynamicImage::ImageLuma8(img), &ImageSpec { mean: [0.0; 3], std: [1.0; 3], ..spec(4, 4) });
        let row: Vec<f32> = out[..4].to_vec();
        assert_eq!(row, [0.0, 0.0, 1.0, 1.0]);
        // Shorter side 4 -> 8: the output is 8x8 from a 16x8 resize.
        let img = GrayImage::from_pixel(8, 4, image::Luma([51]));
        let out = transform(&DynamicImage::ImageLuma8(img), &ImageSpec { mean: [0.0; 3], std: [1.0; 3], ..spec(8, 8) });
        assert_eq!(out.len(), 3 * 64);
        assert!(out.iter().all(|v| (v - 0.2).abs() < 1e-6), "a constant image stays constant");
    }
}
