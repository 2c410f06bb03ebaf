//! On a CUDA device (build with `--features cuda`): the same random ViT-S model gives the same
//! depth as on the CPU, the training path (forward + backward) runs, and every parameter gets a
//! gradient. Needs no fixtures, so the test binary alone can be carried to a GPU machine.
#![cfg(feature = "cuda")]

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use depth_core::weights::StrictWeights;
use depth_models::{DepthAnythingV2, Encoder, ModelConfig};
use std::time::Instant;

fn max_abs(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64).unwrap().abs().unwrap().max_all().unwrap().to_scalar().unwrap()
}

#[test]
fn cuda_matches_cpu_and_trains() {
    let cuda = Device::new_cuda(0).expect("a CUDA device");
    let cfg = ModelConfig::official(Encoder::Vits);
    let vm = VarMap::new();
    let cpu_model =
        DepthAnythingV2::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
    // candle's default init leaves the norms at zero (all-zero features): give every tensor values
    for v in vm.all_vars() {
        let dims = v.dims();
        let (mean, std) = match dims.len() {
            0 | 1 => (1.0, 0.3),
            _ => (0.0, 1.0 / ((v.elem_count() / dims[0]) as f32).sqrt()),
        };
        v.set(&Tensor::randn(mean, std, v.shape(), &Device::Cpu).unwrap()).unwrap();
    }
    let tensors: depth_core::weights::TensorMap =
        vm.data().lock().unwrap().iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect();
    let gpu_vm = VarMap::new();
    let gpu_model = StrictWeights::trainable("cpu model", tensors, &gpu_vm)
        .build(DType::F32, &cuda, |vb| DepthAnythingV2::new(&cfg, vb))
        .unwrap();
    for (h, w) in [(518, 518), (518, 784)] {
        let x = Tensor::randn(0f32, 1.0, (1, 3, h, w), &Device::Cpu).unwrap();
        let xg = x.to_device(&cuda).unwrap();
        let (fc, fg) = (cpu_model.features(&x).unwrap(), gpu_model.features(&xg).unwrap());
        for (i, (c, g)) in fc.iter().zip(&fg).enumerate() {
            let err = max_abs(&(g.patch_tokens.to_device(&Device::Cpu).unwrap() - &c.patch_tokens).unwrap())
                / max_abs(&c.patch_tokens);
            println!("{h}x{w}: feature {i} rel diff to cpu {err:.2e}");
            assert!(err <= 1e-4, "{h}x{w}: CUDA feature {i} differs from CPU by {err:e}");
        }
        let ours = cpu_model.forward(&x).unwrap();
        let gpu = gpu_model.forward(&xg).unwrap();
        cuda.synchronize().unwrap();
        let t = Instant::now();
        let runs = 5;
        for _ in 0..runs {
            gpu_model.forward(&xg).unwrap();
        }
        cuda.synchronize().unwrap();
        let ms = t.elapsed().as_secs_f64() * 1e3 / runs as f64;
        let err = max_abs(&(gpu.to_device(&Device::Cpu).unwrap() - &ours).unwrap()) / max_abs(&ours);
        println!("{h}x{w}: cuda forward {ms:.1} ms, rel diff to cpu {err:.2e}");
        assert!(err <= 1e-4, "{h}x{w}: CUDA differs from CPU by {err:e} (relative)");
    }
    let x = Tensor::randn(0f32, 1.0, (2, 3, 266, 378), &cuda).unwrap();
    let loss = gpu_model.forward(&x).unwrap().sqr().unwrap().mean_all().unwrap();
    let grads = loss.backward().unwrap();
    let unused = ["pretrained.mask_token", "depth_head.scratch.refinenet4.resConfUnit1"];
    let data = gpu_vm.data().lock().unwrap();
    let missing: Vec<_> = data
        .iter()
        .filter(|(k, v)| !unused.iter().any(|u| k.starts_with(u)) && grads.get(v.as_tensor()).is_none())
        .map(|(k, _)| k.clone())
        .collect();
    assert!(missing.is_empty(), "no gradient on CUDA for {missing:?}");
}
