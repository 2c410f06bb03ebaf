//! Where the shared ground-truth fixtures live: `DEPTH_FIXTURES`, else `../shared/fixtures` beside
//! the workspace root. Tests use it; a missing folder is an error, never a silent skip.

use crate::error::{CoreError, Result};
use std::path::PathBuf;

/// Where the fixtures folder is expected (not checked): `DEPTH_FIXTURES`, else the default.
pub fn fixtures_path() -> (PathBuf, &'static str) {
    match std::env::var_os("DEPTH_FIXTURES") {
        Some(d) => (PathBuf::from(d), "DEPTH_FIXTURES"),
        None => (
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures"),
            "the default ../shared/fixtures",
        ),
    }
}

/// The fixtures folder, checked to exist.
pub fn fixtures_dir() -> Result<PathBuf> {
    let (dir, origin) = fixtures_path();
    if dir.is_dir() {
        Ok(dir)
    } else {
        Err(CoreError::Io {
            path: dir,
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "fixtures folder from {origin} is missing: set DEPTH_FIXTURES to the shared fixtures"
                ),
            ),
        })
    }
}
