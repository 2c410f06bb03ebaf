//! The error type of depth-losses.

#[derive(Debug, thiserror::Error)]
pub enum LossError {
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error("{what}: {reason}")]
    BadInput { what: &'static str, reason: String },
}

pub type Result<T> = std::result::Result<T, LossError>;
