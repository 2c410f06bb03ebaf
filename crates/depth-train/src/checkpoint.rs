//! Checkpoints: `checkpoints/step-NNNNNNNN/model.safetensors` (the model in the official key
//! layout with its config in the metadata — loadable by `load_model` and, for official sizes, by
//! the official PyTorch code) and `state.safetensors` beside it (optimiser moments, EMA, and the
//! trainer's JSON state: step, loader cursor, schedule, counters). Each file is written
//! atomically (temp file, fsync, rename). A checkpoint exists only once `checkpoints/latest.json`
//! names it with both files' sizes and SHA-256 — written last, atomically — so a run killed
//! between the two files resumes from the previous checkpoint, never from a mixed one. Older
//! step folders are pruned to `keep_last` after the pointer moves.

use crate::error::{Result, TrainError};
use depth_core::CoreError;
use depth_core::weights::{Metadata, TensorMap, load_safetensors, safetensors_metadata, save_safetensors};
use depth_models::{ModelConfig, save_model};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const MODEL_FILE: &str = "model.safetensors";
pub const STATE_FILE: &str = "state.safetensors";
pub const POINTER: &str = "latest.json";
/// The trainer state's key in the state file's metadata.
pub const STATE_KEY: &str = "trainer_state";

/// A file's size and SHA-256, as the pointer records them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSum {
    pub bytes: u64,
    pub sha256: String,
}

impl FileSum {
    pub fn of(path: &Path) -> Result<FileSum> {
        let bytes = std::fs::metadata(path).map_err(|e| CoreError::io(path, e))?.len();
        Ok(FileSum { bytes, sha256: depth_core::hash::sha256_file(path)? })
    }
}

/// `latest.json`: the newest complete checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pointer {
    pub step: u64,
    /// The step folder's name under `checkpoints/`.
    pub dir: String,
    pub model: FileSum,
    pub state: FileSum,
}

/// A verified checkpoint on disk.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    pub step: u64,
    pub model: PathBuf,
    pub state: PathBuf,
}

impl Checkpoint {
    /// The state file's tensors and its JSON trainer state.
    pub fn read_state(&self) -> Result<(TensorMap, String)> {
        let tensors = load_safetensors(&self.state)?;
        let meta = safetensors_metadata(&self.state)?;
        let json = meta.get(STATE_KEY).ok_or_else(|| {
            TrainError::checkpoint(&self.state, format!("no '{STATE_KEY}' in its metadata"))
        })?;
        Ok((tensors, json.clone()))
    }
}

pub fn step_dir(root: &Path, step: u64) -> PathBuf {
    root.join(format!("step-{step:08}"))
}

/// What a checkpoint holds.
pub struct Contents<'a> {
    pub step: u64,
    pub model: &'a TensorMap,
    pub config: &'a ModelConfig,
    pub model_meta: &'a Metadata,
    pub state: &'a TensorMap,
    pub state_json: String,
}

/// Writes a checkpoint under `root` (= `<run>/checkpoints`), moves the pointer to it, then
/// keeps only the newest `keep_last` step folders.
pub fn write(root: &Path, c: &Contents, keep_last: usize) -> Result<Checkpoint> {
    let dir = step_dir(root, c.step);
    std::fs::create_dir_all(&dir).map_err(|e| CoreError::write(&dir, e))?;
    let model = dir.join(MODEL_FILE);
    save_model(c.model, c.config, c.model_meta, &model)?;
    pause_point("checkpoint-between-files", c.step, root);
    let state = dir.join(STATE_FILE);
    let meta: Metadata = [(STATE_KEY.to_string(), c.state_json.clone())].into();
    save_safetensors(c.state, &meta, &state)?;
    let pointer = Pointer {
        step: c.step,
        dir: dir.file_name().expect("named").to_string_lossy().into_owned(),
        model: FileSum::of(&model)?,
        state: FileSum::of(&state)?,
    };
    let json = serde_json::to_vec_pretty(&pointer).expect("a pointer serialises");
    depth_core::atomic::write_atomic(&root.join(POINTER), |w| w.write_all(&json))?;
    prune(root, keep_last, &pointer.dir)?;
    Ok(Checkpoint { step: c.step, model, state })
}

/// Removes step folders beyond the newest `keep_last` (never the pointer's).
fn prune(root: &Path, keep_last: usize, current: &str) -> Result<()> {
    for (_, path) in step_dirs(root)?.into_iter().skip(keep_last) {
        if path.file_name().is_some_and(|f| f != current) {
            std::fs::remove_dir_all(&path).map_err(|e| CoreError::write(&path, e))?;
        }
    }
    Ok(())
}

