//! The inference API downstream crates use: load a model (file, HF folder or Hub id), then
//! `infer_image` like the official `infer_image` (preprocess, network, bilinear back to the
//! original size) or `infer_batch` over same-size images.

use crate::config::{Encoder, ModelConfig};
use crate::depth_anything::DepthAnythingV2;
use crate::error::{ModelError, Result};
use crate::{hf, preprocess};
use candle_core::{DType, Device, Tensor};
use depth_core::weights::{HubOptions, StrictWeights, TensorMap, hub_file, load_weights};
use image::{DynamicImage, RgbImage};
use std::path::{Path, PathBuf};

/// A dense depth map (relative depth: larger is closer), row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct DepthMap {
    pub width: u32,
    pub height: u32,
    pub data: Vec<f32>,
}

impl DepthMap {
    pub fn get(&self, x: u32, y: u32) -> f32 {
        self.data[(y * self.width + x) as usize]
    }

    /// (min, max) over finite values; (0, 0) when there are none.
    pub fn min_max(&self) -> (f32, f32) {
        let finite = self.data.iter().copied().filter(|v| v.is_finite());
        let (lo, hi) = finite.fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
        if lo <= hi { (lo, hi) } else { (0.0, 0.0) }
    }

    /// (H, W) float32 on the CPU.
    pub fn to_tensor(&self) -> Result<Tensor> {
        Ok(Tensor::from_slice(&self.data, (self.height as usize, self.width as usize), &Device::Cpu)?)
    }
}

/// The weights file behind `weights` (see [`load_model`]): the file itself, an HF folder's
/// `model.safetensors`, or a Hub file (fetched into the cache when needed).
pub fn weights_file(weights: &str, encoder: Encoder) -> Result<PathBuf> {
    let path = Path::new(weights);
    if path.is_dir() {
        return Ok(path.join("model.safetensors"));
    }
    if path.is_file() {
        return Ok(path.into());
    }
    let (repo, file) = hub_id(weights)?;
    let default = if repo.ends_with("-hf") { "model.safetensors" } else { encoder.hub_repo().1 };
    Ok(hub_file(repo, file.unwrap_or(default), &HubOptions::from_env())?)
}

/// `owner/name[:file]`.
fn hub_id(weights: &str) -> Result<(&str, Option<&str>)> {
    let (repo, file) = match weights.split_once(':') {
        Some((r, f)) => (r, Some(f)),
        None => (weights, None),
    };
    if repo.split('/').count() != 2 || repo.split('/').any(str::is_empty) {
        return Err(ModelError::BadInput {
            what: "weights",
            reason: format!("'{weights}' is neither a file, a folder, nor a Hub id like owner/name[:file]"),
        });
    }
    Ok((repo, file))
}

/// Where weights come from, resolved to tensors in the official layout and a configuration:
/// an HF folder's config.json, a checkpoint's own metadata (ours), else `encoder`'s official one.
pub(crate) fn resolve(weights: &str, encoder: Encoder) -> Result<(String, ModelConfig, TensorMap)> {
    let path = Path::new(weights);
    let file = weights_file(weights, encoder)?;
    let tensors = load_weights(&file)?;
    let hf_layout = tensors.keys().any(|k| k.starts_with("backbone."));
    let cfg = if path.is_dir() || (hf_layout && path.is_file()) {
        hf::read_config(&file.with_file_name("config.json"))?
    } else if !path.exists() && hub_id(weights)?.0.ends_with("-hf") {
        hf::read_config(&hub_file(hub_id(weights)?.0, "config.json", &HubOptions::from_env())?)?
    } else {
        stored_config(&file)?.unwrap_or_else(|| ModelConfig::official(encoder))
    };
    let tensors = if hf_layout { hf::to_official(tensors)? } else { tensors };
    Ok((weights.into(), cfg, tensors))
}

