//! One training step of the ViT-S Depth Anything V2 student at 266×266, batch 2, f32, CPU:
//! forward, the Depth Anything objective (L_ssi + 2·L_gm), backward, and AdamW over the
//! parameter groups — what `Trainer::train_step` does per batch, without the loader. Compare
//! with `benches/torch_bench.py --case train/vits/266/b2` (the official PyTorch model, same objective and
//! optimiser) run right after on the same machine (docs/benchmarks.md).

use candle_core::{Device, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};
use depth_losses::Objective;
use depth_models::{Encoder, ModelConfig, WeightsInit, build_trainable, parameters};
use depth_train::{AdamW, Grads, OptimConfig, groups_for};
use std::time::Duration;

fn train_step(c: &mut Criterion) {
    let dev = Device::Cpu;
    let t = build_trainable(&ModelConfig::official(Encoder::Vits), &WeightsInit::Scratch, 0, &dev).unwrap();
    let params = parameters(&t.varmap).unwrap();
    let mut optim = AdamW::new(groups_for(&params, &OptimConfig::default())).unwrap();
    let trained = optim.params();
    let (b, n) = (2, 266);
    let x = Tensor::randn(0f32, 1.0, (b, 3, n, n), &dev).unwrap();
    let target = (Tensor::rand(0f32, 1.0, (b, n, n), &dev).unwrap() + 0.1).unwrap();
    let mask = Tensor::ones((b, n, n), candle_core::DType::F32, &dev).unwrap();
    let objective = Objective::default();
    let mut g = c.benchmark_group("vits_train_step");
    g.sample_size(10).measurement_time(Duration::from_secs(40)).warm_up_time(Duration::from_secs(5));
    g.bench_function(format!("{n}x{n}_batch{b}"), |bench| {
        bench.iter(|| {
            let loss = objective.loss(&t.model.forward(&x).unwrap(), &target, &mask, &[false; 2]).unwrap();
            let grads = Grads::from_store(&loss.backward().unwrap(), &trained);
            optim.step(&grads).unwrap();
        })
    });
    g.finish();
}

criterion_group!(benches, train_step);
criterion_main!(benches);
