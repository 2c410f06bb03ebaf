//! Hypersim: `<scene>/images/scene_cam_XX_geometry_hdf5/frame.IIII.depth_meters.hdf5` with the
//! image `<scene>/images/scene_cam_XX_final_preview/frame.IIII.tonemap.jpg`.
//!
//! The HDF5 dataset `dataset` (H×W, float16 or float32) holds, despite its name, the Euclidean
//! DISTANCE in metres from the camera centre, not planar depth (Hypersim README; apple/ml-hypersim
//! issue #9); NaN = no geometry (invalid). Planar depth = distance · f / ‖(x_c, y_c, f)‖ with the
//! pixel-centre coordinates x_c = x + 0.5 − W/2, y_c = y + 0.5 − H/2 and f = 886.81 px at
//! 1024×768, the conversion the Hypersim authors give in that issue. The cameras have a 60°
//! horizontal field of view, so f = (W/2)/tan(30°) here for other widths, and these intrinsics
//! [`HYPERSIM_INTRINSICS`] are attached; exact intrinsics vary slightly per scene (issue #75).

use super::{PairItem, Pairs, file_name, walk_files};
use crate::error::Result;
use crate::sample::{Intrinsics, Target};
use depth_core::CoreError;
use std::path::Path;

/// The nominal intrinsics of the 1024×768 images (all Hypersim images have that size).
pub const HYPERSIM_INTRINSICS: Intrinsics = Intrinsics { fx: 886.81, fy: 886.81, cx: 512.0, cy: 384.0 };

/// The focal length (pixels) of Hypersim's 60° horizontal field of view at image width `w`.
pub fn hypersim_focal(w: u32) -> f64 {
    w as f64 / 2.0 / (std::f64::consts::PI / 6.0).tan()
}

/// Converts Hypersim's distances (row-major `w`×`h`) to planar depth (see the module doc).
pub fn distance_to_planar(distance: &[f32], w: u32, h: u32) -> Target {
    let f = hypersim_focal(w);
    let depth = distance
        .iter()
        .enumerate()
        .map(|(i, &d)| {
            let xc = (i % w as usize) as f64 + 0.5 - w as f64 / 2.0;
            let yc = (i / w as usize) as f64 + 0.5 - h as f64 / 2.0;
            (d as f64 * f / (xc * xc + yc * yc + f * f).sqrt()) as f32
        })
        .collect();
    Target::depth(w, h, depth)
}

/// Reads a `depth_meters.hdf5` file as planar depth in metres.
#[cfg(feature = "hdf5")]
pub fn read_hypersim_depth(path: &Path) -> Result<Target> {
    const FMT: &str = "Hypersim depth_meters HDF5";
    let err = |e: hdf5::Error| CoreError::format(path, FMT, e);
    let ds = hdf5::File::open(path).map_err(err)?.dataset("dataset").map_err(err)?;
    let &[h, w] = &ds.shape()[..] else {
        return Err(CoreError::format(path, FMT, format!("dataset shape {:?} is not H×W", ds.shape())).into());
    };
    let dtype = ds.dtype().and_then(|t| t.to_descriptor()).map_err(err)?;
    if !matches!(dtype, hdf5::types::TypeDescriptor::Float(_)) {
        return Err(CoreError::format(path, FMT, format!("dataset type {dtype} is not float")).into());
    }
    let distance = ds.read_raw::<f32>().map_err(err)?;
    Ok(distance_to_planar(&distance, w as u32, h as u32))
}

/// Without HDF5 support: always [`crate::DataError::NoHdf5`].
#[cfg(not(feature = "hdf5"))]
pub fn read_hypersim_depth(path: &Path) -> Result<Target> {
    Err(crate::error::DataError::NoHdf5 { path: path.into() })
}

/// Every frame under `root` (a scene folder or a folder of scenes) with both files.
pub fn hypersim(root: &Path) -> Result<Pairs> {
    let is_depth = |p: &Path| file_name(p).ends_with(".depth_meters.hdf5");
    let mut items = Vec::new();
    for target in walk_files(root, &is_depth)? {
        let (Some(dir), Some(frame)) =
            (target.parent(), file_name(&target).strip_suffix(".depth_meters.hdf5"))
        else {
            continue;
        };
        let Some(cam) = file_name(dir).strip_suffix("_geometry_hdf5") else { continue };
        let image = dir.with_file_name(format!("{cam}_final_preview")).join(format!("{frame}.tonemap.jpg"));
        if image.is_file() {
            items.push(PairItem { image, target, intrinsics: Some(HYPERSIM_INTRINSICS) });
        }
    }
    Ok(Pairs::new("hypersim", items, |p, _| read_hypersim_depth(p)))
}
