//! Gradients of the model parts against central finite differences (f64, tiny configs), and a
//! check that every parameter of a full model receives a gradient (no detached op anywhere).

use candle_core::{DType, Device, Module, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use depth_models::{Block, DinoVisionTransformer, DptHead, LayerOutput};
use depth_models::{DepthAnythingV2, DptConfig, Ffn, ModelConfig, VitConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

fn tiny_vit(ffn: Ffn) -> VitConfig {
    VitConfig { img_size: 56, ..VitConfig::custom(16, 2, 2, ffn) }
}

fn tiny_head() -> DptConfig {
    DptConfig { features: 8, out_channels: [4, 8, 16, 16], use_clstoken: false, head_hidden: 4 }
}

/// Seeded normal samples: every run checks the same points, so a test passes or fails the same
/// way each time (candle's `randn` is unseeded, and a random point lands within a step of a ReLU
/// kink in about 2% of runs).
struct Gauss(ChaCha8Rng);

impl Gauss {
    fn new(seed: u64) -> Self {
        Self(ChaCha8Rng::seed_from_u64(seed))
    }

    fn tensor(&mut self, std: f64, shape: impl Into<candle_core::Shape>) -> Tensor {
        let shape = shape.into();
        let v: Vec<f64> =
            (0..shape.elem_count()).map(|_| std * self.0.sample::<f64, _>(StandardNormal)).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }
}

/// Builds with `f` on a fresh VarMap, then gives every variable (in name order) seeded values:
/// weights with std 1/√fan_in (activations stay O(1), so difference quotients keep their
/// precision), vectors (biases, norms, LayerScale) std 0.4.
fn random<M>(rng: &mut Gauss, f: impl FnOnce(VarBuilder) -> candle_core::Result<M>) -> (M, VarMap) {
    let vm = VarMap::new();
    let m = f(VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu)).unwrap();
    let mut vars: Vec<(String, Var)> =
        vm.data().lock().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, v) in vars {
        let dims = v.dims();
        let std = match dims.len() {
            0 | 1 => 0.4,
            _ => 1.0 / ((v.elem_count() / dims[0]) as f64).sqrt(),
        };
        v.set(&rng.tensor(std, v.shape().clone())).unwrap();
    }
    (m, vm)
}

/// Autograd vs central differences of `loss` for a sample of elements of every var.
fn check(vars: &[(String, Var)], loss: impl Fn() -> Tensor) {
    let grads = loss().backward().unwrap();
    for (name, var) in vars {
        let g = grads.get(var.as_tensor()).expect("a variable got no gradient");
        let g = g.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let base = var.as_tensor().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let eps = 1e-6;
        for i in (0..base.len()).step_by((base.len() / 6).max(1)) {
            let at = |d: f64| {
                let mut v = base.clone();
                v[i] += d;
                var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap()).unwrap();
                loss().to_scalar::<f64>().unwrap()
            };
            let fd = (at(eps) - at(-eps)) / (2.0 * eps);
            var.set(&Tensor::from_vec(base.clone(), var.shape(), &Device::Cpu).unwrap()).unwrap();
            let tol = 1e-6 * (1.0 + fd.abs().max(g[i].abs()));
            assert!((fd - g[i]).abs() <= tol, "{name}[{i}]: finite diff {fd}, autograd {}", g[i]);
        }
    }
}

