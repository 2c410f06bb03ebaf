//! The mini reproduction's `report.md` (and `report.json`): the pooled table of every model on
//! the held-out scenes and the real frames, the ratios the recipe expects, each benchmark's
//! numbers, the stages, the loss curves and the pictures.

use super::Stage;
use crate::error::Result;
use depth_eval::{Metrics, Report};
use depth_train::RunDir;
use depth_train::log::{Record, read_log};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

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
    let mut series = Vec::new();
    for name in ["teacher", "student", "synthetic_only"] {
        let records = read_log(&RunDir::new(out.join(name)))?;
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

/// The models of the table: (label, name in the evaluation).
const MODELS: [(&str, &str); 5] = [
    ("constant", "constant"),
    ("position prior", "position prior"),
    ("teacher", "teacher"),
    ("distilled student", "student"),
    ("synthetic-only student", "synthetic_only"),
];

/// Pooled (AbsRel, δ1, images) per model: (held-out synthetic, real frames).
type Table = std::collections::BTreeMap<&'static str, (Option<(f64, f64, usize)>, Option<(f64, f64, usize)>)>;

/// Writes `report.md`, `report.json` and `loss_curves.png` into `out`; returns the report's path.
pub(super) fn write(
    out: &Path,
    report: &Report,
    stages: &[Stage],
    total: f64,
    input_size: usize,
) -> Result<PathBuf> {
    loss_curves(out)?;
    let real: Vec<&str> =
        report.benchmarks.iter().map(|b| b.name.as_str()).filter(|n| *n != "synth_heldout").collect();
    let mut s = String::new();
    introduction(&mut s, total, input_size);
    let table = pooled_table(&mut s, report, &real);
    ratios(&mut s, &table);
    per_benchmark(&mut s, report);
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
    pictures(&mut s, report);
    let path = out.join("report.md");
    depth_core::atomic::write_atomic(&path, |w| w.write_all(s.as_bytes()))?;
    let json = serde_json::json!({ "stages": stages, "total_seconds": total, "report": report });
    let bytes = serde_json::to_vec_pretty(&json).expect("serialises");
    depth_core::atomic::write_atomic(&out.join("report.json"), |w| w.write_all(&bytes))?;
    Ok(path)
}

fn introduction(s: &mut String, total: f64, input_size: usize) {
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
}

/// The pooled table of every model; returns its numbers.
fn pooled_table(s: &mut String, report: &Report, real: &[&str]) -> Table {
    let synth_n = pooled(report, "constant", &["synth_heldout"]).map_or(0, |p| p.2);
    let real_n = pooled(report, "constant", real).map_or(0, |p| p.2);
    let _ = writeln!(
        s,
        "| model | held-out synthetic ({synth_n}) AbsRel / δ1 | real frames ({real_n}: {}) AbsRel / δ1 |",
        real.join(", ")
    );
    let _ = writeln!(s, "|---|---|---|");
    let cell =
        |p: Option<(f64, f64, usize)>| p.map_or("n/a".to_string(), |(a, d, _)| format!("{a:.3} / {d:.3}"));
    let mut table = Table::new();
    for (label, model) in MODELS {
        let (sy, re) = (pooled(report, model, &["synth_heldout"]), pooled(report, model, real));
        table.insert(model, (sy, re));
        let _ = writeln!(s, "| {label} | {} | {} |", cell(sy), cell(re));
    }
    table
}

/// The AbsRel ratios the recipe expects, each against its target.
fn ratios(s: &mut String, table: &Table) {
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
}

fn per_benchmark(s: &mut String, report: &Report) {
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
}

fn pictures(s: &mut String, report: &Report) {
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
}
