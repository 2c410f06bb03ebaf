//! `cargo xtask train` with no `--config`: the mini reproduction of the Depth Anything V2
//! recipe on this machine, from nothing but the repository —
//! 1. a teacher trained from scratch on procedural scenes with exact depth (configs/mini/teacher.toml),
//! 2. the frozen teacher pseudo-labels the real photos in assets/photos (`--unlabeled` adds more),
//! 3. a ~4× smaller student distilled from those pseudo-labels only (student.toml),
//! 4. the paper's ablation: the same student on the synthetic ground truth only (student_synth.toml),
//! 5. the constant and position-prior baselines, the teacher and both students evaluated on
//!    held-out scenes and real RGB-D frames (eval.toml; `--gt` adds more),
//! 6. `report.md` with the table, the loss curves and side-by-side pictures (`report.rs`).
//!
//! Every stage is a library call with typed options — the learner, depth-train's labelling job,
//! depth-eval's evaluation — with its own config, so any one can be rerun alone. Killed at any
//! point, the same command finishes the work: finished runs are skipped, interrupted ones
//! resumed from their checkpoint, finished labels verified.

mod report;

use crate::error::{Result, XtaskError};
use crate::progress::Bar;
use depth_core::config::ConfigFile;
use depth_core::{CoreError, DeviceSpec};
use depth_data::{DataConfig, DatasetRef, DatasetSpec, Kind};
use depth_eval::{BenchmarkSpec, EvalConfig, Evaluation, Mode, ModelPredictor, Predictor, Report};
use depth_models::{DEFAULT_MAX_TOKENS, DepthEstimator, NamedModel};
use depth_train::pseudo_label::{LabelJob, Shard};
use depth_train::{Learner, RunDir, RunState, SourceSpec, TrainConfig};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What the pipeline was asked for.
pub struct MiniOptions {
    /// The stage configs (teacher.toml, student.toml, student_synth.toml, data.toml, eval.toml).
    pub configs: PathBuf,
    pub out: PathBuf,
    pub unlabeled: Vec<PathBuf>,
    pub gt: Vec<PathBuf>,
    /// Applied to every training stage.
    pub sets: Vec<String>,
    /// Overrides every stage's device (None: the configs' own).
    pub device: Option<DeviceSpec>,
}

#[derive(Clone, Debug, Serialize)]
struct Stage {
    name: String,
    seconds: f64,
    note: String,
}

/// The run's own data and eval configs, written into `out`.
struct Layout {
    data: DataConfig,
    data_path: PathBuf,
    eval_path: PathBuf,
    /// What the held-out scenes are textured with (for the report).
    heldout_textures: String,
}

pub fn run(opts: MiniOptions) -> Result<()> {
    let started = Instant::now();
    std::fs::create_dir_all(&opts.out).map_err(|e| CoreError::write(&opts.out, e))?;
    let out = opts.out.canonicalize().map_err(|e| CoreError::io(&opts.out, e))?;
    let configs = opts.configs.canonicalize().map_err(|e| CoreError::io(&opts.configs, e))?;
    let opts = MiniOptions { out: out.clone(), configs, ..opts };
    let layout = write_layout(&opts)?;
    let mut stages = Vec::new();

    // 1. the teacher, on synthetic scenes only
    let teacher = stage_config(&opts, &layout, "teacher.toml", "teacher")?;
    let aug = &teacher.data.loader.augment;
    let input_size = aug.crop.unwrap_or(aug.input_size);
    stages.push(train_stage("teacher", &opts.configs.join("teacher.toml"), teacher)?);

    // 2. pseudo-labels of the real photos (and of --unlabeled folders)
    let photo_sets = photo_sets(&opts, &layout)?;
    stages.push(pseudo_labels(&opts, &photo_sets, input_size)?);

    // 3. the distilled student, on pseudo-labels only (one source per labelled folder);
    // 4. the synthetic-only ablation
    let mut student = stage_config(&opts, &layout, "student.toml", "student")?;
    let template = student.data.sources[0].clone();
    for (name, _, _) in photo_sets.iter().skip(1) {
        student.data.sources.push(SourceSpec { data: DatasetRef::Named(name.clone()), ..template.clone() });
    }
    stages.push(train_stage("student", &opts.configs.join("student.toml"), student)?);
    let synth = stage_config(&opts, &layout, "student_synth.toml", "synthetic_only")?;
    stages.push(train_stage("synthetic_only", &opts.configs.join("student_synth.toml"), synth)?);

    // 5. evaluation of the baselines, the teacher and both students
    let t = Instant::now();
    let report = evaluate(&opts, &layout, input_size)?;
    stages.push(Stage {
        name: "evaluation".into(),
        seconds: t.elapsed().as_secs_f64(),
        note: format!("{} benchmarks, {} not available", report.benchmarks.len(), report.unavailable.len()),
    });

    // 6. the report
    let total = started.elapsed().as_secs_f64();
    let ctx = report::Context {
        stages: &stages,
        total_seconds: total,
        input_size,
        heldout_textures: layout.heldout_textures.clone(),
    };
    let path = report::write(&out, &report, &ctx)?;
    println!("mini reproduction finished in {:.1} min; report: {}", total / 60.0, path.display());
    Ok(())
}

