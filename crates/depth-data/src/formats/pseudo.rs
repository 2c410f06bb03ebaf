//! Our pseudo-label store (format defined here, version "depth-pseudo-label/2"; /1 is still read).
//!
//! One safetensors file per image at `<store>/<image path relative to the image root, extension
//! replaced by .safetensors>`, holding one tensor `disparity`, shape (H, W), at the resolution
//! the teacher saw — its network input (the official lower-bound resize: an SA-1B photo of
//! 1500×2250 gives 518×777), not upsampled to the image: the loader upsamples it to the image
//! with the official bilinear (align_corners) resize the labeller used to apply, so a label costs
//! H·W·2 bytes instead of the image's pixels × 4. Stored as float16 (relative rounding ≤ 2⁻¹¹;
//! float32 for a label with a value beyond float16's range). Invalid pixels are NaN (so a mask
//! needs no second tensor); every finite value is valid. String metadata: `format`, `teacher`
//! (model id), `teacher_sha256` (its weights), `input_size` (the teacher's input side),
//! `precision` (its compute precision, f32 or bf16; absent in labels written before it was
//! added: f32), `image` (the relative image path), `image_sha256` (the image file's),
//! `image_width`/`image_height` (the decoded image's size, which the loader upsamples to),
//! `kind` = "disparity", `disparity_sha256` (of the tensor's bytes). The first two hashes let
//! a rerun tell a finished label from a stale one (another teacher, a changed image); the third
//! makes a damaged label an error when it is read, not a wrong target (labels written before it
//! was added are read as they are, and redone by a rerun). Version /1 stored float32 at the
//! image's resolution (no image size: the label's own). Files are written atomically, so a
//! crashed labelling run never leaves a partial label behind.

use super::folder::ImageFolder;
use crate::dataset::Dataset;
use crate::error::{DataError, Result};
use crate::sample::{Sample, Target, TargetKind};
use depth_core::{CoreError, Precision};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

pub const PSEUDO_FORMAT: &str = "depth-pseudo-label/2";
/// The first version: float32 at the image's resolution (still read).
const PSEUDO_FORMAT_V1: &str = "depth-pseudo-label/1";
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
    /// The decoded image's (width, height): the loader upsamples the label to it.
    pub image_size: (u32, u32),
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

/// Writes the pseudo-label of `image_rel` — a disparity `target` at the teacher's resolution,
/// for an image of `image_size` (width, height) — atomically; returns its path.
pub fn write_pseudo_label(
    store: &Path,
    image_rel: &Path,
    target: &Target,
    image_size: (u32, u32),
    teacher: &TeacherId,
    image_sha256: &str,
) -> Result<PathBuf> {
    let path = label_path(store, image_rel)?;
    let file = label_bytes(image_rel, target, image_size, teacher, image_sha256)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| CoreError::write(dir, e))?;
    }
    depth_core::atomic::write_atomic(&path, |w| w.write_all(&file))?;
    Ok(path)
}

/// The bytes of a label file (what [`write_pseudo_label`] writes, and a shard member holds).
pub fn label_bytes(
    image_rel: &Path,
    target: &Target,
    image_size: (u32, u32),
    teacher: &TeacherId,
    image_sha256: &str,
) -> Result<Vec<u8>> {
    let n = target.width as usize * target.height as usize;
    if target.kind != TargetKind::Disparity
        || target.values.len() != n
        || target.valid.len() != n
        || image_size.0 == 0
        || image_size.1 == 0
    {
        let reason = format!(
            "need a consistent {}×{} disparity target of a non-empty image, got {:?} with {} values for {}×{}",
            target.width,
            target.height,
            target.kind,
            target.values.len(),
            image_size.0,
            image_size.1
        );
        return Err(CoreError::bad_input("pseudo-label target", reason).into());
    }
    let origin = label_path(Path::new(""), image_rel)?;
    let stored = with_nan(target);
    let fits =
        target.values.iter().zip(&target.valid).all(|(v, &ok)| !ok || v.abs() <= f32::from(half::f16::MAX));
    let (dtype, bytes): (Dtype, Vec<u8>) = if fits {
        (Dtype::F16, stored.flat_map(|v| half::f16::from_f32(v).to_le_bytes()).collect())
    } else {
        (Dtype::F32, stored.flat_map(f32::to_le_bytes).collect())
    };
    let shape = vec![target.height as usize, target.width as usize];
    let view = TensorView::new(dtype, shape, &bytes).map_err(|e| CoreError::format(&origin, FMT, e))?;
    let meta = HashMap::from([
        ("format".to_string(), PSEUDO_FORMAT.to_string()),
        ("teacher".to_string(), teacher.name.clone()),
        ("teacher_sha256".to_string(), teacher.sha256.clone()),
        ("input_size".to_string(), teacher.input_size.to_string()),
        ("precision".to_string(), teacher.precision.to_string()),
        ("image".to_string(), image_rel.to_string_lossy().into_owned()),
        ("image_sha256".to_string(), image_sha256.to_string()),
        ("image_width".to_string(), image_size.0.to_string()),
        ("image_height".to_string(), image_size.1.to_string()),
        ("kind".to_string(), "disparity".to_string()),
        ("disparity_sha256".to_string(), depth_core::hash::sha256_bytes(&bytes)),
    ]);
    let file = safetensors::serialize([("disparity", view)], Some(meta))
        .map_err(|e| CoreError::format(&origin, FMT, e))?;
    Ok(depth_core::weights::canonical_safetensors(file))
}

