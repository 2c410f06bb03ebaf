//! depth-core: the tensor layer the depth crates stand on, directly on candle's `Tensor`.
//!
//! It owns the ops candle lacks or gets wrong — differentiable bilinear/bicubic resampling with
//! PyTorch's exact semantics, OpenCV-exact `INTER_CUBIC`, fused *and* differentiable LayerNorm
//! and softmax — plus weight files (`.pth`, safetensors) with strict loading, `.npy` files, device
//! choice, mixed precision (bf16 autocast of the products), the one TOML config reader and
//! loading contract of the pipeline, the progress trait the long loops report through, and the
//! shared error type. Behind the default `io` feature: image decoding as OpenCV, the
//! network-input preprocessing, the Hugging Face Hub and 16-bit PNG files. Without `io` it needs
//! no C toolchain beyond candle's (no cmake, nasm or network client), which is what a crate that
//! only needs the ops (depth-losses) gets.
//! It knows nothing about models or datasets and must never depend on another depth-* crate.
//!
//! Its surface has one path per item: the ops, the device, the progress trait and the error are
//! re-exported at the root from private modules; the families of functions (`atomic`, `config`,
//! `fixtures`, `hash`, `image_io`, `machine`, `net_input`, `npy`, `png16`, `read`, `walk`, `weights`) are public
//! modules used by their path and not re-exported.

mod abs;
mod amx;
pub mod atomic;
mod attention;
mod colormap;
pub mod config;
mod conv;
#[cfg(feature = "cuda")]
mod cuda;
mod device;
mod disjoint;
mod error;
mod fastmath;
pub mod fixtures;
mod float;
mod gelu;
mod gemm;
pub mod hash;
#[cfg(feature = "io")]
pub mod image_io;
mod linear;
pub mod machine;
#[cfg(feature = "io")]
pub mod net_input;
mod norm;
pub mod npy;
#[cfg(feature = "io")]
pub mod png16;
mod precision;
mod progress;
pub mod read;
mod relu;
mod resample;
mod softmax;
pub mod walk;
pub mod weights;

pub use abs::abs;
pub use attention::attention;
pub use colormap::Colormap;
pub use conv::{Conv2d, conv_transpose_stride_k, conv2d, conv2d_relu_input};
pub use device::{DeviceSpec, fused_cuda_kernels, fused_kernel_launches, local_rank, set_fused_cuda_kernels};
pub use error::{CoreError, Result};
pub use gelu::gelu_erf;
pub use linear::{Linear, linear};
pub use norm::layer_norm;
pub use precision::{Precision, autocast};
pub use progress::{Progress, Silent};
pub use relu::relu;
pub use resample::{
    Taps, bicubic, bicubic_scale, bilinear_align_corners, bilinear_align_corners_scale, cv_resize_cubic,
    lower_bound_size, resample,
};
pub use softmax::softmax_last_dim;
