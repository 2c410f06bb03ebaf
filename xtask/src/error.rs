//! The error type of the xtask phases.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum XtaskError {
    #[error(transparent)]
    Model(#[from] depth_models::ModelError),
    #[error(transparent)]
    Core(#[from] depth_core::CoreError),
    #[error(transparent)]
    Data(#[from] depth_data::DataError),
    #[error(transparent)]
    Eval(#[from] depth_eval::EvalError),
    #[error(transparent)]
    Train(#[from] depth_train::TrainError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Loss(#[from] depth_losses::LossError),
    #[error("{0}")]
    Failed(String),
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no images found at {0}: pass a file, a folder, or a .txt list of paths")]
    NoImages(PathBuf),
    #[error("{failed} of {total} images failed (listed above)")]
    SomeFailed { failed: usize, total: usize },
}

pub type Result<T> = std::result::Result<T, XtaskError>;
