//! `<pipeline>.lock`: what each stage of a pipeline last ran with and wrote (like
//! `dvc.lock`), rewritten atomically after every stage.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

pub const FORMAT: &str = "graft-lock/1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    pub format: String,
    pub stages: BTreeMap<String, LockedStage>,
}

impl Default for Lock {
    fn default() -> Self {
        Self { format: FORMAT.into(), stages: BTreeMap::new() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedStage {
    pub fingerprint: String,
    /// `--version` and blake3 of the stage binary.
    pub binary: String,
    pub argv: Vec<String>,
    /// blake3 of each input.
    pub deps: BTreeMap<PathBuf, String>,
    /// blake3 of each output as written.
    pub outs: BTreeMap<PathBuf, String>,
    /// How long the stage took when it last ran (what it costs; no input to any decision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
}

impl Lock {
    /// Reads a lock file; a missing one is an empty lock.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = match fs_err::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => return Err(Error::Read { path: path.to_owned(), source }),
        };
        let bad = |message: String| Error::LockFile { path: path.to_owned(), message };
        let lock: Lock = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        if lock.format != FORMAT {
            return Err(bad(format!("format `{}`, expected `{FORMAT}`", lock.format)));
        }
        Ok(lock)
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let mut json = serde_json::to_vec_pretty(self).map_err(|source| Error::Json { what: "lock", source })?;
        json.push(b'\n');
        crate::atomic::write_bytes(path, &json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_another_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.lock");
        assert_eq!(Lock::read(&path).unwrap(), Lock::default());
        let mut lock = Lock::default();
        lock.stages.insert(
            "a".into(),
            LockedStage {
                fingerprint: "f".into(),
                binary: "b".into(),
                argv: vec!["--x".into()],
                deps: BTreeMap::new(),
                outs: BTreeMap::from([(PathBuf::from("o"), "h".into())]),
                seconds: Some(1.5),
            },
        );
        lock.write(&path).unwrap();
        assert_eq!(Lock::read(&path).unwrap(), lock);
        std::fs::write(&path, r#"{"format": "graft-lock/0", "stages": {}}"#).unwrap();
        let err = Lock::read(&path).unwrap_err().to_string();
        assert!(err.contains("p.lock") && err.contains("graft-lock/1"), "{err}");
    }
}
