//! The official `image2tensor`: RGB/255 in float64, OpenCV-exact cubic resize to the
//! lower-bound size with both sides multiples of 14 (keeping the aspect ratio), ImageNet
//! normalisation in float64, then float32 NCHW.

use crate::error::Result;
use candle_core::{DType, Device, Tensor};
use image::RgbImage;

pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

/// An 8-bit RGB image as (1, 3, H, W) float64 in [0, 1].
pub fn rgb_to_tensor(img: &RgbImage) -> Result<Tensor> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut planes = vec![0f64; 3 * h * w];
    for (i, px) in img.pixels().enumerate() {
        for c in 0..3 {
            planes[c * h * w + i] = px.0[c] as f64 / 255.0;
        }
    }
    Ok(Tensor::from_vec(planes, (1, 3, h, w), &Device::Cpu)?)
}

/// The network input for one image: (1, 3, H, W) float32 on the CPU.
pub fn image_to_tensor(img: &RgbImage, input_size: usize, multiple: usize) -> Result<Tensor> {
    let (h, w) = (img.height() as usize, img.width() as usize);
    let size = depth_core::lower_bound_size(h, w, input_size, multiple);
    let x = depth_core::cv_resize_cubic(&rgb_to_tensor(img)?, size)?;
    let mean = Tensor::new(&IMAGENET_MEAN, &Device::Cpu)?.reshape((1, 3, 1, 1))?;
    let std = Tensor::new(&IMAGENET_STD, &Device::Cpu)?.reshape((1, 3, 1, 1))?;
    Ok(x.broadcast_sub(&mean)?.broadcast_div(&std)?.to_dtype(DType::F32)?)
}
