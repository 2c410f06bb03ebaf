//! Models to train. [`build_trainable`] makes every tensor a `Var` in a fresh VarMap, built
//! from scratch as PyTorch builds the modules (seeded), or from a checkpoint — the whole model,
//! or only the encoder under a freshly initialised head. [`save_model`] writes a checkpoint in
//! the official key layout with the configuration in its safetensors metadata, which
//! [`crate::load_model`] reads back for any size without flags.

use crate::config::{CHECKPOINT_FORMAT, META_CONFIG, META_FORMAT, ModelConfig, VitConfig};
use crate::depth_anything::DepthAnythingV2;
use crate::dinov2::DinoVisionTransformer;
use crate::error::Result;
use crate::hf;
use crate::source::WeightsSource;
use candle_core::{DType, Device};
use candle_nn::VarMap;
use depth_core::CoreError;
use depth_core::weights::{LoadSummary, Metadata, StrictWeights, TensorMap, save_safetensors};
use std::path::Path;

/// Where a model's initial tensors come from. In a config: `init = "scratch"`,
/// `init = { encoder = "…" }` or `init = { full = "…" }` (weights as [`WeightsSource`] reads
/// them, resolved against the config's folder).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightsInit {
    /// Every tensor fresh: LayerNorm 1/0, ViT linears and position embedding N(0, 0.02), class
    /// token N(0, 1e-6), LayerScale from the config, PyTorch's default convs in the head.
    #[default]
    Scratch,
    /// Every tensor from a checkpoint [`crate::load_model`] reads (official `.pth`, ours, HF
    /// folder or id).
    Full(WeightsSource),
    /// The encoder from a checkpoint, the head fresh. Read: DINOv2's original checkpoints
    /// (`dinov2_vits14_pretrain.pth`: `blocks.*`, `cls_token`, …), transformers' Dinov2Model
    /// (`facebook/dinov2-small`: `embeddings.*`, `encoder.layer.*`), or any Depth Anything V2
    /// checkpoint (its `pretrained.*`; the head's tensors are ignored and listed). A Hub id
    /// without `:file` reads `model.safetensors` (an official Depth Anything V2 repository: its
    /// checkpoint).
    Encoder(WeightsSource),
}

impl WeightsInit {
    /// The weights it names, resolved against a config's folder (see [`WeightsSource::resolve`]).
    pub fn resolve(&mut self, base: &Path) -> depth_core::Result<()> {
        match self {
            Self::Scratch => Ok(()),
            Self::Full(w) | Self::Encoder(w) => w.resolve(base),
        }
    }
}

/// A model whose parameters are the `Var`s of `varmap`, and what its build took.
pub struct Trainable {
    pub model: DepthAnythingV2,
    pub varmap: VarMap,
    pub summary: LoadSummary,
}

/// Builds `cfg` with every tensor trainable; fresh tensors are drawn from generators seeded by
/// (`seed`, tensor name). Every missing, mis-shaped or unexpected tensor is one error.
pub fn build_trainable(
    cfg: &ModelConfig,
    init: &WeightsInit,
    seed: u64,
    device: &Device,
) -> Result<Trainable> {
    cfg.validate().map_err(|e| CoreError::bad_input("model config", e))?;
    let varmap = VarMap::new();
    let weights = match init {
        WeightsInit::Scratch => {
            StrictWeights::trainable("fresh", TensorMap::new(), &varmap).with_fresh(seed, |_| true)
        }
        WeightsInit::Full(source) => StrictWeights::trainable(source.to_string(), source.load()?.1, &varmap),
        WeightsInit::Encoder(w) => StrictWeights::trainable(w.to_string(), encoder_tensors(w)?, &varmap)
            .with_fresh(seed, |k| !k.starts_with("pretrained.")),
    };
    let model = weights.build(DType::F32, device, |vb| DepthAnythingV2::new(cfg, vb))?;
    Ok(Trainable { model, varmap, summary: weights.summary() })
}

/// A frozen DINOv2 encoder (plain tensors, no `Var`: it never gets a gradient or optimiser
/// state) from any checkpoint [`WeightsInit::Encoder`] reads, checked strictly against `vit`.
pub fn load_frozen_encoder(
    source: &WeightsSource,
    vit: &VitConfig,
    device: &Device,
) -> Result<DinoVisionTransformer> {
    let weights = StrictWeights::new(source.to_string(), encoder_tensors(source)?)
        .with_fresh(0, |k| !k.starts_with("pretrained."));
    Ok(weights.build(DType::F32, device, |vb| DinoVisionTransformer::new(vit, vb.pp("pretrained")))?)
}

/// A checkpoint's tensors in the official layout, whichever of the encoder layouts it has.
fn encoder_tensors(source: &WeightsSource) -> Result<TensorMap> {
    let raw = depth_core::weights::load_weights(&source.file()?)?;
    let has = |prefix: &str| raw.keys().any(|k| k.starts_with(prefix));
    if has("pretrained.") {
        Ok(raw)
    } else if has("backbone.") {
        hf::to_official(raw)
    } else if has("embeddings.") || has("encoder.layer.") {
        hf::to_official(raw.into_iter().map(|(k, v)| (format!("backbone.{k}"), v)).collect())
    } else if has("blocks.") || raw.contains_key("cls_token") {
        Ok(raw.into_iter().map(|(k, v)| (format!("pretrained.{k}"), v)).collect())
    } else {
        let mut keys: Vec<&String> = raw.keys().take(5).collect();
        keys.sort();
        Err(CoreError::bad_input(
            "encoder checkpoint",
            format!(
                "{source}: no DINOv2 or Depth Anything V2 keys (first keys: {keys:?}); expected `blocks.*` (DINOv2), \
                 `embeddings.*` (transformers Dinov2Model) or `pretrained.*` (Depth Anything V2)"
            ),
        )
        .into())
    }
}

/// A snapshot of the model's tensors in `varmap` (float32, CPU, by official key): copies, so
/// later optimiser steps (which write into the variables in place) do not change them.
pub fn model_tensors(varmap: &VarMap) -> Result<TensorMap> {
    let data = varmap.data().lock().map_err(|_| CoreError::bad_input("varmap", "lock poisoned"))?;
    data.iter()
        .map(|(k, v)| Ok((k.clone(), v.as_tensor().to_dtype(DType::F32)?.to_device(&Device::Cpu)?.copy()?)))
        .collect()
}

/// Writes `tensors` (a whole model, official keys) as safetensors, atomically, with `cfg` and
/// `extra` in the metadata. Official sizes load in the official code with `strict=True`.
pub fn save_model(tensors: &TensorMap, cfg: &ModelConfig, extra: &Metadata, path: &Path) -> Result<()> {
    let mut meta = extra.clone();
    meta.insert(META_FORMAT.into(), CHECKPOINT_FORMAT.into());
    meta.insert(META_CONFIG.into(), serde_json::to_string(cfg).expect("a config serialises"));
    Ok(save_safetensors(tensors, &meta, path)?)
}
