//! Where the shared ground-truth fixtures live: `DEPTH_FIXTURES`, else `../shared/fixtures` beside
//! the workspace root. Tests use it; a missing folder is an error, never a silent skip. Beside it,
//! the one measure tests compare tensors by (any device, any dtype).

use crate::error::{CoreError, Result};
use candle_core::{DType, Device, Tensor};
use std::path::PathBuf;

/// max |a − b| / max |b| in float64 on the host: how far `a` is from the reference `b`.
pub fn max_rel_diff(a: &Tensor, b: &Tensor) -> Result<f64> {
    let host = |t: &Tensor| t.to_device(&Device::Cpu)?.to_dtype(DType::F64);
    let (a, b) = (host(a)?, host(b)?);
    let d = (&a - &b)?.abs()?.max_all()?.to_scalar::<f64>()?;
    Ok(d / b.abs()?.max_all()?.to_scalar::<f64>()?.max(1e-30))
}

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
