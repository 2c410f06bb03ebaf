//! Our pseudo-label store (format defined here, version "depth-pseudo-label/1").
//!
//! One safetensors file per image at `<store>/<image path relative to the image root, extension
//! replaced by .safetensors>`, holding one tensor `disparity`, float32, shape (H, W), at the image's
//! original resolution: the teacher's relative inverse depth, stored losslessly. Invalid pixels are
//! stored as NaN (so a mask needs no second tensor); every finite value is valid. String metadata:
//! `format` = "depth-pseudo-label/1", `teacher` (model id), `teacher_sha256` (its weights),
//! `input_size` (the teacher's input side), `precision` (its compute precision, f32 or bf16;
//! absent in labels written before it was added: f32), `image` (the relative image path), `image_sha256`
//! (the image file's), `kind` = "disparity", `disparity_sha256` (of the tensor's bytes). The
//! first two hashes let a rerun tell a finished label from a stale one (another teacher, a
//! changed image); the third makes a damaged label an error when it is read, not a wrong target
//! (labels written before it was added are read as they are, and redone by a rerun). Files are
//! written atomically, so a crashed labelling run never leaves a partial label behind.

use super::folder::ImageFolder;
use crate::dataset::Dataset;
use crate::error::{DataError, Result};
use crate::sample::{Sample, Target, TargetKind};
use depth_core::{CoreError, Precision};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

pub const PSEUDO_FORMAT: &str = "depth-pseudo-label/1";
const FMT: &str = "pseudo-label safetensors";

/// Who made a label: the teacher's name, the SHA-256 of its weights, its input size and the
/// precision it computed in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TeacherId {
    pub name: String,
    pub sha256: String,
    pub input_size: usize,
    pub precision: Precision,
}

/// A label's metadata (hashes are empty in labels written without them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PseudoMeta {
    pub teacher: String,
    pub teacher_sha256: String,
    pub input_size: usize,
    pub precision: Precision,
    pub image: String,
    pub image_sha256: String,
    /// Whether the label carries (and passed) the checksum of its data.
    pub checked: bool,
}

/// Where the label of `image_rel` lives; `image_rel` must be relative and stay inside the root.
pub fn label_path(store: &Path, image_rel: &Path) -> Result<PathBuf> {
    let inside = image_rel.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !inside || image_rel.file_name().is_none() {
        let reason = format!("{} is not a relative path inside the image root", image_rel.display());
        return Err(CoreError::bad_input("pseudo-label image path", reason).into());
    }
    Ok(store.join(image_rel).with_extension("safetensors"))
}

/// Writes the pseudo-label of `image_rel` (a disparity target) atomically; returns its path.
pub fn write_pseudo_label(
    store: &Path,
    image_rel: &Path,
    target: &Target,
    teacher: &TeacherId,
    image_sha256: &str,
) -> Result<PathBuf> {
    let n = target.width as usize * target.height as usize;
    if target.kind != TargetKind::Disparity || target.values.len() != n || target.valid.len() != n {
        let reason = format!(
            "need a consistent {}×{} disparity target, got {:?} with {} values",
            target.width,
            target.height,
            target.kind,
            target.values.len()
        );
        return Err(CoreError::bad_input("pseudo-label target", reason).into());
    }
    let path = label_path(store, image_rel)?;
    let bytes: Vec<u8> = target
        .values
        .iter()
        .zip(&target.valid)
        .flat_map(|(&v, &ok)| if ok { v } else { f32::NAN }.to_le_bytes())
        .collect();
    let shape = vec![target.height as usize, target.width as usize];
    let view = TensorView::new(Dtype::F32, shape, &bytes).map_err(|e| CoreError::format(&path, FMT, e))?;
    let meta = HashMap::from([
        ("format".to_string(), PSEUDO_FORMAT.to_string()),
        ("teacher".to_string(), teacher.name.clone()),
        ("teacher_sha256".to_string(), teacher.sha256.clone()),
        ("input_size".to_string(), teacher.input_size.to_string()),
        ("precision".to_string(), teacher.precision.to_string()),
        ("image".to_string(), image_rel.to_string_lossy().into_owned()),
        ("image_sha256".to_string(), image_sha256.to_string()),
        ("kind".to_string(), "disparity".to_string()),
        ("disparity_sha256".to_string(), depth_core::hash::sha256_bytes(&bytes)),
    ]);
    let file = safetensors::serialize([("disparity", view)], Some(meta))
        .map_err(|e| CoreError::format(&path, FMT, e))?;
    let file = depth_core::weights::canonical_safetensors(file);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| CoreError::write(dir, e))?;
    }
    depth_core::atomic::write_atomic(&path, |w| w.write_all(&file))?;
    Ok(path)
}

