//! Pseudo-labelling: a frozen teacher (plain tensors: no gradient, no optimiser state) labels
//! images into depth-data's pseudo-label store, one atomic file per image carrying the teacher's
//! name, the SHA-256 of its weights and of the image. Work is split into shards by a hash of
//! each image's relative path, so processes and machines share a corpus with no coordination;
//! a rerun verifies finished labels (readable, the image's size, the same teacher and image
//! hashes) and skips them, and redoes stale or damaged ones. A broken image is reported and the
//! others are labelled.

use crate::error::{Result, TrainError};
use depth_data::formats::folder::is_image;
use depth_data::formats::pseudo::label_path;
use depth_data::manifest::sha256_file;
use depth_data::{Target, TargetKind, TeacherId, read_pseudo_label, write_pseudo_label};
use depth_models::DepthEstimator;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// An image to label: its path and its path relative to the image root (the label's name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageItem {
    pub path: PathBuf,
    pub rel: PathBuf,
}

/// The images of a folder (recursive, sorted by relative path; names starting with '.' are
/// skipped) or of a list file (`.txt`: one path per line, relative to the list's folder; blank
/// lines and `#` comments ignored).
pub fn list_images(source: &Path) -> Result<Vec<ImageItem>> {
    if source.is_dir() {
        let folder = depth_data::ImageFolder::new("images", source)?;
        return Ok(folder
            .relative_paths()
            .iter()
            .map(|rel| ImageItem { path: source.join(rel), rel: rel.clone() })
            .collect());
    }
    let text = std::fs::read_to_string(source).map_err(|e| TrainError::io(source, e))?;
    let base = source.parent().unwrap_or(Path::new("."));
    let mut items = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let rel = PathBuf::from(line);
        let inside = rel.components().all(|c| matches!(c, std::path::Component::Normal(_)));
        if !inside || !is_image(&rel) {
            return Err(TrainError::BadInput {
                what: "image list",
                reason: format!(
                    "{} line {}: '{line}' is not an image path relative to the list's folder",
                    source.display(),
                    n + 1
                ),
            });
        }
        items.push(ImageItem { path: base.join(&rel), rel });
    }
    Ok(items)
}

/// `k/n`: this process's share of a corpus split `n` ways (`0 ≤ k < n`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("--shard '{s}': expected k/n with 0 ≤ k < n, e.g. 0/4");
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (k.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl Shard {
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Whether this shard owns the image at relative path `rel` (FNV-1a of its '/'-separated
    /// path, modulo the shard count: the same on every machine, independent of the corpus).
    pub fn owns(&self, rel: &Path) -> bool {
        let key = rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
        let h =
            key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
        h % self.count as u64 == self.index as u64
    }
}

/// What a rerun finds for an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelState {
    /// A verified label of this image by this teacher.
    Done,
    Missing,
    /// A label that must be redone, and why.
    Stale(String),
}

/// Checks the label of `item` in `store` against the teacher and the image's hash.
pub fn label_state(
    store: &Path,
    item: &ImageItem,
    teacher: &TeacherId,
    image_sha256: &str,
) -> Result<LabelState> {
    let path = label_path(store, &item.rel)?;
    if !path.is_file() {
        return Ok(LabelState::Missing);
    }
    let (target, meta) = match read_pseudo_label(&path) {
        Ok(x) => x,
        Err(e) => return Ok(LabelState::Stale(format!("unreadable: {e}"))),
    };
    if meta.teacher_sha256 != teacher.sha256 || meta.input_size != teacher.input_size {
        return Ok(LabelState::Stale(format!(
            "made by teacher {} ({}…, input {}), not this one",
            meta.teacher,
            meta.teacher_sha256.get(..12).unwrap_or(&meta.teacher_sha256),
            meta.input_size
        )));
    }
    if meta.image_sha256 != image_sha256 {
        return Ok(LabelState::Stale("the image changed since it was labelled".into()));
    }
    let (w, h) = image::image_dimensions(&item.path).unwrap_or((0, 0));
    // EXIF orientation can swap the stored dimensions: either order matches
    if (target.width, target.height) != (w, h) && (target.width, target.height) != (h, w) {
        return Ok(LabelState::Stale(format!(
            "{}×{} label for a {w}×{h} image",
            target.width, target.height
        )));
    }
    Ok(LabelState::Done)
}

/// What a labelling run did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub teacher: String,
    pub teacher_sha256: String,
    pub input_size: usize,
    pub shard: Option<Shard>,
    /// Images in this shard.
    pub images: usize,
    pub labelled: usize,
    /// Verified labels from an earlier run, skipped.
    pub already_done: usize,
    /// Stale or damaged labels that were redone (included in `labelled`).
    pub redone: usize,
    /// (image, error) of every image that could not be labelled.
    pub failed: Vec<(String, String)>,
    pub seconds: f64,
    /// Images labelled per second (excluding skipped ones).
    pub images_per_s: f64,
}

