//! depth-models: DINOv2 ViT encoders (S/B/L/G and custom sizes), the DPT head and Depth Anything
//! V2, with the official preprocessing and an inference API ([`DepthEstimator`]).
//!
//! Depth for a photo, exactly as the official code computes it:
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let fixtures = depth_core::fixtures::fixtures_dir()?;
//! # let weights = fixtures.join("weights/da2_vits_random.pth");
//! # let photo = fixtures.join("images/demo01.jpg");
//! # let out = tempfile::tempdir()?;
//! # let out = out.path();
//! use depth_models::{Colormap, DepthEstimator};
//!
//! let estimator = DepthEstimator::from_pretrained(weights, &candle_core::Device::Cpu)?;
//! let depth = estimator.estimate(&photo)?;
//! depth.to_npy(out.join("depth.npy"))?;
//! depth.colorize(Colormap::SpectralR).save(out.join("depth.png"))?;
//! # assert_eq!((depth.width, depth.height), image::image_dimensions(&photo)?);
//! # Ok(()) }
//! ```
//!
//! `from_pretrained` takes an [`Encoder`] (the official checkpoint from the Hugging Face Hub),
//! a path (a `.pth`/safetensors checkpoint, whose size is read from it, or an HF folder), or
//! any [`WeightsSource`]; `estimate` a path or an image in memory.
//!
//! It owns the architectures, their configurations, the preprocessing that parity depends
//! on (image reading is depth-core's), and the one key table (the Hugging Face layout); for
//! training it offers the parameters as typed groups (`params`), seeded fresh or partial
//! initialisation and checkpoints that carry their configuration (`trainable`), and the exports
//! other tools load ([`export`]: transformers, the official `.pth`, ONNX). Tensor ops and
//! weight IO come from depth-core; it must not know about losses, datasets, optimisers or
//! evaluation.

//!
//! Every item is re-exported here from a private module: one path each.

mod config;
mod depth_anything;
mod depth_map;
mod dinov2;
mod dpt;
mod error;
mod export;
mod flops;
mod hf;
mod infer;
mod onnx;
mod params;
mod recompute;
mod source;
mod trainable;

pub use config::{
    CHECKPOINT_FORMAT, DptConfig, Encoder, Ffn, MAX_PARAMETERS, META_CONFIG, META_FORMAT, ModelConfig,
    PosEmbedResize, VitConfig,
};
pub use depth_anything::DepthAnythingV2;
pub use depth_core::Colormap;
pub use depth_core::image_io::read_image;
pub use depth_map::DepthMap;
pub use dinov2::{Block, DinoVisionTransformer, LayerNorm, LayerOutput};
pub use dpt::DptHead;
pub use error::{ModelError, Result};
pub use export::{ExportFormat, ExportOptions, export};
pub use flops::forward_flops;
pub use infer::{
    DEFAULT_MAX_TOKENS, DepthEstimator, ImageInput, load_checked, load_model, load_model_with, size_groups,
};
pub use params::{Param, ParamKind, Part, parameters};
pub use recompute::Recompute;
pub use source::{NamedModel, WeightsSource};
pub use trainable::{
    Trainable, WeightsInit, build_trainable, load_frozen_encoder, model_tensors, save_model,
};