/// Reads a label file, checking its format metadata, dtype and shape.
pub fn read_pseudo_label(path: &Path) -> Result<(Target, PseudoMeta)> {
    let bytes = super::read_bytes(path)?;
    let bad = |reason: String| CoreError::format(path, FMT, reason);
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
    let meta = header.metadata().clone().unwrap_or_default();
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    let get = |k: &str| meta.get(k).cloned().unwrap_or_default();
    if get("format") != PSEUDO_FORMAT || get("kind") != "disparity" {
        return Err(bad(format!(
            "metadata format {:?} kind {:?}, expected {PSEUDO_FORMAT:?} \"disparity\"",
            get("format"),
            get("kind")
        ))
        .into());
    }
    let input_size =
        get("input_size").parse().map_err(|_| bad(format!("bad input_size {:?}", get("input_size"))))?;
    let precision = match meta.get("precision") {
        Some(p) => p.parse().map_err(|_| bad(format!("bad precision {p:?}")))?,
        None => Precision::F32,
    };
    let t = st.tensor("disparity").map_err(|e| bad(e.to_string()))?;
    let &[h, w] = t.shape() else {
        return Err(bad(format!("disparity shape {:?} is not (H, W)", t.shape())).into());
    };
    if t.dtype() != Dtype::F32 || h == 0 || w == 0 || h > u32::MAX as usize || w > u32::MAX as usize {
        return Err(bad(format!("disparity is {:?} {h}×{w}, expected non-empty float32", t.dtype())).into());
    }
    let checked = match meta.get("disparity_sha256") {
        Some(want) if *want != depth_core::hash::sha256_bytes(t.data()) => {
            return Err(
                bad("damaged: its data does not match the checksum it was written with".into()).into()
            );
        }
        Some(_) => true,
        None => false,
    };
    let values = super::le_f32s(t.data());
    if values.len() != w * h {
        return Err(bad(format!("{} values for {h}×{w}", values.len())).into());
    }
    let target = Target::new(w as u32, h as u32, TargetKind::Disparity, values, |_| true);
    let meta = PseudoMeta {
        teacher: get("teacher"),
        teacher_sha256: get("teacher_sha256"),
        input_size,
        precision,
        image: get("image"),
        image_sha256: get("image_sha256"),
        checked,
    };
    Ok((target, meta))
}

/// An image folder paired with its pseudo-label store.
#[derive(Clone, Debug)]
pub struct PseudoLabeled {
    images: ImageFolder,
    store: PathBuf,
}

impl PseudoLabeled {
    /// Pairs the images under `image_root` with `store`; two images whose labels would collide
    /// (`a.jpg` and `a.png`) are an error. Missing labels are reported when loaded.
    pub fn new(name: impl Into<String>, image_root: &Path, store: &Path) -> Result<Self> {
        let images = ImageFolder::new(name, image_root)?;
        let mut seen = HashMap::new();
        for rel in images.relative_paths() {
            if let Some(other) = seen.insert(rel.with_extension(""), rel) {
                let reason =
                    format!("{} and {} would share one pseudo-label", other.display(), rel.display());
                return Err(CoreError::Config { path: image_root.into(), reason }.into());
            }
        }
        Ok(Self { images, store: store.to_path_buf() })
    }

    /// The label path of item `index`.
    pub fn label_path(&self, index: usize) -> Result<PathBuf> {
        label_path(&self.store, &self.images.relative_paths()[index])
    }
}

impl Dataset for PseudoLabeled {
    fn name(&self) -> &str {
        self.images.name()
    }

    fn len(&self) -> usize {
        self.images.len()
    }

    fn id(&self, index: usize) -> String {
        self.images.id(index)
    }

    fn load(&self, index: usize) -> Result<Sample> {
        let label = self.label_path(index)?;
        if !label.is_file() {
            let reason = format!("no pseudo-label for {}: run the pseudo-labeller first", self.id(index));
            return Err(
                CoreError::io(label, std::io::Error::new(std::io::ErrorKind::NotFound, reason)).into()
            );
        }
        let mut sample = self.images.load(index)?;
        let (target, _) = read_pseudo_label(&label)?;
        let (w, h) = sample.image.dimensions();
        if (target.width, target.height) != (w, h) {
            return Err(DataError::SizeMismatch {
                path: label,
                image_w: w,
                image_h: h,
                depth_w: target.width,
                depth_h: target.height,
            });
        }
        sample.target = Some(target);
        Ok(sample)
    }
}
