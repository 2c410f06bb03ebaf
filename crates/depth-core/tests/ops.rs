//! depth-core ops: forward and gradient against PyTorch goldens and finite differences.

use candle_core::{D, DType, Device, Tensor, Var};
use depth_core::{Taps, bicubic_scale, bilinear_align_corners, bilinear_align_corners_scale, resample};
use std::collections::HashMap;

fn golden() -> HashMap<String, Tensor> {
    let p = depth_core::fixtures::fixtures_dir().unwrap().join("golden/interpolate.safetensors");
    candle_core::safetensors::load(p, &Device::Cpu).unwrap()
}

/// max |a − b| / max |b|
fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    let a = a.to_dtype(DType::F64).unwrap();
    let b = b.to_dtype(DType::F64).unwrap();
    assert_eq!(a.dims(), b.dims());
    let diff = (&a - &b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap();
    let scale = b.abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap();
    diff / scale.max(1e-30)
}

/// Forward and input gradient of `f` at `x` with upstream gradient `dy`.
fn fwd_bwd(x: &Tensor, dy: &Tensor, f: impl Fn(&Tensor) -> Tensor) -> (Tensor, Tensor) {
    let v = Var::from_tensor(x).unwrap();
    let y = f(v.as_tensor());
    let grads = (&y * dy).unwrap().sum_all().unwrap().backward().unwrap();
    (y, grads.get(v.as_tensor()).expect("no gradient reached the input").clone())
}

fn check_case(
    g: &HashMap<String, Tensor>,
    case: &str,
    dtype: DType,
    tol: f64,
    f: impl Fn(&Tensor) -> Tensor,
) {
    let x = g[&format!("{case}.x")].to_dtype(dtype).unwrap();
    let dy = g[&format!("{case}.dy")].to_dtype(dtype).unwrap();
    let (y, dx) = fwd_bwd(&x, &dy, f);
    let (ey, edx) = (rel_err(&y, &g[&format!("{case}.y")]), rel_err(&dx, &g[&format!("{case}.dx")]));
    assert!(ey <= tol && edx <= tol, "{case}: forward rel err {ey:e}, gradient rel err {edx:e} > {tol:e}");
}

#[test]
fn golden_bilinear_align_corners_f64() {
    let g = golden();
    check_case(&g, "bilinear_ac", DType::F64, 1e-6, |x| bilinear_align_corners(x, (37, 37)).unwrap());
    check_case(&g, "bilinear_ac_x2", DType::F64, 1e-6, |x| bilinear_align_corners_scale(x, 2.0).unwrap());
}

#[test]
fn golden_bilinear_align_corners_head_f32() {
    let g = golden();
    check_case(&g, "bilinear_ac_head", DType::F32, 1e-5, |x| bilinear_align_corners(x, (518, 784)).unwrap());
}

#[test]
fn golden_bicubic_scale_factor_f32() {
    let g = golden();
    let s = g["bicubic_pos.scale"].to_vec1::<f64>().unwrap();
    check_case(&g, "bicubic_pos", DType::F32, 1e-5, |x| bicubic_scale(x, (s[0], s[1])).unwrap());
    // The size rule samples elsewhere: it must NOT match the scale-factor golden.
    let x = g["bicubic_pos.x"].to_dtype(DType::F32).unwrap();
    let by_size = depth_core::bicubic(&x, (37, 56)).unwrap();
    assert!(rel_err(&by_size, &g["bicubic_pos.y"]) > 1e-3);
}

