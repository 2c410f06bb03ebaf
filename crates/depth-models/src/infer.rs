//! The inference API downstream crates use: [`DepthEstimator::from_pretrained`] from a
//! [`WeightsSource`], then [`DepthEstimator::estimate`] as the official `infer_image`
//! (preprocess, network, bilinear back to the original size) on a path or an image in memory,
//! or [`DepthEstimator::estimate_batch`] over many.

use crate::config::{Encoder, ModelConfig};
use crate::depth_anything::DepthAnythingV2;
use crate::depth_map::DepthMap;
use crate::error::{ModelError, Result};
use crate::source::WeightsSource;
use candle_core::{DType, Device, Tensor};
use depth_core::CoreError;
use depth_core::weights::StrictWeights;
use image::{DynamicImage, RgbImage};
use std::borrow::Cow;
use std::path::{Path, PathBuf};

/// An image [`DepthEstimator::estimate`] takes: a path (decoded as OpenCV's `cv2.imread`,
/// libjpeg-turbo for JPEG, so the numbers are the official code's), or an image in memory.
pub trait ImageInput {
    fn to_rgb(&self) -> Result<Cow<'_, RgbImage>>;
}

impl ImageInput for Path {
    fn to_rgb(&self) -> Result<Cow<'_, RgbImage>> {
        Ok(Cow::Owned(depth_core::image_io::read_image(self)?))
    }
}

impl ImageInput for PathBuf {
    fn to_rgb(&self) -> Result<Cow<'_, RgbImage>> {
        self.as_path().to_rgb()
    }
}

impl ImageInput for str {
    fn to_rgb(&self) -> Result<Cow<'_, RgbImage>> {
        Path::new(self).to_rgb()
    }
}

impl ImageInput for String {
    fn to_rgb(&self) -> Result<Cow<'_, RgbImage>> {
        Path::new(self).to_rgb()
    }
}

impl ImageInput for RgbImage {
    fn to_rgb(&self) -> Result<Cow<'_, RgbImage>> {
        Ok(Cow::Borrowed(self))
    }
}

/// Converted to 8-bit RGB (alpha dropped, grey replicated).
impl ImageInput for DynamicImage {
    fn to_rgb(&self) -> Result<Cow<'_, RgbImage>> {
        Ok(match self {
            DynamicImage::ImageRgb8(img) => Cow::Borrowed(img),
            other => Cow::Owned(other.to_rgb8()),
        })
    }
}

impl<T: ImageInput + ?Sized> ImageInput for &T {
    fn to_rgb(&self) -> Result<Cow<'_, RgbImage>> {
        (**self).to_rgb()
    }
}

/// Loads a model strictly (every tensor present, used and of the right shape) with the
/// configuration its source brings (see [`WeightsSource`]).
pub fn load_model(source: &WeightsSource, device: &Device) -> Result<DepthAnythingV2> {
    load_model_with(source, device, |_| {})
}

/// [`load_model`] with the source's configuration adjusted first, for what a checkpoint's
/// tensors cannot say: a metric model fine-tuned by the official `metric_depth/` code under
/// another name is `|cfg| cfg.max_depth = Some(80.0)` (its `--max-depth`), a relative one read
/// as metric by its name is `|cfg| cfg.max_depth = None`.
pub fn load_model_with(
    source: &WeightsSource,
    device: &Device,
    adjust: impl FnOnce(&mut ModelConfig),
) -> Result<DepthAnythingV2> {
    let (mut cfg, tensors) = source.load()?;
    adjust(&mut cfg);
    cfg.validate().map_err(|e| CoreError::bad_input("model config", format!("{source}: {e}")))?;
    let strict = StrictWeights::new(source.to_string(), tensors);
    Ok(strict.build(DType::F32, device, |vb| DepthAnythingV2::new(&cfg, vb))?)
}

/// [`load_model_with`] for a checkpoint that must be of the encoder size `expect` when one is
/// given (a checkpoint of another size is [`ModelError::WrongSize`]), read as a metric model of
/// `max_depth` metres when given.
pub fn load_checked(
    source: &WeightsSource,
    expect: Option<Encoder>,
    max_depth: Option<f64>,
    device: &Device,
) -> Result<DepthAnythingV2> {
    let model = load_model_with(source, device, |cfg| cfg.max_depth = max_depth.or(cfg.max_depth))?;
    let found = model.config().official_encoder();
    match expect {
        Some(expected) if found != Some(expected) => Err(ModelError::WrongSize {
            weights: source.to_string(),
            found: found.map_or("custom-size", Encoder::name),
            expected,
        }),
        _ => Ok(model),
    }
}

