//! The mini reproduction's `report.md` (and `report.json`): every model pooled over the held-out
//! scenes and over the real frames, the comparisons the recipe makes — each a paired difference
//! of per-image AbsRel with a bootstrap interval and the verdict that follows from it, beside
//! what the recipe expects —, each benchmark's numbers, the stages, the loss curves and pictures.

use super::Stage;
use crate::error::Result;
use depth_eval::compare::{PairedDifference, RESAMPLES, Verdict, paired_bootstrap};
use depth_eval::{Metrics, Report};
use depth_train::RunDir;
use depth_train::log::{Record, read_log};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The held-out benchmark of procedural scenes; every other benchmark holds real frames.
pub(super) const HELDOUT: &str = "synth_heldout";

/// What the report says of the evaluation besides its numbers.
pub(super) struct Context<'a> {
    pub stages: &'a [Stage],
    pub total_seconds: f64,
    pub input_size: usize,
    /// What the held-out scenes are textured with.
    pub heldout_textures: String,
}

/// The models, as the report names them and as the evaluation does.
const MODELS: [(&str, &str); 5] = [
    ("constant", "constant"),
    ("position prior", "position prior"),
    ("teacher", "teacher"),
    ("distilled student", "student"),
    ("synthetic-only student", "synthetic_only"),
];

fn label(model: &str) -> &'static str {
    MODELS.iter().find(|(_, m)| *m == model).map_or("?", |(l, _)| l)
}

/// Per-image metrics of `model` over the benchmarks `names`, by (benchmark, image).
fn per_image(report: &Report, model: &str, names: &[&str]) -> BTreeMap<(String, String), Metrics> {
    report
        .benchmarks
        .iter()
        .filter(|b| names.contains(&b.name.as_str()))
        .flat_map(|b| {
            b.models
                .iter()
                .filter(|m| m.model == model)
                .flat_map(|m| m.items.iter().map(|i| ((b.name.clone(), i.id.clone()), i.metrics)))
        })
        .collect()
}

/// (AbsRel, δ1, images) of `model` over the items of the benchmarks `names` (mean of per-image
/// metrics over all of them together).
fn pooled(report: &Report, model: &str, names: &[&str]) -> Option<(f64, f64, usize)> {
    let items = per_image(report, model, names);
    if items.is_empty() {
        return None;
    }
    let n = items.len() as f64;
    Some((
        items.values().map(|m| m.abs_rel).sum::<f64>() / n,
        items.values().map(|m| m.d1).sum::<f64>() / n,
        items.len(),
    ))
}

/// A comparison of the recipe: A against B on a set of benchmarks, and what the recipe expects.
struct Comparison {
    a: &'static str,
    b: &'static str,
    real: bool,
    expect: Verdict,
}

