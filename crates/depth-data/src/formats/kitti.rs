//! KITTI: (a) the depth benchmark / Eigen split with annotated depth, and (b) depth projected from
//! the raw Velodyne scans.
//!
//! (a) Images are 8-bit PNGs; ground truth is a 16-bit PNG, metres = value / 256, 0 = no point
//! (KITTI depth devkit `readme.txt`). Split files follow BTS: "image_rel depth_rel focal", images
//! under the raw-data root, depth under the depth-benchmark root; lines whose depth is "None" are
//! skipped (frames without ground truth).
//!
//! (b) Raw LiDAR, with the semantics of monodepth2's `generate_depth_map` (the Eigen-split
//! evaluation ground truth): a `.bin` scan is float32 (x, y, z, reflectance) per point in Velodyne
//! coordinates (x forward); `calib_velo_to_cam.txt` gives R (3×3) and T (3), `calib_cam_to_cam.txt`
//! gives R_rect_00 and P_rect_0{cam}. Points with x < 0 are dropped, the rest projected by
//! P_rect · R_rect · [R|T]; the pixel is (round(u) − 1, round(v) − 1) with NumPy's round-half-to-
//! even, kept when inside the image; the depth is the projected z (metres); where several points
//! land on one pixel the closest is kept. Points with z ≤ 0 are dropped (monodepth2 would zero such
//! a pixel). Pixels without a point are invalid (0). monodepth2 takes the image size from
//! `S_rect_0{cam}`; here it is the size of the image the depth is paired with.

use super::annotations::read_annotations;
use super::png16::read_png16_depth;
use super::{PairItem, Pairs, file_name, walk_files};
use crate::error::Result;
use crate::sample::{Intrinsics, Target};
use depth_core::CoreError;
use std::collections::HashMap;
use std::path::Path;

/// Reads a KITTI depth-benchmark ground-truth PNG (metres = value / 256, 0 invalid).
pub fn read_kitti_depth(path: &Path) -> Result<Target> {
    read_png16_depth(path, 256.0, &[])
}

/// The KITTI depth benchmark from a BTS-style split file (intrinsics are not attached: the split
/// gives only the focal length).
pub fn kitti_depth_split(split_file: &Path, image_root: &Path, depth_root: &Path) -> Result<Pairs> {
    Pairs::from_split("kitti", split_file, &[image_root, depth_root], None, |p, _| read_kitti_depth(p))
}

/// The shared fixture layout (`test_annotations.json`, see [`super::annotations`]).
pub fn kitti_annotations(json: &Path) -> Result<Pairs> {
    read_annotations(json, "kitti")
}

/// Parses a KITTI calibration file: "key: numbers" per line; lines whose values are not all
/// numbers (e.g. `calib_time`) are skipped.
pub fn read_calib_file(path: &Path) -> Result<HashMap<String, Vec<f64>>> {
    let text = depth_core::read::text(path)?;
    let mut out = HashMap::new();
    for line in text.lines() {
        let Some((key, values)) = line.split_once(':') else { continue };
        if let Ok(v) =
            values.split_whitespace().map(str::parse::<f64>).collect::<std::result::Result<Vec<_>, _>>()
        {
            out.insert(key.trim().to_string(), v);
        }
    }
    Ok(out)
}

fn calib_value<'a>(
    calib: &'a HashMap<String, Vec<f64>>,
    path: &Path,
    key: &str,
    n: usize,
) -> Result<&'a [f64]> {
    match calib.get(key) {
        Some(v) if v.len() == n && v.iter().all(|x| x.is_finite()) => Ok(v),
        Some(v) => Err(CoreError::format(
            path,
            "KITTI calib",
            format!("{key} has {} values, expected {n} finite numbers", v.len()),
        )
        .into()),
        None => Err(CoreError::format(path, "KITTI calib", format!("no {key}")).into()),
    }
}