/// The indices of images of these sizes grouped by equal size (groups in the order of their
/// first image, indices ascending): the forward passes of [`DepthEstimator::estimate_batch`],
/// for a caller that wants to know which pass an image was in (to fail only that pass's images).
pub fn size_groups(sizes: &[(u32, u32)]) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, size) in sizes.iter().enumerate() {
        match groups.iter_mut().find(|g| sizes[g[0]] == *size) {
            Some(g) => g.push(i),
            None => groups.push(vec![i]),
        }
    }
    groups
}

/// The most patch tokens one network input may have unless raised with
/// [`DepthEstimator::with_max_tokens`]: a 518×784 input has 2,072, 1792×1792 has 16,384. The
/// official code has no limit: a 4000×40 image becomes a 51800×518 input (137k tokens) that runs
/// for hours, and a 2×5000 one asks for 16 GB before the first layer.
pub const DEFAULT_MAX_TOKENS: usize = 16_384;

/// A model ready for inference on a device. `Send + Sync`: share one behind an `Arc` between
/// threads.
///
/// ```no_run
/// # fn main() -> Result<(), depth_models::ModelError> {
/// use depth_models::{DepthEstimator, Encoder};
/// let estimator = DepthEstimator::from_pretrained(Encoder::Vits, &candle_core::Device::Cpu)?;
/// let depth = estimator.estimate("photo.jpg")?;
/// depth.to_npy("photo_depth.npy")?;
/// # Ok(()) }
/// ```
pub struct DepthEstimator {
    model: DepthAnythingV2,
    device: Device,
    input_size: usize,
    max_tokens: usize,
}

impl DepthEstimator {
    /// Loads the model of `source` (an [`crate::Encoder`] for the official checkpoint, a path,
    /// or a parsed [`WeightsSource`]) onto `device`, ready to estimate at the official input
    /// size (518).
    pub fn from_pretrained(source: impl Into<WeightsSource>, device: &Device) -> Result<Self> {
        Ok(Self::new(load_model(&source.into(), device)?, device.clone()))
    }

    /// An estimator of a model already built (on `device`).
    pub fn new(model: DepthAnythingV2, device: Device) -> Self {
        Self { model, device, input_size: 518, max_tokens: DEFAULT_MAX_TOKENS }
    }

    /// The shorter side the network sees (default 518, as the official code).
    pub fn with_input_size(mut self, input_size: usize) -> Self {
        self.input_size = input_size;
        self
    }

