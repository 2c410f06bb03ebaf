//! The Hugging Face transformers layout (`DepthAnythingForDepthEstimation`: config.json +
//! model.safetensors) mapped onto the official one. This is the only key table in the project:
//! the official layout needs none because the model's module paths are its keys.

use crate::config::{DptConfig, Ffn, ModelConfig, PosEmbedResize, VitConfig};
use crate::error::{ModelError, Result};
use candle_core::Tensor;
use depth_core::CoreError;
use depth_core::weights::TensorMap;
use serde::Deserialize;
use serde_inline_default::serde_inline_default;
use std::path::Path;

#[derive(Deserialize)]
struct HfBackbone {
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    mlp_ratio: f64,
    #[serde(default)]
    use_swiglu_ffn: bool,
    layer_norm_eps: f64,
    patch_size: usize,
    image_size: usize,
    out_indices: Vec<usize>,
    #[serde(default)]
    num_register_tokens: usize,
}

#[serde_inline_default]
#[derive(Deserialize)]
struct HfConfig {
    backbone_config: HfBackbone,
    fusion_hidden_size: usize,
    head_hidden_size: usize,
    neck_hidden_sizes: [usize; 4],
    reassemble_factors: [f64; 4],
    #[serde_inline_default("relative".into())]
    depth_estimation_type: String,
    #[serde(default)]
    max_depth: Option<f64>,
}

/// Reads an HF `config.json` into our model configuration.
pub fn read_config(path: &Path) -> Result<ModelConfig> {
    let bad = |reason: String| ModelError::HfConfig { path: path.into(), reason };
    let text = depth_core::read::text(path).map_err(|e| bad(e.to_string()))?;
    let c: HfConfig = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let b = &c.backbone_config;
    if c.reassemble_factors != [4.0, 2.0, 1.0, 0.5] {
        return Err(bad(format!(
            "reassemble_factors {:?} (only [4, 2, 1, 0.5] exists)",
            c.reassemble_factors
        )));
    }
    let max_depth = match (c.depth_estimation_type.as_str(), c.max_depth) {
        ("relative", _) => None,
        ("metric", Some(m)) => Some(m),
        ("metric", None) => return Err(bad("a metric model needs max_depth".into())),
        (other, _) => return Err(bad(format!("depth_estimation_type '{other}' (relative or metric)"))),
    };
    if b.num_register_tokens != 0 {
        return Err(bad("register tokens are not supported".into()));
    }
    let layers: Vec<usize> = b.out_indices.iter().map(|&i| i.wrapping_sub(1)).collect();
    let layers: [usize; 4] = layers
        .try_into()
        .ok()
        .filter(|l: &[usize; 4]| l.iter().all(|&i| i < b.num_hidden_layers))
        .ok_or_else(|| {
            bad(format!("out_indices {:?} must name 4 of the {} layers", b.out_indices, b.num_hidden_layers))
        })?;
    let cfg = ModelConfig {
        vit: VitConfig {
            embed_dim: b.hidden_size,
            depth: b.num_hidden_layers,
            num_heads: b.num_attention_heads,
            mlp_ratio: b.mlp_ratio,
            ffn: if b.use_swiglu_ffn { Ffn::SwiGlu } else { Ffn::Mlp },
            patch_size: b.patch_size,
            img_size: b.image_size,
            layer_scale: true,
            layer_scale_init: 1.0,
            ln_eps: b.layer_norm_eps,
            pos_embed_resize: PosEmbedResize::Size,
        },
        head: DptConfig {
            features: c.fusion_hidden_size,
            out_channels: c.neck_hidden_sizes,
            use_clstoken: false,
            head_hidden: c.head_hidden_size,
        },
        layers,
        max_depth,
    };
    cfg.validate().map_err(|e| bad(e.to_string()))?;
    Ok(cfg)
}

