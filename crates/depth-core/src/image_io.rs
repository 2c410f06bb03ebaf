//! Reading images as the official pipeline does with `cv2.imread(path)`: JPEG through
//! libjpeg-turbo (bit-identical to OpenCV), other formats through `image`; EXIF orientation
//! applied, alpha dropped, grey replicated — always 8-bit RGB.

use crate::error::{CoreError, Result};
use candle_core::{Device, Tensor};
use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage, metadata::Orientation};
use std::io::Cursor;
use std::path::Path;

/// Why an image's bytes did not become a picture.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The header claims no pixels.
    #[error("the header claims {width}×{height} pixels")]
    Empty { width: u32, height: u32 },
    /// The header claims more pixels than the limit: refused before decoding.
    #[error(
        "the header claims {width}×{height} = {} pixels, more than the limit of {limit}{}; downscale the \
         image first if it is real",
        *.width as u64 * *.height as u64,
        if *.limit == MAX_IMAGE_PIXELS { " (PIL's decompression-bomb threshold)" } else { "" }
    )]
    TooLarge { width: u32, height: u32, limit: u64 },
    /// Not an image, or a damaged one.
    #[error("{0}")]
    Undecodable(String),
}

/// Decodes an image file to 8-bit RGB.
pub fn read_image(path: &Path) -> Result<RgbImage> {
    let bytes = crate::read::bytes(path, crate::read::IMAGE_LIMIT)?;
    decode_image(&bytes).map_err(|e| CoreError::ImageDecode { path: path.into(), reason: e.to_string() })
}

/// The most pixels an input image may have: PIL's decompression-bomb threshold
/// (`Image.MAX_IMAGE_PIXELS`, where PIL starts to warn; it refuses at twice that). A header
/// claiming more is refused before any pixel buffer is allocated: a 69-byte PNG can claim
/// 100000×100000 (30 GB of RGB).
pub const MAX_IMAGE_PIXELS: u64 = 89_478_485;

/// Refuses a claimed size that is empty or larger than [`MAX_IMAGE_PIXELS`] (every image reader
/// asks before decoding).
pub fn check_claimed_size(w: u32, h: u32) -> std::result::Result<(), ImageError> {
    check_claimed_size_within(w, h, MAX_IMAGE_PIXELS)
}

/// As [`check_claimed_size`] with another limit (a server takes less than a batch job).
pub fn check_claimed_size_within(w: u32, h: u32, max_pixels: u64) -> std::result::Result<(), ImageError> {
    match w as u64 * h as u64 {
        0 => Err(ImageError::Empty { width: w, height: h }),
        pixels if pixels > max_pixels => Err(ImageError::TooLarge { width: w, height: h, limit: max_pixels }),
        _ => Ok(()),
    }
}

/// Decodes image bytes to 8-bit RGB (see [`read_image`]). JPEG goes through libjpeg-turbo (as
/// OpenCV), the rest through the `image` crate; grey, 16-bit, palette and alpha images become
/// 8-bit RGB (alpha dropped), an animation its first frame; the EXIF orientation is applied.
pub fn decode_image(bytes: &[u8]) -> std::result::Result<RgbImage, ImageError> {
    decode_image_within(bytes, MAX_IMAGE_PIXELS)
}

/// As [`decode_image`], refusing images of more than `max_pixels` before decoding them.
pub fn decode_image_within(bytes: &[u8], max_pixels: u64) -> std::result::Result<RgbImage, ImageError> {
    let undecodable = |e: &dyn std::fmt::Display| ImageError::Undecodable(e.to_string());
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        let header = turbojpeg::read_header(bytes).map_err(|e| undecodable(&e))?;
        check_claimed_size_within(header.width as u32, header.height as u32, max_pixels)?;
        let rgb: RgbImage = match header.colorspace {
            turbojpeg::Colorspace::CMYK | turbojpeg::Colorspace::YCCK => cmyk_to_rgb(bytes)?,
            _ => turbojpeg::decompress_image(bytes).map_err(|e| undecodable(&e))?,
        };
        let orientation = image::codecs::jpeg::JpegDecoder::new(Cursor::new(bytes))
            .and_then(|mut d| d.orientation())
            .unwrap_or(Orientation::NoTransforms);
        let mut img = DynamicImage::ImageRgb8(rgb);
        img.apply_orientation(orientation);
        return Ok(img.into_rgb8());
    }
    let reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| undecodable(&e))?;
    if reader.format().is_none() {
        return Err(undecodable(&"not an image format this tool reads (JPEG, PNG, BMP, TIFF, WebP)"));
    }
    let mut decoder = reader.into_decoder().map_err(|e| undecodable(&e))?;
    let (w, h) = decoder.dimensions();
    check_claimed_size_within(w, h, max_pixels)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| undecodable(&e))?;
    img.apply_orientation(orientation);
    Ok(img.into_rgb8())
}

