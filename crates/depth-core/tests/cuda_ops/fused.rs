//! The fused CUDA kernels (`src/cuda/`) against the CPU ops they replace (LayerNorm, softmax,
//! GELU, attention; resampling in float32): forward and the gradient of every input, float32
//! (≤ 1e-5 of the largest value) and bfloat16 storage (the CPU given the same bf16-rounded
//! inputs, ≤ 2e-2; attention on tensor cores), at sizes that are not multiples of the kernels'
//! tiles, each comparison checking that a fused kernel ran (`fused_kernel_launches`); and the
//! gradients bit-identical from run to run in both dtypes (no atomics). A module of `cuda_ops`
//! (one test binary fewer to carry to the device); each test holds the switch on through
//! `super::kernels`. Needs a GPU: the device script runs it.

use candle_core::{DType, Device, Tensor, Var};

fn cuda() -> Device {
    Device::new_cuda(0).unwrap()
}

/// max |t| of a float32 tensor.
fn abs_max(t: &Tensor) -> f64 {
    t.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap() as f64
}

/// max |a − b| over max(max |b|, `floor`).
fn rel(a: &Tensor, b: &Tensor, floor: f64) -> f64 {
    abs_max(&(a - b).unwrap()) / abs_max(b).max(floor)
}

type Op = dyn Fn(&[Tensor]) -> Tensor;

/// A fixed weighting of `shape`'s elements, `sin(0.37 i + 0.1)`: the same on every run and device
/// (candle's CPU generator cannot be seeded, so a random one would differ between the sides).
fn weights(shape: &candle_core::Shape) -> Tensor {
    let i = Tensor::arange(0u32, shape.elem_count() as u32, &Device::Cpu).unwrap();
    ((i.to_dtype(DType::F32).unwrap() * 0.37).unwrap() + 0.1).unwrap().sin().unwrap().reshape(shape).unwrap()
}

/// `f` at `inputs` on the CPU (float32) and on CUDA (storage `dtype`): the output and the
/// gradient of every input of Σ w ⊙ f (w = [`weights`]), on the host as float32.
fn run(inputs: &[Tensor], dev: &Device, dtype: DType, f: &Op) -> (Tensor, Vec<Tensor>) {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|x| {
            let x = x.to_dtype(dtype).unwrap();
            let x = if dev.is_cpu() { x.to_dtype(DType::F32).unwrap() } else { x.to_device(dev).unwrap() };
            Var::from_tensor(&x).unwrap()
        })
        .collect();
    let xs: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let y = f(&xs);
    // the weighting in float32 on both sides (not rounded to bf16 with a bf16 output)
    let w = weights(y.shape()).to_device(dev).unwrap();
    let g = (y.to_dtype(DType::F32).unwrap() * &w).unwrap().sum_all().unwrap().backward().unwrap();
    let host = |t: &Tensor| t.to_device(&Device::Cpu).unwrap().to_dtype(DType::F32).unwrap();
    let grads = vars.iter().map(|v| host(g.get(v.as_tensor()).expect("no gradient"))).collect();
    (host(&y), grads)
}

/// The largest relative difference, output and gradients, CUDA vs CPU.
fn compare(name: &str, inputs: &[Tensor], dtype: DType, f: &Op) -> f64 {
    let (yc, gc) = run(inputs, &Device::Cpu, dtype, f);
    let before = depth_core::fused_kernel_launches();
    let (yg, gg) = run(inputs, &cuda(), dtype, f);
    // the op took the fused kernels, not the composed path
    assert!(depth_core::fused_kernel_launches() > before, "{name}: no fused kernel ran");
    // a quantity that is exactly 0 (attention's dq and dk over one key) is measured against the
    // case's scale: 1% of its largest output or gradient
    let floor = 1e-2 * gc.iter().map(abs_max).fold(abs_max(&yc), f64::max);
    let fwd = rel(&yg, &yc, floor);
    let grads: Vec<f64> = gg.iter().zip(&gc).map(|(a, b)| rel(a, b, floor)).collect();
    println!("{name:24} {dtype:?} forward {fwd:.2e} gradients {grads:?}");
    grads.into_iter().fold(fwd, f64::max)
}

/// `x ≤ tol`, false for NaN.
fn within(x: f64, tol: f64) -> bool {
    x <= tol
}

fn r(s: &[usize]) -> Tensor {
    Tensor::randn(0f32, 1.0, s, &Device::Cpu).unwrap()
}

type Case = (String, Vec<Tensor>, Box<Op>);

fn case(name: &str, inputs: Vec<Tensor>, f: impl Fn(&[Tensor]) -> Tensor + 'static) -> Case {
    (name.to_string(), inputs, Box::new(f))
}

