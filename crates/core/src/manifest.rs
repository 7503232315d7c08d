//! `manifest.json`: the blake3 of every file of a multi-file artifact (a head, an
//! evaluation), written last and checked on read, so files from two runs are never mixed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::atomic::Pending;
use crate::{Error, Result};

pub const FILE: &str = "manifest.json";
pub const FORMAT: &str = "graft-manifest/1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    /// What the folder holds (`head`, `evaluation`, `bundle`).
    pub kind: String,
    /// blake3 of each file, by name relative to the folder.
    pub files: BTreeMap<String, String>,
}

impl Manifest {
    pub fn new(kind: &str) -> Self {
        Self { format: FORMAT.into(), kind: kind.into(), files: BTreeMap::new() }
    }

    /// Records `name` with the blake3 of `bytes`.
    pub fn add_bytes(&mut self, name: &str, bytes: &[u8]) {
        self.files.insert(name.into(), blake3::hash(bytes).to_hex().to_string());
    }

    /// Records a pending file by the blake3 of what was written to it.
    pub fn add_pending(&mut self, name: &str, pending: &Pending) -> Result<()> {
        self.files.insert(name.into(), pending.blake3()?);
        Ok(())
    }

    /// The manifest as a pending `dir/manifest.json`, to be committed after the files it lists.
    pub fn pending(&self, dir: &Path) -> Result<Pending> {
        let mut json = serde_json::to_vec_pretty(self).map_err(|source| Error::Json { what: "manifest", source })?;
        json.push(b'\n');
        crate::atomic::pending_bytes(&dir.join(FILE), &json)
    }

    /// Reads `dir/manifest.json`, which must describe a `kind` folder.
    pub fn read(dir: &Path, kind: &str) -> Result<Self> {
        let path = dir.join(FILE);
        let bad = |message: String| Error::Manifest { path: path.clone(), message };
        let bytes = match fs_err::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(bad(format!("is missing: `{}` is not a complete {kind} folder", dir.display())));
            }
            Err(source) => return Err(Error::Read { path, source }),
        };
        let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        if manifest.format != FORMAT {
            return Err(bad(format!("format `{}`, expected `{FORMAT}`", manifest.format)));
        }
        if manifest.kind != kind {
            return Err(bad(format!("describes a `{}` folder, expected `{kind}`", manifest.kind)));
        }
        Ok(manifest)
    }

    /// The manifest of `dir` when there is one describing a `kind` folder; `None` when there
    /// is none or it describes another kind.
    pub fn read_if(dir: &Path, kind: &str) -> Result<Option<Self>> {
        let path = dir.join(FILE);
        let Ok(bytes) = fs_err::read(&path) else { return Ok(None) };
        match serde_json::from_slice::<Manifest>(&bytes) {
            Ok(m) if m.kind == kind => Self::read(dir, kind).map(Some),
            _ => Ok(None),
        }
    }

    /// Refuses `bytes` read from `dir/name` unless the manifest lists them.
    pub fn check_bytes(&self, dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
        self.check_hash(dir, name, blake3::hash(bytes).to_hex().as_str())
    }

    /// Refuses a manifest that does not list `name`.
    pub fn lists(&self, dir: &Path, name: &str) -> Result<()> {
        if self.files.contains_key(name) {
            Ok(())
        } else {
            Err(Error::Manifest { path: dir.join(FILE), message: format!("does not list `{name}`") })
        }
    }

    /// Refuses the file `dir/name` unless its blake3 is the one listed.
    pub fn check_file(&self, dir: &Path, name: &str) -> Result<()> {
        self.check_hash(dir, name, &crate::hash::file(&dir.join(name))?)
    }

    /// Checks every file the manifest lists against its blake3.
    pub fn check_all(&self, dir: &Path) -> Result<()> {
        self.check_others(dir, None)
    }

    /// [`check_all`](Self::check_all) but for `checked`, a file the caller has checked
    /// already (from the bytes it read), so that no file is hashed twice.
    pub fn check_others(&self, dir: &Path, checked: Option<&str>) -> Result<()> {
        for name in self.files.keys().filter(|n| Some(n.as_str()) != checked) {
            if !dir.join(name).is_file() {
                return Err(Error::Manifest {
                    path: dir.join(FILE),
                    message: format!("lists `{name}`, which is missing"),
                });
            }
            self.check_file(dir, name)?;
        }
        Ok(())
    }

    fn check_hash(&self, dir: &Path, name: &str, found: &str) -> Result<()> {
        let path: PathBuf = dir.join(name);
        match self.files.get(name) {
            None => self.lists(dir, name),
            Some(expected) if expected != found => {
                Err(Error::Mixed { path, manifest: dir.join(FILE), found: found.into(), expected: expected.clone() })
            }
            Some(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_from_another_run_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = Manifest::new("head");
        m.add_bytes("a.json", b"run 1");
        m.pending(dir.path()).unwrap().commit().unwrap();
        let read = Manifest::read(dir.path(), "head").unwrap();
        assert_eq!(read, m);
        read.check_bytes(dir.path(), "a.json", b"run 1").unwrap();
        let err = read.check_bytes(dir.path(), "a.json", b"run 2").unwrap_err();
        assert!(matches!(err, Error::Mixed { .. }), "{err}");
        assert!(err.to_string().contains("a.json"), "{err}");
        assert!(read.check_bytes(dir.path(), "b.json", b"").unwrap_err().to_string().contains("`b.json`"));
        let err = Manifest::read(dir.path(), "evaluation").unwrap_err();
        assert!(err.to_string().contains("a `head` folder, expected `evaluation`"), "{err}");
    }

    #[test]
    fn a_missing_manifest_names_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let err = Manifest::read(dir.path(), "head").unwrap_err();
        assert!(err.to_string().contains("manifest.json"), "{err}");
    }
}