/// A CMYK or YCCK JPEG (print files, Photoshop exports) as `cv2.imread` gives it: libjpeg's
/// CMYK samples, then per channel `k − ((255 − c)·k >> 8)` (OpenCV's `icvCvt_CMYK2BGR_8u_C4C3R`).
fn cmyk_to_rgb(bytes: &[u8]) -> std::result::Result<RgbImage, ImageError> {
    let img = turbojpeg::decompress(bytes, turbojpeg::PixelFormat::CMYK)
        .map_err(|e| ImageError::Undecodable(e.to_string()))?;
    let (w, h) = (img.width, img.height);
    let mut rgb = Vec::with_capacity(w * h * 3);
    for row in img.pixels.chunks(img.pitch).take(h) {
        for px in row[..w * 4].chunks_exact(4) {
            let k = px[3] as u32;
            rgb.extend(px[..3].iter().map(|&c| (k - (((255 - c as u32) * k) >> 8)) as u8));
        }
    }
    RgbImage::from_raw(w as u32, h as u32, rgb)
        .ok_or_else(|| ImageError::Undecodable("CMYK decode size mismatch".into()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn junk_and_truncated_files_are_errors() {
        assert!(decode_image(b"hello").is_err());
        assert!(decode_image(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 16]).is_err());
        let mut png = Vec::new();
        DynamicImage::new_rgba8(4, 3).write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
        assert_eq!(decode_image(&png).unwrap().dimensions(), (4, 3));
        assert!(decode_image(&png[..png.len() / 2]).is_err());
    }

    #[test]
    fn decompression_bombs_are_refused_before_allocating() {
        // a valid 1×1 PNG whose IHDR (CRC fixed up) claims 100000×100000
        let mut png = Vec::new();
        DynamicImage::new_rgb8(1, 1).write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
        png[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        png[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let crc = crc32fast::hash(&png[12..29]);
        png[29..33].copy_from_slice(&crc.to_be_bytes());
        let err = decode_image(&png).unwrap_err();
        assert!(matches!(err, ImageError::TooLarge { width: 100_000, height: 100_000, .. }), "{err}");
        let err = err.to_string();
        assert!(err.contains("100000×100000") && err.contains("limit"), "{err}");
        // a JPEG whose SOF claims 65000×65000
        let mut jpeg = Vec::new();
        DynamicImage::new_rgb8(8, 8).write_to(&mut Cursor::new(&mut jpeg), image::ImageFormat::Jpeg).unwrap();
        let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        jpeg[sof + 5..sof + 7].copy_from_slice(&65_000u16.to_be_bytes());
        jpeg[sof + 7..sof + 9].copy_from_slice(&65_000u16.to_be_bytes());
        let err = decode_image(&jpeg).unwrap_err().to_string();
        assert!(err.contains("65000×65000") && err.contains("limit"), "{err}");
        // just under the limit in pixels but empty: refused too
        png[16..20].copy_from_slice(&0u32.to_be_bytes());
        assert!(decode_image(&png).is_err());
    }

    #[test]
    fn a_cmyk_jpeg_decodes_as_cv2_imread() {
        // a 16×12 CMYK JPEG written by PIL; cmyk_cv2.rgb is cv2.imread's result (BGR → RGB)
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
        let ours = decode_image(&std::fs::read(dir.join("cmyk.jpg")).unwrap()).unwrap();
        assert_eq!(ours.dimensions(), (16, 12));
        assert_eq!(ours.as_raw(), &std::fs::read(dir.join("cmyk_cv2.rgb")).unwrap());
    }

    #[test]
    fn every_colour_type_becomes_8_bit_rgb() {
        let (w, h) = (5u32, 3u32);
        let images = [
            DynamicImage::new_luma8(w, h),
            DynamicImage::new_luma16(w, h),
            DynamicImage::new_luma_a8(w, h),
            DynamicImage::new_rgba8(w, h),
            DynamicImage::new_rgb16(w, h),
            DynamicImage::new_rgba16(w, h),
        ];
        for img in images {
            let mut png = Vec::new();
            img.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
            assert_eq!(decode_image(&png).unwrap().dimensions(), (w, h), "{:?}", img.color());
        }
        let err = decode_image(b"hello, world").unwrap_err().to_string();
        assert!(err.contains("not an image format"), "{err}");
    }

    /// A JPEG of `img` carrying an EXIF APP1 segment with the given orientation tag.
    fn jpeg_with_orientation(img: &RgbImage, orientation: u16) -> Vec<u8> {
        let mut jpeg = Vec::new();
        DynamicImage::ImageRgb8(img.clone())
            .write_to(&mut Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
            .unwrap();
        // TIFF header (little endian), IFD0 with one entry: 0x0112 Orientation, SHORT, 1 value
        let mut tiff = b"II*\0\x08\0\0\0".to_vec();
        tiff.extend_from_slice(&1u16.to_le_bytes());
        tiff.extend_from_slice(&0x0112u16.to_le_bytes());
        tiff.extend_from_slice(&3u16.to_le_bytes());
        tiff.extend_from_slice(&1u32.to_le_bytes());
        tiff.extend_from_slice(&orientation.to_le_bytes());
        tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        let payload = [b"Exif\0\0".as_slice(), &tiff].concat();
        let mut out = jpeg[..2].to_vec();
        out.extend_from_slice(&[0xFF, 0xE1]);
        out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(&payload);
        out.extend_from_slice(&jpeg[2..]);
        out
    }

    #[test]
    fn exif_orientation_is_applied_like_cv2_imread() {
        // 32×16: left half red, right half blue
        let img =
            RgbImage::from_fn(
                32,
                16,
                |x, _| if x < 16 { image::Rgb([255, 0, 0]) } else { image::Rgb([0, 0, 255]) },
            );
        let plain = decode_image(&jpeg_with_orientation(&img, 1)).unwrap();
        assert_eq!(plain.dimensions(), (32, 16));
        // orientation 6: rotate 90° clockwise, the left half becomes the top half
        let rotated = decode_image(&jpeg_with_orientation(&img, 6)).unwrap();
        assert_eq!(rotated.dimensions(), (16, 32));
        let (top, bottom) = (rotated.get_pixel(8, 4).0, rotated.get_pixel(8, 28).0);
        assert!(top[0] > 200 && top[2] < 60, "top {top:?}");
        assert!(bottom[2] > 200 && bottom[0] < 60, "bottom {bottom:?}");
    }
}
