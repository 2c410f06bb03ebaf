//! The losses against the PyTorch goldens (value and gradient w.r.t. the prediction), their
//! invariances, and the edge cases that must give defined values without NaN.

use candle_core::{DType, Device, Tensor, Var};
use depth_losses::{Objective, feature_alignment_loss, gradient_matching_loss, silog_loss, ssi_loss};
use std::collections::HashMap;

fn golden() -> HashMap<String, Tensor> {
    let p = depth_core::fixtures::fixtures_dir().unwrap().join("golden/losses.safetensors");
    candle_core::safetensors::load(p, &Device::Cpu).unwrap()
}

fn scalar(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap()[0]
}

fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (a.to_dtype(DType::F64).unwrap(), b.to_dtype(DType::F64).unwrap());
    let d = (&a - &b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap();
    d / b.abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap().max(1e-30)
}

type Loss = fn(&Tensor, &Tensor, &Tensor) -> Tensor;

fn cases() -> Vec<(&'static str, Loss)> {
    vec![
        ("ssi", |p, g, m| ssi_loss(p, g, m, &[0.0, 0.0]).unwrap()),
        ("ssi_trim10", |p, g, m| ssi_loss(p, g, m, &[0.1, 0.1]).unwrap()),
        ("gm4", |p, g, m| gradient_matching_loss(p, g, m, 4).unwrap()),
        ("total", |p, g, m| Objective::default().loss(p, g, m, &[true, true]).unwrap()),
        ("silog", |p, g, m| silog_loss(p, g, m, 0.5).unwrap()),
    ]
}

#[test]
fn golden_values_and_gradients() {
    let g = golden();
    for dtype in [DType::F64, DType::F32] {
        let tol = if dtype == DType::F64 { 1e-6 } else { 1e-4 };
        let (pred, gt) = (g["pred"].to_dtype(dtype).unwrap(), g["gt"].to_dtype(dtype).unwrap());
        for (name, loss) in cases() {
            let v = Var::from_tensor(&pred).unwrap();
            let l = loss(v.as_tensor(), &gt, &g["mask"]);
            let grads = l.backward().unwrap();
            let dpred = grads.get(v.as_tensor()).expect("gradient");
            let want = scalar(&g[&format!("{name}.loss")]);
            let e_loss = (scalar(&l) - want).abs() / want.abs();
            let e_grad = rel_err(dpred, &g[&format!("{name}.dpred")]);
            println!("{name} {dtype:?}: loss rel err {e_loss:.2e}, gradient {e_grad:.2e}");
            assert!(
                e_loss <= tol && e_grad <= tol,
                "{name} {dtype:?}: loss rel err {e_loss:e}, gradient {e_grad:e}"
            );
        }
    }
}

#[test]
fn ssi_is_invariant_to_scale_and_shift_and_gm_vanishes_for_affine_targets() {
    let g = golden();
    let (pred, gt, mask) = (&g["pred"], &g["gt"], &g["mask"]);
    let base = scalar(&ssi_loss(pred, gt, mask, &[0.1, 0.0]).unwrap());
    for (a, b) in [(3.5, -2.0), (0.01, 7.0)] {
        let moved = pred.affine(a, b).unwrap();
        let l = scalar(&ssi_loss(&moved, gt, mask, &[0.1, 0.0]).unwrap());
        assert!((l - base).abs() <= 1e-10 * base, "ssi changed under {a}·x + {b}: {l} vs {base}");
        let gm = scalar(&gradient_matching_loss(&gt.affine(a, b).unwrap(), gt, mask, 4).unwrap());
        assert!(gm.abs() < 1e-10, "gm of an affine target is {gm}");
    }
    assert!(scalar(&ssi_loss(gt, gt, mask, &[0.0, 0.0]).unwrap()).abs() < 1e-12);
}

#[test]
fn edge_cases_are_defined_and_never_nan() {
    let dev = Device::Cpu;
    let pred = Tensor::rand(0.5f64, 2.0, (2, 6, 7), &dev).unwrap();
    let gt = Tensor::rand(0.5f64, 2.0, (2, 6, 7), &dev).unwrap();
    let none = Tensor::zeros((2, 6, 7), DType::U8, &dev).unwrap();
    let mut one = vec![0u8; 84];
    one[5] = 1;
    one[42 + 7] = 1;
    let single = Tensor::from_vec(one, (2, 6, 7), &dev).unwrap();
    let all = Tensor::ones((2, 6, 7), DType::U8, &dev).unwrap();
    let constant = Tensor::full(1.5f64, (2, 6, 7), &dev).unwrap();
    let mut bad = gt.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    bad[3] = f64::NAN;
    bad[50] = f64::INFINITY;
    let with_nan = Tensor::from_vec(bad, (2, 6, 7), &dev).unwrap();

    for (what, target, mask, expect_zero) in [
        ("all-invalid mask", &gt, &none, true),
        ("single valid pixel", &gt, &single, true),
        ("constant target", &constant, &all, true),
        ("NaN/inf in the target", &with_nan, &all, false),
    ] {
        let v = Var::from_tensor(&pred).unwrap();
        let losses = [
            ssi_loss(v.as_tensor(), target, mask, &[0.1, 0.0]).unwrap(),
            gradient_matching_loss(v.as_tensor(), target, mask, 4).unwrap(),
            silog_loss(v.as_tensor(), target, mask, 0.5).unwrap(),
        ];
        for (i, l) in losses.iter().enumerate() {
            let x = scalar(l);
            assert!(x.is_finite(), "{what}: loss {i} is {x}");
            if expect_zero && i < 2 {
                assert_eq!(x, 0.0, "{what}: loss {i} should contribute nothing");
            }
            // a loss with nothing to learn from may carry no graph: then there is no gradient
            if let Some(gr) = l.backward().unwrap().get(v.as_tensor()) {
                let s = gr.abs().unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap();
                assert!(s.is_finite(), "{what}: gradient of loss {i} is not finite");
            }
        }
    }
}

