//! depth-core: the tensor layer the depth crates stand on, directly on candle's `Tensor`.
//!
//! It owns the ops candle lacks or gets wrong — differentiable bilinear/bicubic resampling with
//! PyTorch's exact semantics, OpenCV-exact `INTER_CUBIC`, fused *and* differentiable LayerNorm
//! and softmax — plus weight files (`.pth`, safetensors) with strict loading, `.npy` files, device
//! choice, the one TOML config reader of the pipeline, and the shared error type. Behind the
//! default `io` feature: image decoding as OpenCV, the network-input preprocessing, the Hugging
//! Face Hub and 16-bit PNG files. Without `io` it needs no C toolchain beyond candle's (no cmake,
//! nasm or network client), which is what a crate that only needs the ops (depth-losses) gets.
//! It knows nothing about models or datasets and must never depend on another depth-* crate.

pub mod abs;
pub mod atomic;
pub mod attention;
pub mod colormap;
pub mod config;
pub mod conv;
pub mod device;
pub mod error;
pub mod fastmath;
pub mod fixtures;
mod float;
pub mod gelu;
mod gemm;
#[cfg(feature = "io")]
pub mod image_io;
pub mod linear;
#[cfg(feature = "io")]
pub mod net_input;
pub mod norm;
pub mod npy;
#[cfg(feature = "io")]
pub mod png16;
pub mod relu;
pub mod resample;
pub mod softmax;
pub mod walk;
pub mod weights;

pub use abs::abs;
pub use attention::attention;
pub use device::parse_device;
pub use error::{CoreError, Result};
pub use gelu::gelu_erf;
#[cfg(feature = "io")]
pub use image_io::{decode_image, read_image};
pub use linear::linear;
pub use norm::layer_norm;
pub use relu::relu;
pub use resample::{
    Taps, bicubic, bicubic_scale, bilinear_align_corners, bilinear_align_corners_scale, cv_resize_cubic,
    lower_bound_size, resample,
};
pub use softmax::softmax_last_dim;
pub use walk::walk_files;
