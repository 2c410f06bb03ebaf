//! The benchmark runner on generated scenes (perfect and affinely distorted predictions score
//! exactly), on the real RGB-D fixture frames (the report equals direct depth-eval calls),
//! failures that are listed, and DA-2K pairwise accuracy.

use depth_core::config::ConfigFile;
use depth_core::{Progress, Silent};
use depth_data::DatasetRef;
use depth_data::synth::SynthSpec;
use depth_data::synth::{PhotoBank, SceneConfig, SynthDataset};
use depth_data::{Dataset, Sample, TargetKind};
use depth_eval::{
    Aggregate, Alignment, BenchmarkSpec, Crop, EvalConfig, Metrics, Mode, PairwiseSpec, PredDir, Prediction,
    Predictor, Report, align,
};
use depth_eval::{Runner, score};
use std::path::Path;
use std::sync::Arc;

/// A predictor computed from each sample by a closure.
struct FromSample<F: FnMut(&Sample) -> Prediction>(&'static str, F);

impl<F: FnMut(&Sample) -> Prediction> Predictor for FromSample<F> {
    fn name(&self) -> &str {
        self.0
    }
    fn predict(&mut self, s: &Sample) -> depth_eval::Result<Prediction> {
        Ok((self.1)(s))
    }
}

fn fixtures() -> std::path::PathBuf {
    depth_core::fixtures::fixtures_dir().unwrap()
}

fn scenes(count: usize) -> SynthDataset {
    SynthDataset {
        config: SceneConfig { width: 64, height: 48, ..Default::default() },
        bank: Arc::new(PhotoBank::from_dir(&fixtures().join("unlabeled")).unwrap()),
        seed: 99,
        count,
    }
}

fn spec(mode: Mode, max_depth: f64) -> BenchmarkSpec {
    BenchmarkSpec {
        name: "gen".into(),
        // the runner scores the dataset it is given; this names none of the data config
        data: DatasetRef::Synth(SynthSpec {
            seed: 99,
            count: 0,
            textures: None,
            width: None,
            height: None,
            outdoor_fraction: None,
            photo_fraction: None,
        }),
        mode,
        min_depth: 1e-3,
        max_depth,
        crop: Crop::None,
        limit: None,
    }
}

/// Counts the units of work a run reports.
#[derive(Default)]
struct Ticks(std::sync::atomic::AtomicU64);

impl Ticks {
    fn get(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Progress for Ticks {
    fn advance(&self, n: u64) {
        self.0.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
    }
}

fn map_gt(s: &Sample, kind: TargetKind, f: impl Fn(f32) -> f32) -> Prediction {
    let t = s.target.as_ref().unwrap();
    // invalid pixels (sky) get a value far from the rest: they must not matter
    let values = t.values.iter().zip(&t.valid).map(|(&v, &ok)| if ok { f(v) } else { 1e6 }).collect();
    Prediction { width: t.width, height: t.height, kind, values }
}

const PERFECT: [f64; 9] = [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];

fn assert_perfect(m: &Metrics, tol: f64, what: &str) {
    for (v, want) in m.values().iter().zip(PERFECT) {
        assert!((v - want).abs() <= tol, "{what}: {:?}", m.values());
    }
}

#[test]
fn perfect_and_affinely_distorted_predictions_score_exactly() {
    let data = scenes(3);
    let mut runner = Runner {
        predictors: vec![
            Box::new(FromSample("exact_depth", |s: &Sample| map_gt(s, TargetKind::Depth, |d| d))),
            Box::new(FromSample("affine_disparity", |s: &Sample| {
                map_gt(s, TargetKind::Disparity, |d| 2.5 / d + 0.75)
            })),
            Box::new(FromSample("scaled_depth", |s: &Sample| map_gt(s, TargetKind::Depth, |d| 0.25 * d))),
        ],
        out: None,
        visualize: 0,
        ply: false,
    };
    // metric protocol: the exact depth scores exactly, with nothing aligned
    let metric = runner.run_benchmark(&spec(Mode::Metric, 1e4), &data, &Silent);
    let exact = &metric.models[0];
    assert_eq!(exact.items.len(), 3);
    for it in &exact.items {
        assert_eq!(it.metrics.values(), PERFECT, "{}", it.id);
        assert_eq!((it.scale, it.shift), (1.0, 0.0));
    }
    assert_eq!(exact.mean.unwrap().values(), PERFECT);
    // disparity is refused by the metric protocol, and the refusal is listed per item
    assert_eq!(metric.models[1].failed.len(), 3);
    assert!(metric.models[1].failed[0].error.contains("metric depth"), "{:?}", metric.models[1].failed);

    // relative protocol: depth / 4 (exact in f32) is disparity 4/d, aligned back with scale 1/4;
    // disparity a/d + b is recovered (scale 1/a, shift −b/a) up to its float32 rounding (~1e-7
    // relative; rmse is in metres over scenes up to 300 m deep)
    let rel = runner.run_benchmark(&spec(Mode::Relative, 1e4), &data, &Silent);
    for (m, tol) in rel.models.iter().zip([1e-9, 1e-4, 1e-9]) {
        assert!(m.failed.is_empty(), "{}: {:?}", m.model, m.failed);
        assert_perfect(&m.mean.unwrap(), tol, &m.model);
    }
    for it in &rel.models[1].items {
        assert!((it.scale - 1.0 / 2.5).abs() < 1e-6 && (it.shift + 0.75 / 2.5).abs() < 1e-6, "{it:?}");
    }
    for it in &rel.models[2].items {
        assert!((it.scale - 0.25).abs() < 1e-12 && it.shift.abs() < 1e-12, "{it:?}");
    }
    // a distortion the protocol cannot undo (depth² as depth) is caught
    let mut wrong = Runner {
        predictors: vec![Box::new(FromSample("squared", |s: &Sample| {
            map_gt(s, TargetKind::Depth, |d| d * d)
        }))],
        out: None,
        visualize: 0,
        ply: false,
    };
    let r = wrong.run_benchmark(&spec(Mode::Relative, 1e4), &data, &Silent);
    assert!(r.models[0].mean.unwrap().abs_rel > 0.01);
}

/// A deterministic, imperfect disparity: brighter is closer, plus a gradient.
fn luminance_disparity(img: &image::RgbImage) -> Vec<f32> {
    img.enumerate_pixels()
        .map(|(x, y, p)| {
            0.3 + (p.0[0] as f32 + 2.0 * p.0[1] as f32 + p.0[2] as f32) / 1020.0 + (x + y) as f32 * 1e-3
        })
        .collect()
}

#[test]
fn report_on_real_frames_equals_direct_calls() {
    let cfg = EvalConfig::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/eval.toml"), &[])
        .unwrap();
    let names: Vec<String> =
        ["nyu_frames", "kitti_frames", "redwood_frames", "middlebury_frames"].map(String::from).into();
    let (benches, _) = cfg.select(&names).unwrap();
    assert_eq!(benches.len(), 4);
    let dir = tempfile::tempdir().unwrap();
    let preds = dir.path().join("preds");
    std::fs::create_dir(&preds).unwrap();
    let mut results = Vec::new();
    let mut runner_preds = PredDir::new(&preds, TargetKind::Disparity).unwrap();
    for b in &benches {
        let data = cfg.open(b).unwrap();
        for i in 0..data.len() {
            let s = data.load(i).unwrap();
            let (w, h) = s.image.dimensions();
            let mut bytes = Vec::new();
            depth_core::npy::write_f32(&mut bytes, &[h as u64, w as u64], &luminance_disparity(&s.image))
                .unwrap();
            std::fs::write(runner_preds.path_for(&s.id), bytes).unwrap();
        }
        let mut runner = Runner {
            predictors: vec![Box::new(&mut runner_preds)],
            out: Some(dir.path().into()),
            visualize: 1,
            ply: true,
        };
        results.push(runner.run_benchmark(b, data.as_ref(), &Silent));
    }
    let report = Report {
        config: "eval.toml".into(),
        models: vec!["preds".into()],
        benchmarks: results,
        pairwise: vec![],
        unavailable: vec![],
    };
    report.write(dir.path()).unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap()).unwrap();

    for (bi, b) in benches.iter().enumerate() {
        // the protocol by hand: caps and crop, affine fit in disparity, metrics, mean
        let data = cfg.open(b).unwrap();
        let settings = b.settings();
        let mut agg = Aggregate::default();
        for i in 0..data.len() {
            let s = data.load(i).unwrap();
            let t = s.target.unwrap();
            let gt: Vec<f64> = t.values.iter().map(|&v| v as f64).collect();
            let valid: Vec<bool> = settings
                .valid_mask(&gt, t.height as usize, t.width as usize)
                .iter()
                .zip(&t.valid)
                .map(|(a, b)| *a && *b)
                .collect();
            let pred: Vec<f64> = luminance_disparity(&s.image).iter().map(|&v| v as f64).collect();
            let (depth, _) =
                align(&pred, &gt, &valid, Alignment::DisparityAffine { max_depth: b.max_depth }).unwrap();
            let m = Metrics::compute(&depth, &gt, &valid).unwrap();
            let item = &json["benchmarks"][bi]["models"][0]["items"][i];
            assert_eq!(item["id"], s.id.as_str());
            for (k, name) in Metrics::NAMES.iter().enumerate() {
                let got = item["metrics"][name].as_f64().unwrap();
                assert!(
                    (got - m.values()[k]).abs() <= 1e-9,
                    "{} {} {name}: {got} vs {}",
                    b.name,
                    s.id,
                    m.values()[k]
                );
            }
            agg.push(s.id, m);
        }
        let mean = agg.mean().unwrap();
        let got = &json["benchmarks"][bi]["models"][0]["mean"];
        for (k, name) in Metrics::NAMES.iter().enumerate() {
            assert!((got[name].as_f64().unwrap() - mean.values()[k]).abs() <= 1e-9, "{} mean {name}", b.name);
        }
        // one picture per benchmark, a PNG as wide as four panels
        let pic = json["benchmarks"][bi]["models"][0]["pictures"][0].as_str().unwrap();
        let img = image::open(dir.path().join(pic)).unwrap();
        assert!(img.width() > 4 * 100, "{pic}");
    }
    let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(md.contains("| preds | nyu_frames | relative | 3 | 0 |"), "{md}");
    // NYU knows its intrinsics: the pictured frame also has a point cloud with one point per
    // pixel (the aligned prediction is dense)
    let pic = json["benchmarks"][0]["models"][0]["pictures"][0].as_str().unwrap();
    let ply = std::fs::read(dir.path().join(pic).with_extension("ply")).unwrap();
    assert!(String::from_utf8_lossy(&ply[..200]).contains("element vertex 307200"));
    assert!(dir.path().join("abs_rel.png").exists() && dir.path().join("d1.png").exists());
}

/// A dataset whose second item cannot be loaded.
struct Flaky(SynthDataset);

impl Dataset for Flaky {
    fn name(&self) -> &str {
        "flaky"
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn id(&self, i: usize) -> String {
        self.0.id(i)
    }
    fn load(&self, i: usize) -> depth_data::Result<Sample> {
        if i == 1 {
            return Err(depth_core::CoreError::format("broken.png", "PNG", "truncated").into());
        }
        self.0.load(i)
    }
}

#[test]
fn failures_are_listed_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let data = Flaky(scenes(3));
    // predictions exist for item 0 only
    let s0 = data.load(0).unwrap();
    let mut pd = PredDir::new(dir.path(), TargetKind::Depth).unwrap();
    write_npy(&pd.path_for(&s0.id), s0.target.as_ref().unwrap(), |d| d);
    let mut runner = Runner { predictors: vec![Box::new(&mut pd)], out: None, visualize: 0, ply: false };
    let ticks = Ticks::default();
    let r = runner.run_benchmark(&spec(Mode::Relative, 1e4), &data, &ticks);
    assert_eq!(ticks.get(), 3);
    assert_eq!(r.load_failures.len(), 1);
    assert!(r.load_failures[0].error.contains("broken.png"));
    let m = &r.models[0];
    assert_eq!(m.items.len(), 1);
    assert_eq!(m.failed.len(), 1);
    assert!(m.failed[0].error.contains(".npy is missing"), "{:?}", m.failed);
    let report = Report {
        config: "x".into(),
        models: vec!["p".into()],
        benchmarks: vec![r],
        pairwise: vec![],
        unavailable: vec![],
    };
    assert_eq!(report.failures(), 2);
    let md = report.to_markdown();
    assert!(
        md.contains("## Failed items") && md.contains("broken.png") && md.contains(".npy is missing"),
        "{md}"
    );
}

#[test]
fn a_prediction_of_another_size_is_resized_before_scoring() {
    let data = scenes(1);
    let s = data.load(0).unwrap();
    let t = s.target.as_ref().unwrap();
    // a constant-scale disparity at half resolution: still a valid, finite score
    let small = Prediction {
        width: t.width / 2,
        height: t.height / 2,
        kind: TargetKind::Disparity,
        values: vec![1.0; (t.width * t.height / 4) as usize],
    };
    let scored = score(small, t, &spec(Mode::Relative, 1e4).settings(), Mode::Relative).unwrap();
    assert_eq!(scored.depth.len(), (t.width * t.height) as usize);
    assert!(scored.metrics.values().iter().all(|v| v.is_finite()));
}

#[test]
fn pairwise_accuracy_counts_pairs_per_scene() {
    let dir = tempfile::tempdir().unwrap();
    for scene in ["indoor", "outdoor"] {
        std::fs::create_dir_all(dir.path().join("images").join(scene)).unwrap();
        image::RgbImage::new(8, 6).save(dir.path().join(format!("images/{scene}/a.png"))).unwrap();
    }
    let ann = r#"{
      "images/indoor/a.png": [
        {"point1": [1, 1], "point2": [4, 6], "closer_point": "point1"},
        {"point1": [4, 6], "point2": [1, 1], "closer_point": "point2"},
        {"point1": [0, 7], "point2": [5, 0], "closer_point": "point1"}],
      "images/outdoor/a.png": [
        {"point1": [5, 7], "point2": [0, 0], "closer_point": "point1"}]
    }"#;
    std::fs::write(dir.path().join("annotations.json"), ann).unwrap();
    // disparity = row + column: (1,1)=2 < (4,6)=10, so the first two pairs are wrong for a
    // disparity and right for a depth; (0,7)=7 > (5,0)=5; (5,7)=12 > (0,0)=0
    let ramp = |kind| {
        move |s: &Sample| Prediction {
            width: s.image.width(),
            height: s.image.height(),
            kind,
            values: (0..48).map(|i| ((i / 8) + (i % 8)) as f32).collect(),
        }
    };
    let mut runner = Runner {
        predictors: vec![
            Box::new(FromSample("disp", ramp(TargetKind::Disparity))),
            Box::new(FromSample("depth", ramp(TargetKind::Depth))),
        ],
        out: None,
        visualize: 0,
        ply: false,
    };
    let spec = PairwiseSpec {
        name: "da2k".into(),
        annotations: dir.path().join("annotations.json"),
        images: dir.path().into(),
    };
    let pairs = |spec: &PairwiseSpec| depth_eval::pairwise::read_annotations(&spec.annotations);
    let ticks = Ticks::default();
    let r = runner.run_pairwise(&spec, &pairs(&spec).unwrap(), &ticks);
    assert_eq!(ticks.get(), 2 * 2, "one tick per (image, model)");
    assert_eq!((r[0].counts.pairs, r[0].counts.correct), (4, 2));
    assert_eq!(r[0].accuracy, Some(0.5));
    assert_eq!(r[0].counts.per_scene["indoor"], (3, 1));
    assert_eq!(r[0].counts.per_scene["outdoor"], (1, 1));
    assert_eq!((r[1].counts.correct, r[1].counts.per_scene["indoor"]), (2, (3, 2)));
    // a point outside the image and a bad closer_point are reported
    std::fs::write(dir.path().join("annotations.json"), ann.replace("[5, 7]", "[50, 7]")).unwrap();
    let r = runner.run_pairwise(&spec, &pairs(&spec).unwrap(), &Silent);
    assert_eq!(r[0].failed.len(), 1);
    assert!(r[0].failed[0].error.contains("outside"), "{:?}", r[0].failed);
    std::fs::write(dir.path().join("annotations.json"), ann.replace("\"point2\"}", "\"both\"}")).unwrap();
    assert!(pairs(&spec).unwrap_err().to_string().contains("closer_point"));
}

/// Generated scenes whose images are `<folder>/frame.png`: the same name in every folder.
struct SameNames(SynthDataset, [&'static str; 2]);

impl Dataset for SameNames {
    fn name(&self) -> &str {
        "same_names"
    }
    fn len(&self) -> usize {
        2
    }
    fn id(&self, i: usize) -> String {
        format!("/data/scenes/{}/frame.png", self.1[i])
    }
    fn load(&self, i: usize) -> depth_data::Result<Sample> {
        Ok(Sample { id: self.id(i), ..self.0.load(i)? })
    }
}

fn write_npy(path: &Path, t: &depth_data::Target, f: impl Fn(f32) -> f32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let values: Vec<f32> = t.values.iter().map(|&v| f(v)).collect();
    let mut bytes = Vec::new();
    depth_core::npy::write_f32(&mut bytes, &[t.height as u64, t.width as u64], &values).unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn same_named_images_in_different_folders_keep_their_predictions_apart() {
    let data = SameNames(scenes(2), ["alley_1", "bamboo_1"]);
    let dir = tempfile::tempdir().unwrap();
    let mut pd = PredDir::new(dir.path(), TargetKind::Depth).unwrap();
    let id0 = data.id(0);
    let want: Vec<std::path::PathBuf> =
        ["data/scenes/alley_1/frame.npy", "scenes/alley_1/frame.npy", "alley_1/frame.npy", "frame.npy"]
            .iter()
            .map(|p| dir.path().join(p))
            .collect();
    assert_eq!(pd.candidates(&id0), want);
    let (t0, t1) = (data.load(0).unwrap().target.unwrap(), data.load(1).unwrap().target.unwrap());

    // one flat file for both: the first image reads it, the second is refused, not rescored
    write_npy(&dir.path().join("frame.npy"), &t0, |d| d);
    let mut runner = Runner { predictors: vec![Box::new(&mut pd)], out: None, visualize: 0, ply: false };
    let r = runner.run_benchmark(&spec(Mode::Metric, 1e4), &data, &Silent);
    assert_eq!(r.models[0].items.len(), 1);
    assert!(r.models[0].failed[0].error.contains("already read for /data/scenes/alley_1/frame.png"));

    // with their folders each image gets its own file: the exact depth of the first scores
    // perfectly, the squared depth of the second does not; the longest tail wins over the flat file
    write_npy(&dir.path().join("alley_1/frame.npy"), &t0, |d| d);
    write_npy(&dir.path().join("scenes/bamboo_1/frame.npy"), &t1, |d| d * d);
    let mut pd = PredDir::new(dir.path(), TargetKind::Depth).unwrap();
    assert_eq!(pd.path_for(&data.id(1)), dir.path().join("scenes/bamboo_1/frame.npy"));
    let mut runner = Runner { predictors: vec![Box::new(&mut pd)], out: None, visualize: 0, ply: false };
    let r = runner.run_benchmark(&spec(Mode::Metric, 1e4), &data, &Silent);
    let m = &r.models[0];
    assert!(m.failed.is_empty(), "{:?}", m.failed);
    assert_eq!(m.items[0].metrics.values(), PERFECT);
    assert!(m.items[1].metrics.abs_rel > 0.5, "{:?}", m.items[1].metrics);
    // a missing prediction names the flat file and the deepest form it could take
    std::fs::create_dir(dir.path().join("none")).unwrap();
    let mut empty = PredDir::new(&dir.path().join("none"), TargetKind::Depth).unwrap();
    let Err(err) = empty.predict(&data.load(1).unwrap()) else { panic!("no file, no prediction") };
    let err = err.to_string();
    assert!(err.contains("frame.npy is missing") && err.contains("data/scenes/bamboo_1/frame.npy"), "{err}");
}

#[test]
fn a_prediction_with_holes_is_a_failure_not_a_better_score() {
    let data = scenes(2);
    let holes = |s: &Sample, bad: f32| {
        let mut p = map_gt(s, TargetKind::Disparity, |d| 1.0 / d);
        let n = p.values.len();
        p.values[..n / 2].iter_mut().for_each(|v| *v = bad);
        p
    };
    let mut runner = Runner {
        predictors: vec![
            Box::new(FromSample("half_nan", move |s: &Sample| holes(s, f32::NAN))),
            Box::new(FromSample("all_inf", |s: &Sample| {
                let mut p = map_gt(s, TargetKind::Disparity, |d| 1.0 / d);
                p.values.iter_mut().for_each(|v| *v = f32::INFINITY);
                p
            })),
            Box::new(FromSample("zero_depth", |s: &Sample| map_gt(s, TargetKind::Depth, |_| 0.0))),
        ],
        out: None,
        visualize: 0,
        ply: false,
    };
    let r = runner.run_benchmark(&spec(Mode::Relative, 1e4), &data, &Silent);
    for m in &r.models {
        assert!(m.items.is_empty() && m.mean.is_none(), "{} was scored: {:?}", m.model, m.items);
        assert_eq!(m.failed.len(), 2, "{}", m.model);
        let e = &m.failed[0].error;
        assert!(e.contains("no usable prediction") && !e.contains("ground truth\""), "{}: {e}", m.model);
    }
}

#[test]
fn constant_predictions_fit_only_their_mean_and_the_report_says_so() {
    let data = scenes(2);
    let mut runner = Runner {
        predictors: vec![Box::new(FromSample("flat", |s: &Sample| {
            map_gt(s, TargetKind::Disparity, |_| 0.3)
        }))],
        out: None,
        visualize: 0,
        ply: false,
    };
    let b = runner.run_benchmark(&spec(Mode::Relative, 1e4), &data, &Silent);
    let m = &b.models[0];
    assert_eq!(m.items.len(), 2);
    assert!(m.items.iter().all(|it| it.scale == 0.0 && it.shift.is_finite()), "{:?}", m.items);
    let report = Report {
        config: "test".into(),
        models: vec!["flat".into()],
        benchmarks: vec![b],
        pairwise: Vec::new(),
        unavailable: Vec::new(),
    };
    let md = report.to_markdown();
    assert!(md.contains("2 of the 2 predictions of flat on gen are constant"), "{md}");
}
