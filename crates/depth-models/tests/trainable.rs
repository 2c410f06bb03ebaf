//! What training needs from the models: fresh initialisation with PyTorch's statistics, the
//! encoder from DINOv2 / transformers / Depth Anything V2 checkpoints under a fresh head (every
//! odd key reported), the official metric head, and checkpoints that carry their config and
//! keep the official key layout.

use candle_core::{DType, Device, Tensor};
use depth_core::weights::{Metadata, TensorMap, load_safetensors, load_weights, save_safetensors};
use depth_models::{
    Encoder, ModelConfig, Part, WeightsInit, WeightsSource, build_trainable, load_model, load_model_with,
    model_tensors, parameters, save_model,
};
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    depth_core::fixtures::fixtures_dir().expect("shared fixtures")
}

fn vits_random() -> String {
    fixtures().join("weights/da2_vits_random.pth").to_string_lossy().into_owned()
}

fn values(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1().unwrap()
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let m = v.iter().sum::<f64>() / v.len() as f64;
    (m, (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt())
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    values(a).iter().zip(values(b)).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

#[test]
fn fresh_vits_has_pytorch_init_statistics() {
    let t = build_trainable(&ModelConfig::official(Encoder::Vits), &WeightsInit::Scratch, 3, &Device::Cpu)
        .unwrap();
    assert_eq!(t.summary.fresh.len(), 239);
    assert_eq!(t.summary.loaded, 0);
    let tensors = model_tensors(&t.varmap).unwrap();
    let get = |k: &str| values(&tensors[k]);
    for (k, v) in &tensors {
        let v = values(v);
        let (mean, std) = mean_std(&v);
        let uniform_bound = |fan_in: usize| {
            let b = 1.0 / (fan_in as f64).sqrt();
            assert!(v.iter().all(|x| x.abs() <= b), "{k}: outside ±{b}");
            // a uniform in ±b has std b/√3
            assert!((std - b / 3f64.sqrt()).abs() < 0.08 * b, "{k}: std {std}, uniform ±{b}");
        };
        if k.contains("norm") {
            let want = if k.ends_with("weight") { 1.0 } else { 0.0 };
            assert!(v.iter().all(|&x| x == want), "{k} should be {want}");
        } else if k.ends_with(".gamma") {
            assert!(v.iter().all(|&x| x == 1.0), "{k}: LayerScale init 1.0");
        } else if k.starts_with("pretrained.blocks") && k.ends_with(".bias") {
            assert!(v.iter().all(|&x| x == 0.0), "{k}: ViT biases are 0");
        } else if k.starts_with("pretrained.blocks") {
            assert!(
                mean.abs() < 2e-4 && (std - 0.02).abs() < 4e-4,
                "{k}: mean {mean} std {std}, want N(0, 0.02)"
            );
        } else if k == "pretrained.patch_embed.proj.weight" || k == "pretrained.patch_embed.proj.bias" {
            uniform_bound(3 * 14 * 14);
        } else if k.starts_with("depth_head.resize_layers.0") {
            uniform_bound(48 * 4 * 4); // transposed conv: fan_in = out_channels · k²
        } else if k.starts_with("depth_head.resize_layers.1") {
            uniform_bound(96 * 2 * 2);
        } else if k.starts_with("depth_head.scratch.refinenet")
            && k.contains("conv")
            && !k.contains("out_conv")
        {
            uniform_bound(64 * 9);
        }
    }
    let (m, s) = mean_std(&get("pretrained.pos_embed"));
    assert!(m.abs() < 1e-4 && (s - 0.02).abs() < 2e-4, "pos_embed {m} {s}");
    let (_, s) = mean_std(&get("pretrained.cls_token"));
    assert!(s > 0.0 && s < 3e-6, "cls_token std {s}");
    assert!(get("pretrained.mask_token").iter().all(|&x| x == 0.0));

    // the same seed builds the same model; another seed another one
    let again =
        build_trainable(&ModelConfig::official(Encoder::Vits), &WeightsInit::Scratch, 3, &Device::Cpu)
            .unwrap();
    let other =
        build_trainable(&ModelConfig::official(Encoder::Vits), &WeightsInit::Scratch, 4, &Device::Cpu)
            .unwrap();
    let k = "depth_head.scratch.output_conv1.weight";
    assert_eq!(max_abs_diff(&model_tensors(&again.varmap).unwrap()[k], &tensors[k]), 0.0);
    assert!(max_abs_diff(&model_tensors(&other.varmap).unwrap()[k], &tensors[k]) > 0.0);

    // a fresh model runs and gives finite depth
    let x = Tensor::randn(0f32, 1.0, (1, 3, 56, 70), &Device::Cpu).unwrap();
    let y = t.model.forward(&x).unwrap();
    assert!(values(&y).iter().all(|v| v.is_finite()));
}

#[test]
fn layer_scale_init_comes_from_the_config() {
    let mut cfg = ModelConfig::custom(32, 2, 2, 16);
    cfg.vit.layer_scale_init = 1e-5;
    let t = build_trainable(&cfg, &WeightsInit::Scratch, 0, &Device::Cpu).unwrap();
    let g = values(&model_tensors(&t.varmap).unwrap()["pretrained.blocks.1.ls2.gamma"]);
    assert!(g.iter().all(|&x| (x - 1e-5).abs() < 1e-12));
}

#[test]
fn parameter_groups_cover_the_model() {
    let t = build_trainable(&ModelConfig::official(Encoder::Vits), &WeightsInit::Scratch, 0, &Device::Cpu)
        .unwrap();
    let params = parameters(&t.varmap).unwrap();
    assert_eq!(params.len(), 239);
    let count = |part: Part, decay: bool| {
        params
            .iter()
            .filter(|p| p.kind.part == part && p.kind.decay == decay)
            .map(|p| p.var.elem_count())
            .sum::<usize>()
    };
    let total: usize = params.iter().map(|p| p.var.elem_count()).sum();
    assert_eq!(total, 24_785_089);
    // encoder: 12 blocks × 4 weight matrices + patch embedding decay; the rest does not
    let enc_decay = 12 * (384 * 1152 + 384 * 384 + 384 * 1536 + 1536 * 384) + 384 * 3 * 14 * 14;
    assert_eq!(count(Part::Encoder, true), enc_decay);
    assert!(
        count(Part::Encoder, false) > 0 && count(Part::Decoder, true) > 0 && count(Part::Decoder, false) > 0
    );
    assert_eq!(
        count(Part::Encoder, true) + count(Part::Encoder, false),
        params
            .iter()
            .filter(|p| p.name.starts_with("pretrained."))
            .map(|p| p.var.elem_count())
            .sum::<usize>()
    );
}

/// Writes `tensors` under `name` in a temp folder.
fn write(dir: &tempfile::TempDir, name: &str, tensors: &TensorMap) -> String {
    let p = dir.path().join(name);
    save_safetensors(tensors, &Metadata::new(), &p).unwrap();
    p.to_string_lossy().into_owned()
}

/// The encoder of `t` equals the `pretrained.*` tensors of `want`, and its head is fresh.
fn assert_encoder_loaded(t: &depth_models::Trainable, want: &TensorMap) {
    let got = model_tensors(&t.varmap).unwrap();
    let mut n = 0;
    for (k, v) in want.iter().filter(|(k, _)| k.starts_with("pretrained.")) {
        assert_eq!(max_abs_diff(&got[k], v), 0.0, "{k} not loaded");
        n += 1;
    }
    assert_eq!(t.summary.loaded, n);
    assert!(!t.summary.fresh.is_empty() && t.summary.fresh.iter().all(|k| k.starts_with("depth_head.")));
}

#[test]
fn encoder_from_dinov2_transformers_and_depth_anything_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let da2 = load_weights(std::path::Path::new(&vits_random())).unwrap();
    let cfg = ModelConfig::official(Encoder::Vits);

    // Depth Anything V2: pretrained.* taken, depth_head.* ignored and listed
    let t = build_trainable(&cfg, &WeightsInit::Encoder(vits_random().parse().unwrap()), 1, &Device::Cpu)
        .unwrap();
    assert_encoder_loaded(&t, &da2);
    assert_eq!(t.summary.ignored.len(), da2.keys().filter(|k| k.starts_with("depth_head.")).count());
    let head = "depth_head.scratch.output_conv1.weight";
    assert!(max_abs_diff(&model_tensors(&t.varmap).unwrap()[head], &da2[head]) > 0.0, "the head is fresh");

    // DINOv2's original layout (dinov2_vits14_pretrain.pth keys)
    let original: TensorMap = da2
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("pretrained.").map(|k| (k.to_string(), v.clone())))
        .collect();
    let t = build_trainable(
        &cfg,
        &WeightsInit::Encoder(write(&dir, "dinov2.safetensors", &original).parse().unwrap()),
        1,
        &Device::Cpu,
    )
    .unwrap();
    assert_encoder_loaded(&t, &da2);
    assert!(t.summary.ignored.is_empty());

    // transformers' Dinov2Model layout: the HF tiny model's backbone without its prefix
    let hf_dir = fixtures().join("weights/hf_tiny");
    let hf = load_safetensors(&hf_dir.join("model.safetensors")).unwrap();
    let backbone: TensorMap = hf
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("backbone.").map(|k| (k.to_string(), v.clone())))
        .collect();
    let full = load_model(&hf_dir.as_path().into(), &Device::Cpu).unwrap();
    let hf_cfg = full.config().clone();
    let t = build_trainable(
        &hf_cfg,
        &WeightsInit::Encoder(write(&dir, "dinov2_hf.safetensors", &backbone).parse().unwrap()),
        1,
        &Device::Cpu,
    )
    .unwrap();
    let reference =
        build_trainable(&hf_cfg, &WeightsInit::Full(hf_dir.clone().into()), 0, &Device::Cpu).unwrap();
    assert_encoder_loaded(&t, &model_tensors(&reference.varmap).unwrap());
}

