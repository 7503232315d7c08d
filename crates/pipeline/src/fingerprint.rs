//! Content hashes of stage inputs and outputs: a file's blake3, or a folder's files in path
//! order. Files are hashed in parallel, and a file whose size and modification time are
//! those recorded in the hash cache is not read again.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::UNIX_EPOCH;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::Result;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Entry {
    size: u64,
    mtime_ns: u128,
    blake3: String,
}

/// blake3 by absolute path, valid while size and mtime are unchanged; kept in a JSON file
/// (`X.hashes.json` beside pipeline `X.yaml`).
#[derive(Debug, Default)]
pub struct HashCache {
    file: Option<PathBuf>,
    entries: Mutex<BTreeMap<PathBuf, Entry>>,
}

impl HashCache {
    /// The cache stored at `file` (empty when missing or unreadable: it is only a cache).
    pub fn load(file: &Path) -> Self {
        let entries = fs_err::read(file).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        Self { file: Some(file.to_owned()), entries: Mutex::new(entries) }
    }

    /// Writes the cache back atomically.
    pub fn save(&self) -> Result<()> {
        let Some(file) = &self.file else { return Ok(()) };
        let entries = self.entries.lock().expect("hash cache lock");
        let json =
            serde_json::to_vec(&*entries).map_err(|source| graft_core::Error::Json { what: "hash cache", source })?;
        Ok(graft_core::atomic::write_bytes(file, &json)?)
    }

    fn file_hash(&self, path: &Path) -> Result<String> {
        let read = |source| graft_core::Error::Read { path: path.to_owned(), source };
        let meta = fs_err::metadata(path).map_err(read)?;
        if !meta.is_file() {
            // Reading a pipe blocks, and a device may never end.
            return Err(crate::error::Error::NotAFile { path: path.to_owned() });
        }
        let mtime_ns = meta.modified().map_err(read)?.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let key = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        if let Some(e) = self.entries.lock().expect("hash cache lock").get(&key)
            && e.size == meta.len()
            && e.mtime_ns == mtime_ns
        {
            return Ok(e.blake3.clone());
        }
        let blake3 = graft_core::hash::file(path)?;
        let entry = Entry { size: meta.len(), mtime_ns, blake3: blake3.clone() };
        self.entries.lock().expect("hash cache lock").insert(key, entry);
        Ok(blake3)
    }

    /// blake3 of a file, or over the relative paths and contents of every file under a folder.
    pub fn path_hash(&self, path: &Path) -> Result<String> {
        if !path.is_dir() {
            return self.file_hash(path);
        }
        let mut files = Vec::new();
        let mut seen =
            HashSet::from([std::fs::canonicalize(path)
                .map_err(|source| graft_core::Error::Read { path: path.to_owned(), source })?]);
        collect(path, path, &mut seen, &mut files)?;
        files.sort();
        let hashes: Vec<String> = files.par_iter().map(|rel| self.file_hash(&path.join(rel))).collect::<Result<_>>()?;
        let mut hasher = blake3::Hasher::new();
        for (rel, hash) in files.iter().zip(hashes) {
            hasher.update(rel.to_string_lossy().as_bytes());
            hasher.update(&[0]);
            hasher.update(hash.as_bytes());
        }
        Ok(hasher.finalize().to_hex().to_string())
    }
}

