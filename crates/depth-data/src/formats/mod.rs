//! One reader per dataset format.
//!
//! Every module documents its format, units and invalid-value convention and exposes a
//! constructor returning something that implements [`Dataset`]. The pair-style formats (an image
//! file and a target file per item) share [`Pairs`]; split files are read by [`read_split`].

pub mod annotations;
pub mod diode;
pub mod eth3d;
pub mod folder;
pub mod hypersim;
pub mod kitti;
pub mod middlebury;
pub mod nyu;
pub mod png16;
pub mod pseudo;
pub mod redwood;
pub mod shards;
pub mod sintel;
pub mod vkitti2;

use crate::dataset::Dataset;
use crate::error::{DataError, Result};
use crate::sample::{Intrinsics, Sample, Target, read_rgb};
use depth_core::CoreError;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Decodes a target file; gets the decoded image's (width, height) for formats that need it.
pub type DecodeFn = Arc<dyn Fn(&Path, (u32, u32)) -> Result<Target> + Send + Sync>;

/// One item of a [`Pairs`] dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct PairItem {
    pub image: PathBuf,
    pub target: PathBuf,
    pub intrinsics: Option<Intrinsics>,
}

/// A dataset of (image file, target file) pairs with one decoder for the targets.
#[derive(Clone)]
pub struct Pairs {
    name: String,
    items: Vec<PairItem>,
    decode: DecodeFn,
}

impl Pairs {
    pub fn new(
        name: impl Into<String>,
        items: Vec<PairItem>,
        decode: impl Fn(&Path, (u32, u32)) -> Result<Target> + Send + Sync + 'static,
    ) -> Self {
        Self { name: name.into(), items, decode: Arc::new(decode) }
    }

    /// Pairs from a split file whose first two columns are the image and the target path
    /// (resolved under `roots` as [`read_split`] does).
    pub fn from_split(
        name: impl Into<String>,
        split_file: &Path,
        roots: &[&Path],
        intrinsics: Option<Intrinsics>,
        decode: impl Fn(&Path, (u32, u32)) -> Result<Target> + Send + Sync + 'static,
    ) -> Result<Self> {
        let items = read_split(split_file, roots)?
            .into_iter()
            .map(|e| match &e.paths[..] {
                [image, target, ..] => {
                    Ok(PairItem { image: image.clone(), target: target.clone(), intrinsics })
                }
                _ => Err(CoreError::format(split_file, "split", "a line has fewer than two paths").into()),
            })
            .collect::<Result<_>>()?;
        Ok(Self::new(name, items, decode))
    }

    pub fn items(&self) -> &[PairItem] {
        &self.items
    }
}

impl std::fmt::Debug for Pairs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pairs").field("name", &self.name).field("len", &self.items.len()).finish()
    }
}

impl Dataset for Pairs {
    fn name(&self) -> &str {
        &self.name
    }

    fn len(&self) -> usize {
        self.items.len()
    }

    fn id(&self, index: usize) -> String {
        self.items[index].image.display().to_string()
    }

    fn load(&self, index: usize) -> Result<Sample> {
        let item = &self.items[index];
        let image = read_rgb(&item.image)?;
        let target = (self.decode)(&item.target, image.dimensions())?;
        if (target.width, target.height) != image.dimensions() {
            return Err(DataError::SizeMismatch {
                path: item.target.clone(),
                image_w: image.width(),
                image_h: image.height(),
                depth_w: target.width,
                depth_h: target.height,
            });
        }
        Ok(Sample { id: self.id(index), image, target: Some(target), intrinsics: item.intrinsics })
    }
}

/// One line of a split file.
#[derive(Clone, Debug, PartialEq)]
pub struct SplitEntry {
    /// The path columns, resolved under the roots and checked to exist.
    pub paths: Vec<PathBuf>,
    /// The numeric columns that follow the paths (e.g. the focal length in BTS splits).
    pub numbers: Vec<f64>,
}

/// Reads a whitespace-separated split file (BTS / monodepth style). Path column `i` is resolved
/// under `roots[i]` (the last root for further columns); a leading `/` is ignored, so
/// "/kitchen/rgb_1.jpg" means "kitchen/rgb_1.jpg" under the root. Blank lines and lines starting
/// with `#` are skipped, and so are lines with a path column "None" (BTS's KITTI lists mark frames
/// without ground truth so). A listed file that does not exist is [`DataError::MissingEntry`].
pub fn read_split(split_file: &Path, roots: &[&Path]) -> Result<Vec<SplitEntry>> {
    if roots.is_empty() {
        return Err(CoreError::bad_input("read_split", "no root given").into());
    }
    let text = depth_core::read::text(split_file)?;
    let mut entries = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        if line.split_whitespace().any(|t| t == "None") {
            continue;
        }
        let mut entry = SplitEntry { paths: Vec::new(), numbers: Vec::new() };
        for token in line.split_whitespace() {
            match token.parse::<f64>() {
                Ok(x) if !entry.paths.is_empty() => entry.numbers.push(x),
                _ if !entry.numbers.is_empty() => {
                    let reason = format!("path {token:?} after a number in line {line:?}");
                    return Err(CoreError::format(split_file, "split", reason).into());
                }
                _ => {
                    let root = roots[entry.paths.len().min(roots.len() - 1)];
                    let path = root.join(token.trim_start_matches('/'));
                    if !path.exists() {
                        return Err(DataError::MissingEntry { path, split: split_file.into() });
                    }
                    entry.paths.push(path);
                }
            }
        }
        entries.push(entry);
    }
    Ok(entries)
}

/// Little-endian `f32`s from bytes (a trailing partial value is ignored; callers check sizes).
pub(crate) fn le_f32s(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// Reads a whole file, naming it on error.
pub(crate) fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    Ok(depth_core::read::bytes(path, depth_core::read::ARRAY_LIMIT)?)
}

/// All files under `root` for which `keep` holds (the one walk: `depth_core::walk::walk_files`).
pub(crate) fn walk_files(root: &Path, keep: &dyn Fn(&Path) -> bool) -> Result<Vec<PathBuf>> {
    Ok(depth_core::walk::walk_files(root, keep)?)
}

/// The file name of `path` as UTF-8 ("" when it has none).
pub(crate) fn file_name(path: &Path) -> &str {
    path.file_name().and_then(|n| n.to_str()).unwrap_or("")
}
