//! The official `image2tensor`: RGB/255 in float64, OpenCV-exact cubic resize to the
//! lower-bound size with both sides multiples of 14 (keeping the aspect ratio), ImageNet
//! normalisation in float64, then float32 NCHW.

use crate::error::Result;
use candle_core::{DType, Device, Tensor};
use image::RgbImage;

pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

/// `Resize.constrain_to_multiple_of`: round half to even, `ceil` when below `min_val`.
fn constrain_to_multiple_of(x: f64, multiple: usize, min_val: usize) -> usize {
    let m = multiple as f64;
    let y = ((x / m).round_ties_even() * m) as usize;
    if y < min_val { ((x / m).ceil() * m) as usize } else { y }
}

/// The network input size (height, width) for an image of `h`×`w` pixels: the smallest size with
/// both sides ≥ `input_size` after an aspect-preserving scale, snapped to multiples of `multiple`.
pub fn target_size(h: usize, w: usize, input_size: usize, multiple: usize) -> (usize, usize) {
    let (sh, sw) = (input_size as f64 / h as f64, input_size as f64 / w as f64);
    let s = if sw > sh { sw } else { sh };
    (
        constrain_to_multiple_of(s * h as f64, multiple, input_size),
        constrain_to_multiple_of(s * w as f64, multiple, input_size),
    )
}

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
    let size = target_size(h, w, input_size, multiple);
    let x = depth_core::cv_resize_cubic(&rgb_to_tensor(img)?, size)?;
    let mean = Tensor::new(&IMAGENET_MEAN, &Device::Cpu)?.reshape((1, 3, 1, 1))?;
    let std = Tensor::new(&IMAGENET_STD, &Device::Cpu)?.reshape((1, 3, 1, 1))?;
    Ok(x.broadcast_sub(&mean)?.broadcast_div(&std)?.to_dtype(DType::F32)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_sizes_follow_the_official_rule() {
        assert_eq!(target_size(425, 640, 518, 14), (518, 784));
        assert_eq!(target_size(700, 700, 518, 14), (518, 518));
        assert_eq!(target_size(1362, 2047, 364, 14), (364, 546));
        // never below the requested size: ceil when rounding would go under
        assert_eq!(target_size(100, 1000, 518, 14), (518, 5180));
        let (h, w) = target_size(333, 500, 700, 14);
        assert!(h >= 700 && w >= 700 && h % 14 == 0 && w % 14 == 0);
    }
}
