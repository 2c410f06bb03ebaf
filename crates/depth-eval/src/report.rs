//! The evaluation report: `report.json` (everything, full precision), `report.md` (one row per
//! model × benchmark with the nine metrics, DA-2K accuracies, failed items, benchmarks that were
//! not available, per-image tables linking the pictures) and bar charts of d1 and abs_rel.
//! All files are written atomically.

use crate::error::Result;
use crate::plot::{BarChart, Series};
use crate::runner::{BenchmarkResult, PairwiseResult};
use crate::visualize::save_png;
use crate::{Metrics, Mode};
use depth_core::CoreError;
use std::fmt::Write as _;
use std::path::Path;

/// A benchmark that could not be run, and why (usually: the dataset is not downloaded).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Unavailable {
    pub name: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Report {
    pub config: String,
    pub models: Vec<String>,
    pub benchmarks: Vec<BenchmarkResult>,
    pub pairwise: Vec<PairwiseResult>,
    pub unavailable: Vec<Unavailable>,
}

fn row(m: &Metrics) -> String {
    m.values().iter().map(|v| format!(" {v:.4} |")).collect()
}

impl Report {
    /// Failed items over all benchmarks and models.
    pub fn failures(&self) -> usize {
        self.benchmarks
            .iter()
            .map(|b| b.load_failures.len() + b.models.iter().map(|m| m.failed.len()).sum::<usize>())
            .sum::<usize>()
            + self.pairwise.iter().map(|p| p.failed.len()).sum::<usize>()
    }

    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# Evaluation report\n\nConfig: `{}`. Models: {}.\n",
            self.config,
            self.models.join(", ")
        );
        let _ = writeln!(
            s,
            "Relative mode: least-squares scale and shift of the predicted disparity to 1/gt over valid \
             pixels, then depth = 1/max(aligned, 1/max_depth). Metric mode: predictions scored as given. \
             Every number is the mean of per-image metrics.\n"
        );
        if !self.benchmarks.is_empty() {
            let _ = writeln!(s, "## Results\n");
            let _ = writeln!(
                s,
                "| model | benchmark | mode | images | failed |{}",
                Metrics::NAMES.map(|n| format!(" {n} |")).concat()
            );
            let _ = writeln!(s, "|---|---|---|---:|---:|{}", "---:|".repeat(9));
            for b in &self.benchmarks {
                for m in &b.models {
                    let values = m.mean.as_ref().map_or_else(|| " – |".repeat(9), row);
                    let failed = m.failed.len() + b.load_failures.len();
                    let _ = writeln!(
                        s,
                        "| {} | {} | {} | {} | {failed} |{values}",
                        m.model,
                        b.name,
                        b.mode,
                        m.items.len()
                    );
                }
            }
            for b in self.benchmarks.iter().filter(|b| b.mode == Mode::Relative) {
                for m in &b.models {
                    let constant = m.items.iter().filter(|it| it.scale == 0.0).count();
                    if constant > 0 {
                        let _ = writeln!(
                            s,
                            "\n**Note:** {constant} of the {} predictions of {} on {} are constant over the \
                             scored pixels: the alignment can only fit their mean (scale 0), so they score as \
                             a constant.",
                            m.items.len(),
                            m.model,
                            b.name
                        );
                    }
                }
            }
            let _ = writeln!(s, "\n![d1 per benchmark](d1.png) ![abs_rel per benchmark](abs_rel.png)\n");
        }
        if !self.pairwise.is_empty() {
            let _ = writeln!(
                s,
                "## Pairwise relative depth (DA-2K style)\n\n| model | set | pairs | accuracy | per scene |\n|---|---|---:|---:|---|"
            );
            for p in &self.pairwise {
                let scenes: Vec<String> =
                    p.counts.per_scene.iter().map(|(k, (n, c))| format!("{k}: {c}/{n}")).collect();
                let acc = p.accuracy.map_or("–".into(), |a| format!("{:.4}", a));
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {acc} | {} |",
                    p.model,
                    p.name,
                    p.counts.pairs,
                    scenes.join(", ")
                );
            }
            s.push('\n');
        }
        let failures: Vec<String> = self
            .benchmarks
            .iter()
            .flat_map(|b| {
                let loads = b
                    .load_failures
                    .iter()
                    .map(move |f| format!("- {} (all models): `{}`: {}", b.name, f.id, f.error));
                let models = b.models.iter().flat_map(move |m| {
                    m.failed
                        .iter()
                        .map(move |f| format!("- {} / {}: `{}`: {}", b.name, m.model, f.id, f.error))
                });
                loads.chain(models)
            })
            .chain(self.pairwise.iter().flat_map(|p| {
                p.failed.iter().map(move |f| format!("- {} / {}: `{}`: {}", p.name, p.model, f.id, f.error))
            }))
            .collect();
        if !failures.is_empty() {
            let _ = writeln!(s, "## Failed items\n\n{}\n", failures.join("\n"));
        }
        if !self.unavailable.is_empty() {
            let _ = writeln!(s, "## Not run\n");
            for u in &self.unavailable {
                let _ = writeln!(s, "- **{}**: {}", u.name, u.reason.replace('\n', " "));
            }
            s.push('\n');
        }
        for b in &self.benchmarks {
            for m in &b.models {
                if m.items.is_empty() {
                    continue;
                }
                let _ = writeln!(s, "## {} — {} (per image)\n", b.name, m.model);
                let _ = writeln!(
                    s,
                    "| image |{} scale | shift | valid px |",
                    Metrics::NAMES.map(|n| format!(" {n} |")).concat()
                );
                let _ = writeln!(s, "|---|{}", "---:|".repeat(12));
                for it in &m.items {
                    let _ = writeln!(
                        s,
                        "| `{}` |{} {:.4e} | {:.4e} | {} |",
                        it.id,
                        row(&it.metrics),
                        it.scale,
                        it.shift,
                        it.valid_pixels
                    );
                }
                if !m.pictures.is_empty() {
                    let _ = writeln!(s, "\nPictures (image | prediction | ground truth | error):\n");
                    for p in &m.pictures {
                        let _ = writeln!(s, "![{p}]({p})");
                    }
                }
                s.push('\n');
            }
        }
        s
    }

    /// A grouped bar chart of one metric: benchmarks along x, one bar per model.
    pub fn metric_chart(&self, metric: usize) -> BarChart {
        let series = self
            .models
            .iter()
            .map(|model| {
                let pts = self
                    .benchmarks
                    .iter()
                    .enumerate()
                    .map(|(i, b)| {
                        let v = b
                            .models
                            .iter()
                            .find(|m| &m.model == model)
                            .and_then(|m| m.mean)
                            .map_or(f64::NAN, |m| m.values()[metric]);
                        (i as f64, v)
                    })
                    .collect();
                Series::new(model.clone(), pts)
            })
            .collect();
        BarChart {
            title: format!("{} per benchmark", Metrics::NAMES[metric]),
            y_label: Metrics::NAMES[metric].into(),
            categories: self.benchmarks.iter().map(|b| b.name.clone()).collect(),
            series,
        }
    }

    /// Writes report.json, report.md, d1.png and abs_rel.png into `out`.
    pub fn write(&self, out: &Path) -> Result<()> {
        std::fs::create_dir_all(out).map_err(|e| CoreError::io(out, e))?;
        let json =
            serde_json::to_vec_pretty(self).map_err(|e| CoreError::io(out.join("report.json"), e.into()))?;
        depth_core::atomic::write_atomic(&out.join("report.json"), |w| w.write_all(&json))?;
        let md = self.to_markdown();
        depth_core::atomic::write_atomic(&out.join("report.md"), |w| w.write_all(md.as_bytes()))?;
        if !self.benchmarks.is_empty() {
            for (k, name) in [(0, "d1"), (3, "abs_rel")] {
                let chart = self.metric_chart(k);
                save_png(&chart.render(chart.fitting_width(640), 360), &out.join(format!("{name}.png")))?;
            }
        }
        Ok(())
    }
}