#[test]
fn partial_loads_report_every_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut da2 = load_weights(std::path::Path::new(&vits_random())).unwrap();
    da2.remove("pretrained.blocks.4.attn.qkv.weight");
    da2.remove("pretrained.norm.bias");
    da2.insert(
        "pretrained.register_tokens".into(),
        Tensor::zeros((1, 4, 384), DType::F32, &Device::Cpu).unwrap(),
    );
    da2.insert("pretrained.blocks.0.ls1.gamma".into(), Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap());
    let p = write(&dir, "broken.safetensors", &da2);
    let err = build_trainable(
        &ModelConfig::official(Encoder::Vits),
        &WeightsInit::Encoder(p.parse().unwrap()),
        0,
        &Device::Cpu,
    )
    .err()
    .expect("a broken encoder must not load")
    .to_string();
    for needle in [
        "broken.safetensors",
        "pretrained.blocks.4.attn.qkv.weight",
        "pretrained.norm.bias",
        "pretrained.register_tokens",
        "pretrained.blocks.0.ls1.gamma",
    ] {
        assert!(err.contains(needle), "'{needle}' not in: {err}");
    }
    let junk = write(
        &dir,
        "junk.safetensors",
        &[("x.weight".to_string(), Tensor::zeros(2, DType::F32, &Device::Cpu).unwrap())].into(),
    );
    let err = build_trainable(
        &ModelConfig::official(Encoder::Vits),
        &WeightsInit::Encoder(junk.parse().unwrap()),
        0,
        &Device::Cpu,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("junk.safetensors") && err.contains("blocks.*"), "{err}");
}

