//! The full Depth Anything V2 objective (L_ssi + 2·L_gm, half the batch pseudo-labelled) on
//! (8, 518, 518), forward and forward + backward, CPU.

use candle_core::{DType, Device, Tensor, Var};
use criterion::{Criterion, criterion_group, criterion_main};
use std::time::Duration;

fn objective(c: &mut Criterion) {
    let dev = Device::Cpu;
    let pred = Tensor::rand(0.1f32, 1.0, (8, 518, 518), &dev).unwrap();
    let gt = Tensor::rand(0.1f32, 1.0, (8, 518, 518), &dev).unwrap();
    let mask =
        Tensor::rand(0f32, 1.0, (8, 518, 518), &dev).unwrap().gt(0.1).unwrap().to_dtype(DType::U8).unwrap();
    let pseudo = [true, false, true, false, true, false, true, false];
    let mut g = c.benchmark_group("da2_objective_8x518x518");
    g.sample_size(10).measurement_time(Duration::from_secs(15));
    g.bench_function("fwd", |b| b.iter(|| depth_losses::da2_objective(&pred, &gt, &mask, &pseudo).unwrap()));
    g.bench_function("fwd+bwd", |b| {
        b.iter(|| {
            let v = Var::from_tensor(&pred).unwrap();
            depth_losses::da2_objective(v.as_tensor(), &gt, &mask, &pseudo).unwrap().backward().unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, objective);
criterion_main!(benches);
