//! `cargo xtask train` with no `--config`: the mini reproduction of the Depth Anything V2
//! recipe on this machine, from nothing but the repository —
//! 1. a teacher trained from scratch on procedural scenes with exact depth (configs/mini/teacher.toml),
//! 2. the frozen teacher pseudo-labels the real photos in assets/photos (`--unlabeled` adds more),
//! 3. a ~4× smaller student distilled from those pseudo-labels only (student.toml),
//! 4. the paper's ablation: the same student on the synthetic ground truth only (student_synth.toml),
//! 5. the constant and position-prior baselines, the teacher and both students evaluated on
//!    held-out scenes and real RGB-D frames (eval.toml; `--gt` adds more),
//! 6. `report.md` with the table, the loss curves and side-by-side pictures.
//!
//! Every stage is a normal run of `train`, `pseudo-label` or `eval` with its own config, so any
//! one can be rerun alone. Killed at any point, the same command finishes the work: finished
//! runs are skipped, interrupted ones resumed from their checkpoint, finished labels verified.

use crate::error::{Result, XtaskError};
use crate::eval::{EvalArgs, ModeArg, PredKind};
use crate::net_input::NetInput;
use crate::pseudo_label::PseudoLabelArgs;
use depth_data::config::{DataConfig, DatasetSpec, Kind};
use depth_eval::{BenchmarkSpec, EvalConfig, Metrics, Mode, Report};
use depth_train::pseudo_label::Shard;
use depth_train::{TrainConfig, Trainer};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What the pipeline was asked for.
pub struct MiniArgs {
    /// The stage configs (teacher.toml, student.toml, student_synth.toml, data.toml, eval.toml).
    pub configs: PathBuf,
    pub out: PathBuf,
    pub unlabeled: Vec<PathBuf>,
    pub gt: Vec<PathBuf>,
    /// Applied to every training stage.
    pub sets: Vec<String>,
    pub device: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
struct Stage {
    name: String,
    seconds: f64,
    note: String,
}

/// Trains (or resumes, or skips when finished) the run `cfg` (read from `config`).
fn train_stage(name: &str, config: &Path, cfg: TrainConfig) -> Result<Stage> {
    let started = Instant::now();
    let run = cfg.out.clone();
    let done = run.join(depth_train::trainer::FINAL_MODEL).is_file()
        && depth_train::checkpoint::latest(&run.join("checkpoints"))?
            .is_some_and(|c| c.step == cfg.schedule.steps);
    if done {
        return Ok(Stage {
            name: name.into(),
            seconds: 0.0,
            note: format!("already finished in {}", run.display()),
        });
    }
    let mut trainer = if run.join(depth_train::trainer::CONFIG_FILE).is_file() {
        let saved = TrainConfig::load(&run.join(depth_train::trainer::CONFIG_FILE), &[])?;
        if saved != cfg {
            return Err(XtaskError::Failed(format!(
                "{} holds a {name} run made with another configuration than {}; delete the folder to start it again",
                run.display(),
                config.display()
            )));
        }
        Trainer::resume(&run, None)?
    } else {
        Trainer::start(cfg)?
    };
    let from = trainer.state().step;
    let bar = crate::progress::bar(0, name);
    let outcome = trainer.run(&bar);
    bar.finish();
    let outcome = outcome?;
    let json = serde_json::to_vec_pretty(&outcome).expect("serialises");
    depth_core::atomic::write_atomic(&run.join("summary.json"), |w| w.write_all(&json))?;
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
/// extra unlabeled folders and ground-truth sets.
fn data_config(args: &MiniArgs) -> Result<DataConfig> {
    let mut data = DataConfig::load(&args.configs.join("data.toml"))?;
    for d in &mut data.datasets {
        if d.kind == Kind::Pseudo {
            d.store = Some(args.out.join("labels"));
        }
    }
    let base = data.get("photos_pseudo")?.clone();
    for (i, dir) in args.unlabeled.iter().enumerate() {
        data.datasets.push(DatasetSpec {
            name: format!("unlabeled{i}_pseudo"),
            root: dir.clone(),
            store: Some(args.out.join(format!("labels_unlabeled{i}"))),
            licence: "given with --unlabeled".into(),
            expected: None,
            ..base.clone()
        });
    }
    for (i, dir) in args.gt.iter().enumerate() {
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
    Ok(data)
}

fn write_toml<T: Serialize>(value: &T, path: &Path) -> Result<()> {
    let text = toml::to_string(value).map_err(|e| XtaskError::Failed(format!("{}: {e}", path.display())))?;
    depth_core::atomic::write_atomic(path, |w| w.write_all(text.as_bytes()))?;
    Ok(())
}

pub fn run(args: MiniArgs) -> Result<()> {
    let started = Instant::now();
    std::fs::create_dir_all(&args.out)
        .map_err(|e| depth_core::CoreError::Write { path: args.out.clone(), source: e })?;
    let out = args.out.canonicalize().map_err(|e| XtaskError::Io { path: args.out.clone(), source: e })?;
    let configs =
        args.configs.canonicalize().map_err(|e| XtaskError::Io { path: args.configs.clone(), source: e })?;
    let args = MiniArgs { out: out.clone(), configs, ..args };
    let data = data_config(&args)?;
    let data_path = out.join("data.toml");
    write_toml(&data, &data_path)?;
    let mut eval = EvalConfig::load(&args.configs.join("eval.toml"))?;
    eval.data = data_path.clone();
    for i in 0..args.gt.len() {
        eval.benchmarks.push(BenchmarkSpec {
            name: format!("gt{i}"),
            dataset: Some(format!("gt{i}")),
            synth: None,
            mode: Mode::Relative,
            min_depth: 1e-3,
            max_depth: 80.0,
            crop: depth_eval::Crop::None,
            limit: None,
        });
    }
    let eval_path = out.join("eval.toml");
    write_toml(&eval, &eval_path)?;

    let mut stages = Vec::new();
    let stage_sets = |name: &str| -> Vec<String> {
        let mut s =
            vec![format!("out={}", out.join(name).display()), format!("data.config={}", data_path.display())];
        if let Some(d) = &args.device {
            s.push(format!("device={d}"));
        }
        s.extend(args.sets.iter().cloned());
        s
    };

    // 1. the teacher, on synthetic scenes only
    let teacher_cfg = args.configs.join("teacher.toml");
    let teacher = TrainConfig::load(&teacher_cfg, &stage_sets("teacher"))?;
    stages.push(train_stage("teacher", &teacher_cfg, teacher.clone())?);
    let input_size = teacher.data.loader.augment.crop.unwrap_or(teacher.data.loader.augment.input_size);
    let teacher_model = out.join("teacher").join(depth_train::trainer::FINAL_MODEL);

    // 2. pseudo-labels of the real photos (and of --unlabeled folders)
    let t = Instant::now();
    let mut labelled = 0;
    let photo_sets: Vec<(String, PathBuf, PathBuf)> =
        std::iter::once((
            "photos_pseudo".to_string(),
            data.get("photos_pseudo")?.root.clone(),
            out.join("labels"),
        ))
        .chain(args.unlabeled.iter().enumerate().map(|(i, d)| {
            (format!("unlabeled{i}_pseudo"), d.clone(), out.join(format!("labels_unlabeled{i}")))
        }))
        .collect();
    for (_, images, store) in &photo_sets {
        let summary = crate::pseudo_label::label(&PseudoLabelArgs {
            teacher: teacher_model.display().to_string(),
            images: Some(images.clone()),
            dataset: None,
            data_config: data_path.clone(),
            store: store.clone(),
            shard: Some(Shard::ALL),
            input: NetInput { input_size, ..NetInput::default() },
            batch_size: 4,
            device: args.device.clone().unwrap_or_else(|| "cpu".into()),
        })?;
        if !summary.failed.is_empty() {
            return Err(XtaskError::SomeFailed { failed: summary.failed.len(), total: summary.images });
        }
        labelled += summary.images;
    }
    stages.push(Stage {
        name: "pseudo-labels".into(),
        seconds: t.elapsed().as_secs_f64(),
        note: format!("{labelled} real photos labelled by the teacher at input size {input_size}"),
    });

    // 3. the distilled student, on pseudo-labels only (one source per labelled folder);
    // 4. the synthetic-only ablation
    let student_cfg = args.configs.join("student.toml");
    let mut student = TrainConfig::load(&student_cfg, &stage_sets("student"))?;
    let template = student.data.sources[0].clone();
    for (name, _, _) in photo_sets.iter().skip(1) {
        student
            .data
            .sources
            .push(depth_train::config::SourceSpec { dataset: Some(name.clone()), ..template.clone() });
    }
    stages.push(train_stage("student", &student_cfg, student)?);
    let synth_cfg = args.configs.join("student_synth.toml");
    stages.push(train_stage(
        "synthetic_only",
        &synth_cfg,
        TrainConfig::load(&synth_cfg, &stage_sets("synthetic_only"))?,
    )?);

    // 5. evaluation of the baselines, the teacher and both students
    let t = Instant::now();
    let model =
        |name: &str| format!("{name}={}", out.join(name).join(depth_train::trainer::FINAL_MODEL).display());
    let eval_args = EvalArgs {
        config: eval_path.clone(),
        benchmarks: Vec::new(),
        models: vec![model("teacher"), model("student"), model("synthetic_only")],
        pred_dir: None,
        pred_kind: PredKind::Disparity,
        mode: None::<ModeArg>,
        out: out.join("eval"),
        input: NetInput { input_size, ..NetInput::default() },
        visualize: None,
        ply: false,
        device: args.device.clone().unwrap_or_else(|| "cpu".into()),
        baselines: true,
    };
    let report = crate::eval::evaluate(&eval_args)?;
    crate::eval::check(&eval_args, &report)?;
    stages.push(Stage {
        name: "evaluation".into(),
        seconds: t.elapsed().as_secs_f64(),
        note: format!("{} benchmarks, {} not available", report.benchmarks.len(), report.unavailable.len()),
    });

    // 6. the report
    let total = started.elapsed().as_secs_f64();
    let path = write_report(&out, &report, &stages, total, input_size)?;
    println!("mini reproduction finished in {:.1} min; report: {}", total / 60.0, path.display());
    Ok(())
}

/// (AbsRel, δ1, images) of `model` over the items of the benchmarks `names` (mean of per-image
/// metrics over all of them together).
fn pooled(report: &Report, model: &str, names: &[&str]) -> Option<(f64, f64, usize)> {
    let items: Vec<Metrics> = report
        .benchmarks
        .iter()
        .filter(|b| names.contains(&b.name.as_str()))
        .flat_map(|b| {
            b.models.iter().filter(|m| m.model == model).flat_map(|m| m.items.iter().map(|i| i.metrics))
        })
        .collect();
    if items.is_empty() {
        return None;
    }
    let n = items.len() as f64;
    Some((
        items.iter().map(|m| m.abs_rel).sum::<f64>() / n,
        items.iter().map(|m| m.d1).sum::<f64>() / n,
        items.len(),
    ))
}

/// The loss curves of the three training runs in one picture.
fn loss_curves(out: &Path) -> Result<()> {
    use depth_eval::plot::{LinePlot, Series};
    use depth_train::log::{Record, read_log};
    let mut series = Vec::new();
    for name in ["teacher", "student", "synthetic_only"] {
        let records = read_log(&out.join(name)).map_err(|e| XtaskError::Failed(e.to_string()))?;
        let points: Vec<(f64, f64)> = records
            .iter()
            .filter_map(|r| match r {
                Record::Train(s) if s.loss.is_finite() => Some((s.step as f64, s.loss)),
                _ => None,
            })
            .collect();
        // running mean over 20 steps: the raw curves are noisy at batch 8
        let smooth: Vec<(f64, f64)> = points
            .iter()
            .enumerate()
            .map(|(i, &(x, _))| {
                let lo = i.saturating_sub(19);
                (x, points[lo..=i].iter().map(|p| p.1).sum::<f64>() / (i - lo + 1) as f64)
            })
            .collect();
        series.push(Series::new(name, smooth));
    }
    let plot = LinePlot {
        title: "training loss (mean of 20 steps)".into(),
        x_label: "step".into(),
        y_label: "L_ssi + 2 L_gm".into(),
        series,
        log_y: true,
    };
    depth_eval::visualize::save_png(&plot.render(900, 500), &out.join("loss_curves.png"))?;
    Ok(())
}

fn write_report(
    out: &Path,
    report: &Report,
    stages: &[Stage],
    total: f64,
    input_size: usize,
) -> Result<PathBuf> {
    loss_curves(out)?;
    let real: Vec<&str> =
        report.benchmarks.iter().map(|b| b.name.as_str()).filter(|n| *n != "synth_heldout").collect();
    let models = [
        ("constant", "constant"),
        ("position prior", "position prior"),
        ("teacher", "teacher"),
        ("distilled student", "student"),
        ("synthetic-only student", "synthetic_only"),
    ];
    let mut s = String::new();
    let _ = writeln!(s, "# Mini reproduction of the Depth Anything V2 recipe\n");
    let _ = writeln!(
        s,
        "A teacher trained from scratch on procedural scenes with exact depth labels the real photos of \
         `assets/photos`; a student about 4× smaller learns from those pseudo-labels only, beside the same \
         student trained on the synthetic ground truth only. Wall time {:.1} min on this machine.\n",
        total / 60.0
    );
    let _ = writeln!(
        s,
        "**Protocol.** The official relative protocol: least-squares scale and shift of the predicted \
         disparity to 1/gt over the valid pixels, depth = 1/max(aligned, 1/max_depth), the nine metrics \
         averaged over images. Each image is resized as the official inference does (aspect ratio kept, \
         shorter side {input_size} = the training crop, sides multiples of 14), the prediction resized back \
         bilinearly. The real frames are pooled: every frame of every real benchmark counts once.\n"
    );
    let synth_n = pooled(report, "constant", &["synth_heldout"]).map_or(0, |p| p.2);
    let real_n = pooled(report, "constant", &real).map_or(0, |p| p.2);
    let _ = writeln!(
        s,
        "| model | held-out synthetic ({synth_n}) AbsRel / δ1 | real frames ({real_n}: {}) AbsRel / δ1 |",
        real.join(", ")
    );
    let _ = writeln!(s, "|---|---|---|");
    let cell =
        |p: Option<(f64, f64, usize)>| p.map_or("n/a".to_string(), |(a, d, _)| format!("{a:.3} / {d:.3}"));
    let mut table = std::collections::BTreeMap::new();
    for (label, model) in models {
        let (sy, re) = (pooled(report, model, &["synth_heldout"]), pooled(report, model, &real));
        table.insert(model, (sy, re));
        let _ = writeln!(s, "| {label} | {} | {} |", cell(sy), cell(re));
    }
    let abs = |m: &str, synth: bool| table.get(m).and_then(|(a, b)| if synth { *a } else { *b }).map(|p| p.0);
    let ratio = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a / b);
    let checks = [
        (
            "teacher / constant on held-out synthetic (≤ 0.65)",
            ratio(abs("teacher", true), abs("constant", true)),
            0.65,
        ),
        (
            "teacher / position prior on held-out synthetic (< 1)",
            ratio(abs("teacher", true), abs("position prior", true)),
            1.0,
        ),
        (
            "distilled student / teacher on held-out synthetic (≤ 1.2)",
            ratio(abs("student", true), abs("teacher", true)),
            1.2,
        ),
        (
            "distilled student / teacher on the real frames (≤ 1.2)",
            ratio(abs("student", false), abs("teacher", false)),
            1.2,
        ),
        (
            "distilled / synthetic-only student on the real frames (≤ 1.1)",
            ratio(abs("student", false), abs("synthetic_only", false)),
            1.1,
        ),
    ];
    let _ = writeln!(s, "\n| AbsRel ratio | value | target |\n|---|---|---|");
    for (what, value, target) in checks {
        let verdict = match value {
            Some(v) if v <= target && (target != 1.0 || v < 1.0) => "met",
            Some(_) => "**missed**",
            None => "n/a",
        };
        let _ = writeln!(s, "| {what} | {} | {verdict} |", value.map_or("n/a".into(), |v| format!("{v:.3}")));
    }
    let _ = writeln!(
        s,
        "\n## Per benchmark\n\n| benchmark | model | images | AbsRel | δ1 |\n|---|---|---|---|---|"
    );
    for b in &report.benchmarks {
        for m in &b.models {
            if let Some(mean) = m.mean {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {:.3} | {:.3} |",
                    b.name,
                    m.model,
                    m.items.len(),
                    mean.abs_rel,
                    mean.d1
                );
            }
        }
    }
    for u in &report.unavailable {
        let _ = writeln!(s, "\nNot run: {} — {}", u.name, u.reason.lines().next().unwrap_or(""));
    }
    let _ = writeln!(s, "\n## Stages\n\n| stage | time | |\n|---|---|---|");
    for st in stages {
        let _ = writeln!(s, "| {} | {:.1} min | {} |", st.name, st.seconds / 60.0, st.note);
    }
    let _ = writeln!(s, "\n## Loss curves\n\n![loss curves](loss_curves.png)\n");
    let _ = writeln!(
        s,
        "Per run: `teacher/loss.png`, `student/loss.png`, `synthetic_only/loss.png`; TensorBoard: `tensorboard --logdir {}`.\n",
        out.display()
    );
    let _ = writeln!(
        s,
        "## Pictures\n\nImage | prediction (aligned) | ground truth | error, per model; all in `eval/report.md`.\n"
    );
    for b in &report.benchmarks {
        for m in &b.models {
            if let Some(p) = m.pictures.first() {
                let _ = writeln!(s, "**{} — {}**\n\n![{}](eval/{p})\n", b.name, m.model, m.model);
            }
        }
    }
    let path = out.join("report.md");
    depth_core::atomic::write_atomic(&path, |w| w.write_all(s.as_bytes()))?;
    let json = serde_json::json!({ "stages": stages, "total_seconds": total, "report": report });
    let bytes = serde_json::to_vec_pretty(&json).expect("serialises");
    depth_core::atomic::write_atomic(&out.join("report.json"), |w| w.write_all(&bytes))?;
    Ok(path)
}
