//! Reading images as the official pipeline does with `cv2.imread(path)`: JPEG through
//! libjpeg-turbo (bit-identical to OpenCV), other formats through `image`; EXIF orientation
//! applied, alpha dropped, grey replicated — always 8-bit RGB.

use crate::error::{ModelError, Result};
use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage, metadata::Orientation};
use std::io::Cursor;
use std::path::Path;

/// Decodes an image file to 8-bit RGB.
pub fn read_image(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).map_err(|source| ModelError::ImageIo { path: path.into(), source })?;
    decode_image(&bytes).map_err(|reason| ModelError::ImageDecode { path: path.into(), reason })
}

/// Decodes image bytes to 8-bit RGB (see [`read_image`]).
pub fn decode_image(bytes: &[u8]) -> std::result::Result<RgbImage, String> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        let rgb: RgbImage = turbojpeg::decompress_image(bytes).map_err(|e| e.to_string())?;
        let orientation = image::codecs::jpeg::JpegDecoder::new(Cursor::new(bytes))
            .and_then(|mut d| d.orientation())
            .unwrap_or(Orientation::NoTransforms);
        let mut img = DynamicImage::ImageRgb8(rgb);
        img.apply_orientation(orientation);
        return Ok(img.into_rgb8());
    }
    let reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| e.to_string())?;
    let mut decoder = reader.into_decoder().map_err(|e| e.to_string())?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| e.to_string())?;
    img.apply_orientation(orientation);
    Ok(img.into_rgb8())
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
}
