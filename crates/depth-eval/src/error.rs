//! The error type of depth-eval: every message names the file, benchmark or model and the fix.
//! A file that cannot be read, a bad config or bad input is depth-core's error; what is here
//! is depth-eval's own.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("no benchmark '{name}'; known: {known}")]
    UnknownBenchmark { name: String, known: String },
    #[error("benchmark '{name}': {source}")]
    Benchmark {
        name: String,
        #[source]
        source: Box<EvalError>,
    },
    #[error("two models are named '{name}'; name them with NAME=")]
    DuplicateModel { name: String },
    #[error("benchmarks not available: {}\n{}", names.join(", "), reasons.join("\n"))]
    Unavailable { names: Vec<String>, reasons: Vec<String> },
    #[error("{count} items failed; they are listed in {}", report.display())]
    ItemsFailed { count: usize, report: PathBuf },
    #[error(transparent)]
    Data(#[from] depth_data::DataError),
    #[error(transparent)]
    Model(#[from] depth_models::ModelError),
    #[error(transparent)]
    Core(#[from] depth_core::CoreError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, EvalError>;
