//! `configs/train.toml`: one training run — the model and where its weights start, the data
//! sources and what their targets are, the optimiser, schedule, objective, checkpoints,
//! validation and logging. Loaded by depth-core's one contract ([`ConfigFile::load`]: `--set`
//! overrides, unknown keys named, paths resolved against the config's folder, then
//! [`ConfigFile::validate`]). The resolved config is written into the run folder, and a resumed
//! run reads it back from there. The defaults, stated on the fields, equal `configs/train.toml`.

use crate::optim::OptimConfig;
use crate::schedule::Schedule;
use depth_core::config::{ConfigFile, Invalid, expand};
use depth_core::{DeviceSpec, Precision};
use depth_data::synth::SynthSpec;
use depth_data::{DatasetRef, LoaderConfig};
use depth_models::{Encoder, ModelConfig, NamedModel, WeightsInit, WeightsSource};
use serde::{Deserialize, Serialize};
use serde_inline_default::serde_inline_default;
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

/// The model: an official size (`encoder`), optionally resized (`embed_dim`, `depth`,
/// `num_heads`, `features` together make a custom size, see `ModelConfig::custom`).
#[serde_inline_default]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    #[serde_inline_default(Encoder::Vits)]
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
    /// `"scratch"`, `{ encoder = WEIGHTS }` (a DINOv2 or Depth Anything V2 checkpoint: its
    /// encoder, the head fresh) or `{ full = WEIGHTS }`.
    #[serde(default)]
    pub init: WeightsInit,
    /// Start the last conv's bias at this value (a fresh head only). A freshly initialised head
    /// can put every pixel below the final ReLU; a scale-invariant loss then has no gradient and
    /// the model never learns. A positive bias (e.g. 1.0) avoids that; None keeps PyTorch's init.
    #[serde(default)]
    pub output_bias: Option<f64>,
    /// Seeds the fresh tensors.
    #[serde(default)]
    pub seed: u64,
}

impl ModelSpec {
    pub fn config(&self) -> std::result::Result<ModelConfig, Invalid> {
        let custom = [self.embed_dim, self.depth, self.num_heads, self.features];
        let mut cfg = match custom {
            [None, None, None, None] => ModelConfig::official(self.encoder),
            [Some(d), Some(n), Some(h), Some(f)] => ModelConfig::custom(d, n, h, f),
            _ => {
                return Err(Invalid::new(
                    "embed_dim",
                    "a custom size needs all of embed_dim, depth, num_heads and features",
                ));
            }
        };
        if let Some(l) = self.layers {
            cfg.layers = l;
        }
        cfg.max_depth = self.max_depth;
        cfg.validate()?;
        Ok(cfg)
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
#[serde(try_from = "SourceKeys", into = "SourceKeys")]
pub struct SourceSpec {
    pub data: DatasetRef,
    pub ratio: f64,
    /// V1's strong perturbations (colour, blur, CutMix).
    pub strong: bool,
    /// Default: pseudo for a `pseudo` dataset, gt otherwise.
    pub labels: Option<Labels>,
}

/// A source as the TOML writes it (exactly one of `dataset` and `synth`).
#[serde_inline_default]
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceKeys {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dataset: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    synth: Option<SynthSpec>,
    #[serde_inline_default(1.0)]
    ratio: f64,
    #[serde(default)]
    strong: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    labels: Option<Labels>,
}

impl TryFrom<SourceKeys> for SourceSpec {
    type Error = Invalid;

    fn try_from(k: SourceKeys) -> std::result::Result<Self, Invalid> {
        let data = DatasetRef::from_keys("data.source", k.dataset, k.synth)?;
        Ok(Self { data, ratio: k.ratio, strong: k.strong, labels: k.labels })
    }
}

impl From<SourceSpec> for SourceKeys {
    fn from(s: SourceSpec) -> Self {
        let (dataset, synth) = s.data.into_keys();
        Self { dataset, synth, ratio: s.ratio, strong: s.strong, labels: s.labels }
    }
}

#[serde_inline_default]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// The data config that names the datasets.
    #[serde_inline_default("data.toml".into())]
    pub config: PathBuf,
    #[serde(default)]
    pub loader: LoaderConfig,
    #[serde(rename = "source")]
    pub sources: Vec<SourceSpec>,
}

/// Feature alignment to a frozen DINOv2 encoder (Depth Anything V1), on pseudo-labelled samples.
#[serde_inline_default]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureAlign {
    /// The frozen encoder: a DINOv2 or Depth Anything V2 checkpoint (its `pretrained.*`) of the
    /// student's encoder size.
    pub encoder: WeightsSource,
    #[serde_inline_default(1.0)]
    pub weight: f64,
    /// Tokens whose cosine similarity already exceeds this are left free (V1: 0.85).
    #[serde_inline_default(0.85)]
    pub margin: f64,
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
#[serde_inline_default]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidateConfig {
    /// Every N optimiser steps (and at the end).
    pub every: u64,
    #[serde_inline_default("eval.toml".into())]
    pub config: PathBuf,
    /// Benchmark names of the eval config.
    pub benchmarks: Vec<String>,
    /// The metric that picks the best checkpoint (mean over the benchmarks; d1–d3 higher is
    /// better, the others lower).
    #[serde_inline_default("abs_rel".into())]
    pub metric: String,
    #[serde_inline_default(518)]
    pub input_size: usize,
    /// Side-by-side pictures per benchmark (also sent to TensorBoard).
    #[serde_inline_default(2)]
    pub images: usize,
    /// Evaluate only the first N items of each benchmark.
    #[serde(default)]
    pub limit: Option<usize>,
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
#[serde_inline_default]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeacherSpec {
    /// As `pseudo-label --teacher`: `[NAME=]WEIGHTS` or `[NAME=]ENCODER:WEIGHTS`.
    pub model: NamedModel,
    #[serde_inline_default(518)]
    pub input_size: usize,
}

