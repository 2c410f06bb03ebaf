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

/// The most patch tokens one network input may have unless raised with
/// [`DepthEstimator::with_max_tokens`]: a 518×784 input has 2,072, 1792×1792 has 16,384. The
/// official code has no limit: a 4000×40 image becomes a 51800×518 input (137k tokens) that runs
/// for hours, and a 2×5000 one asks for 16 GB before the first layer.
pub const DEFAULT_MAX_TOKENS: usize = 16_384;

/// A model ready for inference on a device.
pub struct DepthEstimator {
    model: DepthAnythingV2,
    device: Device,
    input_size: usize,
    max_tokens: usize,
}

impl DepthEstimator {
    pub fn new(model: DepthAnythingV2, device: Device) -> Self {
        Self { model, device, input_size: 518, max_tokens: DEFAULT_MAX_TOKENS }
    }

    /// The shorter side the network sees (default 518, as the official code).
    pub fn with_input_size(mut self, input_size: usize) -> Self {
        self.input_size = input_size;
        self
    }

    /// The most patch tokens one input may have (default [`DEFAULT_MAX_TOKENS`]).
    pub fn with_max_tokens(mut self, max_tokens: usize) -> Self {
        self.max_tokens = max_tokens;
        self
    }

    /// The network input (H, W) of a `width`×`height` image, as the official resize computes it;
    /// refused when the input size is below one patch or the input has more than the token limit.
    pub fn input_shape(&self, width: u32, height: u32) -> Result<(usize, usize)> {
        let patch = self.model.config().vit.patch_size;
        let bad = |reason: String| Err(ModelError::BadInput { what: "image", reason });
        if width == 0 || height == 0 {
            return bad("the image is empty".into());
        }
        if self.input_size < patch {
            return bad(format!("input size {} is smaller than one {patch}-pixel patch", self.input_size));
        }
        let (h, w) = depth_core::lower_bound_size(height as usize, width as usize, self.input_size, patch);
        let tokens = (h / patch) as u128 * (w / patch) as u128;
        if tokens > self.max_tokens as u128 {
            return bad(format!(
                "a {width}×{height} image at input size {} becomes a {w}×{h} network input, {tokens} patch \
                 tokens, more than the limit of {} (attention grows with their square; the official code \
                 would try it). Crop the image, lower --input-size, or raise --max-tokens",
                self.input_size, self.max_tokens
            ));
        }
        Ok((h, w))
    }

    pub fn model(&self) -> &DepthAnythingV2 {
        &self.model
    }

    /// The network input of one image, exactly as the official `image2tensor` (on the CPU).
    pub fn preprocess(&self, img: &RgbImage) -> Result<Tensor> {
        self.input_shape(img.width(), img.height())?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_sizes_below_a_patch_and_inputs_over_the_token_limit_are_refused() {
        let vm = candle_nn::VarMap::new();
        let vb = candle_nn::VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let model = DepthAnythingV2::new(&ModelConfig::custom(32, 2, 2, 16), vb).unwrap();
        let est = DepthEstimator::new(model, Device::Cpu);
        assert_eq!(est.input_shape(640, 425).unwrap(), (518, 784));
        let err = est.input_shape(4000, 40).unwrap_err().to_string();
        assert!(err.contains("51800×518") && err.contains("136900") && err.contains("--max-tokens"), "{err}");
        assert!(est.input_shape(2, 5000).is_err());
        assert!(est.input_shape(0, 10).unwrap_err().to_string().contains("empty"));
        let est = est.with_max_tokens(200_000);
        assert_eq!(est.input_shape(4000, 40).unwrap(), (518, 51800));
        let est = est.with_input_size(0);
        assert!(
            est.input_shape(640, 425).unwrap_err().to_string().contains("smaller than one 14-pixel patch")
        );
    }
}
