//! `configs/eval.toml`: the benchmarks an evaluation runs — which dataset (a name in the data
//! config, or held-out synthetic scenes), relative or metric protocol, depth caps and crop — and
//! the DA-2K style pairwise sets. Relative paths are relative to the config file.

use crate::error::{EvalError, Result};
use crate::protocol::{Crop, EvalSettings};
use depth_core::CoreError;
use depth_core::config::{ConfigFile, Invalid, check_unique, expand};
use depth_data::synth::SynthSpec;
use depth_data::{DataConfig, Dataset, DatasetRef};
use serde_inline_default::serde_inline_default;
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

impl std::str::FromStr for Mode {
    type Err = CoreError;

    fn from_str(s: &str) -> std::result::Result<Self, CoreError> {
        match s {
            "relative" => Ok(Self::Relative),
            "metric" => Ok(Self::Metric),
            _ => Err(CoreError::bad_input("mode", format!("'{s}': use relative or metric"))),
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Relative => "relative",
            Self::Metric => "metric",
        })
    }
}

/// One benchmark: what it scores and how.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "BenchmarkKeys", into = "BenchmarkKeys")]
pub struct BenchmarkSpec {
    pub name: String,
    /// A dataset of the data config, or held-out procedural scenes.
    pub data: DatasetRef,
    pub mode: Mode,
    pub min_depth: f64,
    pub max_depth: f64,
    pub crop: Crop,
    /// Evaluate only the first `limit` items.
    pub limit: Option<usize>,
}

/// A benchmark as the TOML writes it (exactly one of `dataset` and `synth`).
#[serde_inline_default]
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BenchmarkKeys {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dataset: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    synth: Option<SynthSpec>,
    mode: Mode,
    min_depth: f64,
    max_depth: f64,
    #[serde_inline_default(Crop::None)]
    crop: Crop,
    #[serde(default)]
    limit: Option<usize>,
}

impl TryFrom<BenchmarkKeys> for BenchmarkSpec {
    type Error = Invalid;

    fn try_from(k: BenchmarkKeys) -> std::result::Result<Self, Invalid> {
        let data = DatasetRef::from_keys(&format!("benchmark '{}'", k.name), k.dataset, k.synth)?;
        let BenchmarkKeys { name, mode, min_depth, max_depth, crop, limit, .. } = k;
        Ok(Self { name, data, mode, min_depth, max_depth, crop, limit })
    }
}

impl From<BenchmarkSpec> for BenchmarkKeys {
    fn from(b: BenchmarkSpec) -> Self {
        let (dataset, synth) = b.data.into_keys();
        let BenchmarkSpec { name, mode, min_depth, max_depth, crop, limit, .. } = b;
        Self { name, dataset, synth, mode, min_depth, max_depth, crop, limit }
    }
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

#[serde_inline_default]
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// The data config naming the datasets.
    pub data: PathBuf,
    /// Side-by-side pictures written per benchmark and model (the first N items).
    #[serde_inline_default(4)]
    pub visualize: usize,
    #[serde(default, rename = "benchmark")]
    pub benchmarks: Vec<BenchmarkSpec>,
    #[serde(default, rename = "pairwise")]
    pub pairwise: Vec<PairwiseSpec>,
    /// The data config, read once when a benchmark names one of its datasets.
    #[serde(skip)]
    datasets: Option<DataConfig>,
}

impl ConfigFile for EvalConfig {
    fn resolve(&mut self, base: &Path) -> depth_core::Result<()> {
        self.data = expand(&self.data, base)?;
        for b in &mut self.benchmarks {
            b.data.resolve(base)?;
        }
        for p in &mut self.pairwise {
            p.annotations = expand(&p.annotations, base)?;
            p.images = expand(&p.images, base)?;
        }
        if self.benchmarks.iter().any(|b| b.data.name().is_some()) {
            self.datasets = Some(DataConfig::load(&self.data, &[])?);
        }
        Ok(())
    }

    fn validate(&self) -> std::result::Result<(), Invalid> {
        for b in &self.benchmarks {
            if !(b.min_depth > 0.0 && b.max_depth > b.min_depth) {
                let key = format!("benchmark '{}'", b.name);
                return Err(Invalid::new(&key, format!("{key} needs 0 < min_depth < max_depth")));
            }
        }
        let names = self
            .benchmarks
            .iter()
            .map(|b| b.name.as_str())
            .chain(self.pairwise.iter().map(|p| p.name.as_str()));
        check_unique(names, "benchmark")
    }
}

impl EvalConfig {
    /// The benchmarks and pairwise sets named in `only` (all when empty); unknown names are an error.
    pub fn select(&self, only: &[String]) -> Result<(Vec<&BenchmarkSpec>, Vec<&PairwiseSpec>)> {
        let known: Vec<&str> = self
            .benchmarks
            .iter()
            .map(|b| b.name.as_str())
            .chain(self.pairwise.iter().map(|p| p.name.as_str()))
            .collect();
        if let Some(u) = only.iter().find(|o| !known.contains(&o.as_str())) {
            return Err(EvalError::UnknownBenchmark { name: u.clone(), known: known.join(", ") });
        }
        let keep = |n: &str| only.is_empty() || only.iter().any(|o| o == n);
        Ok((
            self.benchmarks.iter().filter(|b| keep(&b.name)).collect(),
            self.pairwise.iter().filter(|p| keep(&p.name)).collect(),
        ))
    }

    /// Opens a benchmark's dataset (the error says how to get it when it is missing).
    pub fn open(&self, b: &BenchmarkSpec) -> Result<Arc<dyn Dataset>> {
        let empty = DataConfig::default();
        Ok(b.data.open(self.datasets.as_ref().unwrap_or(&empty))?)
    }
}
