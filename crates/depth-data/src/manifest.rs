//! Dataset manifests: every file under a dataset root with its size and SHA-256, so a copy can
//! be verified byte for byte (`cargo xtask data verify`) and downloads checked.

use crate::error::Result;
use depth_core::CoreError;
use depth_core::hash::sha256_file;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

pub const FORMAT: &str = "depth-manifest/1";

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Relative to the dataset root, '/'-separated.
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub dataset: String,
    pub files: Vec<FileEntry>,
}

/// Every file under `root` (names starting with '.' skipped), relative, '/'-separated, sorted.
pub fn list_files(root: &Path) -> Result<Vec<String>> {
    Ok(crate::formats::walk_files(root, &|_| true)?
        .iter()
        .map(|p| {
            let rel = p.strip_prefix(root).expect("walk_files stays under its root");
            rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
        })
        .collect())
}

impl Manifest {
    /// Hashes every file under `root` (in parallel), calling `progress` with each path done.
    pub fn build(dataset: &str, root: &Path, progress: impl Fn(&str) + Sync) -> Result<Manifest> {
        let files = list_files(root)?
            .into_par_iter()
            .map(|path| {
                let full = root.join(&path);
                let size = std::fs::metadata(&full).map_err(|e| CoreError::io(&full, e))?.len();
                let sha256 = sha256_file(&full)?;
                progress(&path);
                Ok(FileEntry { path, size, sha256 })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Manifest { format: FORMAT.into(), dataset: dataset.into(), files })
    }

    pub fn read(path: &Path) -> Result<Manifest> {
        let text = depth_core::read::text(path)?;
        let m: Manifest = serde_json::from_str(&text).map_err(|e| CoreError::format(path, "manifest", e))?;
        if m.format != FORMAT {
            return Err(CoreError::format(
                path,
                "manifest",
                format!("format '{}', expected '{FORMAT}'", m.format),
            )
            .into());
        }
        Ok(m)
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self).expect("manifest serialises");
        Ok(depth_core::atomic::write_atomic(path, |w| w.write_all(json.as_bytes()))?)
    }

    /// Checks every listed file under `root`: present, same size, same hash.
    pub fn verify(&self, root: &Path, progress: impl Fn(&str) + Sync) -> Verification {
        let problems: Vec<(String, Problem)> = self
            .files
            .par_iter()
            .filter_map(|f| {
                let full = root.join(&f.path);
                let problem = match std::fs::metadata(&full) {
                    Err(_) => Some(Problem::Missing),
                    Ok(m) if m.len() != f.size => Some(Problem::Size { expected: f.size, found: m.len() }),
                    Ok(_) => match sha256_file(&full) {
                        Err(e) => Some(Problem::Unreadable(e.to_string())),
                        Ok(h) if h != f.sha256 => {
                            Some(Problem::Hash { expected: f.sha256.clone(), found: h })
                        }
                        Ok(_) => None,
                    },
                };
                progress(&f.path);
                problem.map(|p| (f.path.clone(), p))
            })
            .collect();
        Verification { root: root.into(), checked: self.files.len(), problems }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    Missing,
    Size { expected: u64, found: u64 },
    Hash { expected: String, found: String },
    Unreadable(String),
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Missing => write!(f, "missing"),
            Problem::Size { expected, found } => write!(f, "size {found} bytes, expected {expected}"),
            Problem::Hash { expected, found } => write!(f, "sha256 {found}, expected {expected}"),
            Problem::Unreadable(e) => write!(f, "unreadable: {e}"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Verification {
    pub root: PathBuf,
    pub checked: usize,
    pub problems: Vec<(String, Problem)>,
}

impl Verification {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_catch_missing_resized_and_altered_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("rgb")).unwrap();
        std::fs::write(dir.path().join("rgb/a.png"), b"hello").unwrap();
        std::fs::write(dir.path().join("b.txt"), b"abc").unwrap();
        let m = Manifest::build("toy", dir.path(), |_| {}).unwrap();
        assert_eq!(m.files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), ["b.txt", "rgb/a.png"]);
        // sha256("abc"), the FIPS 180-2 test vector
        assert_eq!(m.files[0].sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        let path = dir.path().join("manifest.json");
        m.write(&path).unwrap();
        assert_eq!(Manifest::read(&path).unwrap(), m);
        assert!(m.verify(dir.path(), |_| {}).ok());

        std::fs::write(dir.path().join("b.txt"), b"abd").unwrap();
        std::fs::write(dir.path().join("rgb/a.png"), b"hello!").unwrap();
        let v = m.verify(dir.path(), |_| {});
        assert_eq!(v.problems.len(), 2);
        assert!(matches!(v.problems[0].1, Problem::Hash { .. }), "{:?}", v.problems);
        assert!(matches!(v.problems[1].1, Problem::Size { expected: 5, found: 6 }));
        std::fs::remove_file(dir.path().join("b.txt")).unwrap();
        assert_eq!(m.verify(dir.path(), |_| {}).problems[0].1, Problem::Missing);
    }
}