/// Central finite differences of `sum(f(x) · w)` against the autograd gradient, in f64.
fn finite_difference_check(x: &Tensor, f: impl Fn(&Tensor) -> Tensor, tol: f64) {
    let dev = Device::Cpu;
    let y0 = f(x);
    let w = Tensor::randn(0f64, 1.0, y0.shape(), &dev).unwrap();
    let (_, dx) = fwd_bwd(x, &w, &f);
    let dx = dx.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let flat = x.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let eps = 1e-6;
    let n = flat.len();
    for i in (0..n).step_by((n / 40).max(1)) {
        let at = |delta: f64| {
            let mut v = flat.clone();
            v[i] += delta;
            f(&Tensor::from_vec(v, x.shape(), &dev).unwrap())
        };
        // difference the outputs before weighting and summing: outputs that do not depend on
        // element i cancel exactly instead of adding their rounding to a large sum
        let diff = (at(eps) - at(-eps)).unwrap();
        let fd = (diff * &w).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap() / (2.0 * eps);
        assert!(
            (fd - dx[i]).abs() <= tol * (1.0 + fd.abs()),
            "element {i}: finite diff {fd}, autograd {}",
            dx[i]
        );
    }
}

fn randn(shape: &[usize]) -> Tensor {
    Tensor::randn(0f64, 1.0, shape, &Device::Cpu).unwrap()
}

#[test]
fn resample_gradients_match_finite_differences() {
    let x = randn(&[2, 3, 7, 9]);
    finite_difference_check(&x, |x| bicubic_scale(x, (13.1 / 7.0, 0.61)).unwrap(), 1e-6);
    finite_difference_check(&x, |x| bilinear_align_corners(x, (11, 4)).unwrap(), 1e-6);
    finite_difference_check(&x, |x| depth_core::cv_resize_cubic(x, (5, 17)).unwrap(), 1e-6);
    // second order: the adjoint op is itself differentiable
    let rows = Taps::cubic_torch(7, 10, None, false);
    let cols = Taps::linear_align_corners(9, 6, false);
    finite_difference_check(&x, |x| resample(x, rows.clone(), cols.clone()).unwrap().sqr().unwrap(), 1e-5);
}

#[test]
fn resample_matches_dense_matrices() {
    let x = randn(&[1, 2, 6, 8]);
    let (rows, cols) = (Taps::cubic_opencv(6, 13), Taps::cubic_torch(8, 3, Some(0.4), false));
    let wr = Tensor::from_vec(rows.to_dense(), (13, 6), &Device::Cpu).unwrap();
    let wc = Tensor::from_vec(cols.to_dense(), (3, 8), &Device::Cpu).unwrap();
    let dense = wr.broadcast_matmul(&x.broadcast_matmul(&wc.t().unwrap()).unwrap()).unwrap();
    let fast = resample(&x, rows, cols).unwrap();
    assert!(rel_err(&fast, &dense) < 1e-14);
}

#[test]
fn bad_arguments_are_errors_not_panics() {
    let x = randn(&[4]);
    assert!(bilinear_align_corners(&x, (2, 2)).is_err());
    let x = Tensor::zeros((1, 2, 3), DType::U8, &Device::Cpu).unwrap();
    assert!(bilinear_align_corners(&x, (4, 4)).is_err());
}

#[test]
fn layer_norm_forward_matches_candle_and_gradients_are_exact() {
    let x = (randn(&[3, 5, 16]) * 3.0).unwrap();
    let g = randn(&[16]).affine(0.2, 1.0).unwrap();
    let b = randn(&[16]);
    let ours = depth_core::layer_norm(&x, &g, &b, 1e-6).unwrap();
    let theirs = candle_nn::ops::layer_norm_slow(&x, &g, &b, 1e-6).unwrap();
    assert!(rel_err(&ours, &theirs) < 1e-12);
    finite_difference_check(&x, |x| depth_core::layer_norm(x, &g, &b, 1e-6).unwrap(), 1e-6);
    // weight and bias gradients against the composed (slow, differentiable) candle op
    let (gv, bv) = (Var::from_tensor(&g).unwrap(), Var::from_tensor(&b).unwrap());
    let w = randn(&[3, 5, 16]);
    let grads = |y: Tensor| (y * &w).unwrap().sum_all().unwrap().backward().unwrap();
    let ga = grads(depth_core::layer_norm(&x, gv.as_tensor(), bv.as_tensor(), 1e-6).unwrap());
    let gb = grads(candle_nn::ops::layer_norm_slow(&x, gv.as_tensor(), bv.as_tensor(), 1e-6).unwrap());
    for v in [gv.as_tensor(), bv.as_tensor()] {
        assert!(rel_err(ga.get(v).unwrap(), gb.get(v).unwrap()) < 1e-10);
    }
    // f32: agrees with the f64 result and with candle's fused (non-differentiable) op
    let f32 = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
    let y32 = depth_core::layer_norm(&f32(&x), &f32(&g), &f32(&b), 1e-6).unwrap();
    assert!(rel_err(&y32, &ours) < 1e-6);
    let fused = candle_nn::ops::layer_norm(&f32(&x), &f32(&g), &f32(&b), 1e-6).unwrap();
    assert!(rel_err(&y32, &fused) < 1e-6);
    // a weight of another dtype is refused with what to do, not a kernel's dtype error
    let err = depth_core::layer_norm(&f32(&x), &g, &f32(&b), 1e-6).unwrap_err().to_string();
    assert!(err.contains("cast the weight and bias"), "{err}");
}

