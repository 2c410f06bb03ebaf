//! The one walk over a folder of inputs (images, datasets): recursive, sorted, symbolic links
//! followed, each real folder entered once.

use crate::error::{CoreError, Result};
use std::path::{Path, PathBuf};

/// The files under `root` for which `keep` holds, sorted by path. Names beginning with `.` are
/// skipped (below `root`). A link back to a folder above it would repeat the tree without end
/// (`find -L` and walkdir call it a file system loop): it is skipped with a warning naming the
/// link and its target, so every file is still listed exactly once through its real folder.
pub fn walk_files(root: &Path, keep: &dyn Fn(&Path) -> bool) -> Result<Vec<PathBuf>> {
    let hidden =
        |e: &walkdir::DirEntry| e.depth() > 0 && e.file_name().to_str().is_none_or(|n| n.starts_with('.'));
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(root).follow_links(true).into_iter().filter_entry(|e| !hidden(e)) {
        match entry {
            Ok(e) if e.file_type().is_file() && keep(e.path()) => out.push(e.into_path()),
            Ok(_) => {}
            Err(e) => {
                let path = e.path().unwrap_or(root).to_path_buf();
                if let Some(ancestor) = e.loop_ancestor() {
                    tracing::warn!(
                        "skipping {}: a link to the folder {} above it (a file system loop)",
                        path.display(),
                        ancestor.display()
                    );
                    continue;
                }
                let source = e.into_io_error().unwrap_or_else(|| std::io::Error::other("walk failed"));
                return Err(CoreError::Io { path, source });
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlink_loop_is_walked_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        for f in ["x.png", "a/y.png", "a/b/z.png", "a/.hidden.png", "a/notes.txt"] {
            std::fs::write(root.join(f), b"").unwrap();
        }
        std::os::unix::fs::symlink(root, root.join("a/b/loop")).unwrap();
        std::os::unix::fs::symlink(root.join("a/b"), root.join("again")).unwrap();
        let png = |p: &Path| p.extension().is_some_and(|e| e == "png");
        let rel: Vec<PathBuf> = walk_files(root, &png)
            .unwrap()
            .iter()
            .map(|p| p.strip_prefix(root).unwrap().to_path_buf())
            .collect();
        // `again` is a second name of a/b (not a loop): followed, as every walker following links does
        let want: Vec<PathBuf> =
            ["a/b/z.png", "a/y.png", "again/z.png", "x.png"].iter().map(PathBuf::from).collect();
        assert_eq!(rel, want);
        let err = walk_files(&root.join("missing"), &png).unwrap_err().to_string();
        assert!(err.contains("missing"), "{err}");
    }
}
