//! Transforms and loader: official preprocessing parity, image/target alignment through every
//! geometric transform, determinism across thread counts, resume, sharding, mixing and bad items.

use depth_data::transforms::{self, Augment, Jitter, Prepared};
use depth_data::{Cursor, Dataset, Loader, LoaderConfig, OnError, Sample, Source, Target, TargetKind};
use image::RgbImage;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn resize_and_normalise_reproduce_the_official_network_input() {
    let fixtures = depth_core::fixtures::fixtures_dir().unwrap();
    for name in ["demo01", "square04"] {
        let refs = candle_core::safetensors::load(
            fixtures.join(format!("reference/vits_518/{name}.safetensors")),
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let expected: Vec<f32> = refs["input"].flatten_all().unwrap().to_vec1().unwrap();
        let ext = if name == "square04" { "png" } else { "jpg" };
        let image = depth_core::image_io::read_image(&fixtures.join(format!("images/{name}.{ext}"))).unwrap();
        let sample = Sample { id: name.into(), image, target: None, intrinsics: None };
        let p = transforms::resize(&sample, 518, 14).unwrap();
        let x = candle_core::Tensor::from_slice(&p.image, (3, p.height, p.width), &candle_core::Device::Cpu)
            .unwrap();
        let image: Vec<f32> =
            depth_core::net_input::normalize(&x).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let (_, _, h, w) = refs["input"].dims4().unwrap();
        assert_eq!((p.height, p.width), (h, w));
        // float32 storage of RGB/255 before normalising: within 2 ulp of the float64 pipeline
        let err = max_abs(&image, &expected);
        println!("{name}: max |Δ| = {err:e}");
        assert!(err < 1e-6, "{name}: {err}");
    }
}

#[test]
fn nearest_follows_opencv() {
    assert_eq!(transforms::nearest_index(3, 5), vec![0, 1, 3]);
    assert_eq!(transforms::nearest_index(5, 2), vec![0, 0, 0, 1, 1]);
    assert_eq!(transforms::nearest_index(4, 4), vec![0, 1, 2, 3]);
}

/// A prepared sample whose red channel equals its target, so misalignment is visible.
fn tagged(w: usize, h: usize, seed: u64) -> Prepared {
    use rand::Rng;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let values: Vec<f32> = (0..w * h).map(|_| rng.random_range(0.0..1.0)).collect();
    let valid: Vec<bool> = values.iter().map(|v| *v > 0.1).collect();
    let mut image = values.clone();
    image.extend((0..2 * w * h).map(|i| (i % 7) as f32 / 7.0));
    Prepared {
        id: format!("t{seed}"),
        width: w,
        height: h,
        image,
        target: Some((TargetKind::Depth, values, valid)),
    }
}

fn assert_aligned(p: &Prepared) {
    let (_, values, valid) = p.target.as_ref().unwrap();
    assert_eq!(&p.image[..p.width * p.height], &values[..]);
    assert!(values.iter().zip(valid).all(|(v, ok)| *ok == (*v > 0.1)));
}

#[test]
fn crop_flip_and_cutmix_keep_image_and_target_aligned() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for s in 0..20 {
        let mut p = transforms::random_crop(&tagged(37, 23, s), 16, &mut rng);
        assert_eq!((p.width, p.height), (16, 16));
        assert_aligned(&p);
        transforms::hflip(&mut p);
        assert_aligned(&p);
        let other = transforms::random_crop(&tagged(30, 30, s + 100), 16, &mut rng);
        let (x0, y0, bw, bh) = transforms::cutmix(&mut p, &other, (0.02, 0.4), &mut rng).unwrap();
        assert_aligned(&p);
        let area = (bw * bh) as f64 / 256.0;
        assert!(area <= 0.45 && bw >= 1 && bh >= 1, "box {bw}×{bh}");
        for y in y0..y0 + bh {
            for x in x0..x0 + bw {
                assert_eq!(p.image[y * 16 + x], other.image[y * 16 + x]);
            }
        }
    }
    // flipping twice is the identity; the crop of the full size is the identity
    let p = tagged(9, 5, 3);
    let mut q = p.clone();
    transforms::hflip(&mut q);
    assert_eq!(q.image[0], p.image[8]);
    transforms::hflip(&mut q);
    assert_eq!(q, p);
    assert_eq!(transforms::crop(&p, 0, 0, 9, 5), p);
}

