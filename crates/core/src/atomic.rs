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

/// Where an output `dest` is renamed to: `dest` itself, or the file a link there names, so
/// that the link stays. An existing `dest` that is not a regular file (a device such as
/// `/dev/stdout`, a pipe, a folder) is refused: renaming would replace it, or fail. So is `-`,
/// which commands read as standard output.
pub fn output_target(dest: &Path) -> Result<PathBuf> {
    if dest == Path::new("-") {
        return Err(Error::NotAFileOutput { path: dest.to_owned() });
    }
    match std::fs::metadata(dest) {
        Ok(meta) if !meta.is_file() => Err(Error::NotAFileOutput { path: dest.to_owned() }),
        Ok(_) if dest.is_symlink() => {
            std::fs::canonicalize(dest).map_err(|source| Error::Write { path: dest.to_owned(), source })
        }
        _ => Ok(dest.to_owned()),
    }
}

impl Pending {
    /// Starts writing `dest` (see [`output_target`]), creating its folder if needed.
    pub fn create(dest: &Path) -> Result<Self> {
        let dest = &output_target(dest)?;
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let write = |source| Error::Write { path: dest.to_owned(), source };
        fs_err::create_dir_all(&dir).map_err(write)?;
        let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        remove_stale(&dir, &name);
        // The writer's pid in the name tells a later run whether the file is abandoned.
        let prefix = format!(".{name}.{}.", std::process::id());
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

    /// Where the file goes on commit.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// blake3 of what was written so far.
    pub fn blake3(&self) -> Result<String> {
        let read = |source| Error::Read { path: self.temp.path().to_owned(), source };
        let mut file = self.temp.reopen().map_err(read)?;
        let mut hasher = blake3::Hasher::new();
        std::io::copy(&mut file, &mut hasher).map_err(read)?;
        Ok(hasher.finalize().to_hex().to_string())
    }

    /// Flushes to disk and renames into place.
    pub fn commit(self) -> Result<()> {
        let write = |source| Error::Write { path: self.dest.clone(), source };
        self.temp.as_file().sync_all().map_err(write)?;
        self.temp.persist(&self.dest).map_err(|e| write(e.error))?;
        Ok(())
    }
}

/// Removes `.NAME.PID.XXXX.partial` files in `dir` left by writers of `name` that are no
/// longer running (killed stages). Linux only: elsewhere they stay.
fn remove_stale(dir: &Path, name: &str) {
    if !cfg!(target_os = "linux") {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let prefix = format!(".{name}.");
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(rest) = file.to_str().and_then(|f| f.strip_prefix(&prefix)).and_then(|r| r.strip_suffix(".partial"))
        else {
            continue;
        };
        let Some(pid) = rest.split('.').next().filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => tracing::info!("removed `{}`, left by a stopped run", entry.path().display()),
                Err(e) => tracing::warn!("cannot remove stale `{}`: {e}", entry.path().display()),
            }
        }
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

/// Whether `a` and `b` are the same existing file or folder, however spelled (`./a`, `x/../a`,
/// a link): an output that is one of the stage's inputs would replace what it reads.
pub fn same_path(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// Refuses an output folder that is one of the stage's inputs, given as (flag, path).
pub fn check_out_is_no_input(out: &Path, inputs: &[(&'static str, &Path)]) -> Result<()> {
    match inputs.iter().find(|(_, input)| same_path(input, out)) {
        Some((flag, input)) => Err(Error::OutIsInput { out: out.to_owned(), flag, input: input.to_path_buf() }),
        None => Ok(()),
    }
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
    #[cfg(target_os = "linux")]
    fn files_of_stopped_writers_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        // pid 0 is never a user process; the running test's own pid is alive.
        let stale = dir.path().join(".out.bin.0.abc123.partial");
        let live = dir.path().join(format!(".out.bin.{}.def456.partial", std::process::id()));
        let other = dir.path().join(".other.bin.0.abc123.partial");
        for p in [&stale, &live, &other] {
            std::fs::write(p, b"x").unwrap();
        }
        write_bytes(&dir.path().join("out.bin"), b"whole").unwrap();
        assert!(!stale.exists(), "a dead writer's file is removed");
        assert!(live.exists() && other.exists(), "a live writer's file and another output's stay");
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