/// The official metric_depth model (vits, max_depth 20) on da2_vits_random.pth: its input (a
/// crop of a reference input), its depth, and its max_depth.
fn metric_golden() -> (Tensor, Tensor, f64) {
    let golden = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/metric_vits_crop.safetensors");
    let meta = depth_core::weights::safetensors_metadata(&golden).unwrap();
    let want = load_safetensors(&golden).unwrap().remove("depth").unwrap();
    let input = load_safetensors(&fixtures().join("reference/vits_364/demo02.safetensors"))
        .unwrap()
        .remove("input")
        .unwrap();
    let (top, left): (usize, usize) = (meta["crop_top"].parse().unwrap(), meta["crop_left"].parse().unwrap());
    let x = input.narrow(2, top, 266).unwrap().narrow(3, left, 266).unwrap().contiguous().unwrap();
    (x, want, meta["max_depth"].parse().unwrap())
}

#[test]
fn metric_head_matches_the_official_metric_model() {
    let (x, want, max_depth) = metric_golden();
    let mut cfg = ModelConfig::official(Encoder::Vits);
    cfg.max_depth = Some(max_depth);
    let t =
        build_trainable(&cfg, &WeightsInit::Full(vits_random().parse().unwrap()), 0, &Device::Cpu).unwrap();
    let got = t.model.forward(&x).unwrap();
    assert_eq!(got.dims(), want.dims());
    let err = max_abs_diff(&got, &want);
    eprintln!("metric depth vs the official metric_depth model: max abs difference {err:.2e} m");
    assert!(err < 1e-4, "metric depth differs from the official metric_depth model by {err}");
}

