//! bf16 autocast for inference on the CPU: on a CPU with AMX the linear layers and attention run
//! on bf16 tiles (depth-core's `amx.rs`), elsewhere the emulated products; either way the depth
//! of the fixture images stays within 1e-2 (max |difference| / max depth) of float32, the
//! bound PyTorch's CPU autocast keeps (issue 30).

use candle_core::Device;
use depth_core::Precision;
use depth_models::DepthEstimator;

#[test]
fn bf16_inference_stays_within_a_percent_of_float32() {
    let fixtures = depth_core::fixtures::fixtures_dir().unwrap();
    let weights = fixtures.join("weights/da2_vits_random.pth");
    let f32 = DepthEstimator::from_pretrained(weights.as_path(), &Device::Cpu).unwrap().with_input_size(266);
    let bf16 = DepthEstimator::from_pretrained(weights.as_path(), &Device::Cpu)
        .unwrap()
        .with_input_size(266)
        .with_precision(Precision::Bf16);
    for name in ["demo08.jpg", "square04.png", "demo02.jpg"] {
        let img = depth_models::read_image(&fixtures.join("images").join(name)).unwrap();
        let (a, b) = (f32.estimate(&img).unwrap(), bf16.estimate(&img).unwrap());
        let max = a.data.iter().fold(0f32, |m, v| m.max(v.abs()));
        let err = a.data.iter().zip(&b.data).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / max;
        eprintln!("{name}: bf16 vs f32 {err:.2e}");
        assert!(err <= 1e-2, "{name}: {err}");
        assert!(err > 0.0, "{name}: bf16 gave float32's bits: the products were not lowered");
    }
}