/// A frozen teacher and how it labels.
pub struct Labeller {
    pub estimator: DepthEstimator,
    pub teacher: TeacherId,
    /// Same-size images share a forward pass up to this many.
    pub batch: usize,
}

impl Labeller {
    /// Labels this shard's `items` into `store`; `tick` is called once per image.
    pub fn run(&self, items: &[ImageItem], shard: Shard, store: &Path, tick: &dyn Fn()) -> Result<Summary> {
        std::fs::create_dir_all(store).map_err(|e| TrainError::io(store, e))?;
        let mine: Vec<&ImageItem> = items.iter().filter(|i| shard.owns(&i.rel)).collect();
        let mut s = Summary {
            teacher: self.teacher.name.clone(),
            teacher_sha256: self.teacher.sha256.clone(),
            input_size: self.teacher.input_size,
            shard: (shard != Shard::ALL).then_some(shard),
            images: mine.len(),
            ..Default::default()
        };
        let started = Instant::now();
        // (item, image hash, decoded image) waiting for a batch of their size
        let mut pending: Vec<(&ImageItem, String, image::RgbImage)> = Vec::new();
        for item in mine {
            let hash = match sha256_file(&item.path) {
                Ok(h) => h,
                Err(e) => {
                    s.failed.push((item.path.display().to_string(), e.to_string()));
                    tick();
                    continue;
                }
            };
            match label_state(store, item, &self.teacher, &hash)? {
                LabelState::Done => {
                    s.already_done += 1;
                    tick();
                    continue;
                }
                LabelState::Stale(why) => {
                    tracing::info!("redoing the label of {}: {why}", item.rel.display());
                    s.redone += 1;
                }
                LabelState::Missing => {}
            }
            match depth_core::read_image(&item.path) {
                Ok(img) => {
                    let same = pending
                        .first()
                        .is_none_or(|(_, _, p)| p.width() == img.width() && p.height() == img.height());
                    if !same || pending.len() >= self.batch {
                        self.flush(&mut pending, store, &mut s, tick);
                    }
                    pending.push((item, hash, img));
                }
                Err(e) => {
                    tracing::warn!("skipping {}: {e}", item.path.display());
                    s.failed.push((item.path.display().to_string(), e.to_string()));
                    tick();
                }
            }
        }
        self.flush(&mut pending, store, &mut s, tick);
        s.seconds = started.elapsed().as_secs_f64();
        s.images_per_s = s.labelled as f64 / s.seconds.max(1e-9);
        Ok(s)
    }

    /// Labels the pending same-size images in one forward pass and writes their labels.
    fn flush(
        &self,
        pending: &mut Vec<(&ImageItem, String, image::RgbImage)>,
        store: &Path,
        s: &mut Summary,
        tick: &dyn Fn(),
    ) {
        if pending.is_empty() {
            return;
        }
        let images: Vec<&image::RgbImage> = pending.iter().map(|p| &p.2).collect();
        let result = self.estimator.estimate_batch(&images);
        for (k, (item, hash, _)) in pending.drain(..).enumerate() {
            let written = match &result {
                Ok(maps) => {
                    let d = &maps[k];
                    let target =
                        Target::new(d.width, d.height, TargetKind::Disparity, d.data.clone(), |_| true);
                    write_pseudo_label(store, &item.rel, &target, &self.teacher, &hash)
                        .map_err(|e| e.to_string())
                }
                Err(e) => Err(e.to_string()),
            };
            match written {
                Ok(_) => s.labelled += 1,
                Err(e) => s.failed.push((item.path.display().to_string(), e)),
            }
            tick();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_every_corpus() {
        let paths: Vec<PathBuf> =
            (0..500).map(|i| PathBuf::from(format!("scene{}/img_{i:05}.jpg", i % 7))).collect();
        for n in 1..6 {
            let shards: Vec<Shard> = (0..n).map(|k| format!("{k}/{n}").parse().unwrap()).collect();
            for p in &paths {
                assert_eq!(shards.iter().filter(|s| s.owns(p)).count(), 1, "{} in {n} shards", p.display());
            }
            // roughly balanced
            for s in &shards {
                let c = paths.iter().filter(|p| s.owns(p)).count();
                assert!(c * n > 500 * 2 / 3 && c * n < 500 * 4 / 3, "shard {s:?} owns {c}");
            }
        }
        for bad in ["3/3", "1", "a/2", "0/0", "-1/2"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn list_files_name_images_relative_to_the_list() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("list.txt");
        std::fs::write(&list, "# photos\nb/x.jpg\n\na.png\n").unwrap();
        let items = list_images(&list).unwrap();
        assert_eq!(
            items.iter().map(|i| i.rel.clone()).collect::<Vec<_>>(),
            [PathBuf::from("b/x.jpg"), "a.png".into()]
        );
        assert_eq!(items[0].path, dir.path().join("b/x.jpg"));
        for bad in ["../x.jpg", "/abs/x.jpg", "notes.txt"] {
            std::fs::write(&list, bad).unwrap();
            let err = list_images(&list).unwrap_err().to_string();
            assert!(err.contains("list.txt line 1"), "{err}");
        }
    }
}