/// The config of a training stage: the template's, with its run folder in `out`, the run's
/// data config, the device and the `--set` overrides.
fn stage_config(opts: &MiniOptions, layout: &Layout, file: &str, name: &str) -> Result<TrainConfig> {
    let mut sets = vec![
        format!("out={}", opts.out.join(name).display()),
        format!("data.config={}", layout.data_path.display()),
    ];
    sets.extend(opts.device.map(|d| format!("device=\"{d}\"")));
    sets.extend(opts.sets.iter().cloned());
    Ok(TrainConfig::load(&opts.configs.join(file), &sets)?)
}

/// Trains (or resumes, or skips when finished) the run of `cfg` (read from `config`).
fn train_stage(name: &str, config: &Path, cfg: TrainConfig) -> Result<Stage> {
    let started = Instant::now();
    let run = RunDir::new(&cfg.out);
    let last = run.latest_checkpoint()?.map(|c| c.step);
    let mut learner = match run.state() {
        RunState::Finished if last == Some(cfg.schedule.steps) => {
            let note = format!("already finished in {}", run.root().display());
            return Ok(Stage { name: name.into(), seconds: 0.0, note });
        }
        RunState::Finished | RunState::Started => {
            if TrainConfig::load(&run.config(), &[])? != cfg {
                return Err(XtaskError::StageChanged {
                    stage: name.into(),
                    run: run.root().into(),
                    config: config.into(),
                });
            }
            Learner::resume(run.root(), None)?
        }
        RunState::Empty => Learner::start(cfg)?,
    };
    let from = learner.state().step;
    let outcome = learner.run(&Bar::new(name))?;
    let note = format!(
        "{} steps{}, {:.2} images/s, last loss {:.4}",
        outcome.steps,
        if from > 0 { format!(" (resumed at {from})") } else { String::new() },
        outcome.images_per_s,
        outcome.last_loss.unwrap_or(f64::NAN)
    );
    Ok(Stage { name: name.into(), seconds: started.elapsed().as_secs_f64(), note })
}

/// The data config of the run: the template's with the label stores inside `out`, plus the
/// extra unlabeled folders and ground-truth sets; and the eval config over it.
fn write_layout(opts: &MiniOptions) -> Result<Layout> {
    let mut data = DataConfig::load(&opts.configs.join("data.toml"), &[])?;
    for d in &mut data.datasets {
        if d.kind == Kind::Pseudo {
            d.store = Some(opts.out.join("labels"));
        }
    }
    let base = data.get("photos_pseudo")?.clone();
    for (i, dir) in opts.unlabeled.iter().enumerate() {
        data.datasets.push(DatasetSpec {
            name: format!("unlabeled{i}_pseudo"),
            root: dir.clone(),
            store: Some(opts.out.join(format!("labels_unlabeled{i}"))),
            licence: "given with --unlabeled".into(),
            expected: None,
            ..base.clone()
        });
    }
    for (i, dir) in opts.gt.iter().enumerate() {
        data.datasets.push(DatasetSpec {
            name: format!("gt{i}"),
            kind: Kind::Annotations,
            root: dir.clone(),
            split: Some("test_annotations.json".into()),
            store: None,
            licence: "given with --gt".into(),
            expected: None,
            ..base.clone()
        });
    }
    let data_path = opts.out.join("data.toml");
    write_toml(&data, &data_path)?;
    let mut eval = EvalConfig::load(&opts.configs.join("eval.toml"), &[])?;
    eval.data = data_path.clone();
    for i in 0..opts.gt.len() {
        eval.benchmarks.push(BenchmarkSpec {
            name: format!("gt{i}"),
            data: DatasetRef::Named(format!("gt{i}")),
            mode: Mode::Relative,
            min_depth: 1e-3,
            max_depth: 80.0,
            crop: depth_eval::Crop::None,
            limit: None,
        });
    }
    let eval_path = opts.out.join("eval.toml");
    write_toml(&eval, &eval_path)?;
    let heldout_textures = heldout_textures(&eval, &opts.configs.join("eval.toml"))?;
    Ok(Layout { data, data_path, eval_path, heldout_textures })
}

