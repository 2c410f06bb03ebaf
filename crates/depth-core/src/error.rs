//! The error type of depth-core: every message names the file or key involved and how to fix it.
//! Its general variants — a file that cannot be read or written, a malformed file, a config
//! that does not load, bad input — are the only ones of their kind: the crates above carry a
//! `CoreError` for them instead of repeating them, and add only what is theirs.

use std::borrow::Cow;
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
    #[error("{path}: {kind}, not a file; only regular files are read")]
    NotAFile { path: PathBuf, kind: &'static str },
    #[error("{path}: {bytes} bytes, more than the {limit} this tool reads of such a file")]
    TooLarge { path: PathBuf, bytes: u64, limit: u64 },
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
    #[error("unknown device '{0}': use 'cpu', 'cuda' or 'cuda:N'")]
    UnknownDevice(String),
    #[error(
        "device {device}: this build has no CUDA: enable the `cuda` feature (xtask: `cargo xtask-cuda`, docs/gpu.md), or use cpu"
    )]
    NoCuda { device: String },
    #[error("device {device}: {reason}")]
    Device { device: String, reason: String },
    #[error("{path}: not a decodable image ({reason})")]
    ImageDecode { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("{what}: {reason}")]
    BadInput { what: Cow<'static, str>, reason: String },
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl CoreError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }

    pub fn write(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Write { path: path.into(), source }
    }

    pub fn format(path: impl Into<PathBuf>, format: &'static str, reason: impl ToString) -> Self {
        Self::Format { path: path.into(), format, reason: reason.to_string() }
    }

    pub fn config(path: impl Into<PathBuf>, reason: impl ToString) -> Self {
        Self::Config { path: path.into(), reason: reason.to_string() }
    }

    pub fn bad_input(what: impl Into<Cow<'static, str>>, reason: impl ToString) -> Self {
        Self::BadInput { what: what.into(), reason: reason.to_string() }
    }
}

pub type Result<T> = std::result::Result<T, CoreError>;

/// Model code calls depth-core's ops inside candle's `Module::forward`, whose error is candle's:
/// an op's failure goes back as the candle error it carries (depth-core's own, wrapped), so
/// `?` needs no conversion at the call.
impl From<CoreError> for candle_core::Error {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::Candle(c) => c,
            other => candle_core::Error::wrap(other),
        }
    }
}
