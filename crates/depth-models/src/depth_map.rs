//! [`DepthMap`]: what inference returns — relative depth at the image's resolution — and the
//! files and pictures people make of it, written the way `cargo xtask infer` and the official
//! run.py write them.

use crate::error::Result;
use candle_core::{Device, Tensor};
use depth_core::Colormap;
use depth_core::atomic::write_atomic;
use image::RgbImage;
use std::path::Path;

/// A value's colour over `lo…hi`: scaled to 0…255, truncated to a byte, looked up in `cmap`.
fn colorizer(cmap: Colormap, lo: f32, hi: f32) -> impl Fn(f32) -> [u8; 3] + Send + Sync {
    let span = if hi > lo { hi - lo } else { 1.0 };
    move |v| cmap.lut(((v - lo) / span * 255.0).clamp(0.0, 255.0) as u8)
}

/// A dense depth map, row-major, `width`×`height` float32 values. From a relative model:
/// affine-invariant disparity (larger is closer); from a metric one: metres.
#[derive(Clone, Debug, PartialEq)]
pub struct DepthMap {
    pub width: u32,
    pub height: u32,
    pub data: Vec<f32>,
}

impl DepthMap {
    pub fn get(&self, x: u32, y: u32) -> f32 {
        self.data[(y * self.width + x) as usize]
    }

    /// (min, max) over finite values; (0, 0) when there are none.
    pub fn min_max(&self) -> (f32, f32) {
        let finite = self.data.iter().copied().filter(|v| v.is_finite());
        let (lo, hi) = finite.fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
        if lo <= hi { (lo, hi) } else { (0.0, 0.0) }
    }

    /// (H, W) float32 on the CPU.
    pub fn to_tensor(&self) -> Result<Tensor> {
        Ok(Tensor::from_slice(&self.data, (self.height as usize, self.width as usize), &Device::Cpu)?)
    }

    /// The picture of the official run.py: each value min–max scaled to 0…255 over this map,
    /// truncated to a byte, looked up in `cmap` (`Colormap::SpectralR` is the official one).
    pub fn colorize(&self, cmap: Colormap) -> RgbImage {
        let (lo, hi) = self.min_max();
        self.colorize_range(cmap, lo, hi)
    }

    /// As [`DepthMap::colorize`] over a fixed range `lo…hi` (values outside are clamped), so
    /// that several maps (the frames of a video) share one colour scale.
    pub fn colorize_range(&self, cmap: Colormap, lo: f32, hi: f32) -> RgbImage {
        let color = colorizer(cmap, lo, hi);
        RgbImage::from_fn(self.width, self.height, |x, y| image::Rgb(color(self.get(x, y))))
    }

    /// The colour [`DepthMap::colorize`] gives each value, for writers that stream rows.
    pub fn colorizer(&self, cmap: Colormap) -> impl Fn(f32) -> [u8; 3] + Send + Sync + use<> {
        let (lo, hi) = self.min_max();
        colorizer(cmap, lo, hi)
    }

    /// Writes the values as a float32 `.npy` of shape (H, W) (`np.load` reads it), atomically.
    pub fn to_npy(&self, path: impl AsRef<Path>) -> Result<()> {
        Ok(write_atomic(path.as_ref(), |w| self.write_npy(w))?)
    }

    /// The `.npy` of [`DepthMap::to_npy`], into any writer.
    pub fn write_npy(&self, w: &mut dyn std::io::Write) -> std::io::Result<()> {
        depth_core::npy::write_f32(w, &[self.height as u64, self.width as u64], &self.data)
    }

    /// Writes a 16-bit greyscale PNG, min–max normalised to 0…65535 (the official demo's raw
    /// download), atomically.
    pub fn to_png16(&self, path: impl AsRef<Path>) -> Result<()> {
        let bytes = self.png16_bytes()?;
        Ok(write_atomic(path.as_ref(), |w| w.write_all(&bytes))?)
    }

    /// The bytes [`DepthMap::to_png16`] writes.
    pub fn png16_bytes(&self) -> Result<Vec<u8>> {
        let scale = depth_core::png16::Png16Scale::MinMax;
        let bytes = depth_core::png16::encode(&self.data, self.width, self.height, scale).map_err(|e| {
            depth_core::CoreError::bad_input("depth map", format!("cannot encode a 16-bit PNG: {e}"))
        })?;
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> DepthMap {
        DepthMap { width: 3, height: 2, data: vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.5] }
    }

    #[test]
    fn pictures_scale_over_the_map_or_a_fixed_range() {
        let d = DepthMap { width: 3, height: 1, data: vec![1.0, 2.0, 3.0] };
        let own = d.colorize(Colormap::Turbo);
        assert_eq!(own.get_pixel(0, 0).0, Colormap::Turbo.lut(0));
        assert_eq!(own.get_pixel(1, 0).0, Colormap::Turbo.lut(127), "(2 − 1) / 2 · 255 = 127.5 truncates");
        assert_eq!(own.get_pixel(2, 0).0, Colormap::Turbo.lut(255));
        // a fixed 0…4 range: 2 → byte 127, 3 → 191
        let fixed = d.colorize_range(Colormap::Gray, 0.0, 4.0);
        assert_eq!([fixed.get_pixel(1, 0).0[0], fixed.get_pixel(2, 0).0[0]], [127, 191]);
        let flat = DepthMap { width: 2, height: 1, data: vec![5.0, 5.0] }.colorize(Colormap::Gray);
        assert_eq!(flat.get_pixel(1, 0).0, [0; 3]);
    }

    #[test]
    fn npy_and_png16_files_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        map().to_npy(dir.path().join("d.npy")).unwrap();
        let (shape, data) = depth_core::npy::read_f32(&dir.path().join("d.npy")).unwrap();
        assert_eq!((shape, data), (vec![2, 3], map().data));
        map().to_png16(dir.path().join("d.png")).unwrap();
        let png = image::open(dir.path().join("d.png")).unwrap().into_luma16();
        assert_eq!(png.dimensions(), (3, 2));
        assert_eq!([png.get_pixel(0, 0).0[0], png.get_pixel(2, 1).0[0]], [0, 65535]);
        assert_eq!(png.get_pixel(1, 0).0[0], (65535.0f64 / 5.5).round() as u16);
        let err = map().to_npy(dir.path().join("no/such/dir/d.npy")).unwrap_err().to_string();
        assert!(err.contains("no/such/dir"), "{err}");
    }
}
