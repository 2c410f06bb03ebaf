use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use depth_models::{DepthAnythingV2, Encoder, ModelConfig};
use std::time::Instant;
fn ms(n: usize, f: impl Fn()) -> f64 {
    f();
    let s = Instant::now();
    for _ in 0..n {
        f()
    }
    s.elapsed().as_secs_f64() * 1e3 / n as f64
}
fn main() {
    let d = Device::Cpu;
    let vm = VarMap::new();
    let model = DepthAnythingV2::new(
        &ModelConfig::official(Encoder::Vits),
        VarBuilder::from_varmap(&vm, DType::F32, &d),
    )
    .unwrap();
    for (h, w) in [(518, 518), (518, 784)] {
        let img = Tensor::randn(0f32, 1.0, (1, 3, h, w), &d).unwrap();
        let e = ms(3, || {
            model.features(&img).unwrap();
        });
        let f = ms(3, || {
            model.forward(&img).unwrap();
        });
        println!("{h}x{w}: encoder {e:.0} ms, full {f:.0} ms, head {:.0} ms", f - e);
    }
}
