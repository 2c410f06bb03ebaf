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

/// The official key for an HF key whose tensor maps one to one, or `None`.
fn rename(k: &str) -> Option<String> {
    let (head, rest) = k.split_once('.')?;
    let pre = |s: &str| format!("pretrained.{s}");
    let dh = |s: String| format!("depth_head.{s}");
    Some(match (head, rest) {
        ("backbone", "embeddings.cls_token") => pre("cls_token"),
        ("backbone", "embeddings.mask_token") => pre("mask_token"),
        ("backbone", "embeddings.position_embeddings") => pre("pos_embed"),
        ("backbone", r) if r.starts_with("embeddings.patch_embeddings.projection.") => {
            pre(&r.replace("embeddings.patch_embeddings.projection", "patch_embed.proj"))
        }
        ("backbone", r) if r.starts_with("layernorm.") => pre(&r.replacen("layernorm", "norm", 1)),
        ("backbone", r) if r.starts_with("encoder.layer.") => {
            let r = r.strip_prefix("encoder.layer.")?;
            let (i, r) = r.split_once('.')?;
            let r = match r {
                "layer_scale1.lambda1" => "ls1.gamma".to_string(),
                "layer_scale2.lambda1" => "ls2.gamma".to_string(),
                r if r.starts_with("attention.output.dense.") => {
                    r.replace("attention.output.dense", "attn.proj")
                }
                r if r.starts_with("mlp.weights_in.") => r.replace("mlp.weights_in", "mlp.w12"),
                r if r.starts_with("mlp.weights_out.") => r.replace("mlp.weights_out", "mlp.w3"),
                r if r.starts_with("norm1.") || r.starts_with("norm2.") || r.starts_with("mlp.fc") => {
                    r.to_string()
                }
                _ => return None,
            };
            pre(&format!("blocks.{i}.{r}"))
        }
        ("neck", r) if r.starts_with("reassemble_stage.layers.") => {
            let r = r.strip_prefix("reassemble_stage.layers.")?;
            let (i, r) = r.split_once('.')?;
            match r.split_once('.')? {
                ("projection", p) => dh(format!("projects.{i}.{p}")),
                ("resize", p) => dh(format!("resize_layers.{i}.{p}")),
                _ => return None,
            }
        }
        ("neck", r) if r.starts_with("convs.") => {
            let (i, p) = r.strip_prefix("convs.")?.split_once('.')?;
            dh(format!("scratch.layer{}_rn.{p}", i.parse::<usize>().ok()? + 1))
        }
        ("neck", r) if r.starts_with("fusion_stage.layers.") => {
            // HF fuses deepest first: its layer j is the official refinenet(4 − j).
            let (j, r) = r.strip_prefix("fusion_stage.layers.")?.split_once('.')?;
            let n = 4usize.checked_sub(j.parse::<usize>().ok()?)?;
            let r = r
                .replace("projection", "out_conv")
                .replace("residual_layer1", "resConfUnit1")
                .replace("residual_layer2", "resConfUnit2")
                .replace("convolution1", "conv1")
                .replace("convolution2", "conv2");
            dh(format!("scratch.refinenet{n}.{r}"))
        }
        ("head", r) => {
            let (conv, p) = r.split_once('.')?;
            let target = match conv {
                "conv1" => "output_conv1",
                "conv2" => "output_conv2.0",
                "conv3" => "output_conv2.2",
                _ => return None,
            };
            dh(format!("scratch.{target}.{p}"))
        }
        _ => return None,
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
        match rename(&k) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
