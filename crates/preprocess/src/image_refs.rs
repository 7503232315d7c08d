//! What an image split holds for each image instead of its pixels: its path under the input
//! folder (or, for grey pixel rows, the image PNG-encoded; for an archive's entries, their
//! bytes) and the blake3 of its bytes. Each
//! file is read once, hashed and its header checked (a known format, a positive size); the
//! backbone decodes it later.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, BinaryArray, StringArray};
use rayon::prelude::*;

/// Where an image comes from.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    /// A path under the root, as listed or as the table gives it.
    File(String),
    /// A row of grey values, `side` x `side`, or why the row is not one.
    Pixels(std::result::Result<Vec<u8>, String>, u32),
    /// An encoded image read from an archive (the root), or why it could not be read.
    Encoded(std::result::Result<Vec<u8>, String>),
}

impl Source {
    /// What names it in a message: the file under `root`, or the pixel row.
    pub(crate) fn describe(&self, root: &Path, id: &str) -> String {
        match self {
            Source::File(path) => root.join(path).display().to_string(),
            Source::Pixels(..) => format!("pixel row `{id}`"),
            Source::Encoded(..) => format!("{}: entry `{id}`", root.display()),
        }
    }
}

/// An image as a split stores it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ImageRef {
    /// The path under the root (or absolute, from a table), normalised (no `.` parts).
    pub path: Option<String>,
    /// Encoded bytes, for images that are not files.
    pub bytes: Option<Vec<u8>>,
    pub blake3: String,
}

/// `path` normalised (no `.` parts): absolute as given, or relative and under the root;
/// or why it is neither.
pub(crate) fn under_root(path: &str) -> std::result::Result<String, String> {
    let path = path.trim();
    if Path::new(path).is_absolute() {
        return match Path::new(path).components().any(|c| c == Component::ParentDir) {
            false => Ok(path.to_owned()),
            true => Err(format!("path `{path}` has `..` in it (expected a path without)")),
        };
    }
    let mut parts = Vec::new();
    for part in Path::new(path).components() {
        match part {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::CurDir => {}
            _ => return Err(format!("path `{path}` leaves the image folder (expected a path under it)")),
        }
    }
    if parts.is_empty() {
        return Err("the path is empty".into());
    }
    Ok(parts.join("/"))
}

fn resolve_one(root: &Path, source: &Source) -> std::result::Result<ImageRef, String> {
    match source {
        Source::File(path) => {
            let path = under_root(path)?;
            let file = root.join(&path);
            let bytes = graft_imaging::read_file(&file)?;
            graft_imaging::check(&bytes)?;
            Ok(ImageRef { path: Some(path), bytes: None, blake3: blake3::hash(&bytes).to_hex().to_string() })
        }
        Source::Pixels(values, side) => {
            let bytes = graft_imaging::grey_png(values.as_ref().map_err(Clone::clone)?, *side)?;
            Ok(ImageRef { path: None, blake3: blake3::hash(&bytes).to_hex().to_string(), bytes: Some(bytes) })
        }
        Source::Encoded(bytes) => {
            let bytes = bytes.as_ref().map_err(Clone::clone)?;
            graft_imaging::check(bytes)?;
            Ok(ImageRef { path: None, blake3: blake3::hash(bytes).to_hex().to_string(), bytes: Some(bytes.clone()) })
        }
    }
}

/// Reads, hashes and checks `sources` in parallel; the results keep their order.
pub(crate) fn resolve(root: &Path, sources: &[&Source]) -> Vec<std::result::Result<ImageRef, String>> {
    sources.par_iter().map(|s| resolve_one(root, s)).collect()
}

/// The `path`, `image` and `blake3` columns of `refs`.
pub(crate) fn columns<'a>(refs: impl Iterator<Item = &'a ImageRef> + Clone) -> [ArrayRef; 3] {
    [
        Arc::new(StringArray::from_iter(refs.clone().map(|r| r.path.as_deref()))),
        Arc::new(BinaryArray::from_iter(refs.clone().map(|r| r.bytes.as_deref()))),
        Arc::new(StringArray::from_iter_values(refs.map(|r| r.blake3.as_str()))),
    ]
}

/// `root` made absolute (without resolving links), so that the backbone finds the images
/// from any working folder; empty (pixel rows: no files) stays empty.
pub(crate) fn absolute(root: PathBuf) -> PathBuf {
    match root.as_os_str().is_empty() {
        true => root,
        false => std::path::absolute(&root).unwrap_or(root),
    }
}

/// The folder a table's paths are relative to: the table's own.
pub(crate) fn table_root(table: &Path) -> PathBuf {
    table.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// Parses a CSV cell as a grey value.
pub(crate) fn grey(v: &str) -> std::result::Result<u8, String> {
    let v = v.trim();
    v.parse::<f64>()
        .ok()
        .filter(|x| (0.0..=255.0).contains(x))
        .map(|x| x.round() as u8)
        .ok_or_else(|| format!("pixel `{v}` is not in 0..=255"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_under_the_root() {
        assert_eq!(under_root("./a/b.png").unwrap(), "a/b.png");
        assert_eq!(under_root(" a/./b.png ").unwrap(), "a/b.png");
        assert_eq!(under_root("/data/a.png").unwrap(), "/data/a.png", "absolute paths are the user's own");
        for bad in ["../a.png", "a/../../b.png", "/data/../etc/a.png", ""] {
            assert!(under_root(bad).is_err(), "{bad}");
        }
    }
}
