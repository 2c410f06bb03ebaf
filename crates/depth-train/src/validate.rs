//! Periodic validation: the configured benchmarks of an eval config scored through
//! depth-eval's runner on the current (or averaged) weights, with side-by-side pictures written
//! into the run folder's validation folder of the step and handed to TensorBoard. The datasets are opened when the run
//! starts, so a missing one stops the run before any step, naming how to get it.

use crate::config::{Task, ValidateConfig};
use crate::error::Result;
use crate::log::ValRecord;
use crate::run_dir::RunDir;
use depth_core::config::ConfigFile;
use depth_core::{CoreError, Silent};
use depth_data::Dataset;
use depth_eval::{BenchmarkSpec, EvalConfig, Metrics, Mode, ModelPredictor, Predictor, Runner};
use depth_models::{DepthAnythingV2, DepthEstimator};
use std::collections::BTreeMap;
use std::sync::Arc;

pub struct Validator {
    cfg: ValidateConfig,
    benchmarks: Vec<(BenchmarkSpec, Arc<dyn Dataset>)>,
    run: RunDir,
    mode: Option<Mode>,
}

impl Validator {
    /// Opens the benchmarks (an unknown name or missing data is an error now, not later).
    pub fn new(cfg: &ValidateConfig, task: Task, run: &RunDir) -> Result<Self> {
        let eval = EvalConfig::load(&cfg.config, &[])?;
        let (specs, pairwise) = eval.select(&cfg.benchmarks)?;
        if let Some(p) = pairwise.first() {
            let reason = format!("'{}' is a pairwise set; validation scores depth benchmarks", p.name);
            return Err(CoreError::bad_input("validate.benchmarks", reason).into());
        }
        let benchmarks = specs
            .into_iter()
            .map(|s| {
                let mut spec = s.clone();
                spec.limit = cfg.limit.or(spec.limit);
                let data = eval.open(&spec)?;
                Ok((spec, data))
            })
            .collect::<Result<_>>()?;
        // a metric model is scored as metric depth whatever the benchmark's default protocol
        let mode = (task == Task::Metric).then_some(Mode::Metric);
        Ok(Self { cfg: cfg.clone(), benchmarks, run: run.clone(), mode })
    }

    /// Scores `model` at `step`; returns the record and the pictures (TensorBoard tag, image).
    pub fn run(
        &self,
        model: DepthAnythingV2,
        device: &candle_core::Device,
        step: u64,
    ) -> Result<(ValRecord, Vec<(String, image::RgbImage)>)> {
        let estimator = DepthEstimator::new(model, device.clone()).with_input_size(self.cfg.input_size);
        let mut predictor = ModelPredictor { name: "model".into(), estimator };
        let out = self.run.validation(step);
        let mut benchmarks = BTreeMap::new();
        let mut pictures = Vec::new();
        let mut scores = Vec::new();
        let metric_index = Metrics::NAMES.iter().position(|m| *m == self.cfg.metric).expect("checked metric");
        for (spec, data) in &self.benchmarks {
            let mut spec = spec.clone();
            spec.mode = self.mode.unwrap_or(spec.mode);
            let mut runner = Runner {
                predictors: vec![Box::new(&mut predictor as &mut dyn Predictor)],
                out: Some(out.clone()),
                visualize: self.cfg.images,
                ply: false,
            };
            let result = runner.run_benchmark(&spec, data.as_ref(), &Silent);
            let model = &result.models[0];
            for f in model.failed.iter().chain(&result.load_failures) {
                tracing::warn!("validation {}: {} failed: {}", spec.name, f.id, f.error);
            }
            if let Some(mean) = model.mean {
                let values = mean.values();
                scores.push(values[metric_index]);
                benchmarks.insert(
                    spec.name.clone(),
                    Metrics::NAMES.iter().zip(values).map(|(n, v)| (n.to_string(), v)).collect(),
                );
            }
            for (i, rel) in model.pictures.iter().enumerate() {
                match image::open(out.join(rel)) {
                    Ok(img) => pictures.push((format!("val/{}/{i}", spec.name), img.to_rgb8())),
                    Err(e) => tracing::warn!("validation picture {rel}: {e}"),
                }
            }
        }
        let score = (scores.len() == self.benchmarks.len() && !scores.is_empty())
            .then(|| scores.iter().sum::<f64>() / scores.len() as f64);
        Ok((ValRecord { step, benchmarks, score }, pictures))
    }

    /// Whether `new` beats `old` on the selection metric.
    pub fn better(&self, new: f64, old: f64) -> bool {
        if matches!(self.cfg.metric.as_str(), "d1" | "d2" | "d3") { new > old } else { new < old }
    }

    pub fn metric(&self) -> &str {
        &self.cfg.metric
    }
}
