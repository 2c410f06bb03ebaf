//! Middlebury 2014 stereo: `<scene>/im0.png`, `<scene>/disp0.pfm`, `<scene>/calib.txt`.
//!
//! `disp0.pfm` is a PFM ("Pf" header, width height, scale; a negative scale means little-endian
//! float32, positive big-endian; rows stored bottom-to-top): left-view disparity in pixels, +inf =
//! unknown (Middlebury 2014 format description). `calib.txt` has
//! `cam0=[f 0 cx; 0 f cy; 0 0 1]`, `doffs` (x-difference of the principal points) and `baseline`
//! in millimetres, so depth in metres = baseline · f / (d + doffs) / 1000. Non-finite disparities
//! and d + doffs ≤ 0 are invalid.
//!
//! The shared fixture stores the ×4-downsampled Motorcycle scene differently: `motorcycle_left.png`
//! and `motorcycle_disp.npz` ['arr_0'] (float32 disparity, inf unknown), with f = 994.978,
//! baseline 193.001 mm and doffs 31.086 (the scene's calibration divided by 4, per
//! shared/README.md); no principal point is given, so no intrinsics are attached.

use super::{PairItem, Pairs, read_bytes};
use crate::error::Result;
use crate::sample::{Intrinsics, Target};
use depth_core::CoreError;
use std::path::Path;

/// What the disparity → depth conversion needs, plus the left camera's intrinsics.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StereoCalib {
    pub f: f64,
    pub doffs: f64,
    pub baseline_mm: f64,
    pub intrinsics: Option<Intrinsics>,
}

/// The shared fixture's ×4-downsampled Motorcycle calibration.
pub const MOTORCYCLE_QUARTER: StereoCalib =
    StereoCalib { f: 994.978, doffs: 31.086, baseline_mm: 193.001, intrinsics: None };

/// Reads a single-channel PFM as (width, height, values top-to-bottom, row-major).
pub fn read_pfm(path: &Path) -> Result<(u32, u32, Vec<f32>)> {
    const FMT: &str = "PFM";
    let bytes = read_bytes(path)?;
    let bad = |reason: String| CoreError::format(path, FMT, reason);
    // four whitespace-separated header tokens, then exactly one whitespace byte before the data
    let mut tokens = Vec::new();
    let mut pos = 0;
    while tokens.len() < 4 {
        while pos < bytes.len() && bytes[pos].is_ascii_whitespace() {
            pos += 1;
        }
        let start = pos;
        while pos < bytes.len() && !bytes[pos].is_ascii_whitespace() && pos - start < 32 {
            pos += 1;
        }
        if start == pos {
            return Err(bad("truncated header".into()).into());
        }
        tokens.push(String::from_utf8_lossy(&bytes[start..pos]).into_owned());
    }
    match tokens[0].as_str() {
        "Pf" => {}
        "PF" => return Err(bad("3-channel PFM (PF); expected a single-channel disparity (Pf)".into()).into()),
        m => return Err(bad(format!("magic {m:?} is not Pf")).into()),
    }
    let dim = |t: &str| t.parse::<u32>().ok().filter(|v| (1..=100_000).contains(v));
    let (Some(w), Some(h)) = (dim(&tokens[1]), dim(&tokens[2])) else {
        return Err(bad(format!("bad size {:?} {:?}", tokens[1], tokens[2])).into());
    };
    let scale: f32 =
        tokens[3].parse().ok().filter(|s: &f32| s.is_finite() && *s != 0.0).ok_or_else(|| {
            bad(format!("bad scale {:?} (its sign gives the byte order; 0 is invalid)", tokens[3]))
        })?;
    let data = bytes.get(pos + 1..).unwrap_or(&[]);
    let n = w as usize * h as usize;
    if data.len() != 4 * n {
        return Err(bad(format!("{} data bytes for {w}×{h} (expected {})", data.len(), 4 * n)).into());
    }
    let decode = |c: &[u8]| {
        let b = [c[0], c[1], c[2], c[3]];
        if scale < 0.0 { f32::from_le_bytes(b) } else { f32::from_be_bytes(b) }
    };
    let rows: Vec<Vec<f32>> =
        data.chunks_exact(4 * w as usize).map(|r| r.chunks_exact(4).map(decode).collect()).collect();
    Ok((w, h, rows.into_iter().rev().flatten().collect()))
}

