//! The depth-core ops at the sizes the model uses, forward and forward+backward, beside
//! candle's own ops where candle has one.

use candle_core::{D, Device, Tensor, Var};
use criterion::{Criterion, criterion_group, criterion_main};
use std::time::Duration;

fn randn(shape: &[usize]) -> Tensor {
    Tensor::randn(0f32, 1.0, shape, &Device::Cpu).unwrap()
}

fn fwd_bwd(x: &Tensor, f: impl Fn(&Tensor) -> Tensor) {
    let v = Var::from_tensor(x).unwrap();
    f(v.as_tensor()).sum_all().unwrap().backward().unwrap();
}

fn resample(c: &mut Criterion) {
    let mut g = c.benchmark_group("resample");
    g.sample_size(20).measurement_time(Duration::from_secs(5));
    let head = randn(&[1, 32, 296, 448]);
    g.bench_function("bilinear_ac 32x296x448->518x784 fwd", |b| {
        b.iter(|| depth_core::bilinear_align_corners(&head, (518, 784)).unwrap())
    });
    g.bench_function("candle upsample_bilinear2d 32x296x448->518x784 fwd", |b| {
        b.iter(|| head.upsample_bilinear2d(518, 784, true).unwrap())
    });
    g.bench_function("bilinear_ac 32x296x448->518x784 fwd+bwd", |b| {
        b.iter(|| fwd_bwd(&head, |x| depth_core::bilinear_align_corners(x, (518, 784)).unwrap()))
    });
    let pos = randn(&[1, 384, 37, 37]);
    g.bench_function("bicubic_scale pos-embed 384x37x37->37x56 fwd+bwd", |b| {
        b.iter(|| fwd_bwd(&pos, |x| depth_core::bicubic_scale(x, (37.1 / 37.0, 56.1 / 37.0)).unwrap()))
    });
    let img = Tensor::randn(0f64, 1.0, (1, 3, 1362, 2048), &Device::Cpu).unwrap();
    g.bench_function("cv_resize_cubic f64 3x1362x2048->518x784", |b| {
        b.iter(|| depth_core::cv_resize_cubic(&img, (518, 784)).unwrap())
    });
    g.finish();
}

fn norm_softmax(c: &mut Criterion) {
    let mut g = c.benchmark_group("norm_softmax");
    g.sample_size(20).measurement_time(Duration::from_secs(5));
    let x = randn(&[1, 2073, 384]);
    let (w, bias) = (randn(&[384]), randn(&[384]));
    g.bench_function("layer_norm 2073x384 fwd", |b| {
        b.iter(|| depth_core::layer_norm(&x, &w, &bias, 1e-6).unwrap())
    });
    g.bench_function("candle fused layer_norm 2073x384 fwd", |b| {
        b.iter(|| candle_nn::ops::layer_norm(&x, &w, &bias, 1e-6).unwrap())
    });
    g.bench_function("layer_norm 2073x384 fwd+bwd", |b| {
        b.iter(|| fwd_bwd(&x, |x| depth_core::layer_norm(x, &w, &bias, 1e-6).unwrap()))
    });
    g.bench_function("candle layer_norm_slow 2073x384 fwd+bwd", |b| {
        b.iter(|| fwd_bwd(&x, |x| candle_nn::ops::layer_norm_slow(x, &w, &bias, 1e-6).unwrap()))
    });
    let a = randn(&[1, 6, 1370, 1370]);
    g.bench_function("softmax 6x1370x1370 fwd", |b| b.iter(|| depth_core::softmax_last_dim(&a).unwrap()));
    g.bench_function("candle fused softmax_last_dim 6x1370x1370 fwd", |b| {
        b.iter(|| candle_nn::ops::softmax_last_dim(&a).unwrap())
    });
    g.bench_function("softmax 6x1370x1370 fwd+bwd", |b| {
        b.iter(|| fwd_bwd(&a, |x| depth_core::softmax_last_dim(x).unwrap()))
    });
    g.bench_function("candle softmax 6x1370x1370 fwd+bwd", |b| {
        b.iter(|| fwd_bwd(&a, |x| candle_nn::ops::softmax(x, D::Minus1).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, resample, norm_softmax);
criterion_main!(benches);
