//! Pseudo-labelling: a frozen teacher (plain tensors: no gradient, no optimiser state) labels
//! images into depth-data's pseudo-label store, one atomic file per image (the network's output
//! at its own resolution, float16, not resized back to the image) carrying the teacher's
//! name, the SHA-256 of its weights and of the image. Work is split into shards by a hash of
//! each image's relative path, so processes and machines share a corpus with no coordination;
//! a rerun verifies finished labels (readable, the image's size, the same teacher and image
//! hashes) and skips them, and redoes stale or damaged ones. A broken image is reported and the
//! others are labelled. [`label`] is the whole job, as `cargo xtask pseudo-label` runs it.

use crate::error::Result;
use depth_core::hash::sha256_file;
use depth_core::{CoreError, DeviceSpec, Progress};
use depth_data::formats::pseudo::{TeacherId, label_path, read_pseudo_label, write_pseudo_label};
use depth_data::{ImageItem, Target, TargetKind, list_images};
use depth_models::{DepthEstimator, NamedModel};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// `k/n`: this process's share of a corpus split `n` ways (`0 ≤ k < n`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = CoreError;
    fn from_str(s: &str) -> std::result::Result<Self, CoreError> {
        let bad = || CoreError::bad_input("shard", format!("'{s}': expected k/n with 0 ≤ k < n, e.g. 0/4"));
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
    let (_, meta) = match read_pseudo_label(&path) {
        Ok(x) => x,
        Err(e) => return Ok(LabelState::Stale(format!("unreadable: {e}"))),
    };
    if !meta.checked {
        return Ok(LabelState::Stale("written without a checksum of its data (an older version)".into()));
    }
    if meta.teacher_sha256 != teacher.sha256
        || meta.input_size != teacher.input_size
        || meta.precision != teacher.precision
    {
        return Ok(LabelState::Stale(format!(
            "made by teacher {} ({}…, input {}, {}), not this one",
            meta.teacher,
            meta.teacher_sha256.get(..12).unwrap_or(&meta.teacher_sha256),
            meta.input_size,
            meta.precision
        )));
    }
    if meta.image_sha256 != image_sha256 {
        return Ok(LabelState::Stale("the image changed since it was labelled".into()));
    }
    let (w, h) = image::image_dimensions(&item.path).unwrap_or((0, 0));
    // EXIF orientation can swap the stored dimensions: either order matches
    let (lw, lh) = meta.image_size;
    if (lw, lh) != (w, h) && (lw, lh) != (h, w) {
        return Ok(LabelState::Stale(format!("a label of a {lw}×{lh} image for a {w}×{h} image")));
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

/// A labelling job as `pseudo-label` and the mini reproduction run it.
pub struct LabelJob {
    pub teacher: NamedModel,
    /// A folder of images, a `.txt` list or one image (`depth_data::list_images`).
    pub images: PathBuf,
    /// The label store.
    pub store: PathBuf,
    /// This process's share (None: all, or under mpirun/torchrun the launch's rank/world).
    pub shard: Option<Shard>,
    /// The teacher's network input: shorter side and most patch tokens.
    pub input_size: usize,
    pub max_tokens: usize,
    /// The teacher's compute precision (the labels are stored in float16 either way).
    pub precision: depth_core::Precision,
    /// Same-size images per forward pass.
    pub batch: usize,
    /// Write tar shards of this many images (WebDataset's layout) instead of one file per label.
    pub shard_size: Option<usize>,
    /// With shards: re-hash the images of finished shards (a rerun otherwise trusts them).
    pub verify: bool,
    pub device: DeviceSpec,
}

/// Runs `job`: lists the images (every one must be named inside the store), loads the teacher
/// (hashing its weights), labels this shard and writes its summary into the store
/// (`summary.json`, or `summary-K-of-N.json` for a shard). Returns the summary and where it is.
pub fn label(job: &LabelJob, progress: &dyn Progress) -> Result<(Summary, PathBuf)> {
    let items = list_images(&job.images)?;
    if let Some(item) = items.iter().find(|i| label_path(&job.store, &i.rel).is_err()) {
        let reason = format!(
            "{}: {} is not inside the list's folder; a label is named by the image's path inside it",
            job.images.display(),
            item.rel.display()
        );
        return Err(CoreError::bad_input("images", reason).into());
    }
    depth_core::atomic::prepare_output_dir(&job.store)?;
    let file = job.teacher.source.file()?;
    tracing::info!("teacher {}: {} — hashing the weights", job.teacher.name, file.display());
    let sha256 = sha256_file(&file)?;
    let device = job.device.open()?;
    let model = job.teacher.load(None, &device)?;
    let labeller = Labeller {
        estimator: DepthEstimator::new(model, device)
            .with_input_size(job.input_size)
            .with_max_tokens(job.max_tokens)
            .with_precision(job.precision),
        teacher: TeacherId {
            name: job.teacher.name.clone(),
            sha256,
            input_size: job.input_size,
            precision: job.precision,
        },
        batch: job.batch.max(1),
    };
    let shard = match job.shard {
        Some(s) => s,
        None => {
            let launch = crate::dist::Launch::from_env()?;
            Shard { index: launch.rank, count: launch.world }
        }
    };
    progress.start(items.iter().filter(|i| shard.owns(&i.rel)).count() as u64, 0);
    let summary = match job.shard_size {
        Some(n) => labeller.run_sharded(&items, shard, &job.store, (n, job.verify), progress)?,
        None => labeller.run(&items, shard, &job.store, progress)?,
    };
    let name = match summary.shard {
        Some(s) => format!("summary-{}-of-{}.json", s.index, s.count),
        None => "summary.json".into(),
    };
    let path = job.store.join(name);
    let json = serde_json::to_vec_pretty(&summary).expect("a summary serialises");
    depth_core::atomic::write_atomic(&path, |w| w.write_all(&json))?;
    Ok((summary, path))
}

/// A frozen teacher and how it labels.
pub struct Labeller {
    pub estimator: DepthEstimator,
    pub teacher: TeacherId,
    /// Same-size images share a forward pass up to this many.
    pub batch: usize,
}

/// Where a finished label goes: (image, its hash, its size, the label at the teacher's resolution).
type Sink<'s> = dyn FnMut(&ImageItem, &str, (u32, u32), Target) -> depth_data::Result<()> + 's;

/// One image on its way to the teacher, as a decoding worker leaves it.
enum Prepared<'a> {
    /// A verified label from an earlier run.
    Done,
    Ready(Ready<'a>),
    Failed(&'a ImageItem, String),
}

/// An image hashed, checked, decoded and resized: the network input, (1, 3, H', W').
struct Ready<'a> {
    item: &'a ImageItem,
    hash: String,
    size: (u32, u32),
    input: candle_core::Tensor,
    redo: bool,
}

impl Labeller {
    /// Labels this shard's `items` into `store`; progress advances once per image.
    ///
    /// Workers hash, check, decode and resize images into network inputs while the teacher
    /// runs; the inputs wait in buckets by their shape (many image sizes share one: every 3:2
    /// photo is 518×784), and a bucket goes through the teacher when it holds a batch. The queue
    /// in front is bounded, and so are the buckets (the fullest is flushed past 4 batches), so
    /// memory does not grow with the corpus.
    pub fn run(
        &self,
        items: &[ImageItem],
        shard: Shard,
        store: &Path,
        progress: &dyn Progress,
    ) -> Result<Summary> {
        std::fs::create_dir_all(store).map_err(|e| CoreError::write(store, e))?;
        let mine: Vec<&ImageItem> = items.iter().filter(|i| shard.owns(&i.rel)).collect();
        let mut s = self.summary(shard, mine.len());
        let started = Instant::now();
        let mut write = |item: &ImageItem, hash: &str, size: (u32, u32), target: Target| {
            write_pseudo_label(store, &item.rel, &target, size, &self.teacher, hash).map(|_| ())
        };
        self.pipeline(&mine, store, &mut s, progress, &mut write)?;
        s.seconds = started.elapsed().as_secs_f64();
        s.images_per_s = s.labelled as f64 / s.seconds.max(1e-9);
        Ok(s)
    }

    /// As [`run`](Self::run), into tar shards of `size` images (`depth_data::formats::shards`):
    /// this share's images in path order, cut into shards named `<k>-of-<n>-<j>`. A shard whose
    /// index exists, names this teacher and holds this chunk's images is done and skipped
    /// without reading any image (`verify`: after re-hashing them), so a rerun starts labelling
    /// after reading the indexes only; a shard cut short by a kill has no index and is redone.
    pub fn run_sharded(
        &self,
        items: &[ImageItem],
        shard: Shard,
        store: &Path,
        (size, verify): (usize, bool),
        progress: &dyn Progress,
    ) -> Result<Summary> {
        use depth_data::formats::shards::{ShardSample, done_shards, index_path, read_index, write_shard};
        std::fs::create_dir_all(store).map_err(|e| CoreError::write(store, e))?;
        let mut mine: Vec<&ImageItem> = items.iter().filter(|i| shard.owns(&i.rel)).collect();
        mine.sort_by(|a, b| a.rel.cmp(&b.rel));
        let mut s = self.summary(shard, mine.len());
        let started = Instant::now();
        let done: std::collections::BTreeSet<String> = done_shards(store)?.into_iter().collect();
        for (j, chunk) in mine.chunks(size.max(1)).enumerate() {
            let name = format!("{:03}-of-{:03}-{j:06}", shard.index, shard.count);
            if done.contains(&name) {
                match self.shard_state(&read_index(&index_path(store, &name)), chunk, verify) {
                    None => {
                        s.already_done += chunk.len();
                        progress.advance(chunk.len() as u64);
                        continue;
                    }
                    Some(why) => {
                        tracing::info!("redoing shard {name}: {why}");
                        s.redone += chunk.len();
                    }
                }
            }
            let mut labels = std::collections::BTreeMap::new();
            let mut keep = |item: &ImageItem, hash: &str, size: (u32, u32), target: Target| {
                let bytes =
                    depth_data::formats::pseudo::label_bytes(&item.rel, &target, size, &self.teacher, hash)?;
                labels.insert(item.rel.clone(), (item.path.clone(), hash.to_string(), bytes));
                Ok(())
            };
            // no label file exists in a sharded store: every image of the shard is labelled
            self.pipeline(chunk, store, &mut s, progress, &mut keep)?;
            let samples: Vec<ShardSample> = labels
                .into_iter()
                .map(|(rel, (path, image_sha256, label))| ShardSample { rel, path, image_sha256, label })
                .collect();
            write_shard(store, &name, &self.teacher, &samples)?;
        }
        // shards past this share's last chunk (the corpus shrank) would be read twice: gone
        let chunks = mine.len().div_ceil(size.max(1));
        let prefix = format!("{:03}-of-{:03}-", shard.index, shard.count);
        for name in &done {
            let past =
                name.strip_prefix(&prefix).and_then(|j| j.parse::<usize>().ok()).is_some_and(|j| j >= chunks);
            if past {
                tracing::info!("removing shard {name}: the corpus has fewer images now");
                let index = index_path(store, name);
                std::fs::remove_file(&index).map_err(|e| CoreError::write(&index, e))?;
                let _ = std::fs::remove_file(depth_data::formats::shards::tar_path(store, name));
            }
        }
        s.seconds = started.elapsed().as_secs_f64();
        s.images_per_s = s.labelled as f64 / s.seconds.max(1e-9);
        Ok(s)
    }

    /// Why a done shard must be redone: an unreadable index, another teacher, other images
    /// than this chunk of the corpus (images added or removed shift the chunks), or with
    /// `verify` an image whose hash changed. None: it is done.
    fn shard_state(
        &self,
        index: &depth_data::Result<depth_data::formats::shards::ShardIndex>,
        chunk: &[&ImageItem],
        verify: bool,
    ) -> Option<String> {
        let index = match index {
            Ok(i) => i,
            Err(e) => return Some(format!("unreadable index: {e}")),
        };
        if index.teacher_sha256 != self.teacher.sha256
            || index.input_size != self.teacher.input_size
            || index.precision != self.teacher.precision.to_string()
        {
            return Some(format!(
                "made by teacher {} at input {}, not this one",
                index.teacher, index.input_size
            ));
        }
        let rels: Vec<String> = chunk.iter().map(|i| i.rel.to_string_lossy().into_owned()).collect();
        if index.samples.iter().map(|e| &e.image).ne(rels.iter()) {
            return Some("it holds other images than this part of the corpus".into());
        }
        if verify {
            for (e, item) in index.samples.iter().zip(chunk) {
                if sha256_file(&item.path).ok().as_deref() != Some(e.image_sha256.as_str()) {
                    return Some(format!("{} changed since it was labelled", e.image));
                }
            }
        }
        None
    }

    fn summary(&self, shard: Shard, images: usize) -> Summary {
        Summary {
            teacher: self.teacher.name.clone(),
            teacher_sha256: self.teacher.sha256.clone(),
            input_size: self.teacher.input_size,
            shard: (shard != Shard::ALL).then_some(shard),
            images,
            ..Default::default()
        }
    }

    /// Labels `mine`, handing each label to `sink`. Workers hash, check, decode and resize
    /// images into network inputs while the teacher runs; the inputs wait in buckets by their
    /// shape (many image sizes share one: every 3:2 photo is 518×784), and a bucket goes
    /// through the teacher when it holds a batch. The queue in front is bounded, and so are the
    /// buckets (the fullest is flushed past 4 batches), so memory does not grow with the corpus.
    fn pipeline(
        &self,
        mine: &[&ImageItem],
        store: &Path,
        s: &mut Summary,
        progress: &dyn Progress,
        sink: &mut Sink,
    ) -> Result<()> {
        // half the cores decode: the teacher's own threads use the rest
        let workers = (std::thread::available_parallelism().map_or(2, |n| n.get()) / 2).clamp(1, 8);
        let (tx, rx) = crossbeam_channel::bounded::<Prepared>(2 * self.batch);
        let next = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| -> Result<()> {
            for _ in 0..workers {
                let (tx, next) = (tx.clone(), &next);
                scope.spawn(move || {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(item) = mine.get(i) else { break };
                        if tx.send(self.prepare(item, store)).is_err() {
                            break; // the labeller stopped
                        }
                    }
                });
            }
            drop(tx);
            let mut buckets: std::collections::BTreeMap<(usize, usize), Vec<Ready>> = Default::default();
            let mut waiting = 0;
            for p in rx {
                match p {
                    Prepared::Done => {
                        s.already_done += 1;
                        progress.advance(1);
                    }
                    Prepared::Failed(item, e) => {
                        tracing::warn!("skipping {}: {e}", item.path.display());
                        s.failed.push((item.path.display().to_string(), e));
                        progress.advance(1);
                    }
                    Prepared::Ready(ready) => {
                        let shape = (ready.input.dim(2)?, ready.input.dim(3)?);
                        let bucket = buckets.entry(shape).or_default();
                        bucket.push(ready);
                        waiting += 1;
                        if bucket.len() >= self.batch {
                            waiting -= bucket.len();
                            self.flush(std::mem::take(bucket), s, progress, sink);
                        } else if waiting >= 4 * self.batch {
                            let fullest = buckets.values_mut().max_by_key(|b| b.len()).expect("one waits");
                            waiting -= fullest.len();
                            self.flush(std::mem::take(fullest), s, progress, sink);
                        }
                    }
                }
            }
            for bucket in buckets.into_values() {
                self.flush(bucket, s, progress, sink);
            }
            Ok(())
        })
    }

    /// A worker's part: the image's hash, whether its label is done, else its network input.
    fn prepare<'a>(&self, item: &'a ImageItem, store: &Path) -> Prepared<'a> {
        let hash = match sha256_file(&item.path) {
            Ok(h) => h,
            Err(e) => return Prepared::Failed(item, e.to_string()),
        };
        let redo = match label_state(store, item, &self.teacher, &hash) {
            Ok(LabelState::Done) => return Prepared::Done,
            Ok(LabelState::Stale(why)) => {
                tracing::info!("redoing the label of {}: {why}", item.rel.display());
                true
            }
            Ok(LabelState::Missing) => false,
            Err(e) => return Prepared::Failed(item, e.to_string()),
        };
        let input = depth_core::image_io::read_image(&item.path).map_err(|e| e.to_string()).and_then(|img| {
            Ok((img.dimensions(), self.estimator.preprocess(&img).map_err(|e| e.to_string())?))
        });
        match input {
            Ok((size, input)) => Prepared::Ready(Ready { item, hash, size, input, redo }),
            Err(e) => Prepared::Failed(item, e),
        }
    }

    /// Labels one bucket's inputs (one shape) in one forward pass and hands them to `sink`.
    fn flush(&self, bucket: Vec<Ready>, s: &mut Summary, progress: &dyn Progress, sink: &mut Sink) {
        if bucket.is_empty() {
            return;
        }
        let inputs: Vec<candle_core::Tensor> = bucket.iter().map(|r| r.input.clone()).collect();
        let mut maps = self
            .estimator
            .network_of(&inputs)
            .and_then(|d| {
                let (h, w) = (d.dim(2)? as u32, d.dim(3)? as u32);
                let maps = d.to_device(&candle_core::Device::Cpu)?.flatten_from(1)?.to_vec2::<f32>()?;
                Ok((w, h, maps.into_iter()))
            })
            .map_err(|e| e.to_string());
        for Ready { item, hash, size, redo, .. } in bucket {
            let written = match &mut maps {
                Ok((w, h, maps)) => {
                    let data = maps.next().expect("one map per input");
                    let target = Target::new(*w, *h, TargetKind::Disparity, data, |_| true);
                    sink(item, &hash, size, target).map_err(|e| e.to_string())
                }
                Err(e) => Err(e.clone()),
            };
            match written {
                Ok(_) => {
                    s.labelled += 1;
                    s.redone += usize::from(redo);
                }
                Err(e) => s.failed.push((item.path.display().to_string(), e)),
            }
            progress.advance(1);
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
}
