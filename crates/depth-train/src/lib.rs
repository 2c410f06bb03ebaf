//! depth-train: the trainer of the Depth Anything V2 recipe.
//!
//! It owns the optimiser (AdamW with parameter groups and saved state, `optim`), the schedule
//! (the official poly decay, optional warmup), gradient handling (accumulation, global-norm
//! clipping, the non-finite check), the EMA, checkpoints that resume bit-exactly
//! (`checkpoint`), logging (JSONL, TensorBoard event files, the loss curve), periodic
//! validation through depth-eval, pseudo-labelling with a frozen teacher (`pseudo_label`), the
//! training configuration (`configs/train.toml`), and the loop itself for relative distillation and metric fine-tuning (`trainer`). Models,
//! parameter groups and initialisation come from depth-models, the objective from
//! depth-losses, batches from depth-data, scoring from depth-eval. It must not reach into
//! xtask, and it writes nothing outside the run folder.

pub mod checkpoint;
pub mod config;
pub mod dist;
pub mod ema;
pub mod error;
pub mod grads;
pub mod log;
pub mod optim;
pub mod plan;
pub mod pseudo_label;
pub mod schedule;
pub mod tensorboard;
pub mod trainer;
pub mod validate;

pub use config::{InitSpec, Labels, ModelSpec, Task, TrainConfig};
pub use dist::{Collective, Launch, Solo};
pub use error::{Result, TrainError};
pub use grads::Grads;
pub use optim::{AdamW, GroupSettings, OptimConfig, ParamGroup, groups_for};
pub use schedule::Schedule;
pub use trainer::{Outcome, Trainer, TrainerState};
