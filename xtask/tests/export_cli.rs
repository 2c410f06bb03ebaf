//! `cargo xtask export` end to end. Every format of the fixture checkpoint, of a metric version
//! of it, of two tiny students trained by `xtask train` (one with the official ViT-S, which
//! the official class builds, one of a custom size, which it cannot and is refused) and of a
//! tiny SwiGLU model (ViT-G's feed-forward) is read back by our loader as the same model. With a Python that has the targets' packages
//! (`DEPTH_PYTHON`, default python3: torch, transformers, onnx, onnxruntime, safetensors),
//! `--check` runs each export in its target and compares depths; without them the test says
//! NOT RUN for those checks. The official class runs only where `DEPTH_OFFICIAL_REPO` names a
//! clone of its repository.

mod common;

use common::{ok, xtask};
use depth_models::WeightsSource;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A student of `tests/data/tiny_train.toml` trained 2 steps, with the official ViT-S or the
/// config's tiny ViT.
fn trained(dir: &Path, vits: bool) -> PathBuf {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny_train.toml");
    let out = dir.join(if vits { "vits" } else { "tiny" });
    let mut args = vec!["train", "--config", config.to_str().unwrap()];
    let set_out = format!("out=\"{}\"", out.display());
    args.extend(["--set", &set_out, "--set", "schedule.steps=2", "--set", "checkpoint.every=2"]);
    if vits {
        args.extend([
            "--set",
            "model.embed_dim=384",
            "--set",
            "model.depth=12",
            "--set",
            "model.num_heads=6",
            "--set",
            "model.features=64",
        ]);
    } else {
        // four blocks, so that the DPT reads four distinct ones (transformers needs that)
        args.extend(["--set", "model.depth=4"]);
    }
    ok(xtask(&args));
    out.join("final.safetensors")
}

/// `export --weights WEIGHTS --to TO --out OUT`.
fn export_args<'a>(weights: &'a Path, to: &'a str, out: &'a Path) -> Vec<&'a str> {
    vec!["export", "--weights", weights.to_str().unwrap(), "--to", to, "--out", out.to_str().unwrap()]
}

