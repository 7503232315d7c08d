//! Outputs appear whole or not at all: each file is written to a temporary name in its
//! destination folder and renamed into place only when the stage has succeeded.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::{Error, Result};

/// A file being written under a temporary name; dropped without `commit`, it vanishes.
#[derive(Debug)]
pub struct Pending {
    temp: NamedTempFile,
    dest: PathBuf,
}

impl Pending {
    /// Starts writing `dest`, creating its folder if needed.
    pub fn create(dest: &Path) -> Result<Self> {
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let write = |source| Error::Write { path: dest.to_owned(), source };
        fs_err::create_dir_all(&dir).map_err(write)?;
        let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let prefix = format!(".{name}.");
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(".partial");
        // Like any new file (0666 less the umask), not tempfile's private 0600.
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
        let temp = builder.tempfile_in(&dir).map_err(write)?;
        Ok(Self { temp, dest: dest.to_owned() })
    }

    pub fn file(&mut self) -> &mut File {
        self.temp.as_file_mut()
    }

    /// Flushes to disk and renames into place.
    pub fn commit(self) -> Result<()> {
        let write = |source| Error::Write { path: self.dest.clone(), source };
        self.temp.as_file().sync_all().map_err(write)?;
        self.temp.persist(&self.dest).map_err(|e| write(e.error))?;
        Ok(())
    }
}

/// Commits every pending file; call once the whole stage has succeeded.
pub fn commit_all(pending: Vec<Pending>) -> Result<()> {
    pending.into_iter().try_for_each(Pending::commit)
}

/// `bytes` written to a pending `dest`, to be committed with the rest of a stage's outputs.
pub fn pending_bytes(dest: &Path, bytes: &[u8]) -> Result<Pending> {
    let mut p = Pending::create(dest)?;
    p.file().write_all(bytes).map_err(|source| Error::Write { path: dest.to_owned(), source })?;
    Ok(p)
}

/// Writes `bytes` to `dest` atomically.
pub fn write_bytes(dest: &Path, bytes: &[u8]) -> Result<()> {
    pending_bytes(dest, bytes)?.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncommitted_file_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("sub/out.bin");
        let mut p = Pending::create(&dest).unwrap();
        p.file().write_all(b"half").unwrap();
        drop(p);
        assert!(!dest.exists());
        assert_eq!(std::fs::read_dir(dir.path().join("sub")).unwrap().count(), 0);
    }

    #[test]
    fn committed_file_has_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.bin");
        write_bytes(&dest, b"whole").unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"whole");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
