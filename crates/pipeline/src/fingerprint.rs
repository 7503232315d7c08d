//! Content hashes of stage inputs: a file's blake3, or a folder's files, in path order.

use std::path::Path;

use crate::error::Result;

/// blake3 over the relative paths and contents of every file under `path`.
pub fn path_hash(path: &Path) -> Result<String> {
    if path.is_file() {
        return Ok(graft_core::hash::file(path)?);
    }
    let mut files = Vec::new();
    collect(path, path, &mut files)?;
    files.sort();
    let mut hasher = blake3::Hasher::new();
    for rel in files {
        hasher.update(rel.to_string_lossy().as_bytes());
        hasher.update(&[0]);
        hasher.update(graft_core::hash::file(&path.join(&rel))?.as_bytes());
    }
    Ok(hasher.finalize().to_hex().to_string())
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<std::path::PathBuf>) -> Result<()> {
    let read = |source| graft_core::Error::Read { path: dir.to_owned(), source };
    for entry in fs_err::read_dir(dir).map_err(read)? {
        let entry = entry.map_err(read)?;
        let path = entry.path();
        let name = entry.file_name();
        if name.to_string_lossy().ends_with(".partial") {
            continue;
        }
        if path.is_dir() {
            collect(root, &path, out)?;
        } else {
            out.push(path.strip_prefix(root).expect("under root").to_owned());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn folder_hash_follows_contents_and_names() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("s")).unwrap();
        std::fs::write(d.path().join("s/a"), b"1").unwrap();
        let h1 = super::path_hash(d.path()).unwrap();
        assert_eq!(h1, super::path_hash(d.path()).unwrap());
        std::fs::write(d.path().join("s/a"), b"2").unwrap();
        let h2 = super::path_hash(d.path()).unwrap();
        assert_ne!(h1, h2);
        std::fs::rename(d.path().join("s/a"), d.path().join("s/b")).unwrap();
        std::fs::write(d.path().join("s/b"), b"2").unwrap();
        assert_ne!(h2, super::path_hash(d.path()).unwrap());
    }
}