#[test]
fn softmax_forward_matches_candle_and_gradient_is_exact() {
    let x = (randn(&[2, 3, 7, 11]) * 4.0).unwrap();
    let ours = depth_core::softmax_last_dim(&x).unwrap();
    let theirs = candle_nn::ops::softmax(&x, D::Minus1).unwrap();
    assert!(rel_err(&ours, &theirs) < 1e-14);
    finite_difference_check(&x, |x| depth_core::softmax_last_dim(x).unwrap(), 1e-6);
    let y32 = depth_core::softmax_last_dim(&x.to_dtype(DType::F32).unwrap()).unwrap();
    assert!(rel_err(&y32, &ours) < 1e-6);
}

#[test]
fn strided_conv_matches_candle_forward_and_has_exact_gradients_on_every_size() {
    let w = randn(&[4, 3, 3, 3]);
    let b = randn(&[4]);
    for (h, wd) in [(5, 6), (6, 5), (7, 7), (4, 4), (2, 3), (37, 56)] {
        let x = randn(&[2, 3, h, wd]);
        let ours = depth_core::conv2d(&x, &w, Some(&b), 1, 2).unwrap();
        let theirs =
            x.conv2d(&w, 1, 2, 1, 1).unwrap().broadcast_add(&b.reshape((1, 4, 1, 1)).unwrap()).unwrap();
        assert!(rel_err(&ours, &theirs) < 1e-14, "{h}×{wd}");
        finite_difference_check(&x, |x| depth_core::conv2d(x, &w, Some(&b), 1, 2).unwrap(), 1e-6);
    }
    // the candle defect this works around: backward fails when H and W differ in parity
    // (37×56 is the patch grid of a 518×784 input)
    let x = Var::from_tensor(&randn(&[1, 3, 5, 6])).unwrap();
    let y = x.as_tensor().conv2d(&w, 1, 2, 1, 1).unwrap();
    assert!(
        y.sum_all().unwrap().backward().is_err(),
        "candle fixed its conv2d backward: drop the workaround"
    );
}

#[test]
fn transposed_conv_is_candles_with_the_bias_and_gradients_match_finite_differences() {
    let (w, b) = (randn(&[3, 4, 2, 2]), randn(&[4]));
    let x = randn(&[2, 3, 3, 5]);
    let ours = depth_core::conv_transpose_stride_k(&x, &w, Some(&b)).unwrap();
    assert_eq!(ours.dims(), [2, 4, 6, 10]);
    let theirs =
        x.conv_transpose2d(&w, 0, 0, 2, 1).unwrap().broadcast_add(&b.reshape((1, 4, 1, 1)).unwrap()).unwrap();
    assert_eq!(rel_err(&ours, &theirs), 0.0);
    finite_difference_check(&x, |x| depth_core::conv_transpose_stride_k(x, &w, Some(&b)).unwrap(), 1e-6);
    // a bias of the wrong length, a kernel of the wrong channels: errors, not panics
    assert!(depth_core::conv_transpose_stride_k(&x, &w, Some(&randn(&[3]))).is_err());
    assert!(depth_core::conv_transpose_stride_k(&x, &randn(&[2, 4, 2, 2]), None).is_err());
}

