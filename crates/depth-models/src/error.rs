//! The error type of depth-models.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Core(#[from] depth_core::CoreError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error("{path}: not a Hugging Face Depth Anything config: {reason}")]
    HfConfig { path: PathBuf, reason: String },
    #[error("{what}: {reason}")]
    BadInput { what: &'static str, reason: String },
}

pub type Result<T> = std::result::Result<T, ModelError>;
