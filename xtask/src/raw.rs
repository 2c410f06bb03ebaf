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
            Self::Npy => write_npy(d, w),
            Self::Png16 => write_png16(d, w),
            Self::Pfm => write_pfm(d, w),
        }
    }
}

/// NumPy format 1.0, `<f4`, C order, shape (h, w).
fn write_npy(d: &DepthMap, w: &mut dyn Write) -> io::Result<()> {
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}", d.height, d.width);
    // magic (6) + version (2) + length (2) + header + '\n' is a multiple of 64
    let pad = 64 - (10 + header.len() + 1) % 64;
    header.push_str(&" ".repeat(pad % 64));
    header.push('\n');
    w.write_all(b"\x93NUMPY\x01\x00")?;
    w.write_all(&(header.len() as u16).to_le_bytes())?;
    w.write_all(header.as_bytes())?;
    d.data.iter().try_for_each(|v| w.write_all(&v.to_le_bytes()))
}

/// Greyscale PFM ("Pf"), little endian (negative scale), rows bottom to top.
fn write_pfm(d: &DepthMap, w: &mut dyn Write) -> io::Result<()> {
    write!(w, "Pf\n{} {}\n-1.0\n", d.width, d.height)?;
    for row in d.data.chunks(d.width as usize).rev() {
        row.iter().try_for_each(|v| w.write_all(&v.to_le_bytes()))?;
    }
    Ok(())
}

fn write_png16(d: &DepthMap, w: &mut dyn Write) -> io::Result<()> {
    w.write_all(&depth_eval::export::png16(
        &d.data,
        d.width,
        d.height,
        depth_eval::export::Png16Scale::MinMax,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> DepthMap {
        DepthMap { width: 3, height: 2, data: vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.5] }
    }

    #[test]
    fn npy_header_is_aligned_and_data_follows() {
        let mut out = Vec::new();
        RawFormat::Npy.write(&map(), &mut out).unwrap();
        let hlen = u16::from_le_bytes([out[8], out[9]]) as usize;
        assert_eq!((10 + hlen) % 64, 0);
        assert!(std::str::from_utf8(&out[10..10 + hlen]).unwrap().contains("'shape': (2, 3)"));
        let data: Vec<f32> =
            out[10 + hlen..].chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        assert_eq!(data, map().data);
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
