//! MPI Sintel depth (the Sintel depth/camera-motion release and its SDK's I/O description).
//!
//! `.dpt`: little-endian float32 tag 202021.25, int32 width, int32 height, then width·height
//! float32 depth values, row-major: planar z-depth in the scene's units (not guaranteed metres).
//! There is no invalid marker in the format; non-finite or ≤ 0 values are treated as invalid.
//! `.cam`: the same tag, then a 3×3 float64 intrinsic matrix K and a 3×4 float64 extrinsic
//! [R|t], row-major. Layout: `training/<pass>/<scene>/frame_NNNN.png` with
//! `training/depth/<scene>/frame_NNNN.dpt` and `training/camdata_left/<scene>/frame_NNNN.cam`.

use super::{PairItem, Pairs, file_name, le_f32s, read_bytes, walk_files};
use crate::error::Result;
use crate::sample::{Intrinsics, Target};
use depth_core::CoreError;
use std::path::Path;

/// The tag both file types start with.
pub const SINTEL_TAG: f32 = 202021.25;

fn check_tag(path: &Path, bytes: &[u8], format: &'static str) -> Result<()> {
    match bytes.get(..4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])) {
        Some(t) if t == SINTEL_TAG => Ok(()),
        Some(t) => Err(CoreError::format(
            path,
            format,
            format!("tag {t} is not {SINTEL_TAG} (wrong file or endianness)"),
        )
        .into()),
        None => Err(CoreError::format(path, format, "file shorter than its 4-byte tag").into()),
    }
}

/// Reads a `.dpt` depth file.
pub fn read_dpt(path: &Path) -> Result<Target> {
    const FMT: &str = "Sintel .dpt";
    let bytes = read_bytes(path)?;
    check_tag(path, &bytes, FMT)?;
    if bytes.len() < 12 {
        return Err(CoreError::format(path, FMT, "truncated header").into());
    }
    let dim = |o: usize| i32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
    let (w, h) = (dim(4), dim(8));
    if !(1..=100_000).contains(&w) || !(1..=100_000).contains(&h) {
        return Err(CoreError::format(path, FMT, format!("implausible size {w}×{h}")).into());
    }
    let expected = 12 + 4 * w as usize * h as usize;
    if bytes.len() != expected {
        let reason =
            format!("{} bytes for {w}×{h} (expected {expected}): truncated or not a .dpt", bytes.len());
        return Err(CoreError::format(path, FMT, reason).into());
    }
    Ok(Target::depth(w as u32, h as u32, le_f32s(&bytes[12..])))
}

/// Reads a `.cam` file's intrinsics (from K).
pub fn read_cam(path: &Path) -> Result<Intrinsics> {
    const FMT: &str = "Sintel .cam";
    let bytes = read_bytes(path)?;
    check_tag(path, &bytes, FMT)?;
    if bytes.len() != 4 + 8 * (9 + 12) {
        return Err(CoreError::format(path, FMT, format!("{} bytes, expected 172", bytes.len())).into());
    }
    let k: Vec<f64> =
        bytes[4..76].chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect();
    if !k.iter().all(|v| v.is_finite()) || k[0] <= 0.0 || k[4] <= 0.0 {
        return Err(CoreError::format(path, FMT, format!("bad intrinsic matrix {k:?}")).into());
    }
    Ok(Intrinsics { fx: k[0], fy: k[4], cx: k[2], cy: k[5] })
}

/// The frames of `training_root/<pass>` (e.g. "final" or "clean") that have a `.dpt`; intrinsics
/// are read from the `.cam` files when present (here, at construction).
pub fn sintel(training_root: &Path, pass: &str) -> Result<Pairs> {
    let mut items = Vec::new();
    for image in walk_files(&training_root.join(pass), &|p| file_name(p).ends_with(".png"))? {
        let (Some(scene), Some(stem)) =
            (image.parent().map(file_name), file_name(&image).strip_suffix(".png"))
        else {
            continue;
        };
        let target = training_root.join("depth").join(scene).join(format!("{stem}.dpt"));
        if !target.is_file() {
            continue;
        }
        let cam = training_root.join("camdata_left").join(scene).join(format!("{stem}.cam"));
        let intrinsics = if cam.is_file() { Some(read_cam(&cam)?) } else { None };
        items.push(PairItem { image, target, intrinsics });
    }
    Ok(Pairs::new("sintel", items, |p, _| read_dpt(p)))
}
