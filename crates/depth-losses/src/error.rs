//! The error type of depth-losses.

#[derive(Debug, thiserror::Error)]
pub enum LossError {
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error("{loss}: {reason}")]
    BadInput { loss: &'static str, reason: String },
}

pub type Result<T> = std::result::Result<T, LossError>;
