//! The error type of depth-train: every message names the file, key or setting involved and how
//! to fix it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("cannot use {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("checkpoint {path}: {reason}")]
    Checkpoint { path: PathBuf, reason: String },
    #[error("{what}: {reason}")]
    BadInput { what: &'static str, reason: String },
    #[error(
        "stopped after {count} steps in a row with a non-finite loss or gradient (last at step {step}: {detail}); \
         the last good checkpoint is untouched — lower the learning rate, enable grad_clip, or check the data"
    )]
    Diverged { count: usize, step: u64, detail: String },
    #[error("distributed training: {reason}")]
    Dist { reason: String },
    #[error(transparent)]
    Core(#[from] depth_core::CoreError),
    #[error(transparent)]
    Model(#[from] depth_models::ModelError),
    #[error(transparent)]
    Loss(#[from] depth_losses::LossError),
    #[error(transparent)]
    Data(#[from] depth_data::DataError),
    #[error(transparent)]
    Eval(#[from] depth_eval::EvalError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl TrainError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }

    pub fn checkpoint(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Checkpoint { path: path.into(), reason: reason.into() }
    }
}

pub type Result<T> = std::result::Result<T, TrainError>;
