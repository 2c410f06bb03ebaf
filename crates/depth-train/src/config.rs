//! `configs/train.toml`: one training run — the model and where its weights start, the data
//! sources and what their targets are, the optimiser, schedule, objective, checkpoints,
//! validation and logging. Read through depth-core's config reader (unknown keys are errors that
//! name the key; `--set key=value` overrides), paths resolved against the config's folder. The
//! resolved config is written into the run folder, and a resumed run reads it back from there.
//! The defaults in code equal `configs/train.toml`.

use crate::error::{Result, TrainError};
use crate::optim::OptimConfig;
use crate::schedule::Schedule;
use depth_core::config::{base_dir, expand, read_toml};
use depth_data::LoaderConfig;
use depth_data::synth::SynthSpec;
use depth_models::{Encoder, ModelConfig, WeightsInit};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What the model learns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Affine-invariant disparity: L_ssi + gm_weight·L_gm (trimmed on pseudo-labels).
    #[default]
    Relative,
    /// Metric depth with the official metric head and SiLog, as `metric_depth/train.py`.
    Metric,
}

/// Where the weights start.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InitSpec {
    /// Everything fresh (seeded).
    #[default]
    Scratch,
    /// The encoder from a DINOv2 or Depth Anything V2 checkpoint (path or Hub id), the head fresh.
    Encoder(String),
    /// The whole model from a checkpoint.
    Full(String),
}

/// The model: an official size (`encoder`), optionally resized (`embed_dim`, `depth`,
/// `num_heads`, `features` together make a custom size, see `ModelConfig::custom`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    #[serde(default = "vits")]
    pub encoder: Encoder,
    #[serde(default)]
    pub embed_dim: Option<usize>,
    #[serde(default)]
    pub depth: Option<usize>,
    #[serde(default)]
    pub num_heads: Option<usize>,
    #[serde(default)]
    pub features: Option<usize>,
    /// The encoder blocks the head reads (default: the size's own).
    #[serde(default)]
    pub layers: Option<[usize; 4]>,
    /// The metric head's range in metres (required by `task = "metric"`).
    #[serde(default)]
    pub max_depth: Option<f64>,
    #[serde(default)]
    pub init: InitSpec,
    /// Start the last conv's bias at this value (a fresh head only). A freshly initialised head
    /// can put every pixel below the final ReLU; a scale-invariant loss then has no gradient and
    /// the model never learns. A positive bias (e.g. 1.0) avoids that; None keeps PyTorch's init.
    #[serde(default)]
    pub output_bias: Option<f64>,
    /// Seeds the fresh tensors.
    #[serde(default)]
    pub seed: u64,
}

fn vits() -> Encoder {
    Encoder::Vits
}

impl ModelSpec {
    pub fn config(&self) -> std::result::Result<ModelConfig, String> {
        let custom = [self.embed_dim, self.depth, self.num_heads, self.features];
        let mut cfg = match custom {
            [None, None, None, None] => ModelConfig::official(self.encoder),
            [Some(d), Some(n), Some(h), Some(f)] => ModelConfig::custom(d, n, h, f),
            _ => return Err("a custom size needs all of embed_dim, depth, num_heads and features".into()),
        };
        if let Some(l) = self.layers {
            cfg.layers = l;
        }
        cfg.max_depth = self.max_depth;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn init(&self) -> WeightsInit {
        match &self.init {
            InitSpec::Scratch => WeightsInit::Scratch,
            InitSpec::Encoder(p) => WeightsInit::Encoder(p.clone()),
            InitSpec::Full(p) => WeightsInit::Full(p.clone()),
        }
    }
}

/// What a source's targets are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Labels {
    /// Ground truth (synthetic or sensor depth): no trimming.
    Gt,
    /// Teacher pseudo-labels: the largest `trim_pseudo` of residuals per sample dropped, and
    /// feature alignment when configured.
    Pseudo,
}

/// One dataset in the mix: a name of the data config, or procedural scenes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    #[serde(default)]
    pub dataset: Option<String>,
    #[serde(default)]
    pub synth: Option<SynthSpec>,
    #[serde(default = "one")]
    pub ratio: f64,
    /// V1's strong perturbations (colour, blur, CutMix).
    #[serde(default)]
    pub strong: bool,
    /// Default: pseudo for a `pseudo` dataset, gt otherwise.
    #[serde(default)]
    pub labels: Option<Labels>,
}