#[test]
fn photometric_transforms_behave_like_torchvision() {
    let base = tagged(20, 10, 5);
    // zero-width jitter ranges change nothing
    let mut p = base.clone();
    let none = Jitter { p: 1.0, brightness: 0.0, contrast: 0.0, saturation: 0.0, hue: 0.0 };
    transforms::color_jitter(&mut p, &none, &mut ChaCha8Rng::seed_from_u64(0));
    assert!(max_abs(&p.image, &base.image) < 1e-6);
    // the same RNG gives the same result; outputs stay in [0, 1]
    let j = Augment::default().jitter;
    let (mut a, mut b) = (base.clone(), base.clone());
    transforms::color_jitter(&mut a, &j, &mut ChaCha8Rng::seed_from_u64(7));
    transforms::color_jitter(&mut b, &j, &mut ChaCha8Rng::seed_from_u64(7));
    assert_eq!(a, b);
    assert_ne!(a.image, base.image);
    assert!(a.image.iter().all(|v| (0.0..=1.0).contains(v)));
    // grey scale makes the channels equal
    let mut g = base.clone();
    transforms::grayscale(&mut g);
    assert_eq!(g.image[..200], g.image[200..400]);
    // blur keeps a constant image and the mean of a varying one
    let mut c = base.clone();
    c.image.iter_mut().for_each(|v| *v = 0.25);
    transforms::gaussian_blur(&mut c, 1.5);
    assert!(c.image.iter().all(|v| (v - 0.25).abs() < 1e-6));
    let mut bl = base.clone();
    transforms::gaussian_blur(&mut bl, 1.0);
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
    assert!((mean(&bl.image[..200]) - mean(&base.image[..200])).abs() < 0.02);
    assert!(max_abs(&bl.image, &base.image) > 0.05, "blur did nothing");
}

/// An in-memory dataset: item i is a 40×30 image whose red channel encodes i; items listed in
/// `bad` fail to load.
struct Toy {
    name: String,
    len: usize,
    bad: Vec<usize>,
    /// Added to every target value (tells the sources' targets apart).
    base: f32,
}

impl Dataset for Toy {
    fn name(&self) -> &str {
        &self.name
    }
    fn len(&self) -> usize {
        self.len
    }
    fn id(&self, i: usize) -> String {
        format!("{}/{i}", self.name)
    }
    fn load(&self, i: usize) -> depth_data::Result<Sample> {
        if self.bad.contains(&i) {
            return Err(depth_core::CoreError::format(self.id(i), "toy", "corrupt on purpose").into());
        }
        let image = RgbImage::from_fn(40, 30, |x, y| image::Rgb([i as u8, (x * 6) as u8, (y * 8) as u8]));
        let target =
            Target::depth(40, 30, (0..1200).map(|k| self.base + (k % 40) as f32 + i as f32).collect());
        Ok(Sample { id: self.id(i), image, target: Some(target), intrinsics: None })
    }
}

fn toy(name: &str, len: usize, bad: Vec<usize>) -> Arc<dyn Dataset> {
    Arc::new(Toy { name: name.into(), len, bad, base: 1.0 })
}

fn config(workers: usize) -> LoaderConfig {
    let augment = Augment { input_size: 28, crop: Some(28), ..Augment::default() };
    LoaderConfig { batch_size: 4, workers, prefetch: 2, seed: 42, augment, ..LoaderConfig::default() }
}