#[test]
fn a_bias_of_the_wrong_length_is_an_error_under_bf16_inference_too() {
    // under bf16 on an AMX CPU the conv takes the tile route, which checks the bias itself
    let x = Tensor::randn(0f32, 1.0, (1, 3, 6, 6), &Device::Cpu).unwrap();
    let w = Tensor::randn(0f32, 1.0, (4, 3, 3, 3), &Device::Cpu).unwrap();
    let bad = Tensor::zeros(5, DType::F32, &Device::Cpu).unwrap();
    for stride in [1, 2] {
        let r = depth_core::autocast(depth_core::Precision::Bf16, || {
            depth_core::conv2d(&x, &w, Some(&bad), 1, stride)
        });
        assert!(r.is_err(), "stride {stride}");
    }
}

#[test]
fn tiled_conv_matches_candle_and_has_exact_gradients() {
    for (c, o, k, p, h, w) in
        [(3, 4, 3, 1, 5, 7), (2, 3, 1, 0, 4, 3), (3, 2, 3, 0, 6, 5), (2, 2, 3, 2, 3, 4), (4, 5, 3, 1, 40, 37)]
    {
        let x = randn(&[2, c, h, w]);
        let wt = randn(&[o, c, k, k]);
        let ours = depth_core::conv2d(&x, &wt, None, p, 1).unwrap();
        let theirs = x.conv2d(&wt, p, 1, 1, 1).unwrap();
        assert!(rel_err(&ours, &theirs) < 1e-13, "forward c{c} o{o} k{k} p{p} {h}×{w}");
        finite_difference_check(&x, |x| depth_core::conv2d(x, &wt, None, p, 1).unwrap(), 1e-6);
        finite_difference_check(&wt, |wt| depth_core::conv2d(&x, wt, None, p, 1).unwrap(), 1e-6);
        let f32 = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
        let y32 = depth_core::conv2d(&f32(&x), &f32(&wt), None, p, 1).unwrap();
        assert!(rel_err(&y32, &theirs) < 1e-5);
        // the bias is fused into the kernel: forward and its gradient
        let b = randn(&[o]);
        let ours = depth_core::conv2d(&x, &wt, Some(&b), p, 1).unwrap();
        let theirs = theirs.broadcast_add(&b.reshape((1, o, 1, 1)).unwrap()).unwrap();
        assert!(rel_err(&ours, &theirs) < 1e-13, "biased forward c{c} o{o} k{k} p{p} {h}×{w}");
        finite_difference_check(&b, |b| depth_core::conv2d(&x, &wt, Some(b), p, 1).unwrap(), 1e-6);
        finite_difference_check(&x, |x| depth_core::conv2d(x, &wt, Some(&b), p, 1).unwrap(), 1e-6);
        // a ReLU fused in front: equal to rectifying first, with the gradient through it
        let fused = |x: &Tensor| depth_core::conv2d_relu_input(x, &wt, Some(&b), p, 1).unwrap();
        let composed = depth_core::conv2d(&x.relu().unwrap(), &wt, Some(&b), p, 1).unwrap();
        assert!(rel_err(&fused(&x), &composed) < 1e-14, "relu-input forward c{c} o{o} k{k} p{p} {h}×{w}");
        finite_difference_check(&x, fused, 1e-6);
        finite_difference_check(
            &wt,
            |wt| depth_core::conv2d_relu_input(&x, wt, Some(&b), p, 1).unwrap(),
            1e-6,
        );
    }
    // off the tiled path (stride 2) the fused ReLU is applied first
    let x = randn(&[1, 2, 9, 8]);
    let (wt, b) = (randn(&[3, 2, 3, 3]), randn(&[3]));
    let fused = depth_core::conv2d_relu_input(&x, &wt, Some(&b), 1, 2).unwrap();
    let composed = depth_core::conv2d(&x.relu().unwrap(), &wt, Some(&b), 1, 2).unwrap();
    assert!(rel_err(&fused, &composed) < 1e-14);
}

