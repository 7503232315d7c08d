//! Image folders: a subfolder per class, walked to any depth as torchvision's `ImageFolder`
//! and Keras do (so a folder reads like an archive of it). Hidden entries (`.name`, such as
//! `.ipynb_checkpoints`, and `__MACOSX`) are neither classes nor read, and are named in a
//! warning. Symbolic links are followed, but a folder is read once: a link to the input
//! folder, to a class folder or to a folder already read is named and not followed.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Whether a file is taken as an image, by its extension.
pub(crate) fn is_image(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| graft_imaging::EXTENSIONS.contains(&e.to_string_lossy().to_ascii_lowercase().as_str()))
}

fn is_hidden(path: &Path) -> bool {
    path.file_name().is_some_and(|n| hidden_name(&n.to_string_lossy()))
}

/// A name that hides its entry: `.name`, or `__MACOSX` (where macOS puts the `._name`
/// metadata files it adds beside each file of a zip).
pub(crate) fn hidden_name(name: &str) -> bool {
    name.starts_with('.') || name == "__MACOSX"
}

fn name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// An entry directly in an image folder: a class folder, or an image file (its name).
#[derive(Debug)]
pub(crate) enum Entry {
    Class(PathBuf),
    Image(String),
}

/// An image folder being read: the folders read so far.
#[derive(Debug)]
pub(crate) struct Folder {
    root: PathBuf,
    /// Canonical paths of the input folder, its class folders and every folder walked.
    seen: HashSet<PathBuf>,
}

/// The class folders and image files directly in `root`, in name order, and the folder to
/// read the classes' images from.
pub(crate) fn list(root: &Path) -> Result<(Vec<Entry>, Folder)> {
    let read = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::from(graft_core::Error::Read { path, source })
    };
    let mut paths: Vec<PathBuf> =
        fs_err::read_dir(root).map_err(read(root))?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    let mut folder = Folder { root: root.to_owned(), seen: HashSet::new() };
    let mut entries = Vec::new();
    folder.seen.insert(std::fs::canonicalize(root).map_err(read(root))?);
    for path in paths {
        if is_hidden(&path) {
            if path.is_dir() || is_image(&path) {
                tracing::warn!("skipping {}: hidden", path.display());
            }
        } else if path.is_dir() {
            folder.seen.insert(std::fs::canonicalize(&path).map_err(read(&path))?);
            entries.push(Entry::Class(path));
        } else if is_image(&path) {
            entries.push(Entry::Image(name(&path)));
        }
    }
    Ok((entries, folder))
}

impl Folder {
    /// The image files under `class` (an [`Entry::Class`] of [`list`]) at any depth, as paths
    /// relative to the input folder, in name order. A file named like an image that cannot
    /// be listed (a symlink loop) is kept, for the reader to name.
    pub(crate) fn class_images(&mut self, class: &Path) -> Result<Vec<String>> {
        let relative = |path: &Path| path.strip_prefix(&self.root).unwrap_or(path).to_string_lossy().into_owned();
        let mut images = Vec::new();
        let mut walk = walkdir::WalkDir::new(class).min_depth(1).follow_links(true).into_iter();
        while let Some(entry) = walk.next() {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) if e.loop_ancestor().is_some() => {
                    let path = e.path().unwrap_or(class).display().to_string();
                    tracing::warn!("skipping {path}: a link to a folder above it");
                    continue;
                }
                Err(e) => match e.path() {
                    Some(path) if is_image(path) => {
                        images.push(relative(path));
                        continue;
                    }
                    path => {
                        let path = path.unwrap_or(class).to_owned();
                        let source = e.into_io_error().unwrap_or_else(|| std::io::Error::other("cannot be listed"));
                        return Err(graft_core::Error::Read { path, source }.into());
                    }
                },
            };
            let path = entry.path();
            if entry.file_type().is_dir() {
                let hidden = is_hidden(path);
                let again = !hidden && std::fs::canonicalize(path).is_ok_and(|canonical| !self.seen.insert(canonical));
                if hidden || again {
                    walk.skip_current_dir();
                    let why = if hidden {
                        "hidden"
                    } else {
                        "a link to the input folder, a class folder or a folder already read"
                    };
                    tracing::warn!("skipping {}: {why}", path.display());
                }
            } else if is_hidden(path) {
                if is_image(path) {
                    tracing::warn!("skipping {}: hidden", path.display());
                }
            } else if is_image(path) {
                images.push(relative(path));
            }
        }
        images.sort();
        Ok(images)
    }
}