/// The one key table: (HF pattern, official pattern, official index from HF index). `{}` is a
/// layer index, `*` the rest of the key (`weight`, `bias`). Query, key and value, concatenated
/// into the official `qkv`, are handled by [`to_official`] and [`to_hf`].
const KEYS: &[(&str, &str, Index)] = &[
    ("backbone.embeddings.cls_token", "pretrained.cls_token", Index::Same),
    ("backbone.embeddings.mask_token", "pretrained.mask_token", Index::Same),
    ("backbone.embeddings.position_embeddings", "pretrained.pos_embed", Index::Same),
    ("backbone.embeddings.patch_embeddings.projection.*", "pretrained.patch_embed.proj.*", Index::Same),
    ("backbone.layernorm.*", "pretrained.norm.*", Index::Same),
    ("backbone.encoder.layer.{}.layer_scale1.lambda1", "pretrained.blocks.{}.ls1.gamma", Index::Same),
    ("backbone.encoder.layer.{}.layer_scale2.lambda1", "pretrained.blocks.{}.ls2.gamma", Index::Same),
    ("backbone.encoder.layer.{}.attention.output.dense.*", "pretrained.blocks.{}.attn.proj.*", Index::Same),
    ("backbone.encoder.layer.{}.mlp.weights_in.*", "pretrained.blocks.{}.mlp.w12.*", Index::Same),
    ("backbone.encoder.layer.{}.mlp.weights_out.*", "pretrained.blocks.{}.mlp.w3.*", Index::Same),
    ("backbone.encoder.layer.{}.norm1.*", "pretrained.blocks.{}.norm1.*", Index::Same),
    ("backbone.encoder.layer.{}.norm2.*", "pretrained.blocks.{}.norm2.*", Index::Same),
    ("backbone.encoder.layer.{}.mlp.fc1.*", "pretrained.blocks.{}.mlp.fc1.*", Index::Same),
    ("backbone.encoder.layer.{}.mlp.fc2.*", "pretrained.blocks.{}.mlp.fc2.*", Index::Same),
    ("neck.reassemble_stage.layers.{}.projection.*", "depth_head.projects.{}.*", Index::Same),
    ("neck.reassemble_stage.layers.{}.resize.*", "depth_head.resize_layers.{}.*", Index::Same),
    ("neck.convs.{}.*", "depth_head.scratch.layer{}_rn.*", Index::PlusOne),
    // HF fuses deepest first: its layer j is the official refinenet(4 − j)
    (
        "neck.fusion_stage.layers.{}.projection.*",
        "depth_head.scratch.refinenet{}.out_conv.*",
        Index::FourMinus,
    ),
    (
        "neck.fusion_stage.layers.{}.residual_layer1.convolution1.*",
        "depth_head.scratch.refinenet{}.resConfUnit1.conv1.*",
        Index::FourMinus,
    ),
    (
        "neck.fusion_stage.layers.{}.residual_layer1.convolution2.*",
        "depth_head.scratch.refinenet{}.resConfUnit1.conv2.*",
        Index::FourMinus,
    ),
    (
        "neck.fusion_stage.layers.{}.residual_layer2.convolution1.*",
        "depth_head.scratch.refinenet{}.resConfUnit2.conv1.*",
        Index::FourMinus,
    ),
    (
        "neck.fusion_stage.layers.{}.residual_layer2.convolution2.*",
        "depth_head.scratch.refinenet{}.resConfUnit2.conv2.*",
        Index::FourMinus,
    ),
    ("head.conv1.*", "depth_head.scratch.output_conv1.*", Index::Same),
    ("head.conv2.*", "depth_head.scratch.output_conv2.0.*", Index::Same),
    ("head.conv3.*", "depth_head.scratch.output_conv2.2.*", Index::Same),
];

/// How a key's layer index changes from HF to official.
#[derive(Clone, Copy)]
enum Index {
    Same,
    PlusOne,
    FourMinus,
}

impl Index {
    fn to_official(self, i: usize) -> Option<usize> {
        match self {
            Self::Same => Some(i),
            Self::PlusOne => i.checked_add(1),
            Self::FourMinus => 4usize.checked_sub(i),
        }
    }

    fn to_hf(self, i: usize) -> Option<usize> {
        match self {
            Self::Same => Some(i),
            Self::PlusOne => i.checked_sub(1),
            Self::FourMinus => 4usize.checked_sub(i),
        }
    }
}

/// The index and rest that `key` gives a pattern's `{}` and `*`, if it matches.
fn capture(pattern: &str, key: &str) -> Option<(Option<usize>, String)> {
    let (pattern, any) = pattern.strip_suffix('*').map_or((pattern, false), |p| (p, true));
    let (index, rest) = match pattern.split_once("{}") {
        Some((before, after)) => {
            let r = key.strip_prefix(before)?;
            let digits = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
            (Some(r[..digits].parse().ok()?), r[digits..].strip_prefix(after)?)
        }
        None => (None, key.strip_prefix(pattern)?),
    };
    (any != rest.is_empty()).then(|| (index, rest.to_string()))
}

