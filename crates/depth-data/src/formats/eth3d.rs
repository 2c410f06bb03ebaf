//! ETH3D high-resolution multi-view ground-truth depth: `<scene>/ground_truth_depth/<sub>/NAME`
//! is a headerless little-endian float32 array of the image's width×height, row-major, planar
//! depth in metres; pixels without ground truth hold +inf (ETH3D's data format page). Here inf,
//! NaN and values ≤ 0 are invalid. The size comes from the matching image, looked for at
//! `<scene>/images/<sub>/NAME`, then `<scene>/images/dslr_images_undistorted/NAME`, then
//! `<scene>/images/dslr_images/NAME`; a file of any other size is an error.

use super::{PairItem, Pairs, file_name, le_f32s, read_bytes, walk_files};
use crate::error::Result;
use crate::sample::Target;
use depth_core::CoreError;
use std::path::Path;

/// Reads a raw ETH3D depth file for an image of `width`×`height`.
pub fn read_eth3d_depth(path: &Path, width: u32, height: u32) -> Result<Target> {
    let bytes = read_bytes(path)?;
    let expected = width as u64 * height as u64 * 4;
    if bytes.len() as u64 != expected {
        let reason = format!(
            "{} bytes, but the image is {width}×{height} (expected {expected} bytes of float32)",
            bytes.len()
        );
        return Err(CoreError::format(path, "ETH3D raw depth", reason).into());
    }
    Ok(Target::depth(width, height, le_f32s(&bytes)))
}

/// Every ground-truth depth file under `root` (a scene or a folder of scenes) with its image.
pub fn eth3d(root: &Path) -> Result<Pairs> {
    let in_gt = |p: &Path| p.ancestors().nth(2).is_some_and(|d| file_name(d) == "ground_truth_depth");
    let mut items = Vec::new();
    for target in walk_files(root, &in_gt)? {
        let (Some(sub), Some(scene)) = (target.parent(), target.ancestors().nth(3)) else { continue };
        let name = file_name(&target);
        let image = [file_name(sub), "dslr_images_undistorted", "dslr_images"]
            .iter()
            .map(|s| scene.join("images").join(s).join(name))
            .find(|p| p.is_file());
        if let Some(image) = image {
            items.push(PairItem { image, target, intrinsics: None });
        }
    }
    Ok(Pairs::new("eth3d", items, |p, (w, h)| read_eth3d_depth(p, w, h)))
}
