//! Virtual KITTI 2: `SceneXX/<variation>/frames/rgb/Camera_N/rgb_XXXXX.jpg` with depth at
//! `.../frames/depth/Camera_N/depth_XXXXX.png` (all archives extracted into one root).
//!
//! Depth is a 16-bit PNG in centimetres (metres = value / 100); 65535 (655.35 m) marks the sky and
//! is invalid, as is 0 (the dataset's README). Intrinsics come from `<variation>/intrinsic.txt`
//! (`frame cameraID K[0,0] K[1,1] K[0,2] K[1,2]` per row) when that file is present.

use super::png16::read_png16_depth;
use super::{PairItem, Pairs, file_name, walk_files};
use crate::error::Result;
use crate::sample::{Intrinsics, Target};
use depth_core::CoreError;
use std::collections::HashMap;
use std::path::Path;

/// Reads a Virtual KITTI 2 depth PNG (centimetres; 65535 = sky, invalid).
pub fn read_vkitti2_depth(path: &Path) -> Result<Target> {
    read_png16_depth(path, 100.0, &[65535])
}

/// Parses `intrinsic.txt` into (frame, camera) → intrinsics.
pub fn read_intrinsics(path: &Path) -> Result<HashMap<(u32, u32), Intrinsics>> {
    let text = depth_core::read::text(path)?;
    let mut out = HashMap::new();
    for line in text.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let v: Vec<f64> = line.split_whitespace().filter_map(|t| t.parse().ok()).collect();
        let [frame, cam, fx, fy, cx, cy] = v[..] else {
            return Err(CoreError::format(path, "VKITTI2 intrinsic.txt", format!("bad row {line:?}")).into());
        };
        out.insert((frame as u32, cam as u32), Intrinsics { fx, fy, cx, cy });
    }
    Ok(out)
}

/// Every RGB frame under `root` that has a depth PNG.
pub fn vkitti2(root: &Path) -> Result<Pairs> {
    let is_rgb = |p: &Path| {
        let n = file_name(p);
        n.starts_with("rgb_") && n.ends_with(".jpg")
    };
    let mut cache: HashMap<std::path::PathBuf, HashMap<(u32, u32), Intrinsics>> = HashMap::new();
    let mut items = Vec::new();
    for image in walk_files(root, &is_rgb)? {
        let (Some(cam_dir), Some(frame)) = (image.parent(), file_name(&image)[4..].strip_suffix(".jpg"))
        else {
            continue;
        };
        let Some(frames) = cam_dir.parent().filter(|d| file_name(d) == "rgb").and_then(Path::parent) else {
            continue;
        };
        let target = frames.join("depth").join(file_name(cam_dir)).join(format!("depth_{frame}.png"));
        if !target.is_file() {
            continue;
        }
        let intrinsics = match frames.parent() {
            Some(variation) if variation.join("intrinsic.txt").is_file() => {
                if !cache.contains_key(variation) {
                    cache.insert(variation.into(), read_intrinsics(&variation.join("intrinsic.txt"))?);
                }
                let cam = file_name(cam_dir).strip_prefix("Camera_").and_then(|c| c.parse().ok());
                match (frame.parse::<u32>().ok(), cam) {
                    (Some(f), Some(c)) => cache[variation].get(&(f, c)).copied(),
                    _ => None,
                }
            }
            _ => None,
        };
        items.push(PairItem { image, target, intrinsics });
    }
    Ok(Pairs::new("vkitti2", items, |p, _| read_vkitti2_depth(p)))
}
