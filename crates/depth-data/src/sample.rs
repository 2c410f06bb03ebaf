//! What every reader returns: an 8-bit RGB image, an optional depth target with its validity
//! mask, and the pinhole intrinsics when the dataset knows them.

use crate::error::{DataError, Result};
use image::RgbImage;
use std::path::{Path, PathBuf};

/// Pinhole intrinsics in pixels, for the image as stored.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Intrinsics {
    pub fx: f64,
    pub fy: f64,
    pub cx: f64,
    pub cy: f64,
}

/// What a target's values mean.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// Planar depth (z along the optical axis) in metres.
    Depth,
    /// Relative inverse depth up to scale and shift, as Depth Anything predicts (pseudo-labels).
    Disparity,
}

impl std::str::FromStr for TargetKind {
    type Err = depth_core::CoreError;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "depth" => Ok(Self::Depth),
            "disparity" => Ok(Self::Disparity),
            _ => {
                Err(depth_core::CoreError::bad_input("target kind", format!("'{s}': use depth or disparity")))
            }
        }
    }
}

/// A dense target map, row-major. Invalid pixels hold 0 and are false in `valid`.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub width: u32,
    pub height: u32,
    pub kind: TargetKind,
    pub values: Vec<f32>,
    pub valid: Vec<bool>,
}

impl Target {
    /// A target from raw values: a pixel is valid when `keep(v)` holds and `v` is finite and > 0
    /// (depth) or finite (disparity); invalid values are replaced by 0.
    pub fn new(
        width: u32,
        height: u32,
        kind: TargetKind,
        mut values: Vec<f32>,
        keep: impl Fn(f32) -> bool,
    ) -> Self {
        assert_eq!(values.len(), width as usize * height as usize, "target size");
        let valid: Vec<bool> = values
            .iter()
            .map(|&v| {
                v.is_finite()
                    && keep(v)
                    && match kind {
                        TargetKind::Depth => v > 0.0,
                        TargetKind::Disparity => true,
                    }
            })
            .collect();
        values.iter_mut().zip(&valid).filter(|(_, ok)| !**ok).for_each(|(v, _)| *v = 0.0);
        Self { width, height, kind, values, valid }
    }

    /// Planar depth in metres from values with no extra validity rule.
    pub fn depth(width: u32, height: u32, values: Vec<f32>) -> Self {
        Self::new(width, height, TargetKind::Depth, values, |_| true)
    }

    pub fn valid_count(&self) -> usize {
        self.valid.iter().filter(|v| **v).count()
    }

    pub fn valid_fraction(&self) -> f64 {
        self.valid_count() as f64 / self.valid.len().max(1) as f64
    }

    /// (min, max) over valid pixels, or None when none is valid.
    pub fn valid_range(&self) -> Option<(f32, f32)> {
        self.values.iter().zip(&self.valid).filter(|(_, ok)| **ok).fold(None, |acc, (&v, _)| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
    }

    pub fn get(&self, x: u32, y: u32) -> f32 {
        self.values[(y * self.width + x) as usize]
    }
}

/// One dataset item.
#[derive(Clone, Debug)]
pub struct Sample {
    /// Where it came from (the image path, or a synthetic scene's id): used in every report.
    pub id: String,
    pub image: RgbImage,
    /// None for unlabeled images.
    pub target: Option<Target>,
    pub intrinsics: Option<Intrinsics>,
}

impl Sample {
    /// Checks that the target matches the image size and has at least one valid pixel.
    pub fn checked(self) -> Result<Self> {
        if let Some(t) = &self.target {
            let (w, h) = self.image.dimensions();
            if (t.width, t.height) != (w, h) {
                return Err(DataError::SizeMismatch {
                    path: PathBuf::from(&self.id),
                    image_w: w,
                    image_h: h,
                    depth_w: t.width,
                    depth_h: t.height,
                });
            }
            if t.valid_count() == 0 {
                return Err(DataError::NoValidDepth { path: PathBuf::from(&self.id) });
            }
        }
        Ok(self)
    }
}

/// Reads an image as the official pipeline does (`cv2.imread`, RGB).
pub fn read_rgb(path: &Path) -> Result<RgbImage> {
    Ok(depth_core::image_io::read_image(path)?)
}
