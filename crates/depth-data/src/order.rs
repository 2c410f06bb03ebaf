//! Why this file: the order in which a rank reads an epoch, kept apart from the threads that
//! read it. Two orders, chosen by the sources:
//! - random-access sources only: one shuffle of the whole epoch, rank r taking every
//!   world-th item, so N ranks read exactly what one process reads (the dist tests rely on it);
//! - with a sharded source (`Dataset::groups`): WebDataset's streaming order for it. The shards
//!   are shuffled per epoch (alike on every rank), rank r takes every world-th shard, reads its
//!   shards whole and in turn, and draws its samples through a shuffle buffer, so a rank reads
//!   a few shards at a time and sequentially within them, and holds the buffer, not the store.
//!   Every rank gets the same number of items of each source (shards hold different counts),
//!   cycling through its shards again when short, so no rank runs out of batches first. The
//!   sources' streams are then interleaved by a per-rank shuffle of their shares.
//!
//! Either order depends on (seed, epoch, rank, world) only; resuming at a position recomputes
//! it (index arithmetic, no reads).

use crate::loader::{LoaderConfig, Source};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// This rank's items of `epoch` as (source, index).
pub(crate) fn epoch_order(sources: &[Source], cfg: &LoaderConfig, epoch: u64) -> Vec<(usize, usize)> {
    let total = cfg.epoch_size.unwrap_or_else(|| sources.iter().map(|s| s.dataset.len()).sum());
    let weight: f64 = sources.iter().filter(|s| !s.dataset.is_empty()).map(|s| s.ratio.max(0.0)).sum();
    let share = |s: &Source| match s.dataset.len() {
        0 => 0,
        _ if s.ratio <= 0.0 => 0,
        _ => (total as f64 * s.ratio / weight).round() as usize,
    };
    let rng = |salt: u64| ChaCha8Rng::seed_from_u64(crate::synth::item_seed(cfg.seed ^ salt, epoch));
    if sources.iter().all(|s| s.dataset.groups().is_none()) {
        // each source's share (cycling through fresh permutations when it is short), all
        // shuffled together, then every world-th item from rank
        let mut rng = rng(0xE90C);
        let mut items = Vec::with_capacity(total);
        for (k, s) in sources.iter().enumerate() {
            items.extend(cycled(s.dataset.len(), share(s), &mut rng).into_iter().map(|i| (k, i)));
        }
        items.shuffle(&mut rng);
        return items.into_iter().skip(cfg.rank).step_by(cfg.world).collect();
    }
    let (rank, world) = (cfg.rank, cfg.world);
    let mut streams = Vec::with_capacity(sources.len());
    let mut labels = Vec::new();
    for (k, s) in sources.iter().enumerate() {
        let quota = share(s) / world;
        let salt = 0x5EED_0000 + k as u64;
        let items = match s.dataset.groups() {
            Some(groups) => {
                let mut draw = rng(salt ^ ((rank as u64 + 1) << 32));
                streamed(&groups, quota, cfg.shuffle_buffer, (rank, world), &mut rng(salt), &mut draw)
            }
            None => cycled(s.dataset.len(), share(s), &mut rng(salt))
                .into_iter()
                .skip(rank)
                .step_by(world)
                .take(quota)
                .collect(),
        };
        labels.extend(std::iter::repeat_n(k, items.len()));
        streams.push(items.into_iter());
    }
    labels.shuffle(&mut rng(0x3E26_0000 ^ rank as u64));
    labels.into_iter().filter_map(|k| Some((k, streams[k].next()?))).collect()
}

/// `count` items of a dataset of `n`: fresh permutations of 0..n, one after another.
fn cycled(n: usize, count: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let mut out = Vec::with_capacity(count);
    while out.len() < count && n > 0 {
        let mut perm: Vec<usize> = (0..n).collect();
        perm.shuffle(rng);
        out.extend(perm.iter().take(count - out.len()));
    }
    out
}

/// `quota` items of a sharded dataset (`groups`: each shard's count, in index order) for one
/// rank: per pass the shards in an order from `shards` (the same on every rank), this rank's
/// every world-th of them, their items in order through a buffer of `buffer` from which `draw`
/// picks the next item. Empty when this rank has no items.
fn streamed(
    groups: &[usize],
    quota: usize,
    buffer: usize,
    (rank, world): (usize, usize),
    shards: &mut ChaCha8Rng,
    draw: &mut ChaCha8Rng,
) -> Vec<usize> {
    let mut starts = Vec::with_capacity(groups.len() + 1);
    starts.push(0);
    for g in groups {
        starts.push(starts.last().unwrap_or(&0) + g);
    }
    let mut order: Vec<usize> = (0..groups.len()).collect();
    let mut out = Vec::with_capacity(quota);
    let mut buf: Vec<usize> = Vec::new();
    loop {
        order.shuffle(shards);
        let mine: Vec<usize> = order.iter().copied().skip(rank).step_by(world).collect();
        let held: usize = mine.iter().map(|&g| groups[g]).sum();
        // a buffer larger than the rank's items would only hold repeats of them
        let cap = buffer.clamp(1, held.max(1));
        for &g in &mine {
            for item in starts[g]..starts[g + 1] {
                if out.len() == quota {
                    return out;
                }
                if buf.len() < cap {
                    buf.push(item);
                } else {
                    let j = draw.random_range(0..buf.len());
                    out.push(std::mem::replace(&mut buf[j], item));
                }
            }
        }
        // the buffer ends the epoch when it holds the rest; otherwise another pass fills it
        if held == 0 || out.len() + buf.len() >= quota {
            break;
        }
    }
    while out.len() < quota && !buf.is_empty() {
        let j = draw.random_range(0..buf.len());
        out.push(buf.swap_remove(j));
    }
    out
}