/// The paired difference of per-image AbsRel, A − B, over the images both were scored on, and
/// each one's mean AbsRel over those images.
fn paired(report: &Report, a: &str, b: &str, names: &[&str]) -> Option<(PairedDifference, f64, f64)> {
    let (xa, xb) = (per_image(report, a, names), per_image(report, b, names));
    let common: Vec<(f64, f64)> =
        xa.iter().filter_map(|(k, ma)| xb.get(k).map(|mb| (ma.abs_rel, mb.abs_rel))).collect();
    let (va, vb): (Vec<f64>, Vec<f64>) = common.into_iter().unzip();
    let d = paired_bootstrap(&va, &vb, RESAMPLES, 0)?;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    Some((d, mean(&va), mean(&vb)))
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

/// Writes `report.md`, `report.json` and `loss_curves.png` into `out`; returns the report's path.
pub(super) fn write(out: &Path, report: &Report, ctx: &Context) -> Result<PathBuf> {
    loss_curves(out)?;
    let real: Vec<&str> =
        report.benchmarks.iter().map(|b| b.name.as_str()).filter(|n| *n != HELDOUT).collect();
    let mut s = String::new();
    introduction(&mut s, ctx);
    pooled_table(&mut s, report, &real);
    let verdicts = comparisons(&mut s, report, &real);
    per_benchmark(&mut s, report);
    let _ = writeln!(s, "\n## Stages\n\n| stage | time | |\n|---|---|---|");
    for st in ctx.stages {
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
    let json = serde_json::json!({
        "stages": ctx.stages,
        "total_seconds": ctx.total_seconds,
        "heldout_textures": ctx.heldout_textures,
        "comparisons": verdicts,
        "report": report,
    });
    let bytes = serde_json::to_vec_pretty(&json).expect("serialises");
    depth_core::atomic::write_atomic(&out.join("report.json"), |w| w.write_all(&bytes))?;
    Ok(path)
}

fn introduction(s: &mut String, ctx: &Context) {
    let _ = writeln!(s, "# Mini reproduction of the Depth Anything V2 recipe\n");
    let _ = writeln!(
        s,
        "A teacher trained from scratch on procedural scenes with exact depth labels the real photos of \
         `assets/photos`; a student about 4× smaller learns from those pseudo-labels only, beside the same \
         student trained on the synthetic ground truth only. Wall time {:.1} min on this machine.\n",
        ctx.total_seconds / 60.0
    );
    let _ = writeln!(
        s,
        "**Protocol.** The official relative protocol: least-squares scale and shift of the predicted \
         disparity to 1/gt over the valid pixels, depth = 1/max(aligned, 1/max_depth), the nine metrics \
         averaged over images. Each image is resized as the official inference does (aspect ratio kept, \
         shorter side {} = the training crop, sides multiples of 14), the prediction resized back \
         bilinearly. The real frames are pooled: every frame of every real benchmark counts once. The \
         held-out scenes use seeds no training scene uses and are textured with {}.\n",
        ctx.input_size, ctx.heldout_textures
    );
}

/// Every model's mean AbsRel and δ1 over the held-out scenes and over the real frames.
fn pooled_table(s: &mut String, report: &Report, real: &[&str]) {
    let count = |name: &str| per_image(report, "constant", &[name]).len();
    let frames: Vec<String> = real.iter().map(|n| format!("{n} {}", count(n))).collect();
    let real_n: usize = real.iter().map(|n| count(n)).sum();
    let _ = writeln!(
        s,
        "| model | held-out synthetic ({}) AbsRel / δ1 | real frames ({real_n}: {}) AbsRel / δ1 |",
        count(HELDOUT),
        frames.join(", ")
    );
    let _ = writeln!(s, "|---|---|---|");
    let cell =
        |p: Option<(f64, f64, usize)>| p.map_or("n/a".to_string(), |(a, d, _)| format!("{a:.3} / {d:.3}"));
    for (label, model) in MODELS {
        let (sy, re) = (pooled(report, model, &[HELDOUT]), pooled(report, model, real));
        let _ = writeln!(s, "| {label} | {} | {} |", cell(sy), cell(re));
    }
}

/// The comparisons the recipe makes, each with its interval and verdict beside what the recipe
/// expects, and the paper's central claim in a sentence; returns them for report.json.
fn comparisons(s: &mut String, report: &Report, real: &[&str]) -> Vec<serde_json::Value> {
    use Verdict::{Better, NoDifference};
    let list = [
        Comparison { a: "teacher", b: "constant", real: false, expect: Better },
        Comparison { a: "teacher", b: "position prior", real: false, expect: Better },
        Comparison { a: "student", b: "teacher", real: false, expect: NoDifference },
        Comparison { a: "student", b: "teacher", real: true, expect: NoDifference },
        Comparison { a: "student", b: "synthetic_only", real: true, expect: Better },
        Comparison { a: "teacher", b: "position prior", real: true, expect: Better },
        Comparison { a: "student", b: "position prior", real: true, expect: Better },
        Comparison { a: "synthetic_only", b: "position prior", real: true, expect: Better },
    ];
    let _ = writeln!(
        s,
        "\n## Comparisons\n\nEach row pairs two models on the same images: the mean of their per-image AbsRel \
         difference A − B (below zero: A is better) with a 95% bootstrap interval ({RESAMPLES} resamples of \
         the images, seed 0). The verdict follows from the interval alone: **better** or **worse** when it \
         excludes zero, **no difference** when it holds it.\n"
    );
    let _ = writeln!(
        s,
        "| A vs B | on | images | AbsRel A / B | ratio | A − B [95% interval] | verdict | the recipe expects |\n|---|---|---|---|---|---|---|---|"
    );
    let mut out = Vec::new();
    let mut claim = None;
    for c in &list {
        let names: Vec<&str> = if c.real { real.to_vec() } else { vec![HELDOUT] };
        let on = if c.real { "real frames" } else { "held-out synthetic" };
        let what = format!("{} vs {}", label(c.a), label(c.b));
        let Some((d, ma, mb)) = paired(report, c.a, c.b, &names) else {
            let _ = writeln!(s, "| {what} | {on} | 0 | n/a | n/a | n/a | n/a | {} |", c.expect);
            continue;
        };
        let verdict = d.verdict();
        let _ = writeln!(
            s,
            "| {what} | {on} | {} | {ma:.3} / {mb:.3} | {:.3} | {:+.4} [{:+.4}, {:+.4}] | **{verdict}** | {} |",
            d.images,
            ma / mb,
            d.mean,
            d.lo,
            d.hi,
            c.expect
        );
        if c.a == "student" && c.b == "synthetic_only" {
            claim = Some((verdict, d));
        }
        out.push(serde_json::json!({
            "a": c.a, "b": c.b, "on": on, "abs_rel_a": ma, "abs_rel_b": mb, "difference": d,
            "verdict": verdict.to_string(), "expected": c.expect.to_string(),
        }));
    }
    let sentence = match claim {
        Some((Verdict::Better, _)) => {
            "**supported** here: the distilled student is better, and the interval excludes a tie"
        }
        Some((Verdict::NoDifference, _)) => {
            "**not shown** here: the interval holds zero, so the two students are not told apart on these frames"
        }
        Some((Verdict::Worse, _)) => {
            "**contradicted** here: the distilled student is worse, and the interval excludes a tie"
        }
        None => "not tested (no real frames)",
    };
    let _ = writeln!(
        s,
        "\nThe paper's central claim — a student distilled from a teacher's pseudo-labels of real photos beats \
         the same student trained on synthetic data alone, on real images — is {sentence}."
    );
    out
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