/// The newest complete checkpoint under `root`, verified against the pointer (None when the
/// run has none yet). A file that does not match is an error naming it: the pointer only moves
/// after both files are complete, so a mismatch means the files were changed or damaged since.
/// Without a pointer, the newest step folder whose two files are complete is taken (with a
/// warning: their checksums were in the pointer), never a fresh start over them.
pub fn latest(root: &Path) -> Result<Option<Checkpoint>> {
    let ptr_path = root.join(POINTER);
    let text = match std::fs::read(&ptr_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return recover(root),
        Err(e) => return Err(CoreError::io(&ptr_path, e).into()),
    };
    let ptr: Pointer = serde_json::from_slice(&text)
        .map_err(|e| TrainError::checkpoint(&ptr_path, format!("not a checkpoint pointer: {e}")))?;
    if ptr.dir.contains(['/', '\\']) || ptr.dir.starts_with('.') {
        return Err(TrainError::checkpoint(
            &ptr_path,
            format!("points outside the checkpoints folder: {}", ptr.dir),
        ));
    }
    let dir = root.join(&ptr.dir);
    let (model, state) = (dir.join(MODEL_FILE), dir.join(STATE_FILE));
    for (path, want) in [(&model, &ptr.model), (&state, &ptr.state)] {
        let got = FileSum::of(path)?;
        if &got != want {
            return Err(TrainError::checkpoint(
                path,
                format!(
                    "damaged: {} bytes, sha256 {}, but {} recorded {} bytes, sha256 {}; restore the file, or point \
                     latest.json at an earlier step folder",
                    got.bytes,
                    got.sha256,
                    ptr_path.display(),
                    want.bytes,
                    want.sha256
                ),
            ));
        }
    }
    Ok(Some(Checkpoint { step: ptr.step, model, state }))
}

/// The step folders under `root`, newest first.
fn step_dirs(root: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CoreError::io(root, e).into()),
    };
    let mut steps: Vec<(u64, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix("step-").and_then(|s| s.parse().ok()).map(|s| (s, e.path()))
        })
        .collect();
    steps.sort_by(|a, b| b.cmp(a));
    Ok(steps)
}

/// The newest step folder whose model and state files are complete (both read, the state's
/// step its folder's), when the pointer is gone; an error when step folders hold both files and
/// none is complete. A folder without both files is a first checkpoint whose write was cut
/// short (each file is written atomically, the state second, the pointer last): it is passed
/// over, and a run whose only folders are such starts from the beginning.
fn recover(root: &Path) -> Result<Option<Checkpoint>> {
    let mut steps = step_dirs(root)?;
    steps.retain(|(_, dir)| {
        let whole = dir.join(MODEL_FILE).is_file() && dir.join(STATE_FILE).is_file();
        if !whole {
            tracing::warn!("{}: a checkpoint whose write was cut short; passed over", dir.display());
        }
        whole
    });
    if steps.is_empty() {
        return Ok(None);
    }
    for (step, dir) in &steps {
        let c = Checkpoint { step: *step, model: dir.join(MODEL_FILE), state: dir.join(STATE_FILE) };
        let complete = safetensors_metadata(&c.model).is_ok()
            && c.read_state().is_ok_and(|(_, json)| {
                serde_json::from_str::<serde_json::Value>(&json).is_ok_and(|v| v["step"] == *step)
            });
        if complete {
            tracing::warn!(
                "{} is missing: resuming from {}, whose two files are complete (their checksums were in the pointer)",
                root.join(POINTER).display(),
                dir.display()
            );
            return Ok(Some(c));
        }
    }
    Err(TrainError::checkpoint(
        root,
        format!(
            "no {POINTER} and none of the {} step folders holds a complete checkpoint; restore the pointer, \
             or move the folder away to start again",
            steps.len()
        ),
    ))
}

/// Fault injection for the crash tests: with `DEPTH_TRAIN_PAUSE=<point>:<step>` the process
/// writes `<dir>/paused-<point>` and sleeps at that point until it is killed, so a test can send
/// a real SIGKILL exactly there. Unset, this does nothing.
pub fn pause_point(point: &str, step: u64, dir: &Path) {
    let Ok(spec) = std::env::var("DEPTH_TRAIN_PAUSE") else { return };
    if spec != format!("{point}:{step}") {
        return;
    }
    let _ = std::fs::write(dir.join(format!("paused-{point}")), step.to_string());
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