#[serde_inline_default]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// The run folder.
    pub out: PathBuf,
    #[serde(default)]
    pub teacher: Option<TeacherSpec>,
    #[serde(default)]
    pub task: Task,
    /// cpu, cuda (the local rank's GPU) or cuda:N.
    #[serde(default)]
    pub device: DeviceSpec,
    /// f32, or bf16: the linear layers, attention and convolutions in bfloat16 as
    /// `torch.autocast` (`depth_core::autocast`); weights, gradients, AdamW state, norms,
    /// softmax and the loss stay float32.
    #[serde(default)]
    pub precision: Precision,
    /// Keep only each encoder block's input through the forward and recompute the block in the
    /// backward (`depth_models::Recompute`): less activation memory for one more encoder
    /// forward per step.
    #[serde(default)]
    pub activation_checkpointing: bool,
    /// Stop after this many optimiser steps in a row with a non-finite loss or gradient.
    #[serde_inline_default(5)]
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

impl ConfigFile for TrainConfig {
    /// Paths relative to `base` become joined to it; weights named by a path that exists there
    /// are resolved too (others stay as written: Hub ids, encoder names).
    fn resolve(&mut self, base: &Path) -> depth_core::Result<()> {
        self.out = expand(&self.out, base)?;
        self.data.config = expand(&self.data.config, base)?;
        for s in &mut self.data.sources {
            s.data.resolve(base)?;
        }
        self.model.init.resolve(base)?;
        if let Some(fa) = &mut self.loss.feature_align {
            fa.encoder.resolve(base)?;
        }
        if let Some(t) = &mut self.teacher {
            t.model.resolve(base)?;
        }
        if let Some(v) = &mut self.validate {
            v.config = expand(&v.config, base)?;
        }
        Ok(())
    }

    /// Consistency of the settings (before anything is opened).
    fn validate(&self) -> std::result::Result<(), Invalid> {
        let model = self.model.config().map_err(|e| e.under("model"))?;
        if self.model.output_bias.is_some() && matches!(self.model.init, WeightsInit::Full(_)) {
            return Err(Invalid::new(
                "model.output_bias",
                "model.output_bias applies to a fresh head, not to init = { full = … }",
            ));
        }
        self.optim.validate().map_err(|e| e.under("optim"))?;
        self.schedule.validate().map_err(|e| e.under("schedule"))?;
        self.data.loader.validate().map_err(|e| e.under("data.loader"))?;
        if self.data.sources.is_empty() {
            return Err(Invalid::new("data.source", "no [[data.source]]"));
        }
        for (i, s) in self.data.sources.iter().enumerate() {
            if s.ratio.is_nan() || s.ratio <= 0.0 {
                let key = format!("data.source.{i}.ratio");
                return Err(Invalid::new(
                    &key,
                    format!("data.source {i}: ratio {} must be positive", s.ratio),
                ));
            }
        }
        let l = &self.loss;
        if !(0.0..1.0).contains(&l.trim_pseudo) || l.scales == 0 || l.gm_weight < 0.0 {
            return Err(Invalid::new(
                "loss",
                format!("loss: trim_pseudo {} in [0, 1), scales ≥ 1, gm_weight ≥ 0", l.trim_pseudo),
            ));
        }
        match self.task {
            Task::Metric => {
                let Some(max) = model.max_depth else {
                    return Err(Invalid::new(
                        "model.max_depth",
                        "task = \"metric\" needs model.max_depth (the metric head's range)",
                    ));
                };
                if !(l.min_depth > 0.0 && l.min_depth < max) {
                    return Err(Invalid::new(
                        "loss.min_depth",
                        format!("loss.min_depth {} must be in (0, max_depth {max})", l.min_depth),
                    ));
                }
                if self.data.sources.iter().any(|s| s.labels == Some(Labels::Pseudo))
                    || l.feature_align.is_some()
                {
                    return Err(Invalid::new(
                        "task",
                        "the metric task trains on metric ground truth: no pseudo-labels or feature alignment",
                    ));
                }
            }
            Task::Relative if model.max_depth.is_some() => {
                return Err(Invalid::new(
                    "model.max_depth",
                    "model.max_depth makes a metric head: use task = \"metric\"",
                ));
            }
            Task::Relative => {}
        }
        if let Some(v) = &self.validate {
            if v.every == 0 || v.benchmarks.is_empty() {
                return Err(Invalid::new("validate", "validate needs every ≥ 1 and at least one benchmark"));
            }
            if !depth_eval::Metrics::NAMES.contains(&v.metric.as_str()) {
                return Err(Invalid::new(
                    "validate.metric",
                    format!("validate.metric '{}': one of {:?}", v.metric, depth_eval::Metrics::NAMES),
                ));
            }
        }
        if self.checkpoint.every == 0 || self.checkpoint.keep_last == 0 {
            return Err(Invalid::new(
                "checkpoint",
                "checkpoint.every and checkpoint.keep_last must be at least 1",
            ));
        }
        if self.log.plot_every == 0 {
            return Err(Invalid::new("log.plot_every", "log.plot_every must be at least 1"));
        }
        Ok(())
    }
}

impl TrainConfig {
    /// The resolved config as TOML (what `config.toml` in the run folder holds).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a train config serialises")
    }
}
