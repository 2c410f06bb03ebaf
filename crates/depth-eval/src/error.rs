//! The error type of depth-eval: every message names the file, benchmark or model and the fix.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("cannot access {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("{what}: {reason}")]
    BadInput { what: String, reason: String },
    #[error(transparent)]
    Data(#[from] depth_data::DataError),
    #[error(transparent)]
    Model(#[from] depth_models::ModelError),
    #[error(transparent)]
    Core(#[from] depth_core::CoreError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl EvalError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }

    pub fn bad(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::BadInput { what: what.into(), reason: reason.into() }
    }
}

pub type Result<T> = std::result::Result<T, EvalError>;
