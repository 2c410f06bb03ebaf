//! The error type of depth-core: every message names the file or key involved and how to fix it.

use std::path::PathBuf;

/// Errors raised by depth-core.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot write {path}: {source} (check that its folder exists and is writable, and that the disk has space)"
    )]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a valid {format} file: {reason}")]
    Format { path: PathBuf, format: &'static str, reason: String },
    #[error(
        "weights in {source_name} do not fit the model:\n{report}\nCheck that the model configuration (encoder size, head, layers) is the checkpoint's."
    )]
    WeightMismatch { source_name: String, report: String },
    #[error(
        "model '{repo}' file '{file}' is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; \
         unset HF_HUB_OFFLINE to download it, or pass a local path"
    )]
    HubOffline { repo: String, file: String },
    #[error("cannot fetch '{file}' of model '{repo}' from the Hugging Face Hub: {reason}")]
    Hub { repo: String, file: String, reason: String },
    #[error("unknown device '{0}': use 'cpu', 'cuda' or 'cuda:N' (cuda needs a build with --features cuda)")]
    UnknownDevice(String),
    #[error("{path}: not a decodable image ({reason})")]
    ImageDecode { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("{what}: {reason}")]
    BadInput { what: &'static str, reason: String },
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, CoreError>;