#[test]
fn linear_matches_matmul_plus_bias_with_exact_gradients() {
    for (lead, k, n) in [(vec![2, 70], 9, 5), (vec![300], 16, 33), (vec![1, 3, 4], 7, 1)] {
        let mut shape = lead.clone();
        shape.push(k);
        let x = randn(&shape);
        let (w, b) = (randn(&[n, k]), randn(&[n]));
        let ours = depth_core::linear(&x, &w, Some(&b)).unwrap();
        let theirs = x.broadcast_matmul(&w.t().unwrap()).unwrap().broadcast_add(&b).unwrap();
        assert!(rel_err(&ours, &theirs) < 1e-13, "{shape:?} × {n}");
        finite_difference_check(&x, |x| depth_core::linear(x, &w, Some(&b)).unwrap(), 1e-6);
        finite_difference_check(&w, |w| depth_core::linear(&x, w, Some(&b)).unwrap(), 1e-6);
        finite_difference_check(&b, |b| depth_core::linear(&x, &w, Some(b)).unwrap(), 1e-6);
        let no_bias = depth_core::linear(&x, &w, None).unwrap();
        assert!(rel_err(&no_bias, &x.broadcast_matmul(&w.t().unwrap()).unwrap()) < 1e-13);
        let f32 = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
        assert!(rel_err(&depth_core::linear(&f32(&x), &f32(&w), Some(&f32(&b))).unwrap(), &theirs) < 1e-5);
    }
    assert!(depth_core::linear(&randn(&[2, 3]), &randn(&[4, 5]), None).is_err());
}

/// The gradients of the ops that reduce over many rows or tiles (conv weights and bias,
/// LayerNorm γ and β, linear weights and bias) are the same bits whatever the number of threads and however rayon
/// splits the work: the partial sums are grouped and added in a fixed order (exact training
/// resume depends on it).
#[test]
fn reduced_gradients_do_not_depend_on_thread_scheduling() {
    let dev = Device::Cpu;
    let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (4, 8, 60, 70), &dev).unwrap()).unwrap();
    let w = Var::from_tensor(&Tensor::randn(0f32, 0.2, (8, 8, 3, 3), &dev).unwrap()).unwrap();
    let b = Var::from_tensor(&Tensor::randn(0f32, 1.0, 8, &dev).unwrap()).unwrap();
    let t = Var::from_tensor(&Tensor::randn(0f32, 1.0, (3000, 64), &dev).unwrap()).unwrap();
    let (g, beta) = (Var::ones(64, DType::F32, &dev).unwrap(), Var::zeros(64, DType::F32, &dev).unwrap());
    let dy = Tensor::randn(0f32, 1.0, (4, 8, 60, 70), &dev).unwrap();
    let dn = Tensor::randn(0f32, 1.0, (3000, 64), &dev).unwrap();
    let (lw, lb) = (
        Var::from_tensor(&Tensor::randn(0f32, 0.1, (48, 64), &dev).unwrap()).unwrap(),
        Var::zeros(48, DType::F32, &dev).unwrap(),
    );
    let dl = Tensor::randn(0f32, 1.0, (3000, 48), &dev).unwrap();
    let run = || {
        let y = depth_core::conv2d(x.as_tensor(), w.as_tensor(), Some(b.as_tensor()), 1, 1).unwrap();
        let n = depth_core::layer_norm(t.as_tensor(), g.as_tensor(), beta.as_tensor(), 1e-6).unwrap();
        let l = depth_core::linear(t.as_tensor(), lw.as_tensor(), Some(lb.as_tensor())).unwrap();
        let loss = ((y * &dy).unwrap().sum_all().unwrap() + (n * &dn).unwrap().sum_all().unwrap()).unwrap();
        let loss = (loss + (l * &dl).unwrap().sum_all().unwrap()).unwrap();
        let grads = loss.backward().unwrap();
        [w.as_tensor(), b.as_tensor(), g.as_tensor(), beta.as_tensor(), lw.as_tensor(), lb.as_tensor()]
            .map(|v| grads.get(v).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap())
    };
    let in_pool =
        |threads: usize| rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(run);
    let first = in_pool(1);
    for threads in [2, 3, 5, 8] {
        let again = in_pool(threads);
        for (k, (a, b)) in first.iter().zip(&again).enumerate() {
            let same = a.iter().zip(b).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "gradient {k} has other bits with {threads} threads than with 1");
        }
    }
}

