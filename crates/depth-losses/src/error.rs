//! The error type of depth-losses: candle's, or depth-core's for inputs that do not fit.

#[derive(Debug, thiserror::Error)]
pub enum LossError {
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Core(#[from] depth_core::CoreError),
}

pub type Result<T> = std::result::Result<T, LossError>;
