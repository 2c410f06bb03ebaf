//! Generic 16-bit PNG depth: one channel of `u16`, metres = value / scale.
//!
//! Units and invalid values per dataset (from each dataset's own documentation / devkit):
//! - KITTI depth benchmark: scale 256, 0 = no LiDAR point (devkit `readme.txt`).
//! - Virtual KITTI 2: centimetres (scale 100), 65535 (655.35 m) = sky, treated as invalid.
//! - NYU-Depth-V2 in the BTS `sync` layout: millimetres (scale 1000), 0 = no measurement.
//! - Redwood: millimetres (scale 1000), 0 = no measurement.
//!
//! 0 is always invalid; `invalid` lists further sentinel values. 8-bit or multi-channel PNGs are
//! rejected: an 8-bit "depth" is almost always a visualisation, not data.

use crate::error::Result;
use crate::sample::Target;
use depth_core::CoreError;
use image::{ColorType, DynamicImage, ImageDecoder, ImageReader};
use std::path::Path;

/// Reads a 16-bit single-channel PNG as depth in metres (`value / scale`); 0 and the values in
/// `invalid` are invalid.
pub fn read_png16_depth(path: &Path, scale: f32, invalid: &[u16]) -> Result<Target> {
    if !(scale.is_finite() && scale > 0.0) {
        return Err(CoreError::bad_input("png16 scale", format!("{scale} is not > 0")).into());
    }
    let bad = |e: image::ImageError| CoreError::format(path, "16-bit PNG depth", e);
    let reader = ImageReader::open(path).map_err(|e| CoreError::io(path, e))?;
    let decoder =
        reader.with_guessed_format().map_err(|e| CoreError::io(path, e))?.into_decoder().map_err(bad)?;
    let (w, h) = decoder.dimensions();
    depth_core::image_io::check_claimed_size(w, h)
        .map_err(|e| CoreError::format(path, "16-bit PNG depth", e))?;
    let color = decoder.color_type();
    if color != ColorType::L16 {
        let reason =
            format!("expected one 16-bit channel, found {color:?} (an 8-bit or color image is not depth)");
        return Err(CoreError::format(path, "16-bit PNG depth", reason).into());
    }
    let DynamicImage::ImageLuma16(img) = DynamicImage::from_decoder(decoder).map_err(bad)? else {
        return Err(CoreError::format(path, "16-bit PNG depth", "decoder did not return 16-bit luma").into());
    };
    let (w, h) = img.dimensions();
    let values =
        img.as_raw().iter().map(|&v| if v == 0 || invalid.contains(&v) { 0.0 } else { v as f32 / scale });
    Ok(Target::depth(w, h, values.collect()))
}
