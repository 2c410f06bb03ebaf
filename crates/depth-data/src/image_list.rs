//! Why this file: `infer`, `features` and `pseudo-label` all take "some images" as a file, a
//! folder or a `.txt` list, and the same argument must name the same files in each. This is the
//! one reading of it.

use crate::error::Result;
use crate::formats::folder::is_image;
use depth_core::CoreError;
use std::path::{Component, Path, PathBuf};

/// An image to process: where it is, and its name relative to what was given (a label's or an
/// output's name is built from it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageItem {
    pub path: PathBuf,
    pub rel: PathBuf,
}

/// The images `source` names:
/// - a folder: every image below it (by extension, recursively, links followed, names starting
///   with '.' skipped), sorted by relative path;
/// - a `.txt` list: one path per line, relative to the list's folder (absolute paths stay
///   absolute); blank lines and lines starting with `#` are skipped. A listed path is taken
///   as it is (decoding decides whether it is an image). Its `rel` is the path relative to the
///   list's folder when it lies inside it, else the path as written;
/// - any other file: that file (`rel` its file name).
///
/// Nothing found is an error naming `source`.
pub fn list_images(source: &Path) -> Result<Vec<ImageItem>> {
    let items = if source.is_dir() {
        depth_core::walk::walk_files(source, &is_image)?
            .into_iter()
            .map(|path| {
                let rel = path.strip_prefix(source).map(Path::to_path_buf).unwrap_or_else(|_| path.clone());
                ImageItem { path, rel }
            })
            .collect()
    } else if source.extension().is_some_and(|e| e == "txt") {
        let text = depth_core::read::text(source)?;
        let base = depth_core::config::base_dir(source);
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|line| {
                let written = PathBuf::from(line);
                let inside =
                    written.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
                ImageItem { path: base.join(&written), rel: written }.with_rel_inside(inside)
            })
            .collect()
    } else {
        // a FIFO or a device is refused here, before anything waits on it
        depth_core::read::regular(source)?;
        let rel = source.file_name().map(PathBuf::from).unwrap_or_else(|| source.to_path_buf());
        vec![ImageItem { path: source.to_path_buf(), rel }]
    };
    if items.is_empty() {
        return Err(CoreError::bad_input(
            "images",
            format!(
                "no images found at {}: pass a file, a folder, or a .txt list of paths",
                source.display()
            ),
        )
        .into());
    }
    Ok(items)
}

impl ImageItem {
    /// `rel` normalised when the path lies inside the list's folder (`a/./b.jpg` → `a/b.jpg`).
    fn with_rel_inside(self, inside: bool) -> Self {
        if !inside {
            return self;
        }
        let rel = self.rel.components().filter(|c| matches!(c, Component::Normal(_))).collect();
        Self { rel, ..self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rels(items: &[ImageItem]) -> Vec<String> {
        items.iter().map(|i| i.rel.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn a_folder_gives_its_images_sorted() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["b/x.JPG", "a.png", "notes.md", ".hidden.png", "b/.cache/y.png"] {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        }
        let items = list_images(dir.path()).unwrap();
        assert_eq!(rels(&items), ["a.png", "b/x.JPG"]);
        assert_eq!(items[1].path, dir.path().join("b/x.JPG"));
    }

    #[test]
    fn a_list_names_files_relative_to_itself() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("list.txt");
        std::fs::write(&list, "# photos\nb/x.jpg\n\n  ./a.png  \n../up.jpg\n/abs/c.jpg\n").unwrap();
        let items = list_images(&list).unwrap();
        assert_eq!(rels(&items), ["b/x.jpg", "a.png", "../up.jpg", "/abs/c.jpg"]);
        let paths: Vec<PathBuf> = items.iter().map(|i| i.path.clone()).collect();
        assert_eq!(
            paths,
            [
                dir.path().join("b/x.jpg"),
                dir.path().join("./a.png"),
                dir.path().join("../up.jpg"),
                "/abs/c.jpg".into()
            ]
        );
    }

    #[test]
    fn a_file_is_itself_and_nothing_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("photo.webp");
        std::fs::write(&f, b"x").unwrap();
        assert_eq!(list_images(&f).unwrap(), [ImageItem { path: f.clone(), rel: "photo.webp".into() }]);
        let err = list_images(&dir.path().join("nothing")).unwrap_err().to_string();
        assert!(err.contains("nothing") && err.contains("No such file"), "{err}");
        let err = list_images(Path::new("/dev/zero")).unwrap_err().to_string();
        assert!(err.contains("/dev/zero") && err.contains("character device"), "{err}");
        let empty = dir.path().join("empty.txt");
        std::fs::write(&empty, "# nothing here\n").unwrap();
        let err = list_images(&empty).unwrap_err().to_string();
        assert!(err.contains("no images found at") && err.contains("empty.txt"), "{err}");
    }
}
