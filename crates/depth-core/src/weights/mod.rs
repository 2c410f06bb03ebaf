//! Weight IO: read (and, for export, write) official PyTorch `.pth` checkpoints and safetensors into a name → tensor map,
//! fetch files from the Hugging Face Hub (with its cache and offline mode), and build models
//! through a strict VarBuilder backend that refuses any missing, extra or mis-shaped tensor.

mod files;
#[cfg(feature = "io")]
mod hub;
mod pickle_scan;
mod pth;
mod pth_write;
mod strict;

pub use files::{
    Metadata, TensorMap, canonical_safetensors, load_safetensors, load_weights, non_finite,
    safetensors_metadata, save_safetensors,
};
#[cfg(feature = "io")]
pub use hub::{HubOptions, hub_file};
pub use pth::load_pth;
pub use pth_write::save_pth;
pub use strict::{LoadSummary, StrictWeights};