/// The key a pattern gives for an index and a rest.
fn fill(pattern: &str, index: Option<usize>, rest: &str) -> String {
    let key = pattern.replace('*', rest);
    index.map_or(key.clone(), |i| key.replace("{}", &i.to_string()))
}

/// The other layout's key for a key whose tensor maps one to one, or `None`: official from HF
/// (`to_official`), or HF from official.
fn rename(k: &str, to_official: bool) -> Option<String> {
    KEYS.iter().find_map(|&(hf, official, index)| {
        let (from, to) = if to_official { (hf, official) } else { (official, hf) };
        let (i, rest) = capture(from, k)?;
        let i = match i {
            Some(i) if to_official => Some(index.to_official(i)?),
            Some(i) => Some(index.to_hf(i)?),
            None => None,
        };
        Some(fill(to, i, &rest))
    })
}

/// Converts HF tensors to the official layout: renames, and query/key/value concatenated into
/// `qkv`. Keys that match nothing are kept under their HF name, so strict loading reports them.
pub fn to_official(hf: TensorMap) -> Result<TensorMap> {
    let mut out = TensorMap::new();
    let mut qkv: std::collections::BTreeMap<String, [Option<Tensor>; 3]> = Default::default();
    for (k, v) in hf {
        if let Some((prefix, rest)) = k.split_once(".attention.attention.") {
            let (which, param) = rest.split_once('.').unwrap_or((rest, ""));
            let slot = match which {
                "query" => 0,
                "key" => 1,
                "value" => 2,
                _ => {
                    out.insert(k, v);
                    continue;
                }
            };
            let i = prefix.rsplit('.').next().unwrap_or("");
            qkv.entry(format!("pretrained.blocks.{i}.attn.qkv.{param}")).or_default()[slot] = Some(v);
            continue;
        }
        match rename(&k, true) {
            Some(name) => out.insert(name, v),
            None => out.insert(k, v),
        };
    }
    for (name, parts) in qkv {
        match parts {
            [Some(q), Some(k), Some(v)] => {
                out.insert(name, Tensor::cat(&[q, k, v], 0)?);
            }
            _ => {
                return Err(CoreError::bad_input(
                    "HF weights",
                    format!("{name}: query, key and value are not all present"),
                )
                .into());
            }
        }
    }
    Ok(out)
}

/// Official tensors in the HF layout: renamed, `qkv` split into query, key and value. A key the
/// table does not know is an error naming it (an export must be complete).
pub fn to_hf(official: &TensorMap) -> Result<TensorMap> {
    let mut out = TensorMap::new();
    for (k, v) in official {
        if let Some((block, param)) =
            k.strip_prefix("pretrained.blocks.").and_then(|r| r.split_once(".attn.qkv."))
        {
            let parts = v.chunk(3, 0)?;
            for (which, t) in ["query", "key", "value"].iter().zip(parts) {
                out.insert(
                    format!("backbone.encoder.layer.{block}.attention.attention.{which}.{param}"),
                    t.contiguous()?,
                );
            }
            continue;
        }
        let Some(name) = rename(k, false) else {
            let reason = format!("{k} has no place in the transformers layout");
            return Err(CoreError::bad_input("export to transformers", reason).into());
        };
        out.insert(name, v.clone());
    }
    Ok(out)
}