fn one() -> f64 {
    1.0
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// The data config that names the datasets.
    #[serde(default = "data_toml")]
    pub config: PathBuf,
    #[serde(default)]
    pub loader: LoaderConfig,
    #[serde(rename = "source")]
    pub sources: Vec<SourceSpec>,
}

fn data_toml() -> PathBuf {
    "data.toml".into()
}

/// Feature alignment to a frozen DINOv2 encoder (Depth Anything V1), on pseudo-labelled samples.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureAlign {
    /// The frozen encoder: a DINOv2 or Depth Anything V2 checkpoint (its `pretrained.*`) of the
    /// student's encoder size.
    pub encoder: String,
    #[serde(default = "one")]
    pub weight: f64,
    /// Tokens whose cosine similarity already exceeds this are left free (V1: 0.85).
    #[serde(default = "margin")]
    pub margin: f64,
}

fn margin() -> f64 {
    0.85
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LossConfig {
    /// L_ssi + gm_weight · L_gm (the paper: 2).
    pub gm_weight: f64,
    /// Share of the largest residuals dropped per pseudo-labelled sample (the paper: 0.1).
    pub trim_pseudo: f64,
    /// Scales of the gradient-matching term.
    pub scales: usize,
    /// SiLog's λ (metric task; the official 0.5).
    pub silog_lambda: f64,
    /// Metric task: ground truth outside [min_depth, max_depth] is ignored (official: 1e-3).
    pub min_depth: f64,
    pub feature_align: Option<FeatureAlign>,
}

impl Default for LossConfig {
    fn default() -> Self {
        Self {
            gm_weight: 2.0,
            trim_pseudo: 0.1,
            scales: 4,
            silog_lambda: 0.5,
            min_depth: 1e-3,
            feature_align: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// Every N optimiser steps (and always at the end).
    pub every: u64,
    /// Step checkpoints kept (older ones are deleted once a newer one is complete).
    pub keep_last: usize,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self { every: 500, keep_last: 3 }
    }
}

/// Periodic validation through depth-eval's runner.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidateConfig {
    /// Every N optimiser steps (and at the end).
    pub every: u64,
    #[serde(default = "eval_toml")]
    pub config: PathBuf,
    /// Benchmark names of the eval config.
    pub benchmarks: Vec<String>,
    /// The metric that picks the best checkpoint (mean over the benchmarks; d1–d3 higher is
    /// better, the others lower).
    #[serde(default = "abs_rel")]
    pub metric: String,
    #[serde(default = "input_size")]
    pub input_size: usize,
    /// Side-by-side pictures per benchmark (also sent to TensorBoard).
    #[serde(default = "two")]
    pub images: usize,
    /// Evaluate only the first N items of each benchmark.
    #[serde(default)]
    pub limit: Option<usize>,
}

fn eval_toml() -> PathBuf {
    "eval.toml".into()
}
fn abs_rel() -> String {
    "abs_rel".into()
}
fn input_size() -> usize {
    518
}
fn two() -> usize {
    2
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// TensorBoard event files in the run folder.
    pub tensorboard: bool,
    /// Redraw loss.png every N steps (and at checkpoints and the end).
    pub plot_every: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { tensorboard: true, plot_every: 100 }
    }
}

/// The teacher whose pseudo-labels the run learns from (for the plan of `--dry-run`; the labels
/// themselves carry the teacher's hash).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeacherSpec {
    /// As `pseudo-label --teacher`: `[NAME=]WEIGHTS` or `[NAME=]ENCODER:WEIGHTS`.
    pub model: String,
    #[serde(default = "input_size")]
    pub input_size: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// The run folder.
    pub out: PathBuf,
    #[serde(default)]
    pub teacher: Option<TeacherSpec>,
    #[serde(default)]
    pub task: Task,
    /// cpu, cuda or cuda:N.
    #[serde(default = "cpu")]
    pub device: String,
    /// Stop after this many optimiser steps in a row with a non-finite loss or gradient.
    #[serde(default = "five")]
    pub max_bad_steps: usize,
    pub model: ModelSpec,
    pub data: DataSpec,
    #[serde(default)]
    pub optim: OptimConfig,
    #[serde(default)]
    pub schedule: Schedule,
    #[serde(default)]
    pub loss: LossConfig,
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
    #[serde(default)]
    pub validate: Option<ValidateConfig>,
    #[serde(default)]
    pub log: LogConfig,
}

