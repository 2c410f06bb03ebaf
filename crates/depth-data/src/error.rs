//! The error type of depth-data: every message names the file and, where it helps, the fix.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a valid {format} file: {reason}")]
    Format { path: PathBuf, format: &'static str, reason: String },
    #[error("{path}: depth is {depth_w}×{depth_h} but the image is {image_w}×{image_h}")]
    SizeMismatch { path: PathBuf, image_w: u32, image_h: u32, depth_w: u32, depth_h: u32 },
    #[error("{path}: no valid depth pixel")]
    NoValidDepth { path: PathBuf },
    #[error("{path}: listed in split file {split} but missing on disk")]
    MissingEntry { path: PathBuf, split: PathBuf },
    #[error("{path}: {reason}")]
    Config { path: PathBuf, reason: String },
    /// The dataset's folder does not exist: the one error that means "not downloaded".
    #[error("{path}: {reason}")]
    Absent { path: PathBuf, reason: String },
    #[error("{what}: {reason}")]
    BadInput { what: &'static str, reason: String },
    #[error(
        "{path}: HDF5 support is not compiled in; build depth-data with the `hdf5` feature (needs libhdf5-dev)"
    )]
    NoHdf5 { path: PathBuf },
    #[error(transparent)]
    Core(#[from] depth_core::CoreError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl DataError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }

    /// A failed write, reported as depth-core's (one wording for every crate).
    pub fn write(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Core(depth_core::CoreError::Write { path: path.into(), source })
    }

    pub fn format(path: impl Into<PathBuf>, format: &'static str, reason: impl ToString) -> Self {
        Self::Format { path: path.into(), format, reason: reason.to_string() }
    }
}

pub type Result<T> = std::result::Result<T, DataError>;
