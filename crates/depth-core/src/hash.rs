//! Why this file: checkpoints, dataset manifests and pseudo-labels all record what a file (or a
//! label's data) held as its SHA-256; one hash serves them all.

use crate::error::{CoreError, Result};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

/// The hex SHA-256 of a file, streamed in 1 MiB pieces.
pub fn sha256_file(path: &Path) -> Result<String> {
    let io = |source| CoreError::Io { path: path.into(), source };
    let mut f = crate::read::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The hex SHA-256 of bytes in memory.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_digest() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("abc");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(
            super::sha256_file(&p).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(super::sha256_file(&dir.path().join("none")).unwrap_err().to_string().contains("none"));
        assert_eq!(super::sha256_bytes(b"abc"), super::sha256_file(&p).unwrap());
    }
}