fn max_abs(t: &candle_core::Tensor) -> f32 {
    t.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

/// A fresh model with ViT-G's SwiGLU feed-forward at a tiny size (vitg itself is 5 GB), as our
/// checkpoint: the SwiGLU path of every format.
fn swiglu(dir: &Path) -> PathBuf {
    use depth_models::{Ffn, ModelConfig, WeightsInit, build_trainable, model_tensors, save_model};
    let mut cfg = ModelConfig::custom(64, 4, 4, 32);
    cfg.vit.ffn = Ffn::SwiGlu;
    let t = build_trainable(&cfg, &WeightsInit::Scratch, 3, &candle_core::Device::Cpu).unwrap();
    let path = dir.join("swiglu.safetensors");
    save_model(&model_tensors(&t.varmap).unwrap(), &cfg, &Default::default(), &path).unwrap();
    path
}

fn python_has_targets() -> Option<String> {
    let python = std::env::var("DEPTH_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = Command::new(&python)
        .args(["-c", "import torch, transformers, onnx, onnxruntime, safetensors, numpy"])
        .output();
    match probe {
        Ok(o) if o.status.success() => Some(python),
        _ => None,
    }
}

/// The export read back equals the model: every tensor bit for bit, the configuration (but the
/// position-embedding resize, which transformers does its own way).
fn assert_round_trip(weights: &Path, export: &Path, max_depth: Option<f64>) {
    let (mut cfg, tensors) = WeightsSource::from(weights).load().unwrap();
    let (back_cfg, back) = WeightsSource::from(export).load().unwrap();
    assert_eq!(tensors.len(), back.len(), "{}", export.display());
    for (k, t) in &tensors {
        let u = back.get(k).unwrap_or_else(|| panic!("{}: no {k}", export.display()));
        let (a, b) = (
            t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            u.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        assert_eq!((t.dims(), a), (u.dims(), b), "{}: {k}", export.display());
    }
    cfg.max_depth = max_depth.or(cfg.max_depth);
    if export.extension().is_some_and(|e| e == "pth") {
        // a state dict carries no configuration: read from its shapes, all but max_depth
        cfg.max_depth = back_cfg.max_depth;
    }
    if export.is_dir() {
        cfg.vit.pos_embed_resize = back_cfg.vit.pos_embed_resize;
    }
    assert_eq!(cfg, back_cfg, "{}", export.display());
}

#[test]
fn every_export_reads_back_as_the_same_model_and_runs_in_its_target() {
    let fixture = depth_core::fixtures::fixtures_dir().unwrap().join("weights/da2_vits_random.pth");
    let dir = tempfile::tempdir().unwrap();
    let python = python_has_targets();
    if python.is_none() {
        eprintln!(
            "NOT RUN: the targets' checks (python3 lacks torch, transformers, onnx, onnxruntime or safetensors); the round trips run"
        );
    }
    let official_repo = std::env::var("DEPTH_OFFICIAL_REPO").ok();
    let vits = trained(dir.path(), true);
    let tiny = trained(dir.path(), false);
    let swiglu = swiglu(dir.path());
    // (weights, max depth, input size of the check, whether the official class can build it)
    let models: [(&Path, Option<&str>, &str, bool); 5] = [
        (&fixture, None, "518", true),
        (&fixture, Some("20"), "266", true),
        (&vits, None, "266", true),
        (&tiny, None, "266", false),
        (&swiglu, None, "266", false),
    ];
    for (m, (weights, max_depth, size, official)) in models.iter().enumerate() {
        for (to, name) in [("transformers", "hf"), ("official", "model.pth"), ("onnx", "model.onnx")] {
            let out = dir.path().join(format!("{m}-{name}"));
            let mut args = export_args(weights, to, &out);
            if let Some(md) = max_depth {
                args.extend(["--max-depth", md]);
            }
            if to == "official" && !official {
                let res = xtask(&args);
                let err = String::from_utf8_lossy(&res.stderr);
                assert!(!res.status.success() && err.contains("none of the official encoders"), "{err}");
                assert!(!out.exists(), "a refused export leaves nothing");
                continue;
            }
            let Some(python) = &python else {
                ok(xtask(&args));
                assert_round_trip(weights, &out, max_depth.map(|m| m.parse().unwrap()));
                continue;
            };
            args.extend(["--check", "--input-size", size, "--python", python]);
            if let Some(repo) = &official_repo {
                args.extend(["--official-repo", repo]);
            }
            let res = xtask(&args);
            let text =
                String::from_utf8_lossy(&res.stdout).into_owned() + &String::from_utf8_lossy(&res.stderr);
            if to == "official" && official_repo.is_none() {
                // torch.load(weights_only=True) ran; the official class needs its code
                assert!(
                    text.contains("torch.load(weights_only=True) read") && text.contains("NOT RUN"),
                    "{text}"
                );
                eprintln!("NOT RUN: the official class on {} (set DEPTH_OFFICIAL_REPO)", weights.display());
            } else {
                assert!(
                    res.status.success() && text.contains("PASS"),
                    "{to} of {}: {text}",
                    weights.display()
                );
            }
            assert_round_trip(weights, &out, max_depth.map(|m| m.parse().unwrap()));
        }
    }
}

#[test]
fn float16_and_external_data_onnx_exports_read_back_as_the_model() {
    let fixture = depth_core::fixtures::fixtures_dir().unwrap().join("weights/da2_vits_random.pth");
    let dir = tempfile::tempdir().unwrap();
    let (f32_out, f16_out) = (dir.path().join("a.onnx"), dir.path().join("b.onnx"));
    for (out, extra) in [(&f32_out, None), (&f16_out, Some("--fp16"))] {
        let mut args = export_args(&fixture, "onnx", out);
        args.extend(extra);
        ok(xtask(&args));
    }
    let (a, b) = (std::fs::metadata(&f32_out).unwrap().len(), std::fs::metadata(&f16_out).unwrap().len());
    assert!(b * 2 < a + a / 50, "{b} vs {a}");
    let (_, t32) = WeightsSource::from(f32_out.as_path()).load().unwrap();
    let (_, t16) = WeightsSource::from(f16_out.as_path()).load().unwrap();
    for (k, t) in &t32 {
        let (d, m) = (max_abs(&(t - &t16[k]).unwrap()), max_abs(t));
        assert!(d <= m * 1e-3 + 1e-7, "{k}: {d} of {m}");
    }
    // the weights beside the graph (ONNX's external data, as vitg needs): the same model
    let ext = dir.path().join("c.onnx");
    let mut args = export_args(&fixture, "onnx", &ext);
    args.push("--external-data");
    let python = python_has_targets();
    if let Some(python) = &python {
        args.extend(["--check", "--input-size", "266", "--python", python]);
    }
    ok(xtask(&args));
    assert!(std::fs::metadata(&ext).unwrap().len() < 1 << 20, "the graph without its weights");
    assert!(std::fs::metadata(dir.path().join("c.onnx.data")).unwrap().len() > a - (1 << 20));
    let (_, t_ext) = WeightsSource::from(ext.as_path()).load().unwrap();
    for (k, t) in &t32 {
        assert_eq!(max_abs(&(t - &t_ext[k]).unwrap()), 0.0, "{k}");
    }
    // a name other readers would not recognise is refused before anything is written
    let bad = dir.path().join("model.bin");
    let res = xtask(&export_args(&fixture, "onnx", &bad));
    assert!(!res.status.success() && String::from_utf8_lossy(&res.stderr).contains("*.onnx"));
    assert!(!bad.exists());
}
