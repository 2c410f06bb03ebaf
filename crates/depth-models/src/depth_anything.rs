//! Depth Anything V2 = DINOv2 encoder (`pretrained.*`) + DPT head (`depth_head.*`), returning
//! relative depth (disparity-like, larger = closer) at the input resolution, or with the metric
//! head of the official `metric_depth/` (`max_depth` set) metric depth in metres.

use crate::config::ModelConfig;
use crate::dinov2::{DinoVisionTransformer, LayerOutput};
use crate::dpt::DptHead;
use crate::recompute::Recompute;
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use depth_core::{Precision, autocast};

#[derive(Clone, Debug)]
pub struct DepthAnythingV2 {
    cfg: ModelConfig,
    pretrained: DinoVisionTransformer,
    depth_head: DptHead,
    /// The precision its forward computes in (`depth_core::autocast`); the weights stay float32.
    precision: Precision,
}

impl DepthAnythingV2 {
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            pretrained: DinoVisionTransformer::new(&cfg.vit, vb.pp("pretrained"))?,
            depth_head: DptHead::new(cfg.vit.embed_dim, &cfg.head, vb.pp("depth_head"))?,
            cfg: cfg.clone(),
            precision: Precision::F32,
        })
    }

    /// The same model computing in `precision` (bf16: the products in bfloat16, see
    /// `depth_core::autocast`).
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    pub fn encoder(&self) -> &DinoVisionTransformer {
        &self.pretrained
    }

    /// The four encoder layers the head reads (final norm applied).
    pub fn features(&self, x: &Tensor) -> Result<Vec<LayerOutput>> {
        autocast(self.precision, || self.pretrained.get_intermediate_layers(x, &self.cfg.layers))
    }

    /// [`DepthAnythingV2::features`] with activation checkpointing of the encoder blocks: after
    /// the loss's backward, [`Recompute::backward`] adds the encoder's gradients.
    pub fn features_recomputed(&self, x: &Tensor) -> Result<(Vec<LayerOutput>, Recompute)> {
        autocast(self.precision, || {
            self.pretrained.get_intermediate_layers_recomputed(x, &self.cfg.layers, self.precision)
        })
    }

    /// (B, 3, H, W) normalised images, H and W multiples of the patch size → (B, H, W) depth.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_from(&self.features(x)?, x)
    }

    /// The head on features already computed for `x` (training reuses them for feature
    /// alignment).
    pub fn forward_from(&self, features: &[LayerOutput], x: &Tensor) -> Result<Tensor> {
        autocast(self.precision, || self.head(features, x))
    }

    fn head(&self, features: &[LayerOutput], x: &Tensor) -> Result<Tensor> {
        let p = self.cfg.vit.patch_size;
        let (_, _, h, w) = x.dims4()?;
        let out = self.depth_head.forward(features, h / p, w / p, p)?;
        // relative: the head's ReLU and the model's (the same); metric: sigmoid × max_depth
        let depth = match self.cfg.max_depth {
            None => depth_core::relu(&out)?,
            Some(m) => (candle_nn::ops::sigmoid(&out)? * m)?,
        };
        depth.squeeze(1)
    }
}