#[test]
fn relu_matches_candle_with_pytorchs_gradient() {
    let x = Tensor::new(&[-2.0f64, 0.0, 3.0, -0.5, 7.0], &Device::Cpu).unwrap();
    let v = Var::from_tensor(&x).unwrap();
    let y = depth_core::relu(v.as_tensor()).unwrap();
    assert_eq!(y.to_vec1::<f64>().unwrap(), [0.0, 0.0, 3.0, 0.0, 7.0]);
    let g = (y * 2.0).unwrap().sum_all().unwrap().backward().unwrap();
    assert_eq!(g.get(v.as_tensor()).unwrap().to_vec1::<f64>().unwrap(), [0.0, 0.0, 2.0, 0.0, 2.0]);
    let x = randn(&[4, 3, 50, 70]);
    assert_eq!(rel_err(&depth_core::relu(&x).unwrap(), &x.relu().unwrap()), 0.0);
    finite_difference_check(&x, |x| depth_core::relu(x).unwrap(), 1e-6);
    let x32 = x.to_dtype(DType::F32).unwrap();
    assert_eq!(rel_err(&depth_core::relu(&x32).unwrap(), &x32.relu().unwrap()), 0.0);
}

#[test]
fn fused_attention_matches_composed_ops_and_gradients_are_exact() {
    // 70 queries: one full block of 64 and a partial one
    let (q, k, v) = (randn(&[2, 3, 70, 8]), randn(&[2, 3, 70, 8]), randn(&[2, 3, 70, 8]));
    let scale = 8f64.powf(-0.5);
    let ours = depth_core::attention(&q, &k, &v, scale).unwrap();
    let scores = (q.matmul(&k.t().unwrap()).unwrap() * scale).unwrap();
    let theirs = candle_nn::ops::softmax(&scores, D::Minus1).unwrap().matmul(&v).unwrap();
    assert!(rel_err(&ours, &theirs) < 1e-13);
    finite_difference_check(&q, |q| depth_core::attention(q, &k, &v, scale).unwrap(), 1e-6);
    finite_difference_check(&k, |k| depth_core::attention(&q, k, &v, scale).unwrap(), 1e-6);
    finite_difference_check(&v, |v| depth_core::attention(&q, &k, v, scale).unwrap(), 1e-6);
    let f32 = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
    let y32 = depth_core::attention(&f32(&q), &f32(&k), &f32(&v), scale).unwrap();
    assert!(rel_err(&y32, &theirs) < 1e-5);
    assert!(depth_core::attention(&q, &k, &randn(&[2, 3, 70, 4]), scale).is_err());
}

