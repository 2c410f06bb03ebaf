//! The error type of depth-train: every message names the file, key or setting involved and how
//! to fix it. A file that cannot be read or written, a bad config or bad input is depth-core's
//! error; what is here is depth-train's own.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("checkpoint {path}: {reason}")]
    Checkpoint { path: PathBuf, reason: String },
    #[error(
        "{}: already holds a run ({at}); continue it with --resume {}, or set another `out`",
        .run.display(),
        .run.display()
    )]
    RunExists { run: PathBuf, at: String },
    #[error("{}: no config.toml: not a run folder (start one with --config)", .path.display())]
    NotARun { path: PathBuf },
    #[error(
        "{}: the run was trained on {trained} rank(s) and this job has {now}: resume it with the same number \
         (`mpirun -np {trained}`; 1 = without mpirun)",
        .config.display()
    )]
    WorldChanged { config: PathBuf, trained: usize, now: usize },
    #[error(
        "data: epoch {epoch} yields no full batch of {batch_size}: add data, raise epoch_size or lower batch_size"
    )]
    NoFullBatch { epoch: u64, batch_size: usize },
    #[error(
        "stopped after {count} steps in a row with a non-finite loss or gradient (last at step {step}: {detail}); \
         the last good checkpoint is untouched — lower the learning rate, enable grad_clip, or check the data"
    )]
    Diverged { count: usize, step: u64, detail: String },
    #[error("{plan} needs {memory}: {hint} (the estimate is printed by `--dry-run`)")]
    WontFit { plan: String, memory: String, hint: String },
    #[error(
        "{}: these pseudo-labels were made by {labels}, but the config's [teacher] is {config}: label \
         with that teacher (a new store), or set [teacher] to the one that made them",
        .store.display()
    )]
    TeacherMismatch { store: PathBuf, labels: String, config: String },
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
    pub fn checkpoint(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Checkpoint { path: path.into(), reason: reason.into() }
    }
}

pub type Result<T> = std::result::Result<T, TrainError>;
