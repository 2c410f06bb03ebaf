//! The error type of depth-data: every message names the file and, where it helps, the fix.
//! A file that cannot be read, a malformed file, a bad config or bad input is depth-core's
//! error (one wording for every crate); what is here is depth-data's own.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: depth is {depth_w}×{depth_h} but the image is {image_w}×{image_h}")]
    SizeMismatch { path: PathBuf, image_w: u32, image_h: u32, depth_w: u32, depth_h: u32 },
    #[error("{path}: no valid depth pixel")]
    NoValidDepth { path: PathBuf },
    #[error("{path}: listed in split file {split} but missing on disk")]
    MissingEntry { path: PathBuf, split: PathBuf },
    /// The dataset's folder does not exist: the one error that means "not downloaded".
    #[error("{path}: {reason}")]
    Absent { path: PathBuf, reason: String },
    #[error(
        "{path}: HDF5 support is not compiled in; build depth-data with the `hdf5` feature (needs libhdf5-dev)"
    )]
    NoHdf5 { path: PathBuf },
    #[error(transparent)]
    Core(#[from] depth_core::CoreError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, DataError>;