#[test]
fn gelu_matches_candle_and_gradient_is_exact() {
    let x = (randn(&[3, 1000]) * 3.0).unwrap();
    let ours = depth_core::gelu_erf(&x).unwrap();
    assert!(rel_err(&ours, &x.gelu_erf().unwrap()) < 1e-14);
    finite_difference_check(&x, |x| depth_core::gelu_erf(x).unwrap(), 1e-6);
    // float32: PyTorch's erf approximation, within 1e-6 of the exact GELU
    let x32 = x.to_dtype(DType::F32).unwrap();
    assert!(rel_err(&depth_core::gelu_erf(&x32).unwrap(), &ours) < 1e-6);
    let v = Var::from_tensor(&x32).unwrap();
    let g32 = depth_core::gelu_erf(v.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
    let v64 = Var::from_tensor(&x).unwrap();
    let g64 = depth_core::gelu_erf(v64.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
    assert!(rel_err(g32.get(v.as_tensor()).unwrap(), g64.get(v64.as_tensor()).unwrap()) < 1e-6);
}

#[test]
fn abs_has_pytorchs_gradient_at_zero() {
    let x = Tensor::new(&[-2.0f64, 0.0, 3.0], &Device::Cpu).unwrap();
    let v = Var::from_tensor(&x).unwrap();
    let y = depth_core::abs(v.as_tensor()).unwrap();
    assert_eq!(y.to_vec1::<f64>().unwrap(), [2.0, 0.0, 3.0]);
    let g = y.sum_all().unwrap().backward().unwrap();
    assert_eq!(g.get(v.as_tensor()).unwrap().to_vec1::<f64>().unwrap(), [-1.0, 0.0, 1.0]);
    finite_difference_check(&randn(&[3, 7]), |x| depth_core::abs(x).unwrap(), 1e-6);
}

/// Under bf16 autocast the products (linear, attention, convolution at stride 1 and 2) compute
/// in bfloat16 — their results move off the float32 ones by bf16's rounding (8 bits), not more —
/// and hand back float32, with float32 gradients for every input and weight, near the float32
/// gradients.
#[test]
fn bf16_autocast_products_round_like_bf16_and_keep_float32_gradients() {
    type Product = Box<dyn Fn(&[Tensor]) -> Tensor>;
    let f32 = |s: &[usize]| randn(s).to_dtype(DType::F32).unwrap();
    let cases: Vec<(&str, Vec<Tensor>, Product)> = vec![
        (
            "linear",
            vec![f32(&[2, 50, 64]), f32(&[96, 64]), f32(&[96])],
            Box::new(|t| depth_core::linear(&t[0], &t[1], Some(&t[2])).unwrap()),
        ),
        (
            "attention",
            vec![f32(&[2, 3, 70, 16]), f32(&[2, 3, 70, 16]), f32(&[2, 3, 70, 16])],
            Box::new(|t| depth_core::attention(&t[0], &t[1], &t[2], 0.25).unwrap()),
        ),
        (
            "conv stride 1",
            vec![f32(&[2, 8, 19, 23]), f32(&[16, 8, 3, 3]), f32(&[16])],
            Box::new(|t| depth_core::conv2d(&t[0], &t[1], Some(&t[2]), 1, 1).unwrap()),
        ),
        (
            "conv stride 2 of relu",
            vec![f32(&[2, 8, 19, 23]), f32(&[16, 8, 3, 3]), f32(&[16])],
            Box::new(|t| depth_core::conv2d_relu_input(&t[0], &t[1], Some(&t[2]), 1, 2).unwrap()),
        ),
    ];
    for (name, inputs, op) in cases {
        let run = |precision| {
            let vars: Vec<Var> = inputs.iter().map(|t| Var::from_tensor(t).unwrap()).collect();
            let tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
            let y = depth_core::autocast(precision, || op(&tensors));
            let dy = Tensor::ones_like(&y).unwrap().cumsum(D::Minus1).unwrap().sin().unwrap();
            let grads = (&y * &dy).unwrap().sum_all().unwrap().backward().unwrap();
            let g: Vec<Tensor> = tensors.iter().map(|t| grads.get(t).expect("a gradient").clone()).collect();
            (y, g)
        };
        let ((y32, g32), (y16, g16)) = (run(depth_core::Precision::F32), run(depth_core::Precision::Bf16));
        assert_eq!(y16.dtype(), DType::F32, "{name}: autocast hands back float32");
        let e = rel_err(&y16, &y32);
        assert!(e > 1e-5 && e < 2e-2, "{name}: bf16 result {e:.1e} from float32 (expected bf16 rounding)");
        for (i, (a, b)) in g16.iter().zip(&g32).enumerate() {
            assert_eq!(a.dtype(), DType::F32, "{name}: gradient {i} is float32");
            let e = rel_err(a, b);
            assert!(e < 3e-2, "{name}: gradient {i} {e:.1e} from float32");
        }
    }
}