/// The configuration a checkpoint written by [`crate::save_model`] carries, if any.
fn stored_config(path: &Path) -> Result<Option<ModelConfig>> {
    if matches!(path.extension().and_then(|e| e.to_str()), Some("pth" | "pt" | "bin" | "ckpt")) {
        return Ok(None);
    }
    let meta = depth_core::weights::safetensors_metadata(path)?;
    let Some(json) = meta.get(crate::config::META_CONFIG) else { return Ok(None) };
    let cfg: ModelConfig = serde_json::from_str(json).map_err(|e| ModelError::BadInput {
        what: "checkpoint",
        reason: format!("{}: its model config does not parse: {e}", path.display()),
    })?;
    cfg.validate().map_err(|e| ModelError::BadInput {
        what: "checkpoint",
        reason: format!("{}: its model config is inconsistent: {e}", path.display()),
    })?;
    Ok(Some(cfg))
}

/// Loads a model strictly (every tensor present, used and of the right shape). `weights` is a
/// `.pth`/safetensors file in the official layout, an HF folder (config.json + model.safetensors),
/// or a Hub id (`owner/name`, optionally `:file`; `-hf` repos are read in the HF layout).
/// A checkpoint of ours brings its own configuration (any size, relative or metric); for other
/// official-layout weights `encoder` sets it.
pub fn load_model(weights: &str, encoder: Encoder, device: &Device) -> Result<DepthAnythingV2> {
    let (source, cfg, tensors) = resolve(weights, encoder)?;
    let strict = StrictWeights::new(source, tensors);
    Ok(strict.build(DType::F32, device, |vb| DepthAnythingV2::new(&cfg, vb))?)
}

/// A model ready for inference on a device.
pub struct DepthEstimator {
    model: DepthAnythingV2,
    device: Device,
    input_size: usize,
}

impl DepthEstimator {
    pub fn new(model: DepthAnythingV2, device: Device) -> Self {
        Self { model, device, input_size: 518 }
    }

    /// The shorter side the network sees (default 518, as the official code).
    pub fn with_input_size(mut self, input_size: usize) -> Self {
        self.input_size = input_size;
        self
    }

    pub fn model(&self) -> &DepthAnythingV2 {
        &self.model
    }

    /// The network input of one image, exactly as the official `image2tensor` (on the CPU).
    pub fn preprocess(&self, img: &RgbImage) -> Result<Tensor> {
        if img.width() == 0 || img.height() == 0 {
            return Err(ModelError::BadInput { what: "image", reason: "the image is empty".into() });
        }
        preprocess::image_to_tensor(img, self.input_size, self.model.config().vit.patch_size)
    }

    /// Relative depth at the image's own resolution.
    pub fn infer_image(&self, img: &DynamicImage) -> Result<DepthMap> {
        Ok(self.infer_batch(std::slice::from_ref(img))?.remove(0))
    }

    /// Several same-size images in one forward pass.
    pub fn infer_batch(&self, imgs: &[DynamicImage]) -> Result<Vec<DepthMap>> {
        let Some(first) = imgs.first() else { return Ok(Vec::new()) };
        let (w, h) = (first.width(), first.height());
        if let Some(other) = imgs.iter().find(|i| (i.width(), i.height()) != (w, h)) {
            return Err(ModelError::BatchSizeMismatch {
                first: (w, h),
                other: (other.width(), other.height()),
            });
        }
        let inputs = imgs.iter().map(|i| self.preprocess(&i.to_rgb8())).collect::<Result<Vec<_>>>()?;
        let x = Tensor::cat(&inputs, 0)?.to_device(&self.device)?;
        let depth = self.model.forward(&x)?.unsqueeze(1)?;
        let depth = depth_core::bilinear_align_corners(&depth, (h as usize, w as usize))?;
        let depth = depth.to_device(&Device::Cpu)?.flatten_from(1)?.to_vec2::<f32>()?;
        Ok(depth.into_iter().map(|data| DepthMap { width: w, height: h, data }).collect())
    }
}
