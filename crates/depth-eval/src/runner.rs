//! Running benchmarks: every item of a dataset is loaded once, each predictor predicts it, the
//! prediction is aligned as the benchmark's mode says and scored; the first items get a
//! side-by-side picture. Items that fail (to load, to predict, to score) are recorded with the
//! reason, never dropped silently. The order is the dataset's, so runs are deterministic.

use crate::benchmark::{BenchmarkSpec, Mode, PairwiseSpec};
use crate::error::Result;
use crate::pairwise::{Annotations, PairCounts, judge};
use crate::predict::{Prediction, Predictor, safe_name, stem};
use crate::visualize::{self, Bar, Colormap, Panel, Range, Scale, draw};
use crate::{Aggregate, Alignment, EvalSettings, Metrics, align};
use depth_core::CoreError;
use depth_core::Progress;
use depth_data::{Dataset, Sample, Target, TargetKind};
use std::path::PathBuf;

/// A scored prediction: aligned depth, the ground truth and mask it was scored on.
pub struct Scored {
    pub depth: Vec<f64>,
    pub gt: Vec<f64>,
    pub valid: Vec<bool>,
    pub metrics: Metrics,
    pub scale: f64,
    pub shift: f64,
}

/// Scores `pred` (resized to the target first if needed) against a metric-depth `target`.
pub fn score(pred: Prediction, target: &Target, settings: &EvalSettings, mode: Mode) -> Result<Scored> {
    if target.kind != TargetKind::Depth {
        return Err(
            CoreError::bad_input("ground truth", "benchmarks need metric depth, not disparity").into()
        );
    }
    let (w, h) = (target.width, target.height);
    let pred = pred.resized(w, h)?;
    let gt: Vec<f64> = target.values.iter().map(|&v| v as f64).collect();
    let mut valid = settings.valid_mask(&gt, h as usize, w as usize);
    valid.iter_mut().zip(&target.valid).for_each(|(v, t)| *v &= *t);
    let (values, how): (Vec<f64>, Alignment) = match (mode, pred.kind) {
        (Mode::Relative, TargetKind::Disparity) => (
            pred.values.iter().map(|&v| v as f64).collect(),
            Alignment::DisparityAffine { max_depth: settings.max_depth },
        ),
        (Mode::Relative, TargetKind::Depth) => (
            pred.values.iter().map(|&v| if v > 0.0 { 1.0 / v as f64 } else { f64::NAN }).collect(),
            Alignment::DisparityAffine { max_depth: settings.max_depth },
        ),
        (Mode::Metric, TargetKind::Depth) => {
            (pred.values.iter().map(|&v| v as f64).collect(), Alignment::None)
        }
        (Mode::Metric, TargetKind::Disparity) => {
            return Err(CoreError::bad_input(
                "prediction",
                "the metric protocol needs metric depth; this predictor gives relative disparity \
                 (use mode = \"relative\", or --pred-kind depth for metric depth maps)",
            )
            .into());
        }
    };
    // A prediction must exist wherever the ground truth is scored: scoring only its finite part
    // would reward a map that is half NaN.
    let scored = valid.iter().filter(|&&v| v).count();
    let missing = valid.iter().zip(&values).filter(|(v, p)| **v && !p.is_finite()).count();
    if missing > 0 {
        let what = if pred.kind == TargetKind::Depth { "NaN, ±inf or depth ≤ 0" } else { "NaN or ±inf" };
        return Err(CoreError::bad_input(
            "prediction",
            format!(
                "{missing} of the {scored} pixels with ground truth have no usable prediction ({what}); \
                 a depth map must be finite wherever it is scored"
            ),
        )
        .into());
    }
    let none = || CoreError::bad_input("ground truth", "no valid pixel inside the benchmark's caps and crop");
    let (depth, (scale, shift)) = align(&values, &gt, &valid, how).ok_or_else(none)?;
    let metrics = Metrics::compute(&depth, &gt, &valid).ok_or_else(none)?;
    Ok(Scored { depth, gt, valid, metrics, scale, shift })
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ItemResult {
    pub id: String,
    pub metrics: Metrics,
    pub scale: f64,
    pub shift: f64,
    pub valid_pixels: usize,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Failure {
    pub id: String,
    pub error: String,
}

/// One model on one benchmark.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ModelResult {
    pub model: String,
    /// Mean of the per-image metrics (None when nothing was scored).
    pub mean: Option<Metrics>,
    pub items: Vec<ItemResult>,
    pub failed: Vec<Failure>,
    /// Side-by-side pictures written, relative to the report folder.
    pub pictures: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct BenchmarkResult {
    pub name: String,
    pub dataset: String,
    pub mode: Mode,
    pub settings: EvalSettings,
    /// Items evaluated (after `limit`).
    pub items: usize,
    /// Items that could not be loaded (not scored for any model).
    pub load_failures: Vec<Failure>,
    pub models: Vec<ModelResult>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PairwiseResult {
    pub name: String,
    pub model: String,
    pub accuracy: Option<f64>,
    pub counts: PairCounts,
    pub failed: Vec<Failure>,
}

/// What a run writes besides numbers: side-by-side pictures (and point clouds) of the first
/// `visualize` items.
pub struct Runner<'a> {
    pub predictors: Vec<Box<dyn Predictor + 'a>>,
    /// The report folder (pictures go under `vis/`); None writes no pictures.
    pub out: Option<PathBuf>,
    pub visualize: usize,
    /// Also write a coloured point cloud (`.ply`) of the aligned prediction beside each picture,
    /// for items whose dataset knows the intrinsics.
    pub ply: bool,
}

/// How many items a benchmark has after its limit.
pub fn item_count(spec: &BenchmarkSpec, data: &dyn Dataset) -> usize {
    spec.limit.map_or(data.len(), |l| l.min(data.len()))
}

impl Runner<'_> {
    /// Runs one benchmark; `progress` advances once per (item, model).
    pub fn run_benchmark(
        &mut self,
        spec: &BenchmarkSpec,
        data: &dyn Dataset,
        progress: &dyn Progress,
    ) -> BenchmarkResult {
        let n = item_count(spec, data);
        let settings = spec.settings();
        let mut results: Vec<ModelResult> = self
            .predictors
            .iter()
            .map(|p| ModelResult {
                model: p.name().to_string(),
                mean: None,
                items: Vec::new(),
                failed: Vec::new(),
                pictures: Vec::new(),
            })
            .collect();
        let mut load_failures = Vec::new();
        for i in 0..n {
            let sample = match data.load(i).and_then(Sample::checked) {
                Ok(s) if s.target.is_some() => s,
                unusable => {
                    load_failures.push(match unusable {
                        Ok(s) => Failure { id: s.id, error: "no depth ground truth".into() },
                        Err(e) => Failure { id: data.id(i), error: e.to_string() },
                    });
                    progress.advance(self.predictors.len() as u64);
                    continue;
                }
            };
            let target = sample.target.as_ref().expect("checked above");
            for (p, r) in self.predictors.iter_mut().zip(&mut results) {
                let scored = p.predict(&sample).and_then(|pred| score(pred, target, &settings, spec.mode));
                match scored {
                    Ok(s) => {
                        r.items.push(ItemResult {
                            id: sample.id.clone(),
                            metrics: s.metrics,
                            scale: s.scale,
                            shift: s.shift,
                            valid_pixels: s.valid.iter().filter(|v| **v).count(),
                        });
                        if let Some(out) = &self.out
                            && r.pictures.len() < self.visualize
                        {
                            let rel = picture_path(&spec.name, p.name(), i, &sample.id);
                            match write_picture(out, self.ply, &rel, p.name(), spec.mode, &sample, &s) {
                                Ok(()) => r.pictures.push(rel),
                                Err(e) => r
                                    .failed
                                    .push(Failure { id: sample.id.clone(), error: format!("picture: {e}") }),
                            }
                        }
                    }
                    Err(e) => r.failed.push(Failure { id: sample.id.clone(), error: e.to_string() }),
                }
                progress.advance(1);
            }
        }
        for r in &mut results {
            let agg = Aggregate { per_image: r.items.iter().map(|i| (i.id.clone(), i.metrics)).collect() };
            r.mean = agg.mean();
        }
        BenchmarkResult {
            name: spec.name.clone(),
            dataset: spec.data.name().unwrap_or(data.name()).to_string(),
            mode: spec.mode,
            settings,
            items: n,
            load_failures,
            models: results,
        }
    }

    /// DA-2K style pairwise accuracy of every predictor on the set `spec` whose annotations
    /// (`pairwise::read_annotations`) are `ann`; `progress` advances once per (image, model). An
    /// image that cannot be read or predicted, or whose points fall outside it, is listed.
    pub fn run_pairwise(
        &mut self,
        spec: &PairwiseSpec,
        ann: &Annotations,
        progress: &dyn Progress,
    ) -> Vec<PairwiseResult> {
        let mut results: Vec<PairwiseResult> = self
            .predictors
            .iter()
            .map(|p| PairwiseResult {
                name: spec.name.clone(),
                model: p.name().into(),
                accuracy: None,
                counts: PairCounts::default(),
                failed: Vec::new(),
            })
            .collect();
        for (image, pairs) in ann {
            let path = spec.images.join(image);
            let sample = depth_data::read_rgb(&path).map(|img| Sample {
                id: path.to_string_lossy().into_owned(),
                image: img,
                target: None,
                intrinsics: None,
            });
            for (p, r) in self.predictors.iter_mut().zip(&mut results) {
                let right = match &sample {
                    Ok(s) => p.predict(s).and_then(|pred| pred.resized(s.image.width(), s.image.height())),
                    Err(e) => Err(CoreError::bad_input(image.clone(), e.to_string()).into()),
                }
                .and_then(|pred| judge(&pred, pairs));
                match right {
                    Ok(right) => r.counts.add(image, &right),
                    Err(e) => r.failed.push(Failure { id: image.clone(), error: e.to_string() }),
                }
                progress.advance(1);
            }
        }
        results.iter_mut().for_each(|r| r.accuracy = r.counts.accuracy());
        results
    }
}

/// `vis/<benchmark>/<model>/<index>_<stem>.png`: the item's index keeps images of the same name
/// apart and the files in dataset order.
pub fn picture_path(bench: &str, model: &str, index: usize, id: &str) -> String {
    format!("vis/{}/{}/{index:04}_{}.png", safe_name(bench), safe_name(model), stem(id))
}

/// Writes the picture `rel` under the report folder `out` (and `.ply` beside it when asked and
/// the intrinsics are known).
fn write_picture(
    out: &std::path::Path,
    ply: bool,
    rel: &str,
    model: &str,
    mode: Mode,
    sample: &Sample,
    s: &Scored,
) -> Result<()> {
    let path = out.join(rel);
    std::fs::create_dir_all(path.parent().expect("has a folder")).map_err(|e| CoreError::io(&path, e))?;
    visualize::save_png(&picture(sample, s, model, mode)?, &path)?;
    if let Some(k) = sample.intrinsics.filter(|_| ply) {
        write_cloud(&path.with_extension("ply"), sample, s, &k)?;
    }
    Ok(())
}

/// The aligned prediction as a point cloud coloured by the image, atomically.
fn write_cloud(
    path: &std::path::Path,
    sample: &Sample,
    s: &Scored,
    k: &depth_data::Intrinsics,
) -> Result<()> {
    let depth: Vec<f32> = s.depth.iter().map(|&d| d as f32).collect();
    let mut buf = Vec::new();
    crate::export::write_ply(&mut buf, &depth, None, sample.image.width(), k, Some(&sample.image))?;
    Ok(depth_core::atomic::write_atomic(path, |w| w.write_all(&buf))?)
}

/// image | prediction | ground truth | abs-rel error. Depth is coloured by inverse depth (as the
/// official disparity pictures: near = red, and near structure stays visible in scenes hundreds
/// of metres deep) over the ground truth's valid range, shared by prediction and ground truth;
/// the error is inferno over 0…0.5. Colour bars and the item's main metrics go underneath.
pub fn picture(sample: &Sample, s: &Scored, model: &str, mode: Mode) -> Result<image::RgbImage> {
    let (w, h) = sample.image.dimensions();
    let inv = |v: &[f64]| v.iter().map(|&x| (1.0 / x) as f32).collect::<Vec<f32>>();
    let (gt_inv, depth_inv) = (inv(&s.gt), inv(&s.depth));
    let (near, far) =
        s.gt.iter()
            .zip(&s.valid)
            .filter(|(_, v)| **v)
            .fold((f64::INFINITY, 0.0f64), |(a, b), (&g, _)| (a.min(g), b.max(g)));
    let depth_scale = Scale::new(Colormap::SpectralR, Range::Fixed(1.0 / far, 1.0 / near), &[], None);
    let depth_bar = Bar {
        scale: depth_scale,
        title: "depth m (1/d)".into(),
        ends: (draw::number(far), draw::number(near)),
    };
    let err: Vec<f32> = s.depth.iter().zip(&s.gt).map(|(p, g)| ((p - g).abs() / g) as f32).collect();
    let err_scale = Scale::new(Colormap::Inferno, Range::Fixed(0.0, 0.5), &[], None);
    const MAX_W: u32 = 480;
    let fit = |img: image::RgbImage| visualize::fit_width(&img, MAX_W);
    let aligned = match mode {
        Mode::Relative => "prediction (aligned)",
        Mode::Metric => "prediction",
    };
    let panels = [
        Panel { title: "image".into(), image: fit(sample.image.clone()), bar: None },
        Panel {
            title: aligned.into(),
            image: fit(visualize::colorize(&depth_inv, None, w, h, &depth_scale)),
            bar: Some(depth_bar.clone()),
        },
        Panel {
            title: "ground truth".into(),
            image: fit(visualize::colorize(&gt_inv, Some(&s.valid), w, h, &depth_scale)),
            bar: Some(depth_bar),
        },
        Panel {
            title: "abs rel error".into(),
            image: fit(visualize::colorize(&err, Some(&s.valid), w, h, &err_scale)),
            bar: Some(Bar::new(err_scale, "|d-gt|/gt")),
        },
    ];
    let m = &s.metrics;
    let footer = [
        format!("{}  |  {model}", sample.id),
        format!(
            "d1 {:.3}  abs_rel {:.4}  rmse {:.3}  silog {:.3}  valid px {}  (grey: no ground truth)",
            m.d1,
            m.abs_rel,
            m.rmse,
            m.silog,
            s.valid.iter().filter(|v| **v).count()
        ),
    ];
    Ok(visualize::side_by_side(&panels, &footer))
}