#[test]
fn feature_alignment_ignores_tokens_above_the_margin() {
    let dev = Device::Cpu;
    let teacher = Tensor::randn(0f64, 1.0, (2, 10, 16), &dev).unwrap();
    // identical features: every token above the margin, nothing to align
    assert_eq!(scalar(&feature_alignment_loss(&teacher, &teacher, 0.85).unwrap()), 0.0);
    // opposite features: cos = −1 everywhere, loss 2
    let l = scalar(&feature_alignment_loss(&teacher.neg().unwrap(), &teacher, 0.85).unwrap());
    assert!((l - 2.0).abs() < 1e-12);
    // gradients reach the student only, through the tokens below the margin
    let student = Var::from_tensor(&Tensor::randn(0f64, 1.0, (2, 10, 16), &dev).unwrap()).unwrap();
    let grads = feature_alignment_loss(student.as_tensor(), &teacher, 0.85).unwrap().backward().unwrap();
    assert!(grads.get(student.as_tensor()).is_some());
    assert!(feature_alignment_loss(&teacher, &teacher.narrow(2, 0, 8).unwrap(), 0.85).is_err());
}

/// The trimmed L_ssi as it is defined — sort every sample's valid values, take the lower median,
/// sort the residuals, keep the smallest — written with candle's CPU argsort (and |x| with
/// sign(0) = 0, as torch's). The losses select
/// instead of sorting (a sort cannot run on CUDA at this size); the two must agree at 518², ties
/// and invalid pixels included.
fn ssi_by_sorting(pred: &Tensor, target: &Tensor, mask: &[Vec<u32>], trim: f64) -> Tensor {
    let norm = |v: Tensor| {
        let n = v.dim(0).unwrap();
        let sorted = v.gather(&v.arg_sort_last_dim(true).unwrap(), 0).unwrap();
        let c = v.broadcast_sub(&sorted.narrow(0, (n - 1) / 2, 1).unwrap()).unwrap();
        let s = depth_core::abs(&c).unwrap().mean_keepdim(0).unwrap();
        c.broadcast_div(&s).unwrap()
    };
    let mut sums = Vec::new();
    let mut kept = 0;
    for (b, valid) in mask.iter().enumerate() {
        let idx = Tensor::new(valid.as_slice(), &Device::Cpu).unwrap();
        let pick = |x: &Tensor| x.get(b).unwrap().flatten_all().unwrap().index_select(&idx, 0).unwrap();
        let r = depth_core::abs(&(norm(pick(pred)) - norm(pick(target))).unwrap()).unwrap();
        let n = r.dim(0).unwrap();
        let keep = n - (trim * n as f64).floor() as usize;
        let sorted = r.gather(&r.arg_sort_last_dim(true).unwrap(), 0).unwrap();
        sums.push(sorted.narrow(0, 0, keep).unwrap().sum_all().unwrap());
        kept += keep;
    }
    (Tensor::stack(&sums, 0).unwrap().sum_all().unwrap() / kept as f64).unwrap()
}

#[test]
fn selecting_equals_sorting_at_518_with_ties_and_holes() {
    let (b, h, w) = (2, 518, 518);
    // few distinct values, so medians and the trimming boundary fall inside runs of ties
    let coarse = |seed: f64| -> Vec<f64> {
        (0..b * h * w).map(|i| ((i as f64 * 0.618_033 + seed).fract() * 37.0).floor() / 37.0 + 0.05).collect()
    };
    let pred = Var::from_tensor(&Tensor::from_vec(coarse(0.3), (b, h, w), &Device::Cpu).unwrap()).unwrap();
    let target = Tensor::from_vec(coarse(0.7), (b, h, w), &Device::Cpu).unwrap();
    // a hole and a border of invalid pixels, different per sample
    let valid: Vec<Vec<u32>> = (0..b)
        .map(|s| {
            (0..(h * w) as u32).filter(|&j| (j as usize % w) > 3 + s && (j as usize / w) % 97 != 5).collect()
        })
        .collect();
    let mut m = vec![0u8; b * h * w];
    for (s, v) in valid.iter().enumerate() {
        v.iter().for_each(|&j| m[s * h * w + j as usize] = 1);
    }
    let mask = Tensor::from_vec(m, (b, h, w), &Device::Cpu).unwrap();
    for trim in [0.0, 0.1] {
        let ours = ssi_loss(&pred, &target, &mask, &[trim, trim]).unwrap();
        let reference = ssi_by_sorting(&pred, &target, &valid, trim);
        let (g_ours, g_ref) = (ours.backward().unwrap(), reference.backward().unwrap());
        let (g_ours, g_ref) = (g_ours.get(pred.as_tensor()).unwrap(), g_ref.get(pred.as_tensor()).unwrap());
        // the same elements: equal up to the order of a float sum
        assert!(
            rel_err(&ours, &reference) < 1e-10,
            "trim {trim}: {} vs {}",
            scalar(&ours),
            scalar(&reference)
        );
        assert!(
            rel_err(g_ours, g_ref) < 1e-12,
            "trim {trim}: gradients differ by {}",
            rel_err(g_ours, g_ref)
        );
    }
}
