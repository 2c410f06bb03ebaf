//! The error type of the xtask phases: the libraries' errors, and what only the command line
//! meets (flags that do not go together, external programs, videos, servers, whole runs whose
//! parts failed). Every variant says what to do.

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
    /// A flag's value, or flags that do not go together.
    #[error("{flag}: {reason}")]
    Usage { flag: &'static str, reason: String },
    /// An external program could not be started.
    #[error("cannot run {tool}: {source}; {hint}")]
    Tool {
        tool: String,
        hint: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A video that cannot be read or written, or was only partly.
    #[error("{}: {reason}", .path.display())]
    Video { path: PathBuf, reason: String },
    /// Two inputs whose outputs would have the same name.
    #[error(
        "{} and {} would write the same outputs ({}.*); rename one or run them separately",
        .first.display(),
        .second.display(),
        .name.display()
    )]
    OutputClash { first: PathBuf, second: PathBuf, name: PathBuf },
    /// A dataset whose files disagree with its manifest, that validation found problems in, or
    /// that cannot be fetched.
    #[error("dataset '{dataset}': {reason}")]
    Dataset { dataset: String, reason: String },
    /// A stage folder of the mini reproduction made with another configuration.
    #[error(
        "{} holds a {stage} run made with another configuration than {}; delete the folder to start it again",
        .run.display(),
        .config.display()
    )]
    StageChanged { stage: String, run: PathBuf, config: PathBuf },
    #[error("the server: {reason}")]
    Server { reason: String },
    /// A bench case that could not be measured.
    #[error("bench: {reason}")]
    Bench { reason: String },
    /// SIGINT or SIGTERM stopped the work; what it had written part-way was removed.
    #[error("interrupted by a signal; the partial outputs were removed")]
    Interrupted,
    #[error("{failed} of {total} images failed (listed above)")]
    SomeFailed { failed: usize, total: usize },
}

impl XtaskError {
    pub fn usage(flag: &'static str, reason: impl Into<String>) -> Self {
        Self::Usage { flag, reason: reason.into() }
    }
}

pub type Result<T> = std::result::Result<T, XtaskError>;