    /// Compute in `precision` (bf16: the products in bfloat16, see `depth_core::autocast`;
    /// default float32).
    pub fn with_precision(mut self, precision: depth_core::Precision) -> Self {
        self.model = self.model.with_precision(precision);
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
        let bad = |reason: String| Err(CoreError::bad_input("image", reason).into());
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
                 would try it). Crop the image, lower the input size (`with_input_size`, --input-size) or raise \
                 the limit (`with_max_tokens`, --max-tokens)",
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
        let patch = self.model.config().vit.patch_size;
        Ok(depth_core::net_input::image_to_tensor(img, self.input_size, patch)?)
    }

    /// Depth of one image at its own resolution.
    pub fn estimate(&self, image: impl ImageInput) -> Result<DepthMap> {
        Ok(self.estimate_batch(&[image])?.remove(0))
    }

    /// Depth of several images, in their order; images of the same size share a forward pass
    /// (give at most as many as fit in memory at once).
    pub fn estimate_batch<I: ImageInput>(&self, images: &[I]) -> Result<Vec<DepthMap>> {
        let rgb = images.iter().map(ImageInput::to_rgb).collect::<Result<Vec<_>>>()?;
        let mut out: Vec<Option<DepthMap>> = vec![None; rgb.len()];
        for group in size_groups(&rgb.iter().map(|i| i.dimensions()).collect::<Vec<_>>()) {
            let maps = self.same_size(&group.iter().map(|&i| &*rgb[i]).collect::<Vec<_>>())?;
            group.into_iter().zip(maps).for_each(|(i, m)| out[i] = Some(m));
        }
        Ok(out.into_iter().map(|m| m.expect("every image is in one group")).collect())
    }

    /// The network's output for several images, in their order, at its own resolution (the
    /// network input's, before the resize back to each image): what a pseudo-label stores.
    pub fn network_depth_batch<I: ImageInput>(&self, images: &[I]) -> Result<Vec<DepthMap>> {
        let rgb = images.iter().map(ImageInput::to_rgb).collect::<Result<Vec<_>>>()?;
        let mut out: Vec<Option<DepthMap>> = vec![None; rgb.len()];
        for group in size_groups(&rgb.iter().map(|i| i.dimensions()).collect::<Vec<_>>()) {
            let depth = self.network(&group.iter().map(|&i| &*rgb[i]).collect::<Vec<_>>())?;
            let (h, w) = (depth.dim(2)? as u32, depth.dim(3)? as u32);
            let maps = depth.to_device(&Device::Cpu)?.flatten_from(1)?.to_vec2::<f32>()?;
            for (i, data) in group.into_iter().zip(maps) {
                out[i] = Some(DepthMap { width: w, height: h, data });
            }
        }
        Ok(out.into_iter().map(|m| m.expect("every image is in one group")).collect())
    }

    /// Same-size images in one forward pass: (B, 1, H', W') at the network's resolution.
    fn network(&self, imgs: &[&RgbImage]) -> Result<Tensor> {
        let inputs = imgs.iter().map(|i| self.preprocess(i)).collect::<Result<Vec<_>>>()?;
        self.network_of(&inputs)
    }

    /// Network inputs of one shape (each (1, 3, H', W') from [`preprocess`](Self::preprocess),
    /// possibly of images of different sizes) in one forward pass: (B, 1, H', W').
    pub fn network_of(&self, inputs: &[Tensor]) -> Result<Tensor> {
        let x = Tensor::cat(inputs, 0)?.to_device(&self.device)?;
        Ok(self.model.forward(&x)?.unsqueeze(1)?)
    }

    /// Same-size images in one forward pass, resized back to their size.
    fn same_size(&self, imgs: &[&RgbImage]) -> Result<Vec<DepthMap>> {
        let (w, h) = imgs[0].dimensions();
        let depth = depth_core::bilinear_align_corners(&self.network(imgs)?, (h as usize, w as usize))?;
        let depth = depth.to_device(&Device::Cpu)?.flatten_from(1)?.to_vec2::<f32>()?;
        Ok(depth.into_iter().map(|data| DepthMap { width: w, height: h, data }).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ModelConfig;

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

    #[test]
    fn batches_of_mixed_sizes_come_back_in_order_and_equal_single_images() {
        fn shareable<T: Send + Sync>() {}
        shareable::<DepthEstimator>();
        let cfg = ModelConfig::custom(32, 2, 2, 16);
        let model =
            crate::build_trainable(&cfg, &crate::WeightsInit::Scratch, 7, &Device::Cpu).unwrap().model;
        let est = DepthEstimator::new(model, Device::Cpu).with_input_size(28);
        let img = |w: u32, h: u32, seed: u32| {
            RgbImage::from_fn(w, h, |x, y| {
                image::Rgb([(x * 7 + seed) as u8, (y * 13) as u8, (x * y + seed) as u8])
            })
        };
        let imgs = [img(30, 20, 1), img(16, 40, 2), img(30, 20, 3)];
        let maps = est.estimate_batch(&imgs).unwrap();
        assert_eq!(
            maps.iter().map(|m| (m.width, m.height)).collect::<Vec<_>>(),
            [(30, 20), (16, 40), (30, 20)]
        );
        // a batch sums in another order than one image (gemm blocking): equal to float rounding
        let close = |a: &DepthMap, b: &DepthMap| {
            let scale = b.data.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
            (a.width, a.height) == (b.width, b.height)
                && a.data.iter().zip(&b.data).all(|(x, y)| (x - y).abs() <= 1e-5 * scale)
        };
        for (i, m) in imgs.iter().zip(&maps) {
            assert!(close(&est.estimate(i).unwrap(), m));
        }
        assert_ne!(maps[0], maps[2], "different images, different maps");
        let dynamic = DynamicImage::ImageRgb8(imgs[1].clone()).to_rgba8();
        assert_eq!(est.estimate(DynamicImage::ImageRgba8(dynamic)).unwrap(), est.estimate(&imgs[1]).unwrap());
        assert!(est.estimate("no/such/image.png").unwrap_err().to_string().contains("no/such/image.png"));
        assert!(est.estimate_batch::<RgbImage>(&[]).unwrap().is_empty());
        assert_eq!(size_groups(&[(3, 2), (2, 3), (3, 2), (1, 1), (2, 3)]), [vec![0, 2], vec![1, 4], vec![3]]);
    }
}