/// The `config.json` of `DepthAnythingForDepthEstimation` for a model: what [`read_config`]
/// reads back. A model the HF class cannot express (a class-token readout, no LayerScale) is
/// refused; the official position-embedding resize (scale factor) becomes HF's (to size), the
/// one loss of this format (docs/export.md).
pub fn config_json(cfg: &ModelConfig) -> Result<serde_json::Value> {
    let v = &cfg.vit;
    let refuse = |what: &str| {
        Err(CoreError::bad_input(
            "export to transformers",
            format!("{what}: the transformers class has none"),
        )
        .into())
    };
    if cfg.head.use_clstoken {
        return refuse("a head that reads the class token (use_clstoken)");
    }
    if !v.layer_scale {
        return refuse("a ViT without LayerScale");
    }
    if (1..4).any(|i| cfg.layers[..i].contains(&cfg.layers[i])) {
        let what =
            format!("layers {:?} read one block twice (its backbone's stages are distinct)", cfg.layers);
        return refuse(&what);
    }
    // transformers types these as integers (its metric models' max_depth: 20, 80)
    let whole = |v: f64, key: &str| -> Result<u64> {
        if v.fract() == 0.0 && (0.0..=u32::MAX as f64).contains(&v) {
            return Ok(v as u64);
        }
        let reason = format!("{key} {v}: transformers takes a whole number");
        Err(CoreError::bad_input("export to transformers", reason).into())
    };
    let max_depth = cfg.max_depth.map_or(Ok(1), |m| whole(m, "max_depth"))?;
    let stages: Vec<String> = cfg.layers.iter().map(|l| format!("stage{}", l + 1)).collect();
    let mut names = vec!["stem".to_string()];
    names.extend((1..=v.depth).map(|i| format!("stage{i}")));
    Ok(serde_json::json!({
        "architectures": ["DepthAnythingForDepthEstimation"],
        "model_type": "depth_anything",
        "backbone_config": {
            "model_type": "dinov2",
            "hidden_size": v.embed_dim,
            "num_hidden_layers": v.depth,
            "num_attention_heads": v.num_heads,
            "mlp_ratio": whole(v.mlp_ratio, "mlp_ratio")?,
            "use_swiglu_ffn": v.ffn == Ffn::SwiGlu,
            "layer_norm_eps": v.ln_eps,
            "layerscale_value": v.layer_scale_init,
            "patch_size": v.patch_size,
            "image_size": v.img_size,
            "num_channels": 3,
            "qkv_bias": true,
            "hidden_act": "gelu",
            "apply_layernorm": true,
            "reshape_hidden_states": false,
            "out_indices": cfg.layers.iter().map(|l| l + 1).collect::<Vec<_>>(),
            "out_features": stages,
            "stage_names": names,
        },
        "patch_size": v.patch_size,
        "reassemble_hidden_size": v.embed_dim,
        "reassemble_factors": [4, 2, 1, 0.5],
        "neck_hidden_sizes": cfg.head.out_channels,
        "fusion_hidden_size": cfg.head.features,
        "head_in_index": -1,
        "head_hidden_size": cfg.head.head_hidden,
        "depth_estimation_type": if cfg.max_depth.is_some() { "metric" } else { "relative" },
        "max_depth": max_depth,
        "dtype": "float32",
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_config_reads_back_and_what_transformers_cannot_hold_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        for mut cfg in
            [ModelConfig::official(crate::Encoder::Vitb), ModelConfig::official(crate::Encoder::Vitg)]
        {
            cfg.max_depth = Some(80.0);
            std::fs::write(&path, config_json(&cfg).unwrap().to_string()).unwrap();
            let mut back = read_config(&path).unwrap();
            assert_eq!(back.vit.pos_embed_resize, PosEmbedResize::Size, "transformers resizes to size");
            back.vit.pos_embed_resize = cfg.vit.pos_embed_resize;
            assert_eq!(back, cfg);
        }
        let mut twice = ModelConfig::official(crate::Encoder::Vits);
        twice.layers = [0, 0, 1, 2];
        assert!(config_json(&twice).unwrap_err().to_string().contains("read one block twice"));
        let mut half_metre = ModelConfig::official(crate::Encoder::Vits);
        half_metre.max_depth = Some(0.5);
        assert!(config_json(&half_metre).unwrap_err().to_string().contains("whole number"));
    }

    #[test]
    fn absurd_config_values_are_refused_before_building() {
        let fixtures = depth_core::fixtures::fixtures_dir().unwrap();
        let text = std::fs::read_to_string(fixtures.join("weights/hf_tiny/config.json")).unwrap();
        let base: serde_json::Value = serde_json::from_str(&text).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, &text).unwrap();
        assert!(read_config(&path).is_ok());
        for (key, value, says) in [
            ("patch_size", serde_json::json!(0), "patch_size"),
            ("hidden_size", serde_json::json!(1_000_000_000u64), "embed_dim"),
            ("num_hidden_layers", serde_json::json!(1_000_000u64), "depth"),
            ("mlp_ratio", serde_json::json!(1e300), "mlp_ratio"),
            ("hidden_size", serde_json::json!(16384), "parameters"),
        ] {
            let mut c = base.clone();
            c["backbone_config"][key] = value;
            if key == "hidden_size" {
                c["backbone_config"]["num_attention_heads"] = serde_json::json!(8);
            }
            std::fs::write(&path, serde_json::to_string(&c).unwrap()).unwrap();
            let err = read_config(&path).unwrap_err().to_string();
            assert!(err.contains("config.json") && err.contains(says), "{key}: {err}");
        }
    }
}
