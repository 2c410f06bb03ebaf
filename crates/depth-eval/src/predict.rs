//! Where predictions come from: a Depth Anything V2 model run on each image, or a folder of
//! precomputed `.npy` maps (float32, same file stem as the image) written by any other model.

use crate::error::Result;
use candle_core::{Device, Tensor};
use depth_core::CoreError;
use depth_data::{Sample, TargetKind};
use depth_models::{DepthEstimator, DepthMap};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A dense prediction, row-major: relative disparity (larger is closer) or depth.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    pub width: u32,
    pub height: u32,
    pub kind: TargetKind,
    pub values: Vec<f32>,
}

/// A relative model's output: disparity.
impl From<DepthMap> for Prediction {
    fn from(d: DepthMap) -> Self {
        Prediction { width: d.width, height: d.height, kind: TargetKind::Disparity, values: d.data }
    }
}

impl Prediction {
    /// Bilinearly resized (align_corners = True, as the official metric evaluation) to
    /// `width`×`height`; unchanged when the size already matches.
    pub fn resized(self, width: u32, height: u32) -> Result<Prediction> {
        if (self.width, self.height) == (width, height) {
            return Ok(self);
        }
        let t =
            Tensor::from_vec(self.values, (1, 1, self.height as usize, self.width as usize), &Device::Cpu)?;
        let r = depth_core::bilinear_align_corners(&t, (height as usize, width as usize))?;
        Ok(Prediction { width, height, kind: self.kind, values: r.flatten_all()?.to_vec1()? })
    }
}

/// Something that predicts depth for a dataset item.
pub trait Predictor {
    /// The name in reports (a model or folder name).
    fn name(&self) -> &str;
    fn predict(&mut self, sample: &Sample) -> Result<Prediction>;
}

/// A borrowed predictor predicts as its owner (so a caller can keep it after a run).
impl<P: Predictor + ?Sized> Predictor for &mut P {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn predict(&mut self, sample: &Sample) -> Result<Prediction> {
        (**self).predict(sample)
    }
}

/// A Depth Anything V2 model: relative disparity at the image's size, as the official `infer_image`.
pub struct ModelPredictor {
    pub name: String,
    pub estimator: DepthEstimator,
}

impl Predictor for ModelPredictor {
    fn name(&self) -> &str {
        &self.name
    }

    fn predict(&mut self, sample: &Sample) -> Result<Prediction> {
        Ok(self.estimator.estimate(&sample.image)?.into())
    }
}

/// Precomputed maps, one `.npy` per image, shape (H, W) or (1, H, W): `<dir>/<tail>.npy` where
/// `<tail>` is the image's path without extension, or any tail of it down to the bare file stem
/// (`<dir>/<stem>.npy`). The longest that exists is taken, so images of the same name in
/// different folders (KITTI drives, Sintel scenes) can keep apart as `xtask infer` writes them;
/// one file claimed by two different images is an error, not a silent reuse.
pub struct PredDir {
    pub name: String,
    pub dir: PathBuf,
    pub kind: TargetKind,
    /// Which item each file was read for.
    claimed: HashMap<PathBuf, String>,
}

impl PredDir {
    pub fn new(dir: &Path, kind: TargetKind) -> Result<PredDir> {
        if !dir.is_dir() {
            return Err(CoreError::io(
                dir,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such folder"),
            )
            .into());
        }
        let name =
            dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "predictions".into());
        Ok(PredDir { name, dir: dir.into(), kind, claimed: HashMap::new() })
    }

    /// The files that may hold item `id`'s prediction, longest tail first; the last is
    /// `<dir>/<stem>.npy`.
    pub fn candidates(&self, id: &str) -> Vec<PathBuf> {
        let parts = folders(Path::new(id));
        let file = format!("{}.npy", stem(id));
        (0..=parts.len())
            .map(|k| parts[k..].iter().fold(self.dir.clone(), |p, c| p.join(c)).join(&file))
            .collect()
    }

    /// Where item `id`'s prediction is read from: the longest candidate that exists, else the
    /// flat `<dir>/<stem>.npy`.
    pub fn path_for(&self, id: &str) -> PathBuf {
        let all = self.candidates(id);
        all.iter().find(|p| p.is_file()).unwrap_or(all.last().expect("at least the stem")).clone()
    }
}

/// The folders above a file, `..` resolved lexically, the root and `.` left out: the path
/// parts that `xtask infer` keeps in its output names and `PredDir` matches by tail.
pub fn folders(file: &Path) -> Vec<String> {
    let mut parts = Vec::new();
    for c in file.parent().map(Path::components).into_iter().flatten() {
        match c {
            std::path::Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            std::path::Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    parts
}

/// A file-name-safe stem for an item id (its image's file stem).
pub fn stem(id: &str) -> String {
    safe_name(
        &Path::new(id).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| id.into()),
    )
}

/// `s` with every character other than ASCII letters, digits, `-`, `_` and `.` replaced by `_`.
pub fn safe_name(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect()
}

impl Predictor for PredDir {
    fn name(&self) -> &str {
        &self.name
    }

    fn predict(&mut self, sample: &Sample) -> Result<Prediction> {
        let path = self.path_for(&sample.id);
        let what = || format!("prediction for {}", sample.id);
        if !path.is_file() {
            let longest = self.candidates(&sample.id).remove(0);
            return Err(CoreError::bad_input(
                what(),
                format!(
                    "{} is missing (expected one .npy per image, named by its file stem, or by its \
                     path as deep as {})",
                    path.display(),
                    longest.display()
                ),
            )
            .into());
        }
        let owner = self.claimed.entry(path.clone()).or_insert_with(|| sample.id.clone());
        if owner != &sample.id {
            return Err(CoreError::bad_input(
                what(),
                format!(
                    "{} was already read for {owner}; images of the same name need their \
                     folders in --pred-dir (as `xtask infer --save-raw npy` writes them)",
                    path.display()
                ),
            )
            .into());
        }
        let (shape, values) = depth_core::npy::read_f32(&path)?;
        let (h, w) = match shape[..] {
            [h, w] | [1, h, w] => (h as u32, w as u32),
            _ => {
                return Err(CoreError::bad_input(
                    path.display().to_string(),
                    format!("shape {shape:?}, expected (H, W) or (1, H, W)"),
                )
                .into());
            }
        };
        Ok(Prediction { width: w, height: h, kind: self.kind, values })
    }
}