fn cases() -> Vec<Case> {
    let mut cases = vec![
        case("layer_norm d=384", vec![r(&[3, 37, 384]), r(&[384]), r(&[384])], |x| {
            depth_core::layer_norm(&x[0], &x[1], &x[2], 1e-6).unwrap()
        }),
        case("layer_norm d=1536, 1 row", vec![r(&[1, 1536]), r(&[1536]), r(&[1536])], |x| {
            depth_core::layer_norm(&x[0], &x[1], &x[2], 1e-5).unwrap()
        }),
        case("softmax 1370", vec![r(&[2, 5, 1370])], |x| depth_core::softmax_last_dim(&x[0]).unwrap()),
        case("softmax 7", vec![r(&[3, 7])], |x| depth_core::softmax_last_dim(&x[0]).unwrap()),
        case("gelu", vec![(r(&[5, 1001]) * 3.0).unwrap()], |x| depth_core::gelu_erf(&x[0]).unwrap()),
    ];
    for n in [1usize, 63, 65, 130, 1370] {
        let qkv = vec![r(&[2, 3, n, 64]), r(&[2, 3, n, 64]), r(&[2, 3, n, 64])];
        cases.push(case(&format!("attention n={n}"), qkv, |x| {
            depth_core::attention(&x[0], &x[1], &x[2], 0.125).unwrap()
        }));
    }
    // a view starting one element in: copied to an aligned buffer for the tensor-core kernels'
    // 16-byte loads
    let qkv = vec![r(&[1, 2, 65, 64]), r(&[1, 2, 65, 64]), r(&[1, 2, 65, 64])];
    cases.push(case("attention n=65, view at offset 1", qkv, |x| {
        let shifted = |t: &Tensor| {
            let flat = t.flatten_all().unwrap();
            let padded = Tensor::cat(&[&flat.narrow(0, 0, 1).unwrap(), &flat], 0).unwrap();
            padded.narrow(0, 1, flat.dim(0).unwrap()).unwrap().reshape(t.shape()).unwrap()
        };
        depth_core::attention(&shifted(&x[0]), &shifted(&x[1]), &shifted(&x[2]), 0.125).unwrap()
    }));
    cases
}

/// Resampling: float32 only (the op takes f32 and f64).
fn resample_cases() -> Vec<Case> {
    vec![
        case("bilinear up", vec![r(&[2, 3, 19, 23])], |x| {
            depth_core::bilinear_align_corners(&x[0], (37, 45)).unwrap()
        }),
        case("bicubic_scale, permuted", vec![r(&[1, 37, 37, 8])], |x| {
            depth_core::bicubic_scale(&x[0].permute((0, 3, 1, 2)).unwrap(), (1.0027, 1.5162)).unwrap()
        }),
        case("bicubic down", vec![r(&[2, 4, 40, 33])], |x| depth_core::bicubic(&x[0], (17, 29)).unwrap()),
    ]
}

/// The names of the cases whose CUDA result in `dtype` is not within `tol` of the CPU's.
fn differing(cases: &[Case], dtype: DType, tol: f64) -> Vec<String> {
    cases
        .iter()
        .filter(|(name, x, f)| !within(compare(name, x, dtype, f.as_ref()), tol))
        .map(|c| c.0.clone())
        .collect()
}

#[test]
fn fused_kernels_match_the_cpu_in_f32() {
    let _on = super::kernels(true);
    let all: Vec<Case> = cases().into_iter().chain(resample_cases()).collect();
    let bad = differing(&all, DType::F32, 1e-5);
    assert!(bad.is_empty(), "fused CUDA kernels differ from the CPU in f32: {bad:?}");
}

#[test]
fn fused_kernels_match_the_cpu_in_bf16() {
    let _on = super::kernels(true);
    let bad = differing(&cases(), DType::BF16, 2e-2);
    assert!(bad.is_empty(), "fused CUDA kernels differ from the CPU in bf16: {bad:?}");
}

/// Under bf16 autocast the attention takes bf16-rounded q, k, v (float32 tensors in and out):
/// against the CPU's autocast emulation.
#[test]
fn fused_attention_under_autocast_matches_the_cpu() {
    let _on = super::kernels(true);
    let x = [r(&[1, 6, 1370, 64]), r(&[1, 6, 1370, 64]), r(&[1, 6, 1370, 64])];
    let f = |x: &[Tensor]| {
        depth_core::autocast(depth_core::Precision::Bf16, || {
            depth_core::attention(&x[0], &x[1], &x[2], 0.125).unwrap()
        })
    };
    let worst = compare("attention autocast", &x, DType::F32, &f);
    assert!(worst <= 2e-2, "{worst:.2e}");
}

#[test]
fn fused_gradients_repeat_bit_for_bit() {
    let _on = super::kernels(true);
    let dev = cuda();
    let f32_cases = cases().into_iter().chain(resample_cases()).map(|c| (c, DType::F32));
    for ((name, x, f), dtype) in f32_cases.chain(cases().into_iter().map(|c| (c, DType::BF16))) {
        let on_dev = |t: &Tensor| t.to_dtype(dtype).unwrap().to_device(&dev).unwrap();
        let vars: Vec<Var> = x.iter().map(|t| Var::from_tensor(&on_dev(t)).unwrap()).collect();
        let grads = || {
            let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
            let y = f(&ts).to_dtype(DType::F32).unwrap();
            let g = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
            let flat = |v: &Var| {
                let g = g.get(v.as_tensor()).unwrap().to_dtype(DType::F32).unwrap();
                g.flatten_all().unwrap().to_vec1::<f32>().unwrap()
            };
            vars.iter().map(flat).collect::<Vec<_>>()
        };
        assert!(grads() == grads(), "{name} ({dtype:?}): two backward passes differ");
    }
}
