//! `cargo xtask eval` and `cargo xtask features` end to end: precomputed predictions on the real
//! RGB-D frames give the numbers of direct depth-eval calls, a model run writes its report and
//! pictures, a missing benchmark fails with the way to get it, and the feature views are written.

mod common;

use common::xtask;
use depth_core::config::ConfigFile;
use depth_data::TargetKind;
use depth_eval::{Alignment, EvalConfig, Metrics, align};
use std::path::{Path, PathBuf};
use std::process::Output;

fn fixtures() -> PathBuf {
    depth_core::fixtures::fixtures_dir().expect("shared fixtures are required")
}

fn config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/eval.toml")
}

/// `xtask eval --config configs/eval.toml ARGS`.
fn eval(args: &[&str]) -> Output {
    let cfg = config();
    let mut all = vec!["eval", "--config", s(&cfg)];
    all.extend_from_slice(args);
    xtask(&all)
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Ground truth and the benchmark's valid mask of one item.
fn gt_and_mask(t: &depth_data::Target, settings: &depth_eval::EvalSettings) -> (Vec<f64>, Vec<bool>) {
    let gt: Vec<f64> = t.values.iter().map(|&v| v as f64).collect();
    let mask = settings.valid_mask(&gt, t.height as usize, t.width as usize);
    let valid = mask.iter().zip(&t.valid).map(|(a, b)| *a && *b).collect();
    (gt, valid)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn pred_dir_on_real_frames_matches_direct_calls() {
    let dir = tempfile::tempdir().unwrap();
    let preds = dir.path().join("mine");
    std::fs::create_dir(&preds).unwrap();
    let cfg = EvalConfig::load(&config(), &[]).unwrap();
    let (benches, _) = cfg.select(&["kitti_frames".into()]).unwrap();
    let data = cfg.open(benches[0]).unwrap();
    let pd = depth_eval::PredDir::new(&preds, TargetKind::Depth).unwrap();
    // a depth map another model might have written: smooth in the image, wrong in scale
    let depth_of = |img: &image::RgbImage| -> Vec<f32> {
        img.enumerate_pixels()
            .map(|(x, y, p)| 2.0 + y as f32 * 0.05 + x as f32 * 0.001 + p.0[1] as f32 / 255.0)
            .collect()
    };
    for i in 0..data.len() {
        let smp = data.load(i).unwrap();
        let (w, h) = smp.image.dimensions();
        let mut bytes = Vec::new();
        depth_core::npy::write_f32(&mut bytes, &[h as u64, w as u64], &depth_of(&smp.image)).unwrap();
        std::fs::write(pd.path_for(&smp.id), bytes).unwrap();
    }
    let out = dir.path().join("report");
    let o = eval(&[
        "--benchmark",
        "kitti_frames",
        "--pred-dir",
        s(&preds),
        "--pred-kind",
        "depth",
        "--out",
        s(&out),
        "--visualize",
        "2",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let b = &json["benchmarks"][0];
    assert_eq!(b["name"], "kitti_frames");
    assert_eq!(b["models"][0]["model"], "mine");
    let settings = benches[0].settings();
    let mut sums = [0.0; 9];
    for i in 0..data.len() {
        let smp = data.load(i).unwrap();
        let t = smp.target.unwrap();
        let (gt, valid) = gt_and_mask(&t, &settings);
        let disp: Vec<f64> = depth_of(&smp.image).iter().map(|&d| 1.0 / d as f64).collect();
        let (aligned, _) = align(&disp, &gt, &valid, Alignment::DisparityAffine { max_depth: 80.0 }).unwrap();
        let m = Metrics::compute(&aligned, &gt, &valid).unwrap();
        for (k, name) in Metrics::NAMES.iter().enumerate() {
            let got = b["models"][0]["items"][i]["metrics"][name].as_f64().unwrap();
            assert!((got - m.values()[k]).abs() <= 1e-9, "{} {name}: {got} vs {}", smp.id, m.values()[k]);
            sums[k] += m.values()[k];
        }
    }
    for (k, name) in Metrics::NAMES.iter().enumerate() {
        let got = b["models"][0]["mean"][name].as_f64().unwrap();
        assert!((got - sums[k] / data.len() as f64).abs() <= 1e-9, "mean {name}");
    }
    assert_eq!(b["models"][0]["pictures"].as_array().unwrap().len(), 2);
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("| mine | kitti_frames | relative | 3 | 0 |"), "{md}");
    // with --mode metric the same depth maps are scored as they are
    let metric = dir.path().join("metric");
    let o = eval(&[
        "--benchmark",
        "kitti_frames",
        "--pred-dir",
        s(&preds),
        "--pred-kind",
        "depth",
        "--mode",
        "metric",
        "--out",
        s(&metric),
        "--visualize",
        "0",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(metric.join("report.json")).unwrap()).unwrap();
    let smp = data.load(0).unwrap();
    let t = smp.target.unwrap();
    let (gt, valid) = gt_and_mask(&t, &settings);
    let pred: Vec<f64> = depth_of(&smp.image).iter().map(|&d| d as f64).collect();
    let m = Metrics::compute(&pred, &gt, &valid).unwrap();
    let got = json["benchmarks"][0]["models"][0]["items"][0]["metrics"]["abs_rel"].as_f64().unwrap();
    assert!((got - m.abs_rel).abs() <= 1e-9, "{got} vs {}", m.abs_rel);
    assert_eq!(json["benchmarks"][0]["mode"], "metric");
}

#[test]
fn a_model_run_writes_report_and_pictures() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let weights = fixtures().join("weights/da2_vits_random.pth");
    let model = format!("rand=vits:{}", s(&weights));
    let o = eval(&[
        "--benchmark",
        "middlebury_frames",
        "--model",
        &model,
        "--input-size",
        "140",
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let m = &json["benchmarks"][0]["models"][0];
    assert_eq!(m["model"], "rand");
    assert_eq!(m["items"].as_array().unwrap().len(), 1);
    let d1 = m["mean"]["d1"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&d1));
    let pic = out.join(m["pictures"][0].as_str().unwrap());
    let img = image::open(&pic).unwrap();
    assert!(img.width() > 400 && img.height() > 100, "{}", pic.display());
    assert!(out.join("d1.png").exists() && out.join("abs_rel.png").exists());
}

#[test]
fn a_missing_benchmark_fails_and_says_how_to_get_it() {
    let dir = tempfile::tempdir().unwrap();
    let preds = dir.path().join("p");
    std::fs::create_dir(&preds).unwrap();
    let out = dir.path().join("report");
    let o = eval(&["--benchmark", "sintel", "--pred-dir", s(&preds), "--out", s(&out)]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("sintel") && t.contains("MPI-Sintel"), "{t}");
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("## Not run") && md.contains("**sintel**"), "{md}");
    // predictions that are missing are listed per item and fail the run
    let o = eval(&["--benchmark", "redwood_frames", "--pred-dir", s(&preds), "--out", s(&out)]);
    assert!(!o.status.success());
    assert!(text(&o).contains("3 items failed"), "{}", text(&o));
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("## Failed items") && md.contains(".npy is missing"), "{md}");
    let o = eval(&["--benchmark", "nope", "--pred-dir", s(&preds)]);
    assert!(!o.status.success() && text(&o).contains("known: nyu"), "{}", text(&o));
}

#[test]
fn features_writes_pca_grids_and_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("feat");
    let weights = fixtures().join("weights/da2_vits_random.pth");
    let img = fixtures().join("images/square04.png");
    let o = xtask(&[
        "features",
        "--weights",
        s(&weights),
        "--img-path",
        s(&img),
        "--input-size",
        "140",
        "--layers",
        "2,11",
        "--fg-threshold",
        "0.3",
        "--select",
        "10,20",
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let md = std::fs::read_to_string(out.join("features.md")).unwrap();
    assert!(md.contains("| 2 |") && md.contains("| 11 |") && md.contains("layer_11.png"), "{md}");
    for layer in ["layer_02.png", "layer_11.png"] {
        let grid = image::open(out.join(layer)).unwrap();
        // one row of four 140-px panels
        assert!(grid.width() > 4 * 140 && grid.height() > 140, "{layer}");
    }
    let o = xtask(&[
        "features",
        "--weights",
        s(&weights),
        "--img-path",
        s(&img),
        "--layers",
        "12",
        "--out",
        s(&out),
    ]);
    assert!(!o.status.success() && text(&o).contains("layer 12"), "{}", text(&o));
}

#[test]
fn pairwise_sets_score_precomputed_predictions_and_list_unreadable_annotations() {
    let dir = tempfile::tempdir().unwrap();
    let (root, preds) = (dir.path().join("da2k"), dir.path().join("preds"));
    for (scene, stem) in [("indoor", "a"), ("outdoor", "b")] {
        std::fs::create_dir_all(root.join("images").join(scene)).unwrap();
        image::RgbImage::new(8, 6).save(root.join(format!("images/{scene}/{stem}.png"))).unwrap();
    }
    // disparity = row + column for both images
    std::fs::create_dir(&preds).unwrap();
    let ramp: Vec<f32> = (0..48).map(|i| ((i / 8) + (i % 8)) as f32).collect();
    for stem in ["a", "b"] {
        let mut bytes = Vec::new();
        depth_core::npy::write_f32(&mut bytes, &[6, 8], &ramp).unwrap();
        std::fs::write(preds.join(format!("{stem}.npy")), bytes).unwrap();
    }
    // indoor: (4,6)=10 > (1,1)=2 right, (0,0)=0 < (5,7)=12 wrong; outdoor: (5,0)=5 > (0,1)=1 right
    std::fs::write(
        root.join("annotations.json"),
        r#"{"images/indoor/a.png": [
              {"point1": [4, 6], "point2": [1, 1], "closer_point": "point1"},
              {"point1": [0, 0], "point2": [5, 7], "closer_point": "point1"}],
            "images/outdoor/b.png": [
              {"point1": [0, 1], "point2": [5, 0], "closer_point": "point2"}]}"#,
    )
    .unwrap();
    std::fs::write(root.join("broken.json"), "{\"images/indoor/a.png\": [{\"point1\": [0, 0]}]}").unwrap();
    let data_cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/data.toml");
    let cfg = dir.path().join("eval.toml");
    std::fs::write(
        &cfg,
        format!(
            "data = {:?}\n\n[[pairwise]]\nname = \"mini\"\nannotations = \"da2k/annotations.json\"\n\
             images = \"da2k\"\n\n[[pairwise]]\nname = \"broken\"\nannotations = \"da2k/broken.json\"\n\
             images = \"da2k\"\n",
            s(&data_cfg)
        ),
    )
    .unwrap();
    let out = dir.path().join("report");
    let args = ["eval", "--config", s(&cfg), "--pred-dir", s(&preds), "--out", s(&out)];
    let o = xtask(&args);
    assert!(o.status.success(), "{}", text(&o));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let p = &json["pairwise"][0];
    assert_eq!((p["name"].as_str(), p["model"].as_str()), (Some("mini"), Some("preds")));
    assert_eq!((p["counts"]["pairs"].as_u64(), p["counts"]["correct"].as_u64()), (Some(3), Some(2)));
    assert!((p["accuracy"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-12);
    assert_eq!(p["counts"]["per_scene"]["indoor"], serde_json::json!([2, 1]));
    assert_eq!(p["counts"]["per_scene"]["outdoor"], serde_json::json!([1, 1]));
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("| preds | mini | 3 | 0.6667 | indoor: 1/2, outdoor: 1/1 |"), "{md}");
    // the unreadable set is listed with the reason, and naming it makes the run fail
    assert!(md.contains("**broken**") && md.contains("closer_point"), "{md}");
    let o = xtask(&[&args[..], &["--benchmark", "broken"]].concat());
    assert!(!o.status.success() && text(&o).contains("broken"), "{}", text(&o));
}

#[test]
fn infer_outputs_in_folders_score_as_the_model_itself() {
    // infer writes <folders below rgbd/>/<stem>.npy for frames of two datasets; eval finds them
    // by their path tails, and scores them exactly as running the model inside eval does
    let dir = tempfile::tempdir().unwrap();
    let rgbd = fixtures().join("rgbd");
    let list: Vec<String> = ["kitti_depth/rgb/0000000005.png", "nyu_bts/rgb/rgb_00000.jpg"]
        .iter()
        .map(|p| rgbd.join(p).to_string_lossy().into_owned())
        .collect();
    std::fs::write(dir.path().join("list.txt"), list.join("\n")).unwrap();
    let (preds, weights) = (dir.path().join("preds"), fixtures().join("weights/da2_vits_random.pth"));
    let common = ["--input-size", "140"];
    let o = xtask(
        &[
            &[
                "infer",
                "--weights",
                s(&weights),
                "--img-path",
                s(&dir.path().join("list.txt")),
                "--outdir",
                s(&preds),
                "--save-raw",
                "npy",
            ][..],
            &common,
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        preds.join("kitti_depth/rgb/0000000005.npy").is_file()
            && preds.join("nyu_bts/rgb/rgb_00000.npy").is_file()
    );
    // both frames' benchmarks in one report; the other frames have no file and are listed as
    // failed, so the run ends non-zero after writing the report
    let report = |folder: &str, args: &[&str]| -> serde_json::Value {
        let out = dir.path().join(folder);
        let fixed = ["--benchmark", "kitti_frames", "--benchmark", "nyu_frames", "--visualize", "0"];
        let o = eval(&[&fixed[..], &["--out", s(&out)], args].concat());
        assert!(out.join("report.json").is_file(), "{}", text(&o));
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap()
    };
    let from_files = report("from_files", &["--pred-dir", s(&preds)]);
    let model = format!("rand=vits:{}", s(&weights));
    let from_model = report("from_model", &[&["--model", model.as_str()][..], &common].concat());
    let bench = |report: &serde_json::Value, name: &str| -> serde_json::Value {
        let all = report["benchmarks"].as_array().unwrap();
        all.iter().find(|b| b["name"] == name).unwrap()["models"][0].clone()
    };
    for (b, id) in [("kitti_frames", "0000000005.png"), ("nyu_frames", "rgb_00000.jpg")] {
        let files = bench(&from_files, b);
        let item =
            files["items"].as_array().unwrap().iter().find(|i| i["id"].as_str().unwrap().ends_with(id));
        let item = item.unwrap_or_else(|| panic!("{id} scored from files: {files}"));
        let model_items = bench(&from_model, b);
        let direct = model_items["items"].as_array().unwrap().iter().find(|i| i["id"] == item["id"]).unwrap();
        for name in Metrics::NAMES {
            let (a, m) = (item["metrics"][name].as_f64().unwrap(), direct["metrics"][name].as_f64().unwrap());
            assert_eq!(a, m, "{id} {name}");
        }
    }
}
