//! `configs/eval.toml`: the benchmarks an evaluation runs — which dataset (a name in the data
//! config, or held-out synthetic scenes), relative or metric protocol, depth caps and crop — and
//! the DA-2K style pairwise sets. Relative paths are relative to the config file.

use crate::error::{EvalError, Result};
use crate::protocol::{Crop, EvalSettings};
use depth_core::config::{base_dir, check_unique, expand, read_toml};
use depth_data::Dataset;
use depth_data::config::DataConfig;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How predictions are compared with metric ground truth.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Affine-invariant: least-squares scale and shift in disparity, then depth (the official
    /// relative protocol). Depth predictions are inverted first.
    Relative,
    /// Predictions are metric depth and are scored as they are.
    Metric,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Relative => "relative",
            Self::Metric => "metric",
        })
    }
}

pub use depth_data::synth::SynthSpec;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchmarkSpec {
    pub name: String,
    /// A dataset of the data config (exactly one of `dataset` and `synth`).
    #[serde(default)]
    pub dataset: Option<String>,
    #[serde(default)]
    pub synth: Option<SynthSpec>,
    pub mode: Mode,
    pub min_depth: f64,
    pub max_depth: f64,
    #[serde(default = "no_crop")]
    pub crop: Crop,
    /// Evaluate only the first `limit` items.
    #[serde(default)]
    pub limit: Option<usize>,
}

fn no_crop() -> Crop {
    Crop::None
}

impl BenchmarkSpec {
    pub fn settings(&self) -> EvalSettings {
        EvalSettings { min_depth: self.min_depth, max_depth: self.max_depth, crop: self.crop }
    }
}

/// A DA-2K style set: annotations JSON and the folder its image paths are relative to.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairwiseSpec {
    pub name: String,
    pub annotations: PathBuf,
    pub images: PathBuf,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// The data config naming the datasets.
    pub data: PathBuf,
    /// Side-by-side pictures written per benchmark and model (the first N items).
    #[serde(default = "default_visualize")]
    pub visualize: usize,
    #[serde(default, rename = "benchmark")]
    pub benchmarks: Vec<BenchmarkSpec>,
    #[serde(default, rename = "pairwise")]
    pub pairwise: Vec<PairwiseSpec>,
}

fn default_visualize() -> usize {
    4
}

impl EvalConfig {
    pub fn load(path: &Path) -> Result<EvalConfig> {
        let bad = |reason: String| EvalError::Config { path: path.into(), reason };
        let mut cfg: EvalConfig = read_toml(path, &[])?;
        let base = base_dir(path);
        cfg.data = expand(&cfg.data, base)?;
        for b in &mut cfg.benchmarks {
            if b.dataset.is_some() == b.synth.is_some() {
                return Err(bad(format!(
                    "benchmark '{}' needs exactly one of `dataset` and `synth`",
                    b.name
                )));
            }
            if !(b.min_depth > 0.0 && b.max_depth > b.min_depth) {
                return Err(bad(format!("benchmark '{}' needs 0 < min_depth < max_depth", b.name)));
            }
            if let Some(s) = &mut b.synth {
                s.resolve(base)?;
            }
        }
        for p in &mut cfg.pairwise {
            p.annotations = expand(&p.annotations, base)?;
            p.images = expand(&p.images, base)?;
        }
        let names = cfg
            .benchmarks
            .iter()
            .map(|b| b.name.as_str())
            .chain(cfg.pairwise.iter().map(|p| p.name.as_str()));
        check_unique(names, "benchmark").map_err(bad)?;
        Ok(cfg)
    }

    /// The benchmarks and pairwise sets named in `only` (all when empty); unknown names are an error.
    pub fn select(&self, only: &[String]) -> Result<(Vec<&BenchmarkSpec>, Vec<&PairwiseSpec>)> {
        let known: Vec<&str> = self
            .benchmarks
            .iter()
            .map(|b| b.name.as_str())
            .chain(self.pairwise.iter().map(|p| p.name.as_str()))
            .collect();
        if let Some(u) = only.iter().find(|o| !known.contains(&o.as_str())) {
            return Err(EvalError::bad(
                "--benchmark",
                format!("no benchmark '{u}'; known: {}", known.join(", ")),
            ));
        }
        let keep = |n: &str| only.is_empty() || only.iter().any(|o| o == n);
        Ok((
            self.benchmarks.iter().filter(|b| keep(&b.name)).collect(),
            self.pairwise.iter().filter(|p| keep(&p.name)).collect(),
        ))
    }

    /// Opens a benchmark's dataset (the error says how to get it when it is missing).
    pub fn open(&self, b: &BenchmarkSpec) -> Result<Arc<dyn Dataset>> {
        if let Some(s) = &b.synth {
            return Ok(Arc::new(s.open()?));
        }
        let data = DataConfig::load(&self.data)?;
        Ok(data.get(b.dataset.as_deref().unwrap_or_default())?.open()?)
    }
}
