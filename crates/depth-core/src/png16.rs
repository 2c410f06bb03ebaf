//! Depth as a single-channel 16-bit PNG: min–max normalised (the relative-depth convention of
//! `infer --save-raw png16` and the official demo's download), or a fixed scale such as KITTI's
//! 256 per metre.

use std::io;

/// How depth values become 16-bit integers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Png16Scale {
    /// min…max of the finite values → 0…65535 (the relative-depth convention of `infer`).
    MinMax,
    /// round(v · factor), clamped to 0…65535 (KITTI stores depth × 256, many indoor sets mm).
    Factor(f64),
}

/// A single-channel 16-bit PNG of `values` (row-major `width`×`height`); non-finite values
/// become 0 (the "no depth" value of the 16-bit depth formats).
pub fn encode(values: &[f32], width: u32, height: u32, scale: Png16Scale) -> io::Result<Vec<u8>> {
    let to_u16 = quantizer(values, scale);
    let img = image::ImageBuffer::<image::Luma<u16>, _>::from_raw(
        width,
        height,
        values.iter().map(|&v| to_u16(v)).collect::<Vec<u16>>(),
    )
    .ok_or_else(|| io::Error::other(format!("{} values for a {width}×{height} image", values.len())))?;
    let mut buf = io::Cursor::new(Vec::new());
    img.write_to(&mut buf, image::ImageFormat::Png).map_err(io::Error::other)?;
    Ok(buf.into_inner())
}

/// The 16-bit sample of a value under `scale` (for `MinMax`, over the finite range of
/// `values`); non-finite values are 0. What [`encode`] stores, for writers that stream rows.
pub fn quantizer(values: &[f32], scale: Png16Scale) -> impl Fn(f32) -> u16 + Send + Sync + use<> {
    let finite = values.iter().copied().filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    move |v: f32| -> u16 {
        if !v.is_finite() {
            return 0;
        }
        let x = match scale {
            Png16Scale::MinMax if hi > lo => ((v - lo) / (hi - lo)).clamp(0.0, 1.0) as f64 * 65535.0,
            Png16Scale::MinMax => 0.0,
            Png16Scale::Factor(f) => v as f64 * f,
        };
        x.round().clamp(0.0, 65535.0) as u16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png16_min_max_and_factor() {
        let v = [0.0f32, 1.0, 2.0, 3.0, f32::NAN, 5.5];
        let decode = |bytes: Vec<u8>| image::load_from_memory(&bytes).unwrap().into_luma16();
        let img = decode(encode(&v, 3, 2, Png16Scale::MinMax).unwrap());
        assert_eq!(img.get_pixel(0, 0).0[0], 0);
        assert_eq!(img.get_pixel(2, 1).0[0], 65535);
        assert_eq!(img.get_pixel(1, 1).0[0], 0, "NaN is 0");
        let kitti = decode(encode(&v, 3, 2, Png16Scale::Factor(256.0)).unwrap());
        assert_eq!(kitti.get_pixel(1, 0).0[0], 256);
        assert_eq!(kitti.get_pixel(2, 1).0[0], 1408);
        assert!(encode(&v, 4, 2, Png16Scale::MinMax).is_err());
    }
}