/// The 3×4 Velodyne → image projection P_rect_0{cam} · R_rect_00 · [R|T] from a date folder's
/// `calib_cam_to_cam.txt` and `calib_velo_to_cam.txt`.
pub fn velo_to_image(calib_dir: &Path, cam: u8) -> Result<[[f64; 4]; 3]> {
    let c2c_path = calib_dir.join("calib_cam_to_cam.txt");
    let v2c_path = calib_dir.join("calib_velo_to_cam.txt");
    let c2c = read_calib_file(&c2c_path)?;
    let v2c = read_calib_file(&v2c_path)?;
    let p = calib_value(&c2c, &c2c_path, &format!("P_rect_0{cam}"), 12)?;
    let r_rect = calib_value(&c2c, &c2c_path, "R_rect_00", 9)?;
    let r = calib_value(&v2c, &v2c_path, "R", 9)?;
    let t = calib_value(&v2c, &v2c_path, "T", 3)?;
    // rect_velo = R_rect · [R|T] (3×4), then P · [rect_velo; 0 0 0 1]
    let mut rv = [[0.0; 4]; 3];
    for i in 0..3 {
        for j in 0..4 {
            rv[i][j] = (0..3).map(|k| r_rect[i * 3 + k] * if j < 3 { r[k * 3 + j] } else { t[k] }).sum();
        }
    }
    let mut out = [[0.0; 4]; 3];
    for i in 0..3 {
        for j in 0..4 {
            let hom = if j == 3 { p[i * 4 + 3] } else { 0.0 };
            out[i][j] = (0..3).map(|k| p[i * 4 + k] * rv[k][j]).sum::<f64>() + hom;
        }
    }
    Ok(out)
}

/// Reads a Velodyne scan: float32 (x, y, z, reflectance) per point.
pub fn read_velodyne(path: &Path) -> Result<Vec<[f32; 4]>> {
    let bytes = super::read_bytes(path)?;
    if bytes.len() % 16 != 0 {
        let reason = format!("{} bytes is not a multiple of 16 (4 float32 per point)", bytes.len());
        return Err(CoreError::format(path, "KITTI velodyne", reason).into());
    }
    let v = super::le_f32s(&bytes);
    Ok(v.chunks_exact(4).map(|c| [c[0], c[1], c[2], c[3]]).collect())
}

/// Projects Velodyne points into a `width`×`height` depth map (see the module doc).
pub fn project_velodyne(points: &[[f32; 4]], p_velo2im: &[[f64; 4]; 3], width: u32, height: u32) -> Target {
    let mut depth = vec![f32::INFINITY; width as usize * height as usize];
    for pt in points.iter().filter(|p| p[0] >= 0.0) {
        let [u, v, z] =
            p_velo2im.map(|r| r[0] * pt[0] as f64 + r[1] * pt[1] as f64 + r[2] * pt[2] as f64 + r[3]);
        if z.is_nan() || z <= 0.0 {
            continue;
        }
        let (x, y) = ((u / z).round_ties_even() - 1.0, (v / z).round_ties_even() - 1.0);
        if x >= 0.0 && y >= 0.0 && x < width as f64 && y < height as f64 {
            let d = &mut depth[y as usize * width as usize + x as usize];
            *d = d.min(z as f32);
        }
    }
    Target::depth(width, height, depth)
}

/// Depth from a raw scan for camera `cam` (2 or 3) at the given image size; the calibration
/// files are in `calib_dir` (the date folder, e.g. `2011_09_26`).
pub fn read_velodyne_depth(
    calib_dir: &Path,
    velo: &Path,
    cam: u8,
    width: u32,
    height: u32,
) -> Result<Target> {
    Ok(project_velodyne(&read_velodyne(velo)?, &velo_to_image(calib_dir, cam)?, width, height))
}

/// A raw KITTI drive (`<date>/<date>_drive_XXXX_sync`): the images of `image_0{cam}/data` paired
/// with the scans of `velodyne_points/data`, depth projected as above; frames without a scan are
/// left out. Intrinsics are those of P_rect_0{cam}.
pub fn kitti_raw(drive_dir: &Path, cam: u8) -> Result<Pairs> {
    if cam != 2 && cam != 3 {
        return Err(CoreError::bad_input("kitti camera", format!("{cam} is not 2 or 3")).into());
    }
    let calib_dir = drive_dir.parent().unwrap_or(Path::new(".")).to_path_buf();
    let p = velo_to_image(&calib_dir, cam)?;
    let c2c_path = calib_dir.join("calib_cam_to_cam.txt");
    let k = calib_value(&read_calib_file(&c2c_path)?, &c2c_path, &format!("P_rect_0{cam}"), 12)?.to_vec();
    let intrinsics = Some(Intrinsics { fx: k[0], fy: k[5], cx: k[2], cy: k[6] });
    let images =
        walk_files(&drive_dir.join(format!("image_0{cam}/data")), &|p| file_name(p).ends_with(".png"))?;
    let items = images
        .into_iter()
        .filter_map(|image| {
            let target =
                drive_dir.join("velodyne_points/data").join(image.with_extension("bin").file_name()?);
            target.is_file().then_some(PairItem { image, target, intrinsics })
        })
        .collect();
    Ok(Pairs::new("kitti_raw", items, move |velo, (w, h)| {
        Ok(project_velodyne(&read_velodyne(velo)?, &p, w, h))
    }))
}