fn cpu() -> String {
    "cpu".into()
}
fn five() -> usize {
    5
}

impl TrainConfig {
    /// Reads, overrides, resolves paths and checks a config.
    pub fn load(path: &Path, overrides: &[String]) -> Result<TrainConfig> {
        let mut cfg: TrainConfig = read_toml(path, overrides)?;
        cfg.resolve(base_dir(path))?;
        cfg.check().map_err(|reason| TrainError::Config { path: path.into(), reason })?;
        Ok(cfg)
    }

    /// Paths relative to `base` become absolute-or-joined; weights given as paths that exist
    /// there are resolved too (others stay Hub ids).
    fn resolve(&mut self, base: &Path) -> Result<()> {
        self.out = expand(&self.out, base)?;
        self.data.config = expand(&self.data.config, base)?;
        for s in &mut self.data.sources {
            if let Some(sy) = &mut s.synth {
                sy.resolve(base)?;
            }
        }
        let weights = |w: &mut String| -> Result<()> {
            let p = expand(Path::new(w.as_str()), base)?;
            if p.exists() {
                *w = p.to_string_lossy().into_owned();
            }
            Ok(())
        };
        match &mut self.model.init {
            InitSpec::Scratch => {}
            InitSpec::Encoder(w) | InitSpec::Full(w) => weights(w)?,
        }
        if let Some(fa) = &mut self.loss.feature_align {
            weights(&mut fa.encoder)?;
        }
        if let Some(v) = &mut self.validate {
            v.config = expand(&v.config, base)?;
        }
        Ok(())
    }

    /// Consistency of the settings (before anything is opened).
    pub fn check(&self) -> std::result::Result<(), String> {
        let model = self.model.config()?;
        if self.model.output_bias.is_some() && matches!(self.model.init, InitSpec::Full(_)) {
            return Err("model.output_bias applies to a fresh head, not to init = { full = … }".into());
        }
        self.optim.validate()?;
        self.schedule.validate()?;
        self.data.loader.check().map_err(|e| format!("data.loader: {e}"))?;
        if self.data.sources.is_empty() {
            return Err("no [[data.source]]".into());
        }
        for (i, s) in self.data.sources.iter().enumerate() {
            if s.dataset.is_some() == s.synth.is_some() {
                return Err(format!("data.source {i} needs exactly one of `dataset` and `synth`"));
            }
            if s.ratio.is_nan() || s.ratio <= 0.0 {
                return Err(format!("data.source {i}: ratio {} must be positive", s.ratio));
            }
        }
        let l = &self.loss;
        if !(0.0..1.0).contains(&l.trim_pseudo) || l.scales == 0 || l.gm_weight < 0.0 {
            return Err(format!("loss: trim_pseudo {} in [0, 1), scales ≥ 1, gm_weight ≥ 0", l.trim_pseudo));
        }
        match self.task {
            Task::Metric => {
                let Some(max) = model.max_depth else {
                    return Err("task = \"metric\" needs model.max_depth (the metric head's range)".into());
                };
                if !(l.min_depth > 0.0 && l.min_depth < max) {
                    return Err(format!("loss.min_depth {} must be in (0, max_depth {max})", l.min_depth));
                }
                if self.data.sources.iter().any(|s| s.labels == Some(Labels::Pseudo))
                    || l.feature_align.is_some()
                {
                    return Err("the metric task trains on metric ground truth: no pseudo-labels or feature alignment".into());
                }
            }
            Task::Relative if model.max_depth.is_some() => {
                return Err("model.max_depth makes a metric head: use task = \"metric\"".into());
            }
            Task::Relative => {}
        }
        if let Some(v) = &self.validate {
            if v.every == 0 || v.benchmarks.is_empty() {
                return Err("validate needs every ≥ 1 and at least one benchmark".into());
            }
            if !depth_eval::Metrics::NAMES.contains(&v.metric.as_str()) {
                return Err(format!(
                    "validate.metric '{}': one of {:?}",
                    v.metric,
                    depth_eval::Metrics::NAMES
                ));
            }
        }
        if self.checkpoint.every == 0 || self.checkpoint.keep_last == 0 {
            return Err("checkpoint.every and checkpoint.keep_last must be at least 1".into());
        }
        if self.log.plot_every == 0 {
            return Err("log.plot_every must be at least 1".into());
        }
        Ok(())
    }

    /// The resolved config as TOML (what `config.toml` in the run folder holds).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a train config serialises")
    }
}