#[test]
fn official_metric_checkpoints_load_as_metric_by_their_name() {
    // the official files: depth_anything_v2_metric_{hypersim,vkitti}_{encoder}.pth, same key
    // layout and shapes as the relative ones
    let (x, want, max_depth) = metric_golden();
    assert_eq!(max_depth, 20.0);
    let dir = tempfile::tempdir().unwrap();
    let name = |n: &str| {
        let p = dir.path().join(n);
        std::os::unix::fs::symlink(vits_random(), &p).unwrap();
        WeightsSource::from(p)
    };
    let hypersim = name("depth_anything_v2_metric_hypersim_vits.pth");
    let model = load_model(&hypersim, &Device::Cpu).unwrap();
    assert_eq!(model.config().max_depth, Some(20.0));
    let by_name = model.forward(&x).unwrap();
    let err = max_abs_diff(&by_name, &want);
    assert!(err < 1e-4, "the official hypersim file differs from the official metric model by {err}");

    let vkitti = load_model(&name("depth_anything_v2_metric_vkitti_vits.pth"), &Device::Cpu).unwrap();
    assert_eq!(vkitti.config().max_depth, Some(80.0));
    let got = vkitti.forward(&x).unwrap();
    assert!(max_abs_diff(&(got * (20.0 / 80.0)).unwrap(), &want) < 1e-4, "80 m is the 20 m model × 4");

    // any other name is relative; load_model_with says what the name does not
    let renamed = name("my_finetune.pth");
    assert_eq!(load_model(&renamed, &Device::Cpu).unwrap().config().max_depth, None);
    let metric = load_model_with(&renamed, &Device::Cpu, |c| c.max_depth = Some(20.0)).unwrap();
    assert_eq!(max_abs_diff(&metric.forward(&x).unwrap(), &by_name), 0.0);
    let relative = load_model_with(&hypersim, &Device::Cpu, |c| c.max_depth = None).unwrap();
    assert_eq!(relative.config().max_depth, None);
    let err =
        load_model_with(&renamed, &Device::Cpu, |c| c.max_depth = Some(-1.0)).err().unwrap().to_string();
    assert!(err.contains("my_finetune.pth") && err.contains("max_depth -1 must be positive"), "{err}");
}

#[test]
fn checkpoints_carry_their_config_and_the_official_layout() {
    let dir = tempfile::tempdir().unwrap();
    // a custom-size metric student comes back without flags
    let mut cfg = ModelConfig::custom(48, 3, 3, 16);
    cfg.max_depth = Some(10.0);
    let t = build_trainable(&cfg, &WeightsInit::Scratch, 5, &Device::Cpu).unwrap();
    let p = dir.path().join("student.safetensors");
    save_model(&model_tensors(&t.varmap).unwrap(), &cfg, &Metadata::new(), &p).unwrap();
    let back = load_model(&p.as_path().into(), &Device::Cpu).unwrap();
    assert_eq!(back.config(), &cfg);
    let x = Tensor::randn(0f32, 1.0, (1, 3, 42, 56), &Device::Cpu).unwrap();
    assert_eq!(max_abs_diff(&back.forward(&x).unwrap(), &t.model.forward(&x).unwrap()), 0.0);

    // an official size keeps exactly the official keys and shapes (what strict=True checks)
    let official = load_weights(std::path::Path::new(&vits_random())).unwrap();
    let t = build_trainable(
        &ModelConfig::official(Encoder::Vits),
        &WeightsInit::Full(vits_random().parse().unwrap()),
        0,
        &Device::Cpu,
    )
    .unwrap();
    let p = dir.path().join("vits.safetensors");
    save_model(&model_tensors(&t.varmap).unwrap(), t.model.config(), &Metadata::new(), &p).unwrap();
    let saved = load_safetensors(&p).unwrap();
    let mut keys: Vec<_> = saved.keys().collect();
    let mut want: Vec<_> = official.keys().collect();
    keys.sort();
    want.sort();
    assert_eq!(keys, want);
    for (k, v) in &saved {
        assert_eq!(v.dims(), official[k].dims(), "{k}");
        assert_eq!(v.dtype(), DType::F32);
        assert_eq!(max_abs_diff(v, &official[k]), 0.0, "{k}");
    }
}
