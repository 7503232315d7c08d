//! Images inside an archive (`.zip`, `.tar`, `.tar.gz`/`.tgz`), read a chunk at a time: a zip
//! in name order (its directory lists every entry), a tar in its own order (it is read
//! front to back). Only entries named like images are read; an entry larger than an image
//! may be is listed instead of read.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// An archive entry: its name, and its bytes or why they were not read.
pub(crate) type Entry = (String, std::result::Result<Vec<u8>, String>);

/// Whether `path` names an archive this module reads.
pub(crate) fn is_archive(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    [".zip", ".tar", ".tar.gz", ".tgz"].iter().any(|e| name.ends_with(e))
}

fn is_image(name: &str) -> bool {
    crate::folder::is_image(Path::new(name))
}

fn corrupt(path: &Path, message: impl std::fmt::Display) -> Error {
    Error::Image { path: path.to_owned(), message: format!("not a readable archive: {message}") }
}

/// Calls `each` with the archive's image entries, `chunk` at a time, in order.
pub(crate) fn entries(path: &Path, chunk: usize, each: &mut dyn FnMut(Vec<Entry>) -> Result<()>) -> Result<()> {
    entries_in(path, 0..usize::MAX, chunk, Hidden::Named, &mut |_, entries| each(entries))
}

/// The names of the archive's image entries, in the order [`entries`] gives them (their
/// bytes are not read, beyond what a compressed tar must be read through).
pub(crate) fn names(path: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    walk(path, Hidden::Named, &mut |name, _| {
        names.push(name);
        Ok(Walk::Skip)
    })?;
    Ok(names)
}

/// Whether a walk names the hidden image entries it skips (once a run is enough).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hidden {
    Named,
    Quiet,
}

/// Calls `each` with the image entries at positions `range` (counting image entries
/// only), `chunk` at a time with the position of the first, in order.
pub(crate) fn entries_in(
    path: &Path,
    range: std::ops::Range<usize>,
    chunk: usize,
    hidden: Hidden,
    each: &mut dyn FnMut(usize, Vec<Entry>) -> Result<()>,
) -> Result<()> {
    let (mut at, mut first, mut batch) = (0usize, range.start, Vec::new());
    walk(path, hidden, &mut |name, read| {
        let position = at;
        at += 1;
        if position < range.start {
            return Ok(Walk::Skip);
        }
        if position >= range.end {
            return Ok(Walk::Stop);
        }
        batch.push((name, read()));
        if batch.len() == chunk {
            each(first, std::mem::take(&mut batch))?;
            first = position + 1;
        }
        Ok(Walk::Skip)
    })?;
    if batch.is_empty() { Ok(()) } else { each(first, batch) }
}

/// Reads the current entry's bytes, or says why it cannot.
type ReadEntry<'a> = dyn FnMut() -> std::result::Result<Vec<u8>, String> + 'a;

/// What [`walk`]'s visitor wants next.
enum Walk {
    Skip,
    Stop,
}

/// Calls `visit` with each image entry's name and a reader of its bytes, in order; entries
/// under a hidden folder or hidden themselves are skipped.
fn walk(path: &Path, hidden: Hidden, visit: &mut dyn FnMut(String, &mut ReadEntry<'_>) -> Result<Walk>) -> Result<()> {
    let file = fs_err::File::open(path).map_err(|source| graft_core::Error::Read { path: path.to_owned(), source })?;
    let lower = path.to_string_lossy().to_ascii_lowercase();
    // Hidden image entries skipped, and the first.
    let mut skipped: (usize, Option<String>) = (0, None);
    let mut read_here = |name: &str| {
        let hides = name.split('/').any(crate::folder::hidden_name);
        if hides && is_image(name) && hidden == Hidden::Named {
            skipped.0 += 1;
            skipped.1.get_or_insert_with(|| name.to_owned());
        }
        is_image(name) && !hides
    };
    if lower.ends_with(".zip") {
        let mut zip = zip::ZipArchive::new(file).map_err(|e| corrupt(path, e))?;
        let mut names: Vec<String> = zip.file_names().filter(|n| read_here(n)).map(str::to_owned).collect();
        names.sort();
        report_hidden(path, &skipped);
        for name in names {
            let mut read = || match zip.by_name(&name) {
                Ok(mut entry) => {
                    let size = entry.size();
                    graft_imaging::read_encoded(&mut entry, size)
                }
                Err(e) => Err(e.to_string()),
            };
            if let Walk::Stop = visit(name.clone(), &mut read)? {
                break;
            }
        }
        return Ok(());
    }
    let reader: Box<dyn Read> =
        if lower.ends_with(".tar") { Box::new(file) } else { Box::new(flate2::read::GzDecoder::new(file)) };
    let mut tar = tar::Archive::new(reader);
    for entry in tar.entries().map_err(|e| corrupt(path, e))? {
        let mut entry = entry.map_err(|e| corrupt(path, e))?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = entry.path().map_err(|e| corrupt(path, e))?.to_string_lossy().into_owned();
        if !read_here(&name) {
            continue;
        }
        let size = entry.size();
        if let Walk::Stop = visit(name, &mut || graft_imaging::read_encoded(&mut entry, size))? {
            return Ok(());
        }
    }
    // A tar ends before its gzip stream does, and only the stream's last bytes (its CRC)
    // cover every byte: reading through them refuses a corrupt stream, whose images would
    // otherwise be decoded from changed bytes.
    std::io::copy(&mut tar.into_inner(), &mut std::io::sink()).map_err(|e| corrupt(path, e))?;
    report_hidden(path, &skipped);
    Ok(())
}

fn report_hidden(archive: &Path, (count, first): &(usize, Option<String>)) {
    if let Some(first) = first {
        tracing::warn!("skipping {count} hidden entries of {} (`{first}`, ...)", archive.display());
    }
}

/// The folder part of an entry's name, which is its label (`label/file.png`), if any.
pub(crate) fn label(name: &str) -> Option<String> {
    let parent = PathBuf::from(name).parent().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
    let first = parent.split('/').next().unwrap_or_default();
    (!first.is_empty()).then(|| first.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archives_are_known_by_name_and_labels_by_folder() {
        for name in ["a.zip", "b.TAR", "c.tar.gz", "d.tgz"] {
            assert!(is_archive(Path::new(name)), "{name}");
        }
        assert!(!is_archive(Path::new("e.csv")) && !is_archive(Path::new("photos")));
        assert_eq!(label("cat/01.png").as_deref(), Some("cat"));
        assert_eq!(label("cat/small/01.png").as_deref(), Some("cat"));
        assert_eq!(label("01.png"), None);
    }
}
