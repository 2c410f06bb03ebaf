//! Surface textures: crops of real photos and baked procedural noise, sampled bilinearly with
//! mirrored repetition so that tiles meet without seams.

use super::math::{V3, v3};
use super::noise;
use crate::error::Result;
use image::RgbImage;
use rand::Rng;
use std::path::PathBuf;

/// A linear-RGB texture in [0, 1] covering `size` metres per repetition.
#[derive(Clone, Debug)]
pub struct Texture {
    width: usize,
    height: usize,
    texels: Vec<V3>,
    /// Metres covered by one copy of the texture along u (v keeps the aspect ratio).
    size: f32,
}

impl Texture {
    pub fn from_image(img: &RgbImage, size: f32) -> Texture {
        let texels =
            img.pixels().map(|p| v3(p[0] as f32, p[1] as f32, p[2] as f32) * (1.0 / 255.0)).collect();
        Texture { width: img.width() as usize, height: img.height() as usize, texels, size }
    }

    /// Fractal noise between two colours, 128×128 texels.
    pub fn noise(seed: u32, a: V3, b: V3, cells: f32, size: f32) -> Texture {
        let n = 128;
        let texels = (0..n * n)
            .map(|i| {
                let (x, y) = ((i % n) as f32 / n as f32, (i / n) as f32 / n as f32);
                let t = noise::fbm(seed, x * cells, y * cells, 4);
                a + (b - a) * t
            })
            .collect();
        Texture { width: n, height: n, texels, size }
    }

    /// The colour at surface coordinates (u, v) in metres.
    pub fn sample(&self, u: f32, v: f32) -> V3 {
        let scale = self.width as f32 / self.size;
        let x = mirror(u * scale - 0.5, self.width);
        let y = mirror(v * scale - 0.5, self.height);
        let (x0, y0) = (x.floor(), y.floor());
        let (fx, fy) = (x - x0, y - y0);
        let (x0, y0) = (x0 as usize, y0 as usize);
        let (x1, y1) = ((x0 + 1).min(self.width - 1), (y0 + 1).min(self.height - 1));
        let at = |x: usize, y: usize| self.texels[y * self.width + x];
        let top = at(x0, y0) * (1.0 - fx) + at(x1, y0) * fx;
        let bottom = at(x0, y1) * (1.0 - fx) + at(x1, y1) * fx;
        top * (1.0 - fy) + bottom * fy
    }
}

/// Folds a coordinate into [0, n − 1] by mirrored repetition.
fn mirror(x: f32, n: usize) -> f32 {
    let period = 2.0 * n as f32;
    let m = x.rem_euclid(period);
    let folded = if m >= n as f32 { period - m - 1.0 } else { m };
    folded.clamp(0.0, n as f32 - 1.0)
}

/// Real photos to cut texture crops from, each downscaled so its longer side is at most 512.
#[derive(Clone, Debug, Default)]
pub struct PhotoBank {
    photos: Vec<RgbImage>,
}

impl PhotoBank {
    /// Every image under `dir` (sorted, so the bank is deterministic).
    pub fn from_dir(dir: &std::path::Path) -> Result<PhotoBank> {
        let folder = crate::formats::folder::ImageFolder::new("photos", dir)?;
        let paths: Vec<PathBuf> = folder.relative_paths().iter().map(|p| dir.join(p)).collect();
        Self::from_paths(&paths)
    }

    /// The images at `paths`, in that order.
    pub fn from_paths(paths: &[PathBuf]) -> Result<PhotoBank> {
        let photos = paths
            .iter()
            .map(|p| {
                let img = depth_core::image_io::read_image(p)?;
                let (w, h) = img.dimensions();
                let s = 512.0 / w.max(h) as f32;
                Ok(if s < 1.0 {
                    let (nw, nh) = ((w as f32 * s).round() as u32, (h as f32 * s).round() as u32);
                    image::imageops::resize(&img, nw.max(1), nh.max(1), image::imageops::FilterType::Triangle)
                } else {
                    img
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(PhotoBank { photos })
    }

    pub fn is_empty(&self) -> bool {
        self.photos.is_empty()
    }

    pub fn len(&self) -> usize {
        self.photos.len()
    }

    /// A random crop (48–192 px, at most the photo) of a random photo.
    pub fn crop(&self, rng: &mut impl Rng, size: f32) -> Option<Texture> {
        if self.photos.is_empty() {
            return None;
        }
        let photo = &self.photos[rng.random_range(0..self.photos.len())];
        let (w, h) = photo.dimensions();
        let cw = rng.random_range(48..=192).min(w);
        let ch = rng.random_range(48..=192).min(h);
        let (x, y) = (rng.random_range(0..=w - cw), rng.random_range(0..=h - ch));
        let crop = image::imageops::crop_imm(photo, x, y, cw, ch).to_image();
        Some(Texture::from_image(&crop, size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrored_sampling_is_continuous_and_exact_at_texel_centres() {
        let img = RgbImage::from_fn(4, 2, |x, y| image::Rgb([(x * 60) as u8, (y * 200) as u8, 7]));
        let t = Texture::from_image(&img, 4.0); // one texel per metre
        let c = t.sample(2.5, 0.5);
        assert!((c.x - 120.0 / 255.0).abs() < 1e-6 && c.y.abs() < 1e-6);
        // across the repetition boundary the colour varies continuously
        let (a, b) = (t.sample(3.999, 0.5), t.sample(4.001, 0.5));
        assert!((a.x - b.x).abs() < 1e-3);
        assert_eq!(mirror(-1.0, 4), 0.0);
        assert_eq!(mirror(8.5, 4), 0.5);
    }
}