/// Parses `calib.txt`.
pub fn read_calib(path: &Path) -> Result<StereoCalib> {
    const FMT: &str = "Middlebury calib.txt";
    let text = depth_core::read::text(path)?;
    let get = |key: &str| {
        text.lines().find_map(|l| l.split_once('=').filter(|(k, _)| k.trim() == key).map(|(_, v)| v.trim()))
    };
    let num = |key: &str| -> Result<f64> {
        get(key)
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite())
            .ok_or_else(|| CoreError::format(path, FMT, format!("missing or bad {key}")).into())
    };
    let cam0: Vec<f64> = get("cam0")
        .unwrap_or("")
        .trim_matches(|c| c == '[' || c == ']')
        .split([' ', ';'])
        .filter(|t| !t.is_empty())
        .filter_map(|t| t.parse().ok())
        .collect();
    if cam0.len() != 9 || cam0[0] <= 0.0 || !cam0.iter().all(|v| v.is_finite()) {
        return Err(CoreError::format(path, FMT, format!("cam0 {cam0:?} is not a 3×3 matrix")).into());
    }
    let intrinsics = Intrinsics { fx: cam0[0], fy: cam0[4], cx: cam0[2], cy: cam0[5] };
    Ok(StereoCalib {
        f: cam0[0],
        doffs: num("doffs")?,
        baseline_mm: num("baseline")?,
        intrinsics: Some(intrinsics),
    })
}

/// Disparity (pixels) → depth in metres; non-finite disparity or d + doffs ≤ 0 is invalid.
pub fn disparity_to_depth(disp: &[f32], w: u32, h: u32, calib: &StereoCalib) -> Target {
    let depth = disp
        .iter()
        .map(|&d| {
            let z = calib.baseline_mm * calib.f / (d as f64 + calib.doffs) / 1000.0;
            if d.is_finite() && d as f64 + calib.doffs > 0.0 { z as f32 } else { 0.0 }
        })
        .collect();
    Target::depth(w, h, depth)
}

/// Reads `disp0.pfm` with the `calib.txt` beside it as depth in metres.
pub fn read_middlebury_depth(disp_pfm: &Path) -> Result<Target> {
    let calib = read_calib(&disp_pfm.with_file_name("calib.txt"))?;
    let (w, h, disp) = read_pfm(disp_pfm)?;
    Ok(disparity_to_depth(&disp, w, h, &calib))
}

/// Every scene folder under `root` (or `root` itself) with im0.png, disp0.pfm and calib.txt.
pub fn middlebury(root: &Path) -> Result<Pairs> {
    let mut dirs: Vec<_> = std::fs::read_dir(root)
        .map_err(|e| CoreError::io(root, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .chain([root.to_path_buf()])
        .filter(|d| ["im0.png", "disp0.pfm", "calib.txt"].iter().all(|f| d.join(f).is_file()))
        .collect();
    dirs.sort();
    let items = dirs
        .into_iter()
        .map(|d| {
            let intrinsics = read_calib(&d.join("calib.txt"))?.intrinsics;
            Ok(PairItem { image: d.join("im0.png"), target: d.join("disp0.pfm"), intrinsics })
        })
        .collect::<Result<_>>()?;
    Ok(Pairs::new("middlebury", items, |p, _| read_middlebury_depth(p)))
}

/// The largest `.npz` member read (a 4K float32 disparity map is 33 MB).
const MAX_NPZ_MEMBER: u64 = 1 << 30;

/// Reads a float32 disparity array `key` of an `.npz` (`np.savez`, compressed or not) as
/// (width, height, values); the member's claimed size is checked before it is inflated, and its
/// header is read by [`depth_core::npy::parse_f32`].
pub fn read_npz_disparity(path: &Path, key: &str) -> Result<(u32, u32, Vec<f32>)> {
    use std::io::Read;
    const FMT: &str = "npz";
    let bad = |e: String| CoreError::format(path, FMT, e);
    let file = depth_core::read::open(path)?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| bad(e.to_string()))?;
    let member = format!("{key}.npy");
    let entry = zip.by_name(&member).map_err(|_| bad(format!("no array {key:?}")))?;
    if entry.size() > MAX_NPZ_MEMBER {
        return Err(bad(format!("{member} claims {} bytes, more than {MAX_NPZ_MEMBER}", entry.size())).into());
    }
    let mut bytes = Vec::new();
    entry.take(MAX_NPZ_MEMBER).read_to_end(&mut bytes).map_err(|e| bad(format!("{member}: {e}")))?;
    let (shape, v) = depth_core::npy::parse_f32(&bytes).map_err(|e| bad(format!("{member}: {e}")))?;
    let &[h, w] = shape.as_slice() else {
        return Err(bad(format!("{key} has shape {shape:?}, expected H×W")).into());
    };
    if w == 0 || h == 0 || w > 100_000 || h > 100_000 {
        return Err(bad(format!("{key}: need an H×W array, got {h}×{w}")).into());
    }
    Ok((w as u32, h as u32, v))
}

/// The shared fixture's Motorcycle frame (`motorcycle_left.png`, `motorcycle_disp.npz`).
pub fn motorcycle_fixture(dir: &Path) -> Pairs {
    let item = PairItem {
        image: dir.join("motorcycle_left.png"),
        target: dir.join("motorcycle_disp.npz"),
        intrinsics: None,
    };
    Pairs::new("middlebury", vec![item], |p, _| {
        let (w, h, disp) = read_npz_disparity(p, "arr_0")?;
        Ok(disparity_to_depth(&disp, w, h, &MOTORCYCLE_QUARTER))
    })
}