/// The held-out scenes must share no pixel with the images training reads: procedural textures
/// only (the repository's photo folders hold the distillation photos, and the fixtures' hold
/// the same pictures re-encoded, so no photo folder is safe).
fn heldout_textures(eval: &EvalConfig, path: &Path) -> Result<String> {
    let spec = eval.benchmarks.iter().find(|b| b.name == report::HELDOUT).map(|b| &b.data);
    match spec {
        Some(DatasetRef::Synth(spec)) => match spec.photos()? {
            None => Ok("procedural textures only: no crop of any photo, so they share no pixel with an image a \
                        training stage reads"
                .into()),
            Some(folder) => Err(CoreError::config(
                path,
                format!(
                    "benchmark '{}' textures its scenes with the photos of {}, which training reads (or copies of \
                     them): set `photo_fraction = 0.0`",
                    report::HELDOUT,
                    folder.display()
                ),
            )
            .into()),
        },
        _ => Ok("(no held-out benchmark of procedural scenes)".into()),
    }
}

fn write_toml<T: Serialize>(value: &T, path: &Path) -> Result<()> {
    let text = toml::to_string(value).expect("a config serialises");
    depth_core::atomic::write_atomic(path, |w| w.write_all(text.as_bytes()))?;
    Ok(())
}

/// (dataset name, image folder, label store) of every folder the teacher labels.
fn photo_sets(opts: &MiniOptions, layout: &Layout) -> Result<Vec<(String, PathBuf, PathBuf)>> {
    let photos = (
        "photos_pseudo".to_string(),
        layout.data.get("photos_pseudo")?.root.clone(),
        opts.out.join("labels"),
    );
    let extra = opts.unlabeled.iter().enumerate().map(|(i, d)| {
        (format!("unlabeled{i}_pseudo"), d.clone(), opts.out.join(format!("labels_unlabeled{i}")))
    });
    Ok(std::iter::once(photos).chain(extra).collect())
}

/// The finished teacher labels every photo set; a photo that fails stops the pipeline.
fn pseudo_labels(
    opts: &MiniOptions,
    sets: &[(String, PathBuf, PathBuf)],
    input_size: usize,
) -> Result<Stage> {
    let t = Instant::now();
    let teacher: NamedModel =
        RunDir::new(opts.out.join("teacher")).final_model().to_string_lossy().parse()?;
    let mut labelled = 0;
    for (_, images, store) in sets {
        let job = LabelJob {
            teacher: teacher.clone(),
            images: images.clone(),
            store: store.clone(),
            shard: Some(Shard::ALL),
            input_size,
            max_tokens: DEFAULT_MAX_TOKENS,
            precision: depth_core::Precision::F32,
            batch: 4,
            shard_size: None,
            verify: false,
            device: opts.device.unwrap_or_default(),
        };
        let (summary, _) = depth_train::pseudo_label::label(&job, &Bar::new("label"))?;
        for (image, error) in &summary.failed {
            eprintln!("failed: {image}: {error}");
        }
        if !summary.failed.is_empty() {
            return Err(XtaskError::SomeFailed { failed: summary.failed.len(), total: summary.images });
        }
        labelled += summary.images;
    }
    Ok(Stage {
        name: "pseudo-labels".into(),
        seconds: t.elapsed().as_secs_f64(),
        note: format!("{labelled} real photos labelled by the teacher at input size {input_size}"),
    })
}

/// The baselines, the teacher and both students on every benchmark of the run's eval config.
fn evaluate(opts: &MiniOptions, layout: &Layout, input_size: usize) -> Result<Report> {
    let device = opts.device.unwrap_or_default().open()?;
    let mut predictors: Vec<Box<dyn Predictor>> = Vec::new();
    for name in ["teacher", "student", "synthetic_only"] {
        let model: NamedModel =
            format!("{name}={}", RunDir::new(opts.out.join(name)).final_model().display()).parse()?;
        let estimator =
            DepthEstimator::new(model.load(None, &device)?, device.clone()).with_input_size(input_size);
        predictors.push(Box::new(ModelPredictor { name: model.name, estimator }));
    }
    predictors.push(Box::new(depth_eval::baseline::Constant));
    predictors.push(Box::new(depth_eval::baseline::PositionPrior));
    let out = opts.out.join("eval");
    let job = Evaluation {
        config: EvalConfig::load(&layout.eval_path, &[])?,
        config_path: layout.eval_path.clone(),
        only: Vec::new(),
        predictors,
        out: out.clone(),
        visualize: None,
        ply: false,
    };
    let report = depth_eval::evaluate(job, &Bar::new("eval"))?;
    report.check(&[], &out)?;
    Ok(report)
}
