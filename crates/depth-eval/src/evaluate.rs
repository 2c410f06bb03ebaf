//! Why this file: an evaluation is one job — open the selected benchmarks (listing those whose
//! data is not there), score every predictor on each, write the report — that `cargo xtask
//! eval`, the training's validation and the mini reproduction all need. It takes typed options;
//! the command line is a thin layer over it.

use crate::benchmark::{BenchmarkSpec, EvalConfig, PairwiseSpec};
use crate::error::{EvalError, Result};
use crate::pairwise::Annotations;
use crate::predict::Predictor;
use crate::report::{Report, Unavailable};
use crate::runner::{Runner, item_count};
use depth_core::Progress;
use depth_data::{DataError, Dataset};
use std::path::PathBuf;
use std::sync::Arc;

/// What to evaluate and where the report goes.
pub struct Evaluation {
    /// The config, loaded (its path is recorded in the report).
    pub config: EvalConfig,
    pub config_path: PathBuf,
    /// The benchmarks (or pairwise sets) to run; empty: all of them, listing those whose data
    /// is missing. A named one that is missing makes [`Report::check`] fail.
    pub only: Vec<String>,
    pub predictors: Vec<Box<dyn Predictor>>,
    /// The report folder.
    pub out: PathBuf,
    /// Side-by-side pictures per benchmark and model (None: the config's `visualize`).
    pub visualize: Option<usize>,
    /// Also a point cloud (.ply) beside each picture where the dataset knows the intrinsics.
    pub ply: bool,
}

/// Runs the evaluation and writes its report into `out`; returns it. Progress counts one unit
/// per (item, predictor).
pub fn evaluate(job: Evaluation, progress: &dyn Progress) -> Result<Report> {
    depth_core::atomic::prepare_output_dir(&job.out)?;
    let (benchmarks, pairwise) = job.config.select(&job.only)?;
    let mut names = Vec::new();
    for p in &job.predictors {
        if names.contains(&p.name()) {
            return Err(EvalError::DuplicateModel { name: p.name().to_string() });
        }
        names.push(p.name());
    }
    let models: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let (opened, mut unavailable) = open_benchmarks(&job.config, benchmarks)?;
    let (pair_sets, missing_pairs) = open_pairwise(pairwise);
    unavailable.extend(missing_pairs);
    let items = opened.iter().map(|(b, d)| item_count(b, d.as_ref())).sum::<usize>()
        + pair_sets.iter().map(|(_, ann)| ann.len()).sum::<usize>();
    progress.start((items * job.predictors.len()) as u64, 0);
    let mut runner = Runner {
        predictors: job.predictors,
        out: Some(job.out.clone()),
        visualize: job.visualize.unwrap_or(job.config.visualize),
        ply: job.ply,
    };
    let mut results = Vec::new();
    for (b, data) in &opened {
        progress.message(&b.name);
        results.push(runner.run_benchmark(b, data.as_ref(), progress));
    }
    let mut pair_results = Vec::new();
    for (p, ann) in &pair_sets {
        progress.message(&p.name);
        pair_results.extend(runner.run_pairwise(p, ann, progress));
    }
    let report = Report {
        config: job.config_path.display().to_string(),
        models,
        benchmarks: results,
        pairwise: pair_results,
        unavailable,
    };
    report.write(&job.out)?;
    Ok(report)
}

type Opened<'a> = Vec<(&'a BenchmarkSpec, Arc<dyn Dataset>)>;

/// The benchmarks whose data opens; only a dataset that is not there is "not run" (a config
/// that does not load, an unknown or broken dataset is an error).
fn open_benchmarks<'a>(
    cfg: &EvalConfig,
    benchmarks: Vec<&'a BenchmarkSpec>,
) -> Result<(Opened<'a>, Vec<Unavailable>)> {
    let mut opened = Vec::new();
    let mut unavailable = Vec::new();
    for b in benchmarks {
        match cfg.open(b) {
            Ok(d) => opened.push((b, d)),
            Err(e @ EvalError::Data(DataError::Absent { .. })) => {
                unavailable.push(Unavailable { name: b.name.clone(), reason: e.to_string() })
            }
            Err(e) => return Err(EvalError::Benchmark { name: b.name.clone(), source: Box::new(e) }),
        }
    }
    Ok((opened, unavailable))
}

/// The pairwise sets whose annotations read; missing or unreadable ones are listed, not fatal.
fn open_pairwise(pairwise: Vec<&PairwiseSpec>) -> (Vec<(&PairwiseSpec, Annotations)>, Vec<Unavailable>) {
    let mut sets = Vec::new();
    let mut unavailable = Vec::new();
    for p in pairwise {
        if !p.annotations.exists() {
            let reason =
                format!("{} is missing; see the da2k entry in configs/data.toml", p.annotations.display());
            unavailable.push(Unavailable { name: p.name.clone(), reason });
            continue;
        }
        match crate::pairwise::read_annotations(&p.annotations) {
            Ok(ann) => sets.push((p, ann)),
            Err(e) => unavailable.push(Unavailable { name: p.name.clone(), reason: e.to_string() }),
        }
    }
    (sets, unavailable)
}

impl Report {
    /// The errors a finished evaluation ends with: a benchmark named in `only` that was not
    /// available, or failed items (listed in the report in `out`).
    pub fn check(&self, only: &[String], out: &std::path::Path) -> Result<()> {
        let missing: Vec<String> =
            self.unavailable.iter().filter(|u| only.contains(&u.name)).map(|u| u.name.clone()).collect();
        if !missing.is_empty() {
            let reasons = self.unavailable.iter().map(|u| format!("{}: {}", u.name, u.reason)).collect();
            return Err(EvalError::Unavailable { names: missing, reasons });
        }
        match self.failures() {
            0 => Ok(()),
            count => Err(EvalError::ItemsFailed { count, report: out.join("report.md") }),
        }
    }
}
