//! Raw depth files: `.npy` and `.pfm` hold the float32 depth at the original resolution;
//! `.png` (16-bit) holds it min–max normalised to 0…65535.

use depth_models::DepthMap;
use std::io::{self, Write};

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
