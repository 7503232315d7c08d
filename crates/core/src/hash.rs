//! Content hashes (blake3, hex) of files and byte strings.

use std::io::Read;
use std::path::Path;

use crate::{Error, Result};

/// blake3 of a file's contents, streamed.
pub fn file(path: &Path) -> Result<String> {
    let read = |source| Error::Read { path: path.to_owned(), source };
    let mut f = fs_err::File::open(path).map_err(read)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(read)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().to_hex().to_string())
}

/// blake3 of a byte string.
pub fn bytes(data: &[u8]) -> String {
    blake3::hash(data).to_hex().to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn file_hash_equals_bytes_hash() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        std::fs::write(&p, b"graft").unwrap();
        assert_eq!(super::file(&p).unwrap(), super::bytes(b"graft"));
        assert_ne!(super::bytes(b"graft"), super::bytes(b"graft2"));
    }
}
