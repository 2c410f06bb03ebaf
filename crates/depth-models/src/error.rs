//! The error type of depth-models. A file that cannot be read, a malformed file or bad input is
//! depth-core's error; what is here is depth-models' own.

use crate::config::Encoder;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Core(#[from] depth_core::CoreError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error("{path}: not a Hugging Face Depth Anything config: {reason}")]
    HfConfig { path: PathBuf, reason: String },
    #[error(
        "{weights} holds a {found} model, not the {} asked for; its size is read from the checkpoint: \
         ask for none or for the matching one",
        expected.name()
    )]
    WrongSize { weights: String, found: &'static str, expected: Encoder },
    #[error(
        "{repo}: {source}. The official ViT-G weights were not released when this was written (the \
         official README: \"coming soon\"); name a local checkpoint (a file or folder) or use vitl"
    )]
    Unreleased { repo: &'static str, source: depth_core::CoreError },
}

pub type Result<T> = std::result::Result<T, ModelError>;