fn sources() -> Vec<Source> {
    vec![
        Source { dataset: toy("a", 10, vec![]), ratio: 3.0, strong: false, pseudo: false },
        Source { dataset: toy("b", 5, vec![]), ratio: 1.0, strong: true, pseudo: true },
    ]
}

/// A batch as plain values: ids, image, target and the cursor after it.
type Flat = (Vec<String>, Vec<f32>, Vec<f32>, Cursor);

fn run(loader: &Loader, cursor: Cursor) -> Vec<Flat> {
    loader
        .iter(cursor)
        .map(|b| {
            let b = b.unwrap();
            // each sample says whether its source holds pseudo-labels (only "b" does)
            assert_eq!(b.pseudo, b.sources.iter().map(|&k| k == 1).collect::<Vec<_>>());
            let img = b.image.flatten_all().unwrap().to_vec1().unwrap();
            let t = b.target.flatten_all().unwrap().to_vec1().unwrap();
            (b.ids, img, t, b.cursor)
        })
        .collect()
}

#[test]
fn batches_do_not_depend_on_the_number_of_workers_and_resume_exactly() {
    let one = Loader::new(sources(), config(1)).unwrap();
    let three = Loader::new(sources(), config(3)).unwrap();
    let a = run(&one, Cursor { epoch: 2, position: 0 });
    let b = run(&three, Cursor { epoch: 2, position: 0 });
    assert_eq!(a.len(), 3, "15 items, batches of 4, the partial batch dropped");
    assert!(a == b, "batches differ between 1 and 3 workers");
    // resume from the cursor after the first batch
    let resumed = run(&three, a[0].3);
    assert!(resumed[..] == a[1..], "resumed batches differ");
    // another epoch is another order and other augmentations
    let other = run(&one, Cursor { epoch: 3, position: 0 });
    assert!(other[0].0 != a[0].0 || other[0].1 != a[0].1);
    // batch tensors have the documented shapes
    let batch = one.iter(Cursor::default()).next().unwrap().unwrap();
    assert_eq!(batch.image.dims(), &[4, 3, 28, 28]);
    assert_eq!(batch.target.dims(), &[4, 28, 28]);
    assert_eq!(batch.mask.dims(), &[4, 28, 28]);
    assert!(batch.kinds.iter().all(|k| *k == Some(TargetKind::Depth)));
}

#[test]
fn ratios_and_shards_partition_each_epoch() {
    let cfg = LoaderConfig { epoch_size: Some(40), ..config(1) };
    let full = Loader::new(sources(), cfg.clone()).unwrap().epoch_order(0);
    assert_eq!(full.len(), 40);
    assert_eq!(full.iter().filter(|(k, _)| *k == 0).count(), 30, "ratio 3 : 1");
    // the short source is cycled through whole permutations: each item 2×
    for i in 0..5 {
        assert_eq!(full.iter().filter(|&&x| x == (1, i)).count(), 2);
    }
    let shards: Vec<Vec<(usize, usize)>> = (0..3)
        .map(|rank| {
            Loader::new(sources(), LoaderConfig { rank, world: 3, ..cfg.clone() }).unwrap().epoch_order(0)
        })
        .collect();
    let mut merged: Vec<_> = shards.concat();
    let mut expected = full.clone();
    merged.sort();
    expected.sort();
    assert_eq!(merged, expected, "shards partition the epoch");
    assert!(Loader::new(sources(), LoaderConfig { rank: 3, world: 3, ..cfg }).is_err());
}