/// A label's values as stored: NaN where a pixel is invalid.
fn with_nan(target: &Target) -> impl Iterator<Item = f32> + '_ {
    target.values.iter().zip(&target.valid).map(|(&v, &ok)| if ok { v } else { f32::NAN })
}

/// `target` resized to `(width, height)` as the official inference resizes the network's
/// output to the image (bilinear, align_corners); an invalid (NaN) pixel makes every pixel it
/// is an interpolation tap of invalid (also at weight 0: the conservative side).
pub fn upsample_label(target: &Target, (width, height): (u32, u32)) -> Result<Target> {
    if (target.width, target.height) == (width, height) {
        return Ok(target.clone());
    }
    let stored: Vec<f32> = with_nan(target).collect();
    let t = candle_core::Tensor::from_vec(
        stored,
        (1, 1, target.height as usize, target.width as usize),
        &candle_core::Device::Cpu,
    )
    .map_err(CoreError::from)?;
    let up = depth_core::bilinear_align_corners(&t, (height as usize, width as usize))?
        .flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(CoreError::from)?;
    Ok(Target::new(width, height, TargetKind::Disparity, up, |_| true))
}

/// Reads a label file, checking its format metadata, dtype and shape.
pub fn read_pseudo_label(path: &Path) -> Result<(Target, PseudoMeta)> {
    parse_pseudo_label(&super::read_bytes(path)?, path)
}

/// A label from its bytes (a file's, or a shard member's); `path` names it in errors.
pub fn parse_pseudo_label(bytes: &[u8], path: &Path) -> Result<(Target, PseudoMeta)> {
    let bad = |reason: String| CoreError::format(path, FMT, reason);
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
    let meta = header.metadata().clone().unwrap_or_default();
    let st = SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
    let get = |k: &str| meta.get(k).cloned().unwrap_or_default();
    let v1 = get("format") == PSEUDO_FORMAT_V1;
    if !(v1 || get("format") == PSEUDO_FORMAT) || get("kind") != "disparity" {
        return Err(bad(format!(
            "metadata format {:?} kind {:?}, expected {PSEUDO_FORMAT:?} (or {PSEUDO_FORMAT_V1:?}) \"disparity\"",
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
    let dtype_ok = t.dtype() == Dtype::F32 || (!v1 && t.dtype() == Dtype::F16);
    if !dtype_ok || h == 0 || w == 0 || h > u32::MAX as usize || w > u32::MAX as usize {
        return Err(bad(format!(
            "disparity is {:?} {h}×{w}, expected non-empty float16 or float32",
            t.dtype()
        ))
        .into());
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
    let values = match t.dtype() {
        Dtype::F16 => {
            t.data().chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
        }
        _ => super::le_f32s(t.data()),
    };
    let image_size = if v1 {
        (w as u32, h as u32)
    } else {
        let dim = |k: &str| get(k).parse::<u32>().ok().filter(|&d| d > 0);
        dim("image_width").zip(dim("image_height")).ok_or_else(|| {
            bad(format!("bad image size {:?}×{:?}", get("image_width"), get("image_height")))
        })?
    };
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
        image_size,
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
        let (target, meta) = read_pseudo_label(&label)?;
        let (w, h) = sample.image.dimensions();
        if meta.image_size != (w, h) {
            return Err(DataError::SizeMismatch {
                path: label,
                image_w: w,
                image_h: h,
                depth_w: meta.image_size.0,
                depth_h: meta.image_size.1,
            });
        }
        sample.target = Some(upsample_label(&target, (w, h))?);
        Ok(sample)
    }
}
