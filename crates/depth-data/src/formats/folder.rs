//! An unlabeled image folder: every image file under a root (recursive), sorted by path, with no
//! target. Images are jpg/jpeg/png/bmp/webp/tif/tiff (extension case-insensitive); names starting
//! with `.` are skipped. This is the input of pseudo-labelling ([`super::pseudo`]).

use super::walk_files;
use crate::dataset::Dataset;
use crate::error::Result;
use crate::sample::{Sample, read_rgb};
use std::path::{Path, PathBuf};

/// The image extensions recognised (lowercase).
pub const IMAGE_EXTENSIONS: [&str; 7] = ["jpg", "jpeg", "png", "bmp", "webp", "tif", "tiff"];

/// Whether `path` has an image extension.
pub fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

#[derive(Clone, Debug)]
pub struct ImageFolder {
    name: String,
    root: PathBuf,
    /// Paths relative to `root`, sorted.
    files: Vec<PathBuf>,
}

impl ImageFolder {
    /// Lists the images under `root`.
    pub fn new(name: impl Into<String>, root: &Path) -> Result<Self> {
        let files = walk_files(root, &is_image)?
            .into_iter()
            .map(|p| p.strip_prefix(root).map(Path::to_path_buf).unwrap_or(p))
            .collect();
        Ok(Self { name: name.into(), root: root.to_path_buf(), files })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The images' paths relative to the root, in dataset order.
    pub fn relative_paths(&self) -> &[PathBuf] {
        &self.files
    }
}

impl Dataset for ImageFolder {
    fn name(&self) -> &str {
        &self.name
    }

    fn len(&self) -> usize {
        self.files.len()
    }

    fn id(&self, index: usize) -> String {
        self.root.join(&self.files[index]).display().to_string()
    }

    fn load(&self, index: usize) -> Result<Sample> {
        let image = read_rgb(&self.root.join(&self.files[index]))?;
        Ok(Sample { id: self.id(index), image, target: None, intrinsics: None })
    }
}
