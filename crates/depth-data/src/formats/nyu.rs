//! NYU-Depth-V2, in two layouts.
//!
//! (a) BTS `sync` layout: split lines "scene/rgb_XXXXX.jpg scene/sync_depth_XXXXX.png focal" (a
//! leading `/` is allowed), paths under one root; depth is a 16-bit PNG in millimetres
//! (metres = value / 1000), 0 = no measurement (BTS's data preparation). The shared fixture's
//! `test_annotations.json` (see [`super::annotations`]) is the same data with per-file intrinsics.
//!
//! (b) The official labeled file `nyu_depth_v2_labeled.mat`: MATLAB v7.3, i.e. HDF5 behind a
//! 512-byte user block. MATLAB stores column-major, so the HDF5 shapes are the MATLAB ones
//! reversed: `images` is N×3×W×H uint8 and `depths` N×W×H float metres (in-painted, so dense;
//! non-finite or ≤ 0 would be invalid). Intrinsics are the standard NYU ones (the toolbox's
//! `camera_params.m`, RGB camera).

use super::Pairs;
use super::annotations::read_annotations;
use super::png16::read_png16_depth;
use crate::dataset::Dataset;
use crate::error::Result;
use crate::sample::{Intrinsics, Sample, Target};
use depth_core::CoreError;
use std::path::{Path, PathBuf};

/// The standard NYU-Depth-V2 RGB intrinsics (640×480).
pub const NYU_INTRINSICS: Intrinsics = Intrinsics { fx: 518.8579, fy: 519.4696, cx: 325.5824, cy: 253.7362 };

/// Reads a BTS `sync_depth` PNG (millimetres, 0 invalid).
pub fn read_nyu_depth(path: &Path) -> Result<Target> {
    read_png16_depth(path, 1000.0, &[])
}

/// NYU from a BTS split file; every item gets [`NYU_INTRINSICS`].
pub fn nyu_bts_split(split_file: &Path, root: &Path) -> Result<Pairs> {
    Pairs::from_split("nyu", split_file, &[root], Some(NYU_INTRINSICS), |p, _| read_nyu_depth(p))
}

/// The shared fixture layout (`test_annotations.json`).
pub fn nyu_annotations(json: &Path) -> Result<Pairs> {
    read_annotations(json, "nyu")
}

/// The frames of `nyu_depth_v2_labeled.mat`; each load reads one frame.
#[derive(Clone, Debug)]
pub struct NyuLabeled {
    path: PathBuf,
    len: usize,
    width: usize,
    height: usize,
}

impl NyuLabeled {
    /// Opens the file and checks the two datasets' shapes.
    pub fn open(path: &Path) -> Result<Self> {
        imp::open(path)
    }

    /// The frames' (width, height), 640×480 in the official file.
    pub fn size(&self) -> (usize, usize) {
        (self.width, self.height)
    }
}

impl Dataset for NyuLabeled {
    fn name(&self) -> &str {
        "nyu_labeled"
    }

    fn len(&self) -> usize {
        self.len
    }

    fn id(&self, index: usize) -> String {
        format!("{}#{index}", self.path.display())
    }

    fn load(&self, index: usize) -> Result<Sample> {
        if index >= self.len {
            return Err(
                CoreError::bad_input("nyu_labeled index", format!("{index} ≥ {} frames", self.len)).into()
            );
        }
        imp::load(self, index)
    }
}

#[cfg(feature = "hdf5")]
mod imp {
    use super::*;
    const FMT: &str = "NYU labeled .mat (HDF5)";

    pub fn open(path: &Path) -> Result<NyuLabeled> {
        let err = |e: hdf5::Error| CoreError::format(path, FMT, e);
        let file = hdf5::File::open(path).map_err(err)?;
        let images = file.dataset("images").map_err(err)?.shape();
        let depths = file.dataset("depths").map_err(err)?.shape();
        match (&images[..], &depths[..]) {
            (&[n, 3, w, h], &[n2, w2, h2]) if (n, w, h) == (n2, w2, h2) && w > 0 && h > 0 => {
                Ok(NyuLabeled { path: path.into(), len: n, width: w, height: h })
            }
            _ => Err(CoreError::format(
                path,
                FMT,
                format!("images {images:?} / depths {depths:?}: expected N×3×W×H and N×W×H"),
            )
            .into()),
        }
    }

    pub fn load(d: &NyuLabeled, i: usize) -> Result<Sample> {
        let err = |e: hdf5::Error| CoreError::format(&d.path, FMT, e);
        let file = hdf5::File::open(&d.path).map_err(err)?;
        let images = file.dataset("images").map_err(err)?;
        let (w, h) = (d.width, d.height);
        let mut rgb = vec![0u8; w * h * 3];
        for c in 0..3 {
            // W×H, column-major from MATLAB: element [x, y] is the pixel at column x, row y
            let plane = images.read_slice_2d::<u8, _>((i, c, .., ..)).map_err(err)?;
            for ((x, y), &v) in plane.indexed_iter() {
                rgb[(y * w + x) * 3 + c] = v;
            }
        }
        let plane = file.dataset("depths").map_err(err)?.read_slice_2d::<f32, _>((i, .., ..)).map_err(err)?;
        let depth = plane.t().iter().copied().collect();
        let image = image::RgbImage::from_raw(w as u32, h as u32, rgb).expect("buffer size");
        Ok(Sample {
            id: d.id(i),
            image,
            target: Some(Target::depth(w as u32, h as u32, depth)),
            intrinsics: Some(NYU_INTRINSICS),
        })
    }
}

#[cfg(not(feature = "hdf5"))]
mod imp {
    use super::*;

    pub fn open(path: &Path) -> Result<NyuLabeled> {
        Err(DataError::NoHdf5 { path: path.into() })
    }

    pub fn load(d: &NyuLabeled, _: usize) -> Result<Sample> {
        Err(DataError::NoHdf5 { path: d.path.clone() })
    }
}
