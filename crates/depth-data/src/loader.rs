//! The training loader: several datasets mixed by ratio into one deterministic order per epoch,
//! sharded across ranks, prepared by worker threads into a bounded prefetch queue, collated into
//! candle tensors, and resumable at any (epoch, position).
//!
//! Determinism: the order of epoch `e` and every random choice of the sample at position `p`
//! of the whole epoch (rank r's i-th sample is p = i·world + r) depend only on (seed, e, p),
//! never on thread timing or the number of ranks; a batch is the next `batch_size` samples
//! that loaded, so skipping a bad file shifts later batches the same way on every run.

use crate::dataset::Dataset;
use crate::error::{DataError, Result};
use crate::sample::TargetKind;
use crate::transforms::{self, Augment, Prepared, item_rng};
use candle_core::{Device, Tensor};
use crossbeam_channel::{Receiver, bounded};
use depth_core::CoreError;
use depth_core::config::Invalid;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;

/// One dataset in the mix.
#[derive(Clone)]
pub struct Source {
    pub dataset: Arc<dyn Dataset>,
    /// Relative share of each epoch.
    pub ratio: f64,
    /// Apply the strong perturbations (colour, blur, CutMix): Depth Anything V1 does so on
    /// unlabeled images only.
    pub strong: bool,
    /// Its targets are a teacher's pseudo-labels (the loss trims them and may align features
    /// on them), not ground truth. Each sample of a batch carries it.
    pub pseudo: bool,
}

/// A CutMix box: (x0, y0, width, height) in the sample's pixels.
pub type PastedBox = (usize, usize, usize, usize);

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Count the bad item, log it, and take the next one.
    Skip,
    /// Stop with the item's error, which names its file (the default: a missing label or a
    /// broken image is never skipped in silence).
    Fail,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoaderConfig {
    pub batch_size: usize,
    pub workers: usize,
    /// Prepared samples buffered ahead, in batches.
    pub prefetch: usize,
    pub seed: u64,
    /// Samples per epoch over all ranks; None = the sum of the datasets' lengths.
    pub epoch_size: Option<usize>,
    pub rank: usize,
    pub world: usize,
    pub on_error: OnError,
    /// Samples a rank draws its next one from when streaming a sharded source (WebDataset's
    /// shuffle buffer): larger mixes more shards, smaller holds less.
    pub shuffle_buffer: usize,
    pub augment: Augment,
}

impl LoaderConfig {
    /// Consistency of the sizes and probabilities (a config checks it before anything is
    /// written), within limits that keep one batch allocatable (see [`Loader::new`] for the
    /// machine's memory).
    pub fn validate(&self) -> std::result::Result<(), Invalid> {
        let bad = |key: &str, reason: String| Err(Invalid::new(key, reason));
        if self.world == 0 || self.rank >= self.world {
            return bad("rank", format!("rank {} is not below world size {}", self.rank, self.world));
        }
        if !(1..=MAX_BATCH).contains(&self.batch_size) || !(1..=MAX_WORKERS).contains(&self.workers) {
            return bad(
                "batch_size",
                format!(
                    "batch_size {} must be in 1..={MAX_BATCH} and workers {} in 1..={MAX_WORKERS}",
                    self.batch_size, self.workers
                ),
            );
        }
        if self.prefetch > MAX_PREFETCH {
            return bad(
                "prefetch",
                format!("prefetch {} is more than {MAX_PREFETCH} batches", self.prefetch),
            );
        }
        if !(1..=MAX_SHUFFLE_BUFFER).contains(&self.shuffle_buffer) {
            return bad(
                "shuffle_buffer",
                format!("shuffle_buffer {} must be in 1..={MAX_SHUFFLE_BUFFER}", self.shuffle_buffer),
            );
        }
        if self.epoch_size.is_some_and(|n| n == 0 || n > MAX_EPOCH) {
            return bad("epoch_size", format!("epoch_size {:?} must be in 1..={MAX_EPOCH}", self.epoch_size));
        }
        self.augment.validate().map_err(|e| e.under("augment"))
    }

