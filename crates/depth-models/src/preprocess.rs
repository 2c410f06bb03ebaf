//! The official `image2tensor`: RGB/255 in float64, OpenCV-exact cubic resize to the
//! lower-bound size with both sides multiples of 14 (keeping the aspect ratio), ImageNet
//! normalisation in float64, then float32 NCHW.

use crate::error::Result;
use candle_core::{DType, Device, Tensor};
use image::RgbImage;

pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

/// The network input for one image: (1, 3, H, W) float32 on the CPU.
pub fn image_to_tensor(img: &RgbImage, input_size: usize, multiple: usize) -> Result<Tensor> {
    let (h, w) = (img.height() as usize, img.width() as usize);
    let size = depth_core::lower_bound_size(h, w, input_size, multiple);
    let x = depth_core::cv_resize_cubic(&depth_core::image_io::rgb_to_tensor(img)?, size)?;
    let mean = Tensor::new(&IMAGENET_MEAN, &Device::Cpu)?.reshape((1, 3, 1, 1))?;
    let std = Tensor::new(&IMAGENET_STD, &Device::Cpu)?.reshape((1, 3, 1, 1))?;
    Ok(x.broadcast_sub(&mean)?.broadcast_div(&std)?.to_dtype(DType::F32)?)
}
