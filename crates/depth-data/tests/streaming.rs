//! The loader's streaming order for sharded sources: each rank reads its own shards whole
//! through a shuffle buffer, the same number of items as every other rank, deterministically.

use depth_data::transforms::Augment;
use depth_data::{Cursor, Dataset, Loader, LoaderConfig, Sample, Source, Target};
use std::collections::BTreeSet;
use std::sync::Arc;

/// `groups` shards of items; item i is a small image whose red channel encodes it.
struct Sharded {
    groups: Option<Vec<usize>>,
    len: usize,
}

impl Dataset for Sharded {
    fn name(&self) -> &str {
        "sharded"
    }
    fn len(&self) -> usize {
        self.len
    }
    fn groups(&self) -> Option<Vec<usize>> {
        self.groups.clone()
    }
    fn id(&self, i: usize) -> String {
        format!("sharded/{i}")
    }
    fn load(&self, i: usize) -> depth_data::Result<Sample> {
        let image = image::RgbImage::from_pixel(28, 28, image::Rgb([i as u8, 0, 0]));
        Ok(Sample {
            id: self.id(i),
            image,
            target: Some(Target::depth(28, 28, vec![1.0; 784])),
            intrinsics: None,
        })
    }
}

fn source(groups: &[usize]) -> Source {
    let len = groups.iter().sum();
    let dataset = Arc::new(Sharded { groups: Some(groups.to_vec()), len });
    Source { dataset, ratio: 1.0, strong: false, pseudo: true }
}

fn order(sources: Vec<Source>, rank: usize, world: usize, buffer: usize, epoch: u64) -> Vec<(usize, usize)> {
    let augment = Augment { input_size: 28, crop: Some(28), ..Augment::default() };
    let cfg =
        LoaderConfig { rank, world, shuffle_buffer: buffer, seed: 7, augment, ..LoaderConfig::default() };
    Loader::new(sources, cfg).unwrap().epoch_order(epoch)
}

/// The shard of item `i` when every shard holds 5.
fn shard_of(i: usize) -> usize {
    i / 5
}

#[test]
fn each_rank_reads_its_own_shards_whole_and_in_turn() {
    let groups = [5; 6];
    let ranks: Vec<Vec<usize>> = (0..2)
        .map(|r| order(vec![source(&groups)], r, 2, 1, 0).into_iter().map(|(_, i)| i).collect())
        .collect();
    let mut all = BTreeSet::new();
    for items in &ranks {
        assert_eq!(items.len(), 15, "30 items over 2 ranks");
        // a buffer of 1 is no shuffle: whole shards, each in order, one after another
        for chunk in items.chunks(5) {
            assert!(
                chunk.windows(2).all(|w| w[1] == w[0] + 1 && shard_of(w[1]) == shard_of(w[0])),
                "{items:?}"
            );
        }
        all.extend(items.iter().copied());
    }
    assert_eq!(all.len(), 30, "the ranks' shards partition the store");
    let shards = |items: &[usize]| items.iter().map(|&i| shard_of(i)).collect::<BTreeSet<_>>();
    assert!(shards(&ranks[0]).is_disjoint(&shards(&ranks[1])));
    // the shards are dealt again each epoch
    let next: Vec<usize> = order(vec![source(&groups)], 0, 2, 1, 1).into_iter().map(|(_, i)| i).collect();
    assert_ne!(next, ranks[0]);
    assert_eq!(order(vec![source(&groups)], 0, 2, 1, 0).len(), 15);
}

#[test]
fn the_buffer_shuffles_within_its_reach_only() {
    let groups = [5; 6];
    let plain: Vec<usize> = order(vec![source(&groups)], 1, 2, 1, 3).into_iter().map(|(_, i)| i).collect();
    let mixed: Vec<usize> = order(vec![source(&groups)], 1, 2, 4, 3).into_iter().map(|(_, i)| i).collect();
    assert_eq!(
        mixed,
        order(vec![source(&groups)], 1, 2, 4, 3).into_iter().map(|(_, i)| i).collect::<Vec<_>>()
    );
    assert_ne!(mixed, plain, "a buffer of 4 shuffles");
    let (mut a, mut b) = (mixed.clone(), plain.clone());
    a.sort();
    b.sort();
    assert_eq!(a, b, "the same items as streaming without a buffer");
    // the item read s-th is given out no earlier than s - 4: nothing comes from a shard not yet read
    for (p, item) in mixed.iter().enumerate() {
        let s = plain.iter().position(|x| x == item).unwrap();
        assert!(p + 4 >= s, "item {item} read {s}-th came out {p}-th");
    }
}

#[test]
fn ranks_get_equal_counts_from_unequal_shards() {
    // rank holding the large shard has 10 items, the other 1 to 3: both give 6, cycling
    let groups = [10, 1, 1, 1];
    for rank in 0..2 {
        let items = order(vec![source(&groups)], rank, 2, 3, 0);
        assert_eq!(items.len(), 6, "rank {rank}: 13 items / 2 ranks");
    }
    // a random-access source beside it: each rank gets its share of both, interleaved
    let other = Source {
        dataset: Arc::new(Sharded { groups: None, len: 8 }),
        ratio: 1.0,
        strong: false,
        pseudo: false,
    };
    let mixed = order(vec![source(&groups), other], 1, 2, 3, 0);
    let from = |k: usize| mixed.iter().filter(|(s, _)| *s == k).count();
    assert_eq!((from(0), from(1)), (5, 5), "21 items, ratio 1:1, two ranks");
    assert_ne!(mixed.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]);
}

#[test]
fn fewer_shards_than_ranks_is_refused_and_batches_resume() {
    let augment = Augment { input_size: 28, crop: Some(28), ..Augment::default() };
    let cfg = LoaderConfig { world: 5, rank: 4, augment, ..LoaderConfig::default() };
    let err = Loader::new(vec![source(&[5; 4])], cfg.clone()).err().expect("4 shards, 5 ranks");
    assert!(err.to_string().contains("fewer than the 5 ranks"), "{err}");
    // batches on a sharded source: any worker count, resumed mid-epoch
    let cfg = LoaderConfig { world: 2, rank: 0, batch_size: 3, workers: 3, shuffle_buffer: 4, ..cfg };
    let ids = |loader: &Loader, cursor| -> Vec<Vec<String>> {
        loader.iter(cursor).map(|b| b.unwrap().ids).collect()
    };
    let three = Loader::new(vec![source(&[5; 6])], cfg.clone()).unwrap();
    let one = Loader::new(vec![source(&[5; 6])], LoaderConfig { workers: 1, ..cfg }).unwrap();
    let whole = ids(&three, Cursor::default());
    assert_eq!(whole.len(), 5);
    assert_eq!(whole, ids(&one, Cursor::default()));
    assert_eq!(ids(&one, Cursor { epoch: 0, position: 6 }), whole[2..]);
}
