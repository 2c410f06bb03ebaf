//! PLY point clouds back-projected through pinhole intrinsics (16-bit PNG depth is
//! `depth_core::png16`).

use crate::error::Result;
use depth_core::CoreError;
use depth_data::Intrinsics;
use image::RgbImage;
use std::io::Write;

/// Back-projects planar depth through `k`: pixel (u, v) with depth z → ((u − cx)·z/fx,
/// (v − cy)·z/fy, z), pixel centres at integer coordinates as in OpenCV. Pixels that are not
/// `valid`, not finite or not positive are left out. Returns points and their pixel indices.
pub fn back_project(
    depth: &[f32],
    valid: Option<&[bool]>,
    width: u32,
    k: &Intrinsics,
) -> Vec<([f32; 3], usize)> {
    depth
        .iter()
        .enumerate()
        .filter(|&(i, &z)| valid.is_none_or(|m| m[i]) && z.is_finite() && z > 0.0)
        .map(|(i, &z)| {
            let (u, v) = ((i % width as usize) as f64, (i / width as usize) as f64);
            let z64 = z as f64;
            ([((u - k.cx) * z64 / k.fx) as f32, ((v - k.cy) * z64 / k.fy) as f32, z], i)
        })
        .collect()
}

/// A binary little-endian PLY of the back-projected points (float x, y, z), coloured from
/// `colors` (same size as the depth) when given.
pub fn write_ply(
    w: &mut dyn Write,
    depth: &[f32],
    valid: Option<&[bool]>,
    width: u32,
    k: &Intrinsics,
    colors: Option<&RgbImage>,
) -> Result<usize> {
    let height = (depth.len() / width.max(1) as usize) as u32;
    if let Some(c) = colors
        && c.dimensions() != (width, height)
    {
        return Err(CoreError::bad_input(
            "point cloud colours",
            format!("image is {}×{}, depth is {width}×{height}", c.width(), c.height()),
        )
        .into());
    }
    let points = back_project(depth, valid, width, k);
    let io = |e| CoreError::io("<ply stream>", e);
    let colour_props =
        if colors.is_some() { "property uchar red\nproperty uchar green\nproperty uchar blue\n" } else { "" };
    write!(
        w,
        "ply\nformat binary_little_endian 1.0\ncomment depth-eval point cloud (camera frame, metres)\n\
         element vertex {}\nproperty float x\nproperty float y\nproperty float z\n{colour_props}end_header\n",
        points.len()
    )
    .map_err(io)?;
    for (p, i) in &points {
        for c in p {
            w.write_all(&c.to_le_bytes()).map_err(io)?;
        }
        if let Some(img) = colors {
            let px = img.get_pixel(*i as u32 % width, *i as u32 / width);
            w.write_all(&px.0).map_err(io)?;
        }
    }
    Ok(points.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ply_points_lie_on_their_rays() {
        let k = Intrinsics { fx: 100.0, fy: 120.0, cx: 1.5, cy: 0.5 };
        let depth = [2.0f32, 2.0, 0.0, 4.0, 4.0, f32::NAN, 3.0, 1.0];
        let colors = RgbImage::from_fn(4, 2, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let mut out = Vec::new();
        let n = write_ply(&mut out, &depth, None, 4, &k, Some(&colors)).unwrap();
        assert_eq!(n, 6);
        let text = String::from_utf8_lossy(&out);
        let header_end = text.find("end_header\n").unwrap() + "end_header\n".len();
        assert!(text[..header_end].contains("element vertex 6"));
        let body = &out[header_end..];
        assert_eq!(body.len(), 6 * 15);
        let rec = |j: usize| {
            let r = &body[j * 15..(j + 1) * 15];
            let f = |o: usize| f32::from_le_bytes(r[o..o + 4].try_into().unwrap());
            ([f(0), f(4), f(8)], [r[12], r[13], r[14]])
        };
        // pixel (3, 0) with z = 4 → x = 1.5·4/100, y = −0.5·4/120; colour (3, 0, 7)
        let (p, c) = rec(2);
        assert_eq!(p, [0.06, (-0.5f64 * 4.0 / 120.0) as f32, 4.0]);
        assert_eq!(c, [3, 0, 7]);
        // projecting back gives the pixel
        for j in 0..6 {
            let (p, c) = rec(j);
            let u = p[0] as f64 / p[2] as f64 * k.fx + k.cx;
            let v = p[1] as f64 / p[2] as f64 * k.fy + k.cy;
            assert!((u - c[0] as f64).abs() < 1e-5 && (v - c[1] as f64).abs() < 1e-5);
        }
        let wrong = RgbImage::new(3, 2);
        assert!(write_ply(&mut Vec::new(), &depth, None, 4, &k, Some(&wrong)).is_err());
    }
}