    /// The bytes the loader holds for prepared samples at most: the batches in flight
    /// (prefetch + the one being built) of images and targets at the crop size.
    pub fn memory(&self) -> u64 {
        let a = &self.augment;
        let side = a.crop.unwrap_or(a.input_size) as u64;
        // RGB + target + mask, float32; without a crop the longer side is bounded by nothing
        // here, so count twice the area of the square
        let per_sample = side * side * 5 * 4 * if a.crop.is_some() { 1 } else { 2 };
        per_sample * self.batch_size as u64 * (self.prefetch as u64 + 2)
    }
}

/// Limits of the loader's sizes: beyond them one batch cannot be allocated on any machine
/// this trains on, or the threads cannot be started.
pub const MAX_BATCH: usize = 4096;
pub const MAX_WORKERS: usize = 256;
pub const MAX_PREFETCH: usize = 64;
pub const MAX_EPOCH: usize = 1 << 32;
pub const MAX_SHUFFLE_BUFFER: usize = 1 << 20;

impl Default for LoaderConfig {
    fn default() -> Self {
        Self {
            batch_size: 8,
            workers: 2,
            prefetch: 2,
            seed: 0,
            epoch_size: None,
            rank: 0,
            world: 1,
            on_error: OnError::Fail,
            shuffle_buffer: 1000,
            augment: Augment::default(),
        }
    }
}

/// Where a run stands: `position` counts this rank's samples of `epoch` already consumed
/// (loaded or skipped). Save it with a checkpoint; pass it back to [`Loader::iter`] to resume.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cursor {
    pub epoch: u64,
    pub position: usize,
}

/// A collated batch.
#[derive(Debug)]
pub struct Batch {
    /// (B, 3, H, W) float32, ImageNet-normalised.
    pub image: Tensor,
    /// (B, H, W) float32 targets (0 where invalid or absent).
    pub target: Tensor,
    /// (B, H, W) float32, 1 on valid target pixels.
    pub mask: Tensor,
    /// Per sample: the target's kind, None for unlabeled images.
    pub kinds: Vec<Option<TargetKind>>,
    /// Per sample: index of its source in the loader's list.
    pub sources: Vec<usize>,
    /// Per sample: whether its target is a pseudo-label (its source's `pseudo`).
    pub pseudo: Vec<bool>,
    /// Per sample: the box CutMix pasted from another sample, (x0, y0, width, height): its
    /// target comes from another image, so a relative loss normalises it on its own.
    pub pasted: Vec<Option<PastedBox>>,
    pub ids: Vec<String>,
    /// The cursor just after this batch.
    pub cursor: Cursor,
    /// Items skipped as unreadable while assembling this batch: (id, error).
    pub skipped: Vec<(String, String)>,
}

pub struct Loader {
    sources: Vec<Source>,
    config: LoaderConfig,
}

impl Loader {
    pub fn new(sources: Vec<Source>, config: LoaderConfig) -> Result<Self> {
        let bad = |reason: String| Err(CoreError::bad_input("loader", reason).into());
        if sources.is_empty() || sources.iter().all(|s| s.dataset.is_empty() || s.ratio <= 0.0) {
            return bad("no source has items and a positive ratio".into());
        }
        config.validate().map_err(|e| CoreError::bad_input("loader", e))?;
        // a rank streams whole shards: with fewer shards than ranks one would have none
        if let Some((s, n)) = sources
            .iter()
            .filter(|s| s.ratio > 0.0)
            .find_map(|s| s.dataset.groups().map(|g| (s, g.len())).filter(|&(_, n)| n < config.world))
        {
            return bad(format!(
                "{} is stored in {n} shards, fewer than the {} ranks that each read whole shards: \
                 label it again with a smaller --shard-size",
                s.dataset.name(),
                config.world
            ));
        }
        let need = config.memory();
        if let Some(free) = depth_core::machine::available_memory().filter(|&free| need > free / 2) {
            let a = &config.augment;
            return bad(format!(
                "batch_size {} at {}² with prefetch {} holds about {} MB of samples, more than half of the \
                 {} MB this machine has free: lower batch_size (accumulate keeps the batch), the crop or prefetch",
                config.batch_size,
                a.crop.unwrap_or(a.input_size),
                config.prefetch,
                need >> 20,
                free >> 20
            ));
        }
        Ok(Self { sources, config })
    }