/// The files under `dir`, in name order, links followed; a folder reached again through a
/// link (a loop, or two links to one folder) is taken once, where name order first reaches it.
fn collect(root: &Path, dir: &Path, seen: &mut HashSet<PathBuf>, out: &mut Vec<PathBuf>) -> Result<()> {
    let read = |source| graft_core::Error::Read { path: dir.to_owned(), source };
    let mut paths = Vec::new();
    for entry in fs_err::read_dir(dir).map_err(read)? {
        paths.push(entry.map_err(read)?.path());
    }
    paths.sort();
    for path in paths {
        if path.file_name().is_some_and(|n| n.to_string_lossy().ends_with(".partial")) {
            continue;
        }
        if path.is_dir() {
            if std::fs::canonicalize(&path).is_ok_and(|canonical| seen.insert(canonical)) {
                collect(root, &path, seen, out)?;
            }
        } else {
            out.push(path.strip_prefix(root).expect("under root").to_owned());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_hash_follows_contents_and_names() {
        let d = tempfile::tempdir().unwrap();
        let cache = HashCache::default();
        std::fs::create_dir(d.path().join("s")).unwrap();
        std::fs::write(d.path().join("s/a"), b"1").unwrap();
        let h1 = cache.path_hash(d.path()).unwrap();
        assert_eq!(h1, cache.path_hash(d.path()).unwrap());
        std::fs::write(d.path().join("s/a"), b"2").unwrap();
        let h2 = cache.path_hash(d.path()).unwrap();
        assert_ne!(h1, h2);
        std::fs::rename(d.path().join("s/a"), d.path().join("s/b")).unwrap();
        std::fs::write(d.path().join("s/b"), b"2").unwrap();
        assert_ne!(h2, cache.path_hash(d.path()).unwrap());
    }

    #[test]
    fn a_pipe_or_a_device_is_refused_not_read() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a"), b"1").unwrap();
        std::os::unix::fs::symlink("/dev/zero", d.path().join("zero")).unwrap();
        for path in [d.path().to_owned(), d.path().join("zero")] {
            // Hashed in a thread given 10 s: reading /dev/zero would never end.
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || tx.send(HashCache::default().path_hash(&path).map_err(|e| e.to_string())));
            let err = rx.recv_timeout(std::time::Duration::from_secs(10)).expect("an answer, not a hang").unwrap_err();
            assert!(err.contains("zero` is not a regular file or a folder"), "{err}");
        }
    }

    #[test]
    fn links_back_into_a_folder_are_hashed_once_not_followed_forever() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("s/t")).unwrap();
        std::fs::write(d.path().join("s/t/a"), b"1").unwrap();
        let plain = HashCache::default().path_hash(d.path()).unwrap();
        // Two links up from the deepest folder: followed blindly, 2^40 paths.
        std::os::unix::fs::symlink("..", d.path().join("s/t/up1")).unwrap();
        std::os::unix::fs::symlink("../..", d.path().join("s/t/up2")).unwrap();
        let path = d.path().to_owned();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(HashCache::default().path_hash(&path).map_err(|e| e.to_string())));
        let looped = rx.recv_timeout(std::time::Duration::from_secs(10)).expect("an answer, not a hang").unwrap();
        assert_eq!(looped, plain, "the links lead only to folders hashed already");
        // A link to a folder outside is followed.
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("b"), b"2").unwrap();
        std::os::unix::fs::symlink(outside.path(), d.path().join("s/out")).unwrap();
        assert_ne!(HashCache::default().path_hash(d.path()).unwrap(), plain);
    }

    #[test]
    fn cached_hash_is_reused_until_size_or_mtime_change() {
        let d = tempfile::tempdir().unwrap();
        let (file, store) = (d.path().join("f"), d.path().join("cache.json"));
        std::fs::write(&file, b"abc").unwrap();
        let cache = HashCache::load(&store);
        let real = cache.path_hash(&file).unwrap();
        cache.save().unwrap();
        // Same size and mtime, different content: a reloaded cache answers from its record.
        let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
        std::fs::write(&file, b"xyz").unwrap();
        std::fs::File::options().write(true).open(&file).unwrap().set_modified(mtime).unwrap();
        assert_eq!(HashCache::load(&store).path_hash(&file).unwrap(), real);
        // A new mtime makes it read the file again.
        let later = mtime + std::time::Duration::from_secs(5);
        std::fs::File::options().write(true).open(&file).unwrap().set_modified(later).unwrap();
        assert_eq!(HashCache::load(&store).path_hash(&file).unwrap(), graft_core::hash::file(&file).unwrap());
        assert_ne!(real, graft_core::hash::file(&file).unwrap());
    }
}
