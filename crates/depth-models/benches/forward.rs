//! ViT-S Depth Anything V2 forward, batch 1, f32, CPU (random weights: timing does not depend on
//! their values). Compare with the official PyTorch model measured in the same run on the same
//! machine (see docs/benchmarks.md).

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use criterion::{Criterion, criterion_group, criterion_main};
use depth_models::{DepthAnythingV2, Encoder, ModelConfig};
use std::time::Duration;

fn forward(c: &mut Criterion) {
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
    let model = DepthAnythingV2::new(&ModelConfig::official(Encoder::Vits), vb).unwrap();
    let mut g = c.benchmark_group("vits_forward");
    g.sample_size(10).measurement_time(Duration::from_secs(20)).warm_up_time(Duration::from_secs(3));
    for (h, w) in [(518, 518), (518, 784)] {
        let x = Tensor::randn(0f32, 1.0, (1, 3, h, w), &Device::Cpu).unwrap();
        g.bench_function(format!("{h}x{w}"), |b| b.iter(|| model.forward(&x).unwrap()));
    }
    g.finish();
}

criterion_group!(benches, forward);
criterion_main!(benches);
