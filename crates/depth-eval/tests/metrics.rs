//! Metrics and the relative-depth alignment against the PyTorch goldens (1e-9), a perfect
//! prediction, the caps and crops, and the aggregation.

use candle_core::{DType, Device, Tensor};
use depth_eval::{Aggregate, Alignment, Crop, EvalSettings, Metrics, align};
use std::collections::HashMap;

fn golden() -> HashMap<String, Tensor> {
    let p = depth_core::fixtures::fixtures_dir().unwrap().join("golden/metrics.safetensors");
    candle_core::safetensors::load(p, &Device::Cpu).unwrap()
}

fn flat(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1().unwrap()
}

fn assert_close(ours: &[f64], want: &[f64], what: &str) {
    for (i, (a, b)) in ours.iter().zip(want).enumerate() {
        assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{what}[{i}]: {a} vs {b}");
    }
}

#[test]
fn golden_metrics_and_relative_protocol() {
    let g = golden();
    let (pred, gt) = (flat(&g["m.pred"]), flat(&g["m.gt"]));
    let valid: Vec<bool> = flat(&g["m.valid"]).iter().map(|&v| v != 0.0).collect();
    let m = Metrics::compute(&pred, &gt, &valid).unwrap();
    assert_close(&m.values(), &flat(&g["m.values"]), "metrics");

    let disp = flat(&g["a.pred_disp"]);
    let (depth, (s, t)) = align(&disp, &gt, &valid, Alignment::DisparityAffine { max_depth: 10.0 }).unwrap();
    assert_close(&[s, t], &flat(&g["a.scale_shift"]), "scale_shift");
    let m = Metrics::compute(&depth, &gt, &valid).unwrap();
    assert_close(&m.values(), &flat(&g["a.values"]), "aligned metrics");
}

#[test]
fn a_perfect_prediction_scores_exactly() {
    let gt: Vec<f64> = (0..200).map(|i| 0.5 + i as f64 * 0.037).collect();
    let valid = vec![true; gt.len()];
    let m = Metrics::compute(&gt, &gt, &valid).unwrap();
    assert_eq!(m.values(), [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    // a disparity that is an affine map of 1/gt aligns back exactly
    let disp: Vec<f64> = gt.iter().map(|g| 3.0 / g - 0.2).collect();
    let (depth, (s, t)) = align(&disp, &gt, &valid, Alignment::DisparityAffine { max_depth: 100.0 }).unwrap();
    assert!((s - 1.0 / 3.0).abs() < 1e-12 && (t - 0.2 / 3.0).abs() < 1e-12, "{s} {t}");
    depth.iter().zip(&gt).for_each(|(d, g)| assert!((d - g).abs() < 1e-9));
    for how in [Alignment::Median, Alignment::DepthAffine] {
        let scaled: Vec<f64> = gt.iter().map(|g| 2.5 * g).collect();
        let (depth, _) = align(&scaled, &gt, &valid, how).unwrap();
        depth.iter().zip(&gt).for_each(|(d, g)| assert!((d - g).abs() < 1e-9, "{how:?}"));
    }
    assert!(Metrics::compute(&gt, &gt, &vec![false; gt.len()]).is_none());
}

#[test]
fn targets_without_depth_count_as_invalid() {
    let gt: Vec<f64> = (0..50).map(|i| 1.0 + i as f64 * 0.1).collect();
    let pred: Vec<f64> = gt.iter().map(|g| g * 1.1).collect();
    let mut bad = gt.clone();
    bad[3] = f64::NAN;
    bad[7] = f64::INFINITY;
    bad[9] = 0.0;
    let all = vec![true; 50];
    let mut without = all.clone();
    [3, 7, 9].iter().for_each(|&i| without[i] = false);
    let m = Metrics::compute(&pred, &bad, &all).unwrap();
    assert!(m.values().iter().all(|v| v.is_finite()));
    assert_eq!(m, Metrics::compute(&pred, &gt, &without).unwrap());
    let (depth, (s, t)) = align(&pred, &bad, &all, Alignment::DisparityAffine { max_depth: 10.0 }).unwrap();
    assert!(s.is_finite() && t.is_finite() && depth.iter().all(|d| d.is_finite()));
}

#[test]
fn caps_crops_and_aggregation() {
    let (h, w) = (480, 640);
    let mut gt = vec![5.0; h * w];
    gt[100 * w + 100] = f64::NAN;
    gt[100 * w + 101] = 20.0;
    gt[100 * w + 102] = 0.0;
    let valid = EvalSettings::NYU.valid_mask(&gt, h, w);
    assert_eq!(valid.iter().filter(|&&v| v).count(), (471 - 45) * (601 - 41) - 3);
    assert!(!valid[0] && valid[45 * w + 41] && !valid[45 * w + 601]);
    let (rows, cols) = Crop::KittiGarg.bounds(375, 1242);
    assert_eq!((rows, cols), (153..371, 44..1197));

    let mut agg = Aggregate::default();
    agg.push("a", Metrics::from_values([1.0; 9]));
    agg.push("b", Metrics::from_values([0.0; 9]));
    assert_eq!(agg.mean().unwrap().values(), [0.5; 9]);
    assert_eq!(agg.per_image.len(), 2);
    assert!(Aggregate::default().mean().is_none());
}