#[test]
fn a_sample_is_the_same_on_whichever_rank_loads_it() {
    // rank r's i-th sample is the whole epoch's sample i·world + r, augmented alike (strong
    // augmentations included), so N ranks see exactly what one process sees
    let cfg = LoaderConfig { batch_size: 1, epoch_size: Some(12), ..config(2) };
    let one = run(&Loader::new(sources(), cfg.clone()).unwrap(), Cursor::default());
    assert_eq!(one.len(), 12);
    for rank in 0..3 {
        let shard = run(
            &Loader::new(sources(), LoaderConfig { rank, world: 3, ..cfg.clone() }).unwrap(),
            Cursor::default(),
        );
        assert_eq!(shard.len(), 4);
        for (i, s) in shard.iter().enumerate() {
            let whole = &one[i * 3 + rank];
            assert_eq!(s.0, whole.0, "rank {rank} sample {i}: another item");
            assert!(
                s.1 == whole.1 && s.2 == whole.2,
                "rank {rank} sample {i} ({:?}): augmented otherwise",
                s.0
            );
        }
    }
}

#[test]
fn bad_items_are_skipped_and_counted_or_fail() {
    let src = vec![Source { dataset: toy("c", 12, vec![2, 5, 7]), ratio: 1.0, strong: false, pseudo: false }];
    let loader = Loader::new(src.clone(), LoaderConfig { on_error: OnError::Skip, ..config(2) }).unwrap();
    let mut it = loader.iter(Cursor::default());
    let batches: Vec<_> = it.by_ref().map(|b| b.unwrap()).collect();
    assert_eq!(batches.len(), 2, "9 good items make 2 batches of 4");
    assert_eq!(it.skipped_total, 3);
    let skipped: Vec<&String> = batches.iter().flat_map(|b| b.skipped.iter().map(|(id, _)| id)).collect();
    assert!(skipped.iter().all(|id| id.starts_with("c/")));
    assert!(batches.iter().flat_map(|b| &b.skipped).all(|(_, e)| e.contains("corrupt on purpose")));
    // failing is the default: a bad item is never skipped in silence
    assert_eq!(LoaderConfig::default().on_error, OnError::Fail);
    let fail = Loader::new(src, config(2)).unwrap();
    let first_err = fail.iter(Cursor::default()).find_map(|b| b.err()).unwrap();
    assert!(first_err.to_string().contains("c/"), "{first_err}");
}

/// CutMix pastes only between samples of the same kind: a pseudo-label never receives a box of
/// ground truth (nor the reverse), whatever the batch's order.
#[test]
fn cutmix_pairs_samples_of_the_same_kind_only() {
    let gt: Arc<dyn Dataset> = Arc::new(Toy { name: "gt".into(), len: 12, bad: vec![], base: 1.0 });
    let pl: Arc<dyn Dataset> = Arc::new(Toy { name: "pl".into(), len: 12, bad: vec![], base: 1000.0 });
    let src = vec![
        Source { dataset: gt, ratio: 1.0, strong: true, pseudo: false },
        Source { dataset: pl, ratio: 1.0, strong: true, pseudo: true },
    ];
    let mut cfg = config(2);
    cfg.augment.cutmix = 1.0;
    cfg.augment.cutmix_area = (0.3, 0.4);
    let (mut mixed_batches, mut pasted) = (0, 0);
    for b in Loader::new(src, cfg).unwrap().iter(Cursor::default()) {
        let b = b.unwrap();
        // the batch says where a box was pasted (the loss normalises it on its own)
        pasted += b.pasted.iter().flatten().count();
        mixed_batches += usize::from(b.pseudo.contains(&true) && b.pseudo.contains(&false));
        let target: Vec<Vec<Vec<f32>>> = b.target.to_vec3().unwrap();
        for (i, t) in target.iter().enumerate() {
            let values: Vec<f32> = t.iter().flatten().copied().filter(|v| *v > 0.0).collect();
            let (lo, hi) = if b.pseudo[i] { (1000.0, f32::MAX) } else { (0.0, 1000.0) };
            assert!(
                values.iter().all(|v| (lo..hi).contains(v)),
                "sample {} got another kind's target",
                b.ids[i]
            );
        }
    }
    // (pairing with the next sample whatever its kind fails the assertion above in such batches)
    assert!(mixed_batches > 0, "no batch mixed the kinds: the test proves nothing");
    assert!(pasted > 0, "no pasted box recorded");
}
