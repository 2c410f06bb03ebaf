//! `cargo xtask eval`: benchmarks from configs/eval.toml for one or more models, or for
//! precomputed predictions (`--pred-dir`), into a markdown + JSON report with pictures
//! (depth-eval's `evaluate`). Items that fail are listed in the report and make the run end
//! non-zero.

use crate::error::Result;
use crate::progress::Bar;
use depth_core::DeviceSpec;
use depth_core::config::ConfigFile;
use depth_data::TargetKind;
use depth_eval::{EvalConfig, Evaluation, Mode, ModelPredictor, PredDir, Predictor, Report};
use depth_models::NamedModel;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    #[arg(long, default_value = "configs/eval.toml")]
    config: PathBuf,
    /// Benchmarks (or pairwise sets) to run; default: all in the config, skipping those whose
    /// data is missing (listed in the report). A named benchmark that is missing is an error.
    #[arg(long = "benchmark")]
    benchmarks: Vec<String>,
    /// A model as [NAME=]ENCODER[:WEIGHTS], e.g. `vits`, `student=vits:runs/student.safetensors`,
    /// `vitl:depth-anything/Depth-Anything-V2-Large`, or [NAME=]PATH for a checkpoint written by
    /// `train` (any size: its config is in the file). Repeat for several. Default (without
    /// --pred-dir): the official vits checkpoint.
    #[arg(long = "model")]
    models: Vec<NamedModel>,
    /// Precomputed predictions: DIR/<image stem>.npy, float32 (H, W).
    #[arg(long)]
    pred_dir: Option<PathBuf>,
    /// What the .npy files in --pred-dir hold: depth or disparity.
    #[arg(long, default_value = "disparity")]
    pred_kind: TargetKind,
    /// Score every benchmark with this protocol instead of the config's: relative or metric
    /// (e.g. `metric` for a metric-depth model on the standard benchmarks).
    #[arg(long)]
    mode: Option<Mode>,
    #[arg(long, default_value = "runs/eval")]
    out: PathBuf,
    #[command(flatten)]
    input: crate::net_input::NetInput,
    /// Side-by-side pictures per benchmark and model (default: the config's `visualize`).
    #[arg(long)]
    visualize: Option<usize>,
    /// Also write a point cloud (.ply) of the aligned prediction beside each picture, where the
    /// dataset knows the camera intrinsics.
    #[arg(long)]
    ply: bool,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    /// Also score the constant-disparity and position-prior (disparity = row / H) baselines.
    #[arg(long)]
    baselines: bool,
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
    Ok(report.check(&args.benchmarks, &args.out)?)
}

/// The predictors the flags name: the models (the official vits when nothing else is asked
/// for), the baselines, the prediction folder.
fn predictors(args: &EvalArgs) -> Result<Vec<Box<dyn Predictor>>> {
    let device = args.device.open()?;
    let mut predictors: Vec<Box<dyn Predictor>> = Vec::new();
    let mut models = args.models.clone();
    if models.is_empty() && args.pred_dir.is_none() && !args.baselines {
        models.push("vits".parse()?);
    }
    for m in models {
        tracing::info!("loading {}: {} on {}", m.name, m.source, args.device);
        let estimator = args.input.estimator(m.load(None, &device)?, device.clone());
        predictors.push(Box::new(ModelPredictor { name: m.name, estimator }));
    }
    if args.baselines {
        predictors.push(Box::new(depth_eval::baseline::Constant));
        predictors.push(Box::new(depth_eval::baseline::PositionPrior));
    }
    if let Some(dir) = &args.pred_dir {
        predictors.push(Box::new(PredDir::new(dir, args.pred_kind)?));
    }
    Ok(predictors)
}

/// Runs the evaluation and writes its report; returns it.
fn evaluate(args: &EvalArgs) -> Result<Report> {
    let mut config = EvalConfig::load(&args.config, &[])?;
    if let Some(mode) = args.mode {
        config.benchmarks.iter_mut().for_each(|b| b.mode = mode);
    }
    let job = Evaluation {
        config,
        config_path: args.config.clone(),
        only: args.benchmarks.clone(),
        predictors: predictors(args)?,
        out: args.out.clone(),
        visualize: args.visualize,
        ply: args.ply,
    };
    Ok(depth_eval::evaluate(job, &Bar::new("eval"))?)
}