    pub fn config(&self) -> &LoaderConfig {
        &self.config
    }

    /// This rank's items of `epoch` as (source, index): each source gets its ratio's share of the
    /// epoch (cycling when it is short); see `order.rs` for how they are shuffled and split.
    pub fn epoch_order(&self, epoch: u64) -> Vec<(usize, usize)> {
        crate::order::epoch_order(&self.sources, &self.config, epoch)
    }

    /// Batches from `cursor` to the end of its epoch (a partial last batch is dropped so every
    /// batch has `batch_size` samples).
    pub fn iter(&self, cursor: Cursor) -> BatchIter {
        let order = Arc::new(self.epoch_order(cursor.epoch));
        let (tx, rx) = bounded(self.config.prefetch.max(1) * self.config.batch_size);
        let next = Arc::new(AtomicUsize::new(cursor.position));
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..self.config.workers)
            .map(|_| {
                let (order, next, stop, tx) = (order.clone(), next.clone(), stop.clone(), tx.clone());
                let sources = self.sources.clone();
                let (aug, seed, epoch) = (self.config.augment.clone(), self.config.seed, cursor.epoch);
                let (rank, world) = (self.config.rank, self.config.world);
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let pos = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&(k, index)) = order.get(pos) else { break };
                        let src = &sources[k];
                        // keyed by the item's place in the whole epoch, so a sample is
                        // augmented alike whichever rank loads it (N ranks = one process)
                        let mut rng = item_rng(seed, epoch, (pos * world + rank) as u64);
                        let item = src
                            .dataset
                            .load(index)
                            .and_then(|s| s.checked())
                            .and_then(|s| transforms::prepare(&s, &aug, src.strong, &mut rng))
                            .map_err(|e| (src.dataset.id(index), e));
                        if tx.send((pos, k, item)).is_err() {
                            break;
                        }
                    }
                })
            })
            .collect();
        BatchIter {
            rx,
            workers,
            stop,
            pending: BTreeMap::new(),
            cursor,
            len: order.len(),
            config: self.config.clone(),
            sources: self.sources.clone(),
            skipped_total: 0,
        }
    }
}

/// A prepared sample or the failing item's id and error.
type Outcome = std::result::Result<Prepared, (String, DataError)>;
type Item = (usize, Outcome);

pub struct BatchIter {
    rx: Receiver<(usize, usize, Outcome)>,
    workers: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    pending: BTreeMap<usize, Item>,
    cursor: Cursor,
    len: usize,
    config: LoaderConfig,
    sources: Vec<Source>,
    /// Items skipped so far by this iterator.
    pub skipped_total: usize,
}

impl BatchIter {
    /// The next item in order, waiting for the worker that prepares it.
    fn next_item(&mut self) -> Option<Item> {
        let pos = self.cursor.position;
        if pos >= self.len {
            return None;
        }
        while !self.pending.contains_key(&pos) {
            let (p, k, item) = self.rx.recv().ok()?;
            self.pending.insert(p, (k, item));
        }
        self.cursor.position += 1;
        self.pending.remove(&pos)
    }

