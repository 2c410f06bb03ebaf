//! `cargo xtask eval`: benchmarks from configs/eval.toml for one or more models, or for
//! precomputed predictions (`--pred-dir`), into a markdown + JSON report with pictures. Items
//! that fail are listed in the report and make the run end non-zero.

use crate::error::{Result, XtaskError};
use depth_data::TargetKind;
use depth_eval::report::Unavailable;
use depth_eval::{EvalConfig, Mode, ModelPredictor, PredDir, Predictor, Report, Runner};
use depth_models::{Encoder, WeightsSource};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    #[arg(long, default_value = "configs/eval.toml")]
    pub(crate) config: PathBuf,
    /// Benchmarks (or pairwise sets) to run; default: all in the config, skipping those whose
    /// data is missing (listed in the report). A named benchmark that is missing is an error.
    #[arg(long = "benchmark")]
    pub(crate) benchmarks: Vec<String>,
    /// A model as [NAME=]ENCODER[:WEIGHTS], e.g. `vits`, `student=vits:runs/student.safetensors`,
    /// `vitl:depth-anything/Depth-Anything-V2-Large`, or [NAME=]PATH for a checkpoint written by
    /// `train` (any size: its config is in the file). Repeat for several. Default (without
    /// --pred-dir): the official vits checkpoint.
    #[arg(long = "model")]
    pub(crate) models: Vec<String>,
    /// Precomputed predictions: DIR/<image stem>.npy, float32 (H, W).
    #[arg(long)]
    pub(crate) pred_dir: Option<PathBuf>,
    /// What the .npy files in --pred-dir hold.
    #[arg(long, value_enum, default_value = "disparity")]
    pub(crate) pred_kind: PredKind,
    /// Score every benchmark with this protocol instead of the config's (e.g. `metric` for a
    /// metric-depth model on the standard benchmarks).
    #[arg(long, value_enum)]
    pub(crate) mode: Option<ModeArg>,
    #[arg(long, default_value = "runs/eval")]
    pub(crate) out: PathBuf,
    #[command(flatten)]
    pub(crate) input: crate::net_input::NetInput,
    /// Side-by-side pictures per benchmark and model (default: the config's `visualize`).
    #[arg(long)]
    pub(crate) visualize: Option<usize>,
    /// Also write a point cloud (.ply) of the aligned prediction beside each picture, where the
    /// dataset knows the camera intrinsics.
    #[arg(long)]
    pub(crate) ply: bool,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub(crate) device: String,
    /// Also score the constant-disparity and position-prior (disparity = row / H) baselines.
    #[arg(long)]
    pub(crate) baselines: bool,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(crate) enum ModeArg {
    Relative,
    Metric,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(crate) enum PredKind {
    Depth,
    Disparity,
}

/// `[NAME=]WEIGHTS` (anything `--weights` takes: a checkpoint, an HF folder, a Hub id, an
/// encoder name for the official checkpoint) or `[NAME=]ENCODER:WEIGHTS` (the checkpoint must
/// have that size) → (name, source, expected size). The default name is the file's stem or the
/// encoder's name.
pub(crate) fn parse_model(spec: &str) -> Result<(String, WeightsSource, Option<Encoder>)> {
    let (name, rest) = match spec.split_once('=') {
        Some((n, r)) => (Some(n.to_string()), r),
        None => (None, spec),
    };
    let bad = |e: depth_models::ModelError| XtaskError::Failed(format!("--model {spec}: {e}"));
    let (expect, source) = match rest.split_once(':') {
        Some((e, w)) if !std::path::Path::new(rest).exists() && e.parse::<Encoder>().is_ok() => {
            (e.parse::<Encoder>().ok(), w.parse::<WeightsSource>().map_err(bad)?)
        }
        _ => (None, rest.parse::<WeightsSource>().map_err(bad)?),
    };
    let stem = match &source {
        WeightsSource::File(p) | WeightsSource::Folder(p) => {
            p.file_stem().map(|s| s.to_string_lossy().into_owned())
        }
        WeightsSource::Official(e) => Some(e.name().to_string()),
        WeightsSource::Hub { repo, .. } => repo.rsplit('/').next().map(str::to_string),
    };
    let name = name.unwrap_or_else(|| match (expect, stem) {
        (Some(e), Some(s)) if s != e.name() => format!("{}-{s}", e.name()),
        (_, Some(s)) => s,
        (Some(e), None) => e.name().to_string(),
        (None, None) => rest.to_string(),
    });
    Ok((name, source, expect))
}

pub fn run(args: EvalArgs) -> Result<()> {
    let report = evaluate(&args)?;
    for b in &report.benchmarks {
        for m in &b.models {
            let (d1, abs_rel) = m.mean.map_or((f64::NAN, f64::NAN), |x| (x.d1, x.abs_rel));
            println!(
                "{:<20} {:<16} d1 {d1:.4}  abs_rel {abs_rel:.4}  ({} images)",
                b.name,
                m.model,
                m.items.len()
            );
        }
    }
    for p in &report.pairwise {
        println!(
            "{:<20} {:<16} accuracy {:.4} ({} pairs)",
            p.name,
            p.model,
            p.accuracy.unwrap_or(f64::NAN),
            p.counts.pairs
        );
    }
    for u in &report.unavailable {
        println!("not run: {}", u.name);
    }
    println!("report: {}", args.out.join("report.md").display());
    check(&args, &report)
}

/// The errors a finished evaluation ends with: a named benchmark that was not available, or
/// failed items.
pub(crate) fn check(args: &EvalArgs, report: &Report) -> Result<()> {
    let missing: Vec<&str> = report
        .unavailable
        .iter()
        .filter(|u| args.benchmarks.contains(&u.name))
        .map(|u| u.name.as_str())
        .collect();
    if !missing.is_empty() {
        let reasons: Vec<String> =
            report.unavailable.iter().map(|u| format!("{}: {}", u.name, u.reason)).collect();
        return Err(XtaskError::Failed(format!(
            "benchmarks not available: {}\n{}",
            missing.join(", "),
            reasons.join("\n")
        )));
    }
    match report.failures() {
        0 => Ok(()),
        n => Err(XtaskError::Failed(format!(
            "{n} items failed; they are listed in {}",
            args.out.join("report.md").display()
        ))),
    }
}

/// Runs the evaluation and writes its report; returns it.
pub(crate) fn evaluate(args: &EvalArgs) -> Result<Report> {
    let mut cfg = EvalConfig::load(&args.config)?;
    depth_core::atomic::prepare_output_dir(&args.out)?;
    if let Some(m) = args.mode {
        let mode = match m {
            ModeArg::Relative => Mode::Relative,
            ModeArg::Metric => Mode::Metric,
        };
        cfg.benchmarks.iter_mut().for_each(|b| b.mode = mode);
    }
    let (benchmarks, pairwise) = cfg.select(&args.benchmarks)?;
    let device = depth_core::parse_device(&args.device)?;
    let mut predictors: Vec<Box<dyn Predictor>> = Vec::new();
    let mut specs = args.models.clone();
    if specs.is_empty() && args.pred_dir.is_none() && !args.baselines {
        specs.push("vits".into());
    }
    for spec in &specs {
        let (name, source, expect) = parse_model(spec)?;
        if predictors.iter().any(|p| p.name() == name) {
            return Err(XtaskError::Failed(format!("two models are named '{name}'; name them with NAME=")));
        }
        tracing::info!("loading {name}: {source} on {}", args.device);
        let model = crate::net_input::load_checked(&source, expect, None, &device)?;
        let estimator = args.input.estimator(model, device.clone());
        predictors.push(Box::new(ModelPredictor { name, estimator }));
    }
    if args.baselines {
        predictors.push(Box::new(depth_eval::baseline::Constant));
        predictors.push(Box::new(depth_eval::baseline::PositionPrior));
    }
    if let Some(dir) = &args.pred_dir {
        let kind = match args.pred_kind {
            PredKind::Depth => TargetKind::Depth,
            PredKind::Disparity => TargetKind::Disparity,
        };
        predictors.push(Box::new(PredDir::new(dir, kind)?));
    }
    let models: Vec<String> = predictors.iter().map(|p| p.name().to_string()).collect();

    let mut unavailable = Vec::new();
    let mut opened = Vec::new();
    for b in benchmarks {
        // only a dataset that is not there is "not run"; a config that does not load, an
        // unknown dataset or a broken one is an error
        match cfg.open(b) {
            Ok(d) => opened.push((b, d)),
            Err(e @ depth_eval::EvalError::Data(depth_data::DataError::Absent { .. })) => {
                unavailable.push(Unavailable { name: b.name.clone(), reason: e.to_string() })
            }
            Err(e) => return Err(XtaskError::Failed(format!("benchmark '{}': {e}", b.name))),
        }
    }
    // pairwise sets whose annotations are missing or unreadable are listed, not fatal
    let mut pair_sets = Vec::new();
    for p in pairwise {
        if !p.annotations.exists() {
            let reason =
                format!("{} is missing; see the da2k entry in configs/data.toml", p.annotations.display());
            unavailable.push(Unavailable { name: p.name.clone(), reason });
            continue;
        }
        match depth_eval::pairwise::read_annotations(&p.annotations) {
            Ok(ann) => pair_sets.push((p, ann)),
            Err(e) => unavailable.push(Unavailable { name: p.name.clone(), reason: e.to_string() }),
        }
    }
    let items: usize =
        opened.iter().map(|(b, d)| depth_eval::runner::item_count(b, d.as_ref())).sum::<usize>()
            + pair_sets.iter().map(|(_, ann)| ann.len()).sum::<usize>();
    let total = items * predictors.len();
    let bar = crate::progress::bar(total as u64, "eval");
    let mut runner = Runner {
        predictors,
        out: Some(args.out.clone()),
        visualize: args.visualize.unwrap_or(cfg.visualize),
        ply: args.ply,
    };
    let mut results = Vec::new();
    for (b, data) in &opened {
        bar.set_message(b.name.clone());
        results.push(runner.run_benchmark(b, data.as_ref(), &|| bar.inc(1)));
    }
    let mut pair_results = Vec::new();
    for (p, ann) in &pair_sets {
        bar.set_message(p.name.clone());
        pair_results.extend(runner.run_pairwise(p, ann, &|| bar.inc(1)));
    }
    bar.finish();
    let report = Report {
        config: args.config.display().to_string(),
        models,
        benchmarks: results,
        pairwise: pair_results,
        unavailable,
    };
    report.write(&args.out)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_specs_name_a_source_and_an_optional_size() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("student.safetensors");
        std::fs::write(&file, b"x").unwrap();
        let f = file.to_str().unwrap();
        let spec = |s: &str| parse_model(s).unwrap();
        assert_eq!(spec("vitl"), ("vitl".into(), WeightsSource::Official(Encoder::Vitl), None));
        assert_eq!(spec(f), ("student".into(), WeightsSource::File(file.clone()), None));
        assert_eq!(spec(&format!("s={f}")), ("s".into(), WeightsSource::File(file.clone()), None));
        assert_eq!(
            spec(&format!("vits:{f}")),
            ("vits-student".into(), WeightsSource::File(file.clone()), Some(Encoder::Vits))
        );
        assert_eq!(
            spec("vitb:acme/depth:m.pth"),
            (
                "vitb-depth".into(),
                WeightsSource::Hub { repo: "acme/depth".into(), file: Some("m.pth".into()) },
                Some(Encoder::Vitb)
            )
        );
        let err = parse_model("t=nothing/here/at/all").unwrap_err().to_string();
        assert!(err.contains("--model t=nothing/here/at/all") && err.contains("owner/name"), "{err}");
    }
}
