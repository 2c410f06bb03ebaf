//! Why this file: a run folder holds the resolved config, the checkpoints, the log and its
//! curve, the validation pictures, the best and final models and the summary. Their names are
//! spelled here and nowhere else, and the folder answers whether its run has finished: the
//! final model is written (atomically) only once the last step is done and checkpointed.

use crate::checkpoint::{self, Checkpoint};
use crate::error::Result;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The best validation so far (`best.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Best {
    pub step: u64,
    pub metric: String,
    pub value: f64,
}

/// What a finished run produced (`summary.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub run: PathBuf,
    pub steps: u64,
    pub skipped_steps: u64,
    pub last_loss: Option<f64>,
    pub images_per_s: f64,
    pub final_model: PathBuf,
    pub best: Option<Best>,
}

/// Where a run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// No run has been started here.
    Empty,
    /// Started (its config is written), not finished: resume it.
    Started,
    /// Finished: its final model is there.
    Finished,
}

/// A run folder and the paths of what it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The resolved configuration the run trains with (`config.toml`).
    pub fn config(&self) -> PathBuf {
        self.root.join("config.toml")
    }

    /// The step checkpoints and their `latest.json` pointer.
    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }

    /// One JSON record per optimiser step and per validation.
    pub fn log(&self) -> PathBuf {
        self.root.join("log.jsonl")
    }

    /// The loss curve.
    pub fn loss_plot(&self) -> PathBuf {
        self.root.join("loss.png")
    }

    /// The model at the end (the EMA weights when enabled).
    pub fn final_model(&self) -> PathBuf {
        self.root.join("final.safetensors")
    }

    /// The model of the best validation, and its score.
    pub fn best_model(&self) -> PathBuf {
        self.root.join("best.safetensors")
    }

    pub fn best(&self) -> PathBuf {
        self.root.join("best.json")
    }

    /// What the finished run produced (written after the final model).
    pub fn summary(&self) -> PathBuf {
        self.root.join("summary.json")
    }

    /// The pictures of the validation at `step`.
    pub fn validation(&self, step: u64) -> PathBuf {
        self.root.join("val").join(format!("step-{step:08}"))
    }

    /// The newest complete checkpoint (None before the first).
    pub fn latest_checkpoint(&self) -> Result<Option<Checkpoint>> {
        checkpoint::latest(&self.checkpoints())
    }

    /// Whether a run was started here, and whether it finished.
    pub fn state(&self) -> RunState {
        if self.final_model().is_file() {
            RunState::Finished
        } else if self.config().is_file() {
            RunState::Started
        } else {
            RunState::Empty
        }
    }

    /// Writes `summary.json` (atomically), after the final model.
    pub fn write_summary(&self, outcome: &Outcome) -> Result<()> {
        let json = serde_json::to_vec_pretty(outcome).expect("an outcome serialises");
        depth_core::atomic::write_atomic(&self.summary(), |w| w.write_all(&json))?;
        Ok(())
    }

    /// Writes `best.json` (atomically).
    pub fn write_best(&self, best: &Best) -> Result<()> {
        let json = serde_json::to_vec_pretty(best).expect("a best record serialises");
        depth_core::atomic::write_atomic(&self.best(), |w| w.write_all(&json))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_empty_then_started_then_finished() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path().join("run"));
        assert_eq!(run.state(), RunState::Empty);
        std::fs::create_dir_all(run.root()).unwrap();
        std::fs::write(run.config(), "out = \"x\"").unwrap();
        assert_eq!(run.state(), RunState::Started);
        std::fs::write(run.final_model(), b"model").unwrap();
        assert_eq!(run.state(), RunState::Finished);
        let outcome = Outcome {
            run: run.root().into(),
            steps: 3,
            skipped_steps: 0,
            last_loss: Some(0.5),
            images_per_s: 2.0,
            final_model: run.final_model(),
            best: Some(Best { step: 2, metric: "abs_rel".into(), value: 0.1 }),
        };
        run.write_summary(&outcome).unwrap();
        let back: Outcome = serde_json::from_slice(&std::fs::read(run.summary()).unwrap()).unwrap();
        assert_eq!(back, outcome);
    }
}
