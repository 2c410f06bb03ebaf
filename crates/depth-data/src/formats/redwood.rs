//! Redwood RGB-D (the Redwood indoor / augmented ICL-NUIM layout): `color/NAME.jpg` (or `.png`)
//! with `depth/NAME.png`, a 16-bit PNG in millimetres (metres = value / 1000), 0 = no measurement
//! (the dataset's page; Open3D reads it with depth_scale 1000). The intrinsics differ between the
//! scanned and the synthetic sequences, so none are attached.

use super::png16::read_png16_depth;
use super::{PairItem, Pairs, file_name, walk_files};
use crate::error::Result;
use crate::sample::Target;
use std::path::Path;

/// Reads a Redwood depth PNG (millimetres, 0 invalid).
pub fn read_redwood_depth(path: &Path) -> Result<Target> {
    read_png16_depth(path, 1000.0, &[])
}

/// The frames of a sequence folder holding `color/` and `depth/`, paired by file stem.
pub fn redwood(root: &Path) -> Result<Pairs> {
    let is_color = |p: &Path| file_name(p).ends_with(".jpg") || file_name(p).ends_with(".png");
    let items = walk_files(&root.join("color"), &is_color)?
        .into_iter()
        .filter_map(|image| {
            let target = root.join("depth").join(image.with_extension("png").file_name()?);
            target.is_file().then_some(PairItem { image, target, intrinsics: None })
        })
        .collect();
    Ok(Pairs::new("redwood", items, |p, _| read_redwood_depth(p)))
}
