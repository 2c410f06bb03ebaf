//! Every depth-core op on a CUDA device (build with `--features cuda`) against the CPU:
//! forward and input gradient, on the composed path; the fused kernels' tests are the module
//! `fused` (cuda_ops/fused.rs).
#![cfg(feature = "cuda")]

use candle_core::{Device, Tensor, Var};
use std::sync::{Mutex, MutexGuard};

#[path = "cuda_ops/fused.rs"]
mod fused;

/// Holds the process-wide fused-kernels switch at `on` for the caller's test (the tests of
/// this binary share one process, and the composed ones below must not take the kernels).
fn kernels(on: bool) -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    let guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    depth_core::set_fused_cuda_kernels(on);
    guard
}

fn rel(a: &Tensor, b: &Tensor) -> f64 {
    depth_core::fixtures::max_rel_diff(a, b).unwrap()
}

/// (forward rel diff, gradient rel diff) of `f` on CUDA vs CPU.
fn compare(x: &Tensor, f: &dyn Fn(&Tensor) -> Tensor) -> (f64, f64) {
    let cuda = Device::new_cuda(0).unwrap();
    let w = Tensor::randn(0f32, 1.0, f(x).shape(), &Device::Cpu).unwrap();
    let run = |dev: &Device| {
        let v = Var::from_tensor(&x.to_device(dev).unwrap()).unwrap();
        let y = f(v.as_tensor());
        let w = w.to_device(dev).unwrap();
        let g = (&y * &w).unwrap().sum_all().unwrap().backward().unwrap();
        (y, g.get(v.as_tensor()).expect("no gradient").clone())
    };
    let (yc, gc) = run(&Device::Cpu);
    let (yg, gg) = run(&cuda);
    (rel(&yg, &yc), rel(&gg, &gc))
}

/// A named op at an input.
type Case = (&'static str, Tensor, Box<dyn Fn(&Tensor) -> Tensor>);

#[test]
fn ops_on_cuda_match_the_cpu() {
    let _composed = kernels(false);
    let cuda = Device::new_cuda(0).unwrap();
    let r = |s: &[usize]| Tensor::randn(0f32, 1.0, s, &Device::Cpu).unwrap();
    let gamma = r(&[64]);
    let beta = r(&[64]);
    let w3 = r(&[8, 4, 3, 3]);
    let w3s = w3.clone();
    let wt = r(&[4, 6, 4, 4]);
    let on = |t: &Tensor, x: &Tensor| t.to_device(x.device()).unwrap();
    let cases: Vec<Case> = vec![
        (
            "bilinear",
            r(&[2, 3, 19, 23]),
            Box::new(|x| depth_core::bilinear_align_corners(x, (37, 45)).unwrap()),
        ),
        (
            // the position embeddings arrive permuted (non-contiguous)
            "bicubic_scale of a permuted input",
            r(&[1, 37, 37, 8]),
            Box::new(|x| {
                depth_core::bicubic_scale(&x.permute((0, 3, 1, 2)).unwrap(), (1.0027, 1.5162)).unwrap()
            }),
        ),
        (
            "bicubic_scale",
            r(&[1, 8, 37, 37]),
            Box::new(|x| depth_core::bicubic_scale(x, (1.0027, 1.5162)).unwrap()),
        ),
        (
            "layer_norm",
            r(&[2, 50, 64]),
            Box::new(move |x| depth_core::layer_norm(x, &on(&gamma, x), &on(&beta, x), 1e-6).unwrap()),
        ),
        ("softmax", r(&[2, 3, 50]), Box::new(|x| depth_core::softmax_last_dim(x).unwrap())),
        ("gelu", r(&[4, 100]), Box::new(|x| depth_core::gelu_erf(x).unwrap())),
        (
            "attention",
            r(&[1, 2, 70, 16]),
            Box::new(|x| depth_core::attention(x, &x.sqr().unwrap(), &x.sin().unwrap(), 0.25).unwrap()),
        ),
        (
            "conv s1",
            r(&[1, 4, 9, 10]),
            Box::new(move |x| depth_core::conv2d(x, &on(&w3, x), None, 1, 1).unwrap()),
        ),
        (
            "conv_transpose k4s4",
            r(&[1, 4, 5, 7]),
            Box::new(move |x| x.conv_transpose2d(&on(&wt, x), 0, 0, 4, 1).unwrap()),
        ),
        (
            "conv s2",
            r(&[1, 4, 9, 10]),
            Box::new(move |x| depth_core::conv2d(x, &on(&w3s, x), None, 1, 2).unwrap()),
        ),
    ];
    let mut bad = Vec::new();
    for (name, x, f) in &cases {
        let (fwd, grad) = compare(x, f.as_ref());
        println!("{name:14} forward {fwd:.2e} gradient {grad:.2e}");
        // cuDNN (feature `cudnn`) picks its own algorithm (Winograd, FFT: other roundings) and
        // uses TF32 unless NVIDIA_TF32_OVERRIDE=0, which the device script sets for this test
        let tol = if cfg!(feature = "cudnn") && name.starts_with("conv") { 1e-4 } else { 1e-5 };
        if !(fwd <= tol && grad <= tol) {
            bad.push(*name);
        }
    }
    let _ = cuda;
    assert!(bad.is_empty(), "CUDA differs from the CPU for {bad:?}");
}

/// The bf16 autocast products on CUDA (cuBLAS bf16) against the CPU's bf16 emulation: the same
/// roundings up to the order of the float32 sums.
#[test]
fn bf16_products_on_cuda_match_the_cpu() {
    let _composed = kernels(false);
    let r = |s: &[usize]| Tensor::randn(0f32, 1.0, s, &Device::Cpu).unwrap();
    let (w, b, wc) = (r(&[96, 64]), r(&[96]), r(&[16, 8, 3, 3]));
    let on = |t: &Tensor, x: &Tensor| t.to_device(x.device()).unwrap();
    let linear = |x: &Tensor| depth_core::linear(x, &on(&w, x), Some(&on(&b, x))).unwrap();
    let attention =
        |x: &Tensor| depth_core::attention(x, &x.sqr().unwrap(), &x.sin().unwrap(), 0.25).unwrap();
    let conv = |x: &Tensor| depth_core::conv2d(x, &on(&wc, x), None, 1, 2).unwrap();
    for (name, x, f) in [
        ("linear bf16", r(&[2, 50, 64]), &linear as &dyn Fn(&Tensor) -> Tensor),
        ("attention bf16", r(&[1, 2, 70, 16]), &attention),
        ("conv s2 bf16", r(&[1, 8, 19, 23]), &conv),
    ] {
        let (fwd, grad) =
            compare(&x, &|x: &Tensor| depth_core::autocast(depth_core::Precision::Bf16, || f(x)));
        println!("{name:14} forward {fwd:.2e} gradient {grad:.2e}");
        assert!(fwd <= 2e-2 && grad <= 2e-2, "{name}: forward {fwd:.2e}, gradient {grad:.2e}");
    }
}
