//! DIODE: `X.png` with `X_depth.npy` (H×W×1 float32, metres) and `X_depth_mask.npy` (H×W float,
//! 1 = valid laser return, 0 = invalid), as the DIODE devkit describes. A pixel is valid when its
//! mask is 1 and its depth finite and > 0. Intrinsics are the ones the DIODE paper gives for all
//! scans (fx 886.81, fy 927.06, cx 512, cy 384 at 1024×768).

use super::{PairItem, Pairs, file_name, walk_files};
use crate::error::Result;
use crate::sample::{Intrinsics, Target};
use depth_core::CoreError;
use depth_core::npy;
use std::path::{Path, PathBuf};

pub const DIODE_INTRINSICS: Intrinsics = Intrinsics { fx: 886.81, fy: 927.06, cx: 512.0, cy: 384.0 };

/// The mask file belonging to a `X_depth.npy`.
pub fn mask_path(depth: &Path) -> PathBuf {
    depth.with_file_name(file_name(depth).replace("_depth.npy", "_depth_mask.npy"))
}

/// Reads `X_depth.npy` and its `X_depth_mask.npy`.
pub fn read_diode_depth(depth_path: &Path) -> Result<Target> {
    const FMT: &str = "DIODE depth npy";
    let (shape, depth) = npy::read_f32(depth_path)?;
    let (h, w) = match shape[..] {
        [h, w] | [h, w, 1] => (h as u32, w as u32),
        _ => return Err(CoreError::format(depth_path, FMT, format!("shape {shape:?} is not H×W×1")).into()),
    };
    let mask_path = mask_path(depth_path);
    let (mask_shape, mask) = npy::read_f32(&mask_path)?;
    if mask_shape[..] != [h as u64, w as u64] && mask_shape[..] != [h as u64, w as u64, 1] {
        let reason = format!("mask shape {mask_shape:?} differs from depth {shape:?}");
        return Err(CoreError::format(&mask_path, FMT, reason).into());
    }
    let values = depth.iter().zip(&mask).map(|(&d, &m)| if m == 1.0 { d } else { 0.0 }).collect();
    Ok(Target::depth(w, h, values))
}

/// Every `X.png` under `root` (a split, a scene, ...) with `X_depth.npy` and its mask.
pub fn diode(root: &Path) -> Result<Pairs> {
    let items = walk_files(root, &|p| file_name(p).ends_with(".png"))?
        .into_iter()
        .filter_map(|image| {
            let target =
                image.with_file_name(format!("{}_depth.npy", file_name(&image).strip_suffix(".png")?));
            (target.is_file() && mask_path(&target).is_file()).then_some(PairItem {
                image,
                target,
                intrinsics: Some(DIODE_INTRINSICS),
            })
        })
        .collect();
    Ok(Pairs::new("diode", items, |p, _| read_diode_depth(p)))
}