    fn collate(
        &self,
        items: Vec<(usize, Prepared)>,
        pasted: Vec<Option<PastedBox>>,
        skipped: Vec<(String, String)>,
    ) -> Result<Batch> {
        let (b, h, w) = (items.len(), items[0].1.height, items[0].1.width);
        if let Some((_, p)) = items.iter().find(|(_, p)| (p.height, p.width) != (h, w)) {
            return Err(CoreError::bad_input("batch", format!(
                    "{} is {}×{} after the transforms but the batch is {w}×{h}; set augment.crop to batch different sizes",
                    p.id, p.width, p.height
                )).into());
        }
        let mut image = Vec::with_capacity(b * 3 * h * w);
        let (mut target, mut mask) = (Vec::with_capacity(b * h * w), Vec::with_capacity(b * h * w));
        let mut kinds = Vec::with_capacity(b);
        for (_, p) in &items {
            image.extend_from_slice(&p.image);
            match &p.target {
                Some((k, v, m)) => {
                    target.extend_from_slice(v);
                    mask.extend(m.iter().map(|&ok| ok as u8 as f32));
                    kinds.push(Some(*k));
                }
                None => {
                    target.extend(std::iter::repeat_n(0.0, h * w));
                    mask.extend(std::iter::repeat_n(0.0, h * w));
                    kinds.push(None);
                }
            }
        }
        let dev = Device::Cpu;
        Ok(Batch {
            image: depth_core::net_input::normalize(&Tensor::from_vec(image, (b, 3, h, w), &dev)?)?,
            target: Tensor::from_vec(target, (b, h, w), &dev)?,
            mask: Tensor::from_vec(mask, (b, h, w), &dev)?,
            kinds,
            sources: items.iter().map(|(k, _)| *k).collect(),
            pseudo: items.iter().map(|(k, _)| self.sources[*k].pseudo).collect(),
            pasted,
            ids: items.into_iter().map(|(_, p)| p.id).collect(),
            cursor: self.cursor,
            skipped,
        })
    }
}

impl Iterator for BatchIter {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        let first = self.cursor.position;
        let mut items = Vec::with_capacity(self.config.batch_size);
        let mut skipped = Vec::new();
        while items.len() < self.config.batch_size {
            let (k, item) = self.next_item()?;
            match item {
                Ok(p) => items.push((k, p)),
                Err((id, e)) => match self.config.on_error {
                    OnError::Fail => return Some(Err(e)),
                    OnError::Skip => {
                        tracing::warn!("skipping {id}: {e}");
                        self.skipped_total += 1;
                        skipped.push((id, e.to_string()));
                    }
                },
            }
        }
        // CutMix pairs sample i with the next sample of the batch (cyclically) from a source of
        // the same kind — pseudo-labels with pseudo-labels, ground truth with ground truth of the
        // same target kind — so that metric depth is never pasted into a disparity label (strong
        // sources only), with the RNG of the batch's first position so that it is as
        // deterministic as the rest. A sample with no partner stays as it is.
        let mut rng = item_rng(self.config.seed ^ 0xC07_u64, self.cursor.epoch, first as u64);
        let aug = &self.config.augment;
        let kind = |(k, p): &(usize, transforms::Prepared)| {
            (self.sources[*k].pseudo, p.target.as_ref().map(|t| t.0))
        };
        let mut pasted = vec![None; items.len()];
        for i in 0..items.len() {
            use rand::Rng;
            if self.sources[items[i].0].strong && rng.random_bool(aug.cutmix) {
                let partner = (1..items.len())
                    .map(|d| (i + d) % items.len())
                    .find(|&j| kind(&items[j]) == kind(&items[i]));
                if let Some(j) = partner {
                    let other = items[j].1.clone();
                    pasted[i] = transforms::cutmix(&mut items[i].1, &other, aug.cutmix_area, &mut rng);
                }
            }
        }
        Some(self.collate(items, pasted, skipped))
    }
}

impl Drop for BatchIter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // unblock workers waiting on a full queue, then join them
        while self.rx.try_recv().is_ok() {}
        for w in self.workers.drain(..) {
            while !w.is_finished() {
                while self.rx.try_recv().is_ok() {}
                std::thread::yield_now();
            }
            let _ = w.join();
        }
    }
}