/// The variables of `vm` except those under the given prefixes.
fn vars_except(vm: &VarMap, unused: &[&str]) -> Vec<(String, Var)> {
    let data = vm.data().lock().unwrap();
    data.iter()
        .filter(|(k, _)| !unused.iter().any(|u| k.starts_with(u)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// In the checkpoint but unused by the official forward pass.
const UNUSED: [&str; 2] = ["pretrained.mask_token", "depth_head.scratch.refinenet4.resConfUnit1"];

fn weighted_sum(y: &Tensor, w: &Tensor) -> Tensor {
    (y * w).unwrap().sum_all().unwrap()
}

#[test]
fn dinov2_block_gradients() {
    for ffn in [Ffn::Mlp, Ffn::SwiGlu] {
        let cfg = tiny_vit(ffn);
        let rng = &mut Gauss::new(1);
        let (block, vm) = random(rng, |vb| Block::new(&cfg, vb));
        let x = Var::from_tensor(&rng.tensor(1.0, (2, 5, 16))).unwrap();
        let w = rng.tensor(1.0, (2, 5, 16));
        let mut vars = vars_except(&vm, &[]);
        vars.push(("input".into(), x.clone()));
        check(&vars, || weighted_sum(&block.forward(x.as_tensor()).unwrap(), &w));
    }
}

#[test]
fn dpt_head_gradients() {
    let (ph, pw, c) = (2, 3, 16);
    let rng = &mut Gauss::new(2);
    let (head, vm) = random(rng, |vb| DptHead::new(c, &tiny_head(), vb));
    let tokens: Vec<Var> =
        (0..4).map(|_| Var::from_tensor(&rng.tensor(1.0, (1, ph * pw, c))).unwrap()).collect();
    let cls = Tensor::zeros((1, c), DType::F64, &Device::Cpu).unwrap();
    let w = rng.tensor(1.0, (1, 1, ph * 14, pw * 14));
    let loss = || {
        let feats: Vec<LayerOutput> = tokens
            .iter()
            .map(|t| LayerOutput { patch_tokens: t.as_tensor().clone(), class_token: cls.clone() })
            .collect();
        weighted_sum(&head.forward(&feats, ph, pw, 14).unwrap(), &w)
    };
    let mut vars = vars_except(&vm, &["scratch.refinenet4.resConfUnit1"]);
    vars.extend(tokens.iter().enumerate().map(|(i, t)| (format!("tokens{i}"), t.clone())));
    check(&vars, loss);
}

#[test]
fn every_parameter_of_a_full_model_gets_a_gradient() {
    // the relative head (ReLU) and the metric one (sigmoid × max_depth)
    for max_depth in [None, Some(20.0)] {
        let cfg = ModelConfig { vit: tiny_vit(Ffn::Mlp), head: tiny_head(), layers: [0, 1, 1, 1], max_depth };
        let rng = &mut Gauss::new(3);
        let (model, vm) = random(rng, |vb| DepthAnythingV2::new(&cfg, vb));
        let x = rng.tensor(1.0, (2, 3, 42, 56));
        let y = model.forward(&x).unwrap();
        assert_eq!(y.dims(), [2, 42, 56]);
        let grads = (y + 1.0).unwrap().sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let used = vars_except(&vm, &UNUSED);
        let without = used.iter().filter(|(_, v)| grads.get(v.as_tensor()).is_none()).count();
        assert_eq!(without, 0, "{without} of {} parameters got no gradient", used.len());
        assert_eq!(
            used.len() + 5,
            vm.all_vars().len(),
            "only mask_token and refinenet4.resConfUnit1 are unused"
        );
    }
}

#[test]
fn non_square_inputs_interpolate_position_embeddings() {
    let cfg = tiny_vit(Ffn::Mlp);
    let rng = &mut Gauss::new(4);
    let (vit, _) = random(rng, |vb| DinoVisionTransformer::new(&cfg, vb));
    for (h, w) in [(56, 56), (42, 70), (70, 28)] {
        let x = rng.tensor(1.0, (1, 3, h, w));
        let out = vit.get_intermediate_layers(&x, &[1]).unwrap();
        assert_eq!(out[0].patch_tokens.dims(), [1, (h / 14) * (w / 14), 16]);
    }
    let bad = Tensor::zeros((1, 3, 43, 56), DType::F64, &Device::Cpu).unwrap();
    assert!(vit.get_intermediate_layers(&bad, &[1]).is_err());
}

#[test]
fn official_vits_config_has_the_official_parameter_count() {
    // 24,785,089 parameters in 239 tensors (shared/README.md, da2_vits_random.pth)
    let vm = VarMap::new();
    DepthAnythingV2::new(
        &ModelConfig::official(depth_models::Encoder::Vits),
        VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu),
    )
    .unwrap();
    let vars = vm.all_vars();
    assert_eq!(vars.len(), 239);
    assert_eq!(vars.iter().map(|v| v.elem_count()).sum::<usize>(), 24_785_089);
    // the count from the sizes alone equals the built model's, for other shapes too
    let mut readout = ModelConfig::custom(48, 3, 3, 16);
    readout.head.use_clstoken = true;
    let swiglu =
        ModelConfig { vit: tiny_vit(Ffn::SwiGlu), head: tiny_head(), layers: [0, 1, 1, 1], max_depth: None };
    for cfg in [
        ModelConfig::official(depth_models::Encoder::Vits),
        ModelConfig::custom(96, 6, 2, 32),
        readout,
        swiglu,
    ] {
        let vm = VarMap::new();
        DepthAnythingV2::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
        let built: usize = vm.all_vars().iter().map(|v| v.elem_count()).sum();
        assert_eq!(cfg.parameter_count(), built, "{cfg:?}");
        let data = vm.data().lock().unwrap();
        let encoder: usize =
            data.iter().filter(|(k, _)| k.starts_with("pretrained.")).map(|(_, v)| v.elem_count()).sum();
        assert_eq!(cfg.encoder_parameter_count(), encoder, "{cfg:?}");
    }
}

/// Activation checkpointing (`features_recomputed` + `Recompute::backward`) gives every
/// parameter the gradient of the plain backward: layers read by the head or only passed on,
/// read twice, with the class token, in float64 (to the last bits of a sum) and under bf16
/// autocast.
#[test]
fn activation_checkpointing_gives_the_plain_gradients() {
    let vit = VitConfig { img_size: 56, ..VitConfig::custom(16, 4, 2, Ffn::Mlp) };
    let mut head = tiny_head();
    for (layers, cls, dtype, tol) in [
        ([1, 1, 3, 3], false, DType::F64, 1e-12),
        ([0, 1, 2, 3], true, DType::F64, 1e-12),
        ([0, 2, 2, 3], false, DType::F32, 1e-5),
    ] {
        head.use_clstoken = cls;
        let cfg = ModelConfig { vit: vit.clone(), head: head.clone(), layers, max_depth: None };
        let rng = &mut Gauss::new(5);
        let (model, vm) = random(rng, |vb| DepthAnythingV2::new(&cfg, vb));
        let (model, vm) = if dtype == DType::F64 {
            (model, vm)
        } else {
            let vm32 = VarMap::new();
            let m =
                DepthAnythingV2::new(&cfg, VarBuilder::from_varmap(&vm32, DType::F32, &Device::Cpu)).unwrap();
            for (k, v) in vm32.data().lock().unwrap().iter() {
                v.set(&vm.data().lock().unwrap()[k].to_dtype(DType::F32).unwrap()).unwrap();
            }
            (m.with_precision(depth_core::Precision::Bf16), vm32)
        };
        let x = rng.tensor(1.0, (2, 3, 42, 56)).to_dtype(dtype).unwrap();
        let w = rng.tensor(1.0, (2, 42, 56)).to_dtype(dtype).unwrap();
        let plain = weighted_sum(&model.forward(&x).unwrap(), &w).backward().unwrap();
        let (features, recompute) = model.features_recomputed(&x).unwrap();
        let mut grads = weighted_sum(&model.forward_from(&features, &x).unwrap(), &w).backward().unwrap();
        recompute.backward(&mut grads).unwrap();
        for (name, var) in vars_except(&vm, &UNUSED) {
            let (a, b) = (grads.get(var.as_tensor()), plain.get(var.as_tensor()));
            let (Some(a), Some(b)) = (a, b) else {
                panic!(
                    "{layers:?}: {name} has a gradient in {} only",
                    if a.is_some() { "one" } else { "the plain" }
                )
            };
            let d = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_dtype(DType::F64).unwrap();
            let scale = b.abs().unwrap().max_all().unwrap().to_dtype(DType::F64).unwrap();
            let rel = d.to_scalar::<f64>().unwrap() / scale.to_scalar::<f64>().unwrap().max(1e-30);
            assert!(rel <= tol, "{layers:?} {dtype:?}: {name} differs by {rel:.1e}");
        }
    }
}
