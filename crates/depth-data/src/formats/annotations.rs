//! `test_annotations.json`: the demo/test list layout of the shared NYU and KITTI fixtures
//! (the layout Metric3D's demo data uses):
//! `{"files": [{"cam_in": [fx, fy, cx, cy], "rgb": "...", "depth": "...", "depth_scale": s}]}`.
//!
//! Depth files are 16-bit PNGs, metres = value / depth_scale, 0 = invalid (see [`super::png16`]).
//! The paths in the file begin with the original repository's folder (`data/nyu_demo/...`), which
//! does not exist here: each path is resolved relative to the JSON file's folder by its LAST TWO
//! components (`rgb/rgb_00000.jpg`, `depth/sync_depth_00000.png`). Every entry must use the same
//! `depth_scale`.

use super::png16::read_png16_depth;
use super::{PairItem, Pairs};
use crate::error::{DataError, Result};
use crate::sample::Intrinsics;
use depth_core::CoreError;
use std::path::{Component, Path, PathBuf};

#[derive(serde::Deserialize)]
struct File {
    files: Vec<Entry>,
}

#[derive(serde::Deserialize)]
struct Entry {
    cam_in: [f64; 4],
    rgb: String,
    depth: String,
    depth_scale: f32,
}

/// Reads an annotations JSON into a [`Pairs`] dataset called `name`.
pub fn read_annotations(json: &Path, name: &str) -> Result<Pairs> {
    const FMT: &str = "test_annotations.json";
    let text = depth_core::read::text(json)?;
    let file: File = serde_json::from_str(&text).map_err(|e| CoreError::format(json, FMT, e))?;
    let dir = json.parent().unwrap_or(Path::new("."));
    let resolve = |p: &str| -> Result<PathBuf> {
        let parts: Vec<_> = Path::new(p).components().filter(|c| matches!(c, Component::Normal(_))).collect();
        let rel: PathBuf = parts[parts.len().saturating_sub(2)..].iter().collect();
        let path = dir.join(rel);
        if parts.is_empty() || !path.is_file() {
            return Err(DataError::MissingEntry { path, split: json.into() });
        }
        Ok(path)
    };
    let scale = file.files.first().map_or(1.0, |e| e.depth_scale);
    let mut items = Vec::with_capacity(file.files.len());
    for e in &file.files {
        if e.depth_scale != scale || !(scale.is_finite() && scale > 0.0) {
            let reason =
                format!("depth_scale {} (first entry: {scale}) must be one positive value", e.depth_scale);
            return Err(CoreError::format(json, FMT, reason).into());
        }
        let [fx, fy, cx, cy] = e.cam_in;
        let intrinsics = Some(Intrinsics { fx, fy, cx, cy });
        items.push(PairItem { image: resolve(&e.rgb)?, target: resolve(&e.depth)?, intrinsics });
    }
    Ok(Pairs::new(name, items, move |p, _| read_png16_depth(p, scale, &[])))
}
