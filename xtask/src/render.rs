//! What the depth commands draw and write, in one place for images (`infer`) and video frames
//! (`infer --video`): the official picture (the image, a white gap, the coloured depth, as
//! run.py and run_video.py draw it), its colour settings, and the raw depth files — `.npy` and
//! `.pfm` hold the float32 depth at the original resolution, `.png` (16-bit) holds it min–max
//! normalised to 0…65535.

use depth_models::{Colormap, DepthMap};
use image::RgbImage;
use std::io::{self, Write};

/// How depth is coloured and laid out.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rendering {
    pub cmap: Colormap,
    /// A fixed colour range of the network output (None: each picture's own min–max).
    pub range: Option<(f32, f32)>,
    /// The depth alone, without the image beside it.
    pub pred_only: bool,
}

impl Rendering {
    /// The picture of the depth `d` of the image `img`.
    pub fn picture(&self, img: &RgbImage, d: &DepthMap) -> RgbImage {
        picture(img, d, self.cmap, self.range, self.pred_only)
    }

    /// The width of a picture of an image `width` wide.
    pub fn width(&self, width: u32) -> u32 {
        if self.pred_only { width } else { 2 * width + GAP }
    }
}

/// The white gap between image and depth in the official pictures and videos.
const GAP: u32 = 50;

/// The official picture (run.py's, and each frame of run_video.py's): the depth coloured over
/// its own min–max or a fixed range and, unless `pred_only`, the image, a white gap and the
/// depth side by side.
fn picture(
    img: &RgbImage,
    d: &DepthMap,
    cmap: Colormap,
    range: Option<(f32, f32)>,
    pred_only: bool,
) -> RgbImage {
    let depth = match range {
        Some((lo, hi)) => d.colorize_range(cmap, lo, hi),
        None => d.colorize(cmap),
    };
    if pred_only {
        return depth;
    }
    let mut out = RgbImage::from_pixel(2 * d.width + GAP, d.height, image::Rgb([255; 3]));
    image::imageops::replace(&mut out, img, 0, 0);
    image::imageops::replace(&mut out, &depth, (d.width + GAP) as i64, 0);
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RawFormat {
    Npy,
    Png16,
    Pfm,
}

impl RawFormat {
    pub fn extension(self) -> &'static str {
        match self {
            Self::Npy => "npy",
            Self::Png16 => "png",
            Self::Pfm => "pfm",
        }
    }

    pub fn write(self, d: &DepthMap, w: &mut dyn Write) -> io::Result<()> {
        match self {
            Self::Npy => d.write_npy(w),
            Self::Png16 => write_png16(d, w),
            Self::Pfm => write_pfm(d, w),
        }
    }
}

/// Greyscale PFM ("Pf"), little endian (negative scale), rows bottom to top.
fn write_pfm(d: &DepthMap, w: &mut dyn Write) -> io::Result<()> {
    write!(w, "Pf\n{} {}\n-1.0\n", d.width, d.height)?;
    for row in d.data.chunks(d.width as usize).rev() {
        row.iter().try_for_each(|v| w.write_all(&v.to_le_bytes()))?;
    }
    Ok(())
}

/// As `DepthMap::to_png16`.
fn write_png16(d: &DepthMap, w: &mut dyn Write) -> io::Result<()> {
    w.write_all(&d.png16_bytes().map_err(io::Error::other)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pictures_use_the_colour_map_and_range() {
        let d = DepthMap { width: 3, height: 1, data: vec![1.0, 2.0, 3.0] };
        let img = RgbImage::new(3, 1);
        let own = picture(&img, &d, Colormap::Turbo, None, true);
        assert_eq!(own.get_pixel(0, 0).0, Colormap::Turbo.lut(0));
        assert_eq!(own.get_pixel(2, 0).0, Colormap::Turbo.lut(255));
        // a fixed 0…4 range: 2 → byte 127, 3 → 191
        let fixed = picture(&img, &d, Colormap::Inferno, Some((0.0, 4.0)), true);
        assert_eq!(fixed.get_pixel(1, 0).0, Colormap::Inferno.lut(127));
        assert_eq!(fixed.get_pixel(2, 0).0, Colormap::Inferno.lut(191));
        // side by side: image, 50 white columns, depth
        assert_eq!(picture(&img, &d, Colormap::Gray, None, false).width(), 56);
    }

    fn map() -> DepthMap {
        DepthMap { width: 3, height: 2, data: vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.5] }
    }

    #[test]
    fn pfm_rows_are_bottom_up() {
        let mut out = Vec::new();
        RawFormat::Pfm.write(&map(), &mut out).unwrap();
        let header = b"Pf\n3 2\n-1.0\n";
        assert!(out.starts_with(header));
        let first = f32::from_le_bytes(out[header.len()..header.len() + 4].try_into().unwrap());
        assert_eq!(first, 3.0);
    }

    #[test]
    fn png16_spans_the_full_range() {
        let mut out = Vec::new();
        RawFormat::Png16.write(&map(), &mut out).unwrap();
        let img = image::load_from_memory(&out).unwrap().into_luma16();
        assert_eq!(img.get_pixel(0, 0).0[0], 0);
        assert_eq!(img.get_pixel(2, 1).0[0], 65535);
    }
}
