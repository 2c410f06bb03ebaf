//! depth-models: DINOv2 ViT encoders (S/B/L/G and custom sizes), the DPT head and Depth Anything
//! V2, with the official preprocessing and an inference API (`load_model`, `DepthEstimator`).
//!
//! It owns the architectures, their configurations, the preprocessing that parity depends
//! on (image reading is depth-core's), and the one key table (the Hugging Face layout); for
//! training it offers the parameters as typed groups (`params`), seeded fresh or partial
//! initialisation and checkpoints that carry their configuration (`trainable`). Tensor ops and
//! weight IO come from depth-core; it must not know about losses, datasets, optimisers or
//! evaluation.

pub mod config;
pub mod depth_anything;
pub mod dinov2;
pub mod dpt;
pub mod error;
pub mod flops;
pub mod hf;
pub mod infer;
pub mod params;
pub mod preprocess;
pub mod trainable;

pub use config::{DptConfig, Encoder, Ffn, ModelConfig, PosEmbedResize, VitConfig};
pub use depth_anything::DepthAnythingV2;
pub use depth_core::read_image;
pub use error::{ModelError, Result};
pub use flops::forward_flops;
pub use infer::{DEFAULT_MAX_TOKENS, DepthEstimator, DepthMap, load_model, weights_file};
pub use params::{Param, ParamKind, Part, parameters};
pub use trainable::{
    Trainable, WeightsInit, build_trainable, load_frozen_encoder, model_tensors, save_model,
};
