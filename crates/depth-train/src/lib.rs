//! depth-train: the trainer of the Depth Anything V2 recipe.
//!
//! It owns the optimiser (AdamW with parameter groups and saved state, `optim`), the schedule
//! (the official poly decay, optional warmup), gradient handling (accumulation, global-norm
//! clipping, the non-finite check), the EMA, checkpoints that resume bit-exactly
//! (`checkpoint`), logging (JSONL, TensorBoard event files, the loss curve), periodic
//! validation through depth-eval, pseudo-labelling with a frozen teacher (`pseudo_label`), the
//! training configuration (`configs/train.toml`), the run folder's layout, and the learner: the
//! loop, over a task trait that relative distillation and metric fine-tuning implement. Models,
//! parameter groups and initialisation come from depth-models, the objective from
//! depth-losses, batches from depth-data, scoring from depth-eval. It must not reach into
//! xtask, and it writes nothing outside the run folder (and the label store it is given).
//!
//! Its surface: the learner and its task trait, the config, the run folder, the optimiser and
//! the pseudo-labelling job are re-exported here; checkpoints, data parallelism, logs,
//! TensorBoard files and `--dry-run` plans are modules used by their path.

mod batch;
pub mod checkpoint;
mod config;
pub mod dist;
mod ema;
mod error;
mod grads;
mod learner;
pub mod log;
#[cfg(feature = "nccl")]
pub mod nccl;
mod optim;
pub mod plan;
pub mod pseudo_label;
mod run_dir;
mod schedule;
mod task;
pub mod tensorboard;
mod torchrun;
mod validate;

pub use batch::BatchPlan;
pub use config::{
    CheckpointConfig, DataSpec, FeatureAlign, Labels, LogConfig, LossConfig, ModelSpec, SourceSpec, Task,
    TeacherSpec, TrainConfig, ValidateConfig,
};
pub use dist::{Collective, Launch, Solo};
pub use ema::Ema;
pub use error::{Result, TrainError};
pub use grads::Grads;
pub use learner::{Learner, LearnerState};
pub use optim::{AdamW, GroupSettings, OptimConfig, OptimState, ParamGroup, groups_for};
pub use run_dir::{Best, Outcome, RunDir, RunState};
pub use schedule::Schedule;
pub use task::{Forward, Metric, Pass, Relative, StepLoss, TaskStep, task_for};
pub use validate::Validator;
