//! The network input of an image, the one path inference and training share: RGB/255 in
//! float64, OpenCV-exact cubic resize to the official lower-bound size (both sides multiples of
//! the patch, aspect ratio kept), ImageNet normalisation. Inference normalises the float64
//! image, as the official `image2tensor`; training normalises its float32 crops after the
//! augmentations, as the official transforms do after `PrepareForNet`.

use crate::error::Result;
use candle_core::{DType, Device, Tensor};
use image::RgbImage;

/// ImageNet's channel means and standard deviations (RGB), as torchvision and the official code.
pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

/// RGB/255 as (1, 3, H, W) float64, resized by OpenCV's `INTER_CUBIC` to the smallest size with
/// the shorter side ≥ `input_size` and both sides multiples of `multiple` (the official
/// `Resize(keep_aspect_ratio=True, resize_method='lower_bound')`).
pub fn resize_lower_bound(img: &RgbImage, input_size: usize, multiple: usize) -> Result<Tensor> {
    let (h, w) = (img.height() as usize, img.width() as usize);
    let size = crate::lower_bound_size(h, w, input_size, multiple);
    crate::cv_resize_cubic(&crate::image_io::rgb_to_tensor(img)?, size)
}

/// (x − mean) / std over the channels of an (N, 3, H, W) or (3, H, W) tensor, computed in `x`'s
/// dtype.
pub fn normalize(x: &Tensor) -> Result<Tensor> {
    let shape: &[usize] = if x.rank() == 4 { &[1, 3, 1, 1] } else { &[3, 1, 1] };
    let stat = |v: &[f64; 3]| -> Result<Tensor> {
        Ok(Tensor::new(v, &Device::Cpu)?.to_dtype(x.dtype())?.to_device(x.device())?.reshape(shape)?)
    };
    Ok(x.broadcast_sub(&stat(&IMAGENET_MEAN)?)?.broadcast_div(&stat(&IMAGENET_STD)?)?)
}

/// The network input of one image exactly as the official `image2tensor`: (1, 3, H, W) float32
/// on the CPU.
pub fn image_to_tensor(img: &RgbImage, input_size: usize, multiple: usize) -> Result<Tensor> {
    Ok(normalize(&resize_lower_bound(img, input_size, multiple)?)?.to_dtype(DType::F32)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_is_per_channel_in_the_input_dtype() {
        let x = Tensor::new(&[[[0.485f32]], [[0.0]], [[1.0]]], &Device::Cpu).unwrap();
        let y: Vec<f32> = normalize(&x).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(y, vec![0.0, (0.0 - 0.456f32) / 0.224f32, (1.0 - 0.406f32) / 0.225f32]);
        let img = RgbImage::from_pixel(30, 20, image::Rgb([255, 0, 128]));
        let t = image_to_tensor(&img, 14, 14).unwrap();
        assert_eq!((t.dims(), t.dtype()), (&[1, 3, 14, 28][..], DType::F32));
        let px: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(px[0], ((1.0 - 0.485) / 0.229) as f32);
    }
}
