//! Throughput of the synthetic-scene renderer (scenes/s at 518×518) and of the loader (images/s
//! decoded, resized, cropped to 518 and augmented, from the real photos in the fixtures), and
//! the loader on one pseudo-labelled corpus stored both ways: a label file per image read in a
//! random order, and tar shards streamed (issue 28's target: shards no slower per core).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use depth_data::formats::folder::ImageFolder;
use depth_data::synth::{PhotoBank, SceneConfig, SynthDataset};
use depth_data::{Cursor, Dataset, Loader, LoaderConfig, Source};
use std::sync::Arc;
use std::time::Duration;

fn bench(c: &mut Criterion) {
    let photos = depth_core::fixtures::fixtures_dir().expect("fixtures").join("unlabeled");
    let folder = ImageFolder::new("unlabeled", &photos).expect("photo folder");
    let paths: Vec<_> = folder.relative_paths().iter().map(|p| photos.join(p)).collect();
    let bank = Arc::new(PhotoBank::from_paths(&paths).expect("photos"));

    let mut g = c.benchmark_group("synth");
    g.sample_size(20).measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(1));
    let data = SynthDataset { config: SceneConfig::default(), bank, seed: 0, count: usize::MAX };
    let mut i = 0;
    // a different scene each iteration: the mean covers indoor and outdoor scenes alike
    g.bench_function("scene_518", |b| {
        b.iter(|| {
            i += 1;
            data.load(i).unwrap()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("loader");
    g.sample_size(10).measurement_time(Duration::from_secs(30));
    let n = folder.len();
    g.throughput(Throughput::Elements(n as u64));
    for strong in [false, true] {
        let source = Source {
            dataset: Arc::new(ImageFolder::new("unlabeled", &photos).unwrap()),
            ratio: 1.0,
            strong,
            pseudo: false,
        };
        let cfg = LoaderConfig { batch_size: 1, workers: 2, prefetch: 4, ..LoaderConfig::default() };
        let loader = Loader::new(vec![source], cfg).unwrap();
        let name = if strong { "photos_518_strong" } else { "photos_518" };
        g.bench_function(name, |b| {
            b.iter(|| loader.iter(Cursor::default()).try_fold(0, |n, batch| batch.map(|_| n + 1)).unwrap())
        });
    }
    g.finish();
    pseudo_stores(c);
}

/// 2,000 generated 160×120 photos with 56×42 labels, stored as files and as 20 shards of 100,
/// read by the loader (2 workers, batches of 16, 112² crops).
fn pseudo_stores(c: &mut Criterion) {
    use depth_data::formats::pseudo::{PseudoLabeled, TeacherId, label_bytes, write_pseudo_label};
    use depth_data::formats::shards::{ShardSample, ShardedPseudo, write_shard};
    use depth_data::transforms::Augment;
    use depth_data::{Target, TargetKind};
    let dir = tempfile::tempdir().unwrap();
    let (photos, files, shards) =
        (dir.path().join("photos"), dir.path().join("files"), dir.path().join("shards"));
    std::fs::create_dir_all(&photos).unwrap();
    let teacher = TeacherId {
        name: "bench".into(),
        sha256: "0".repeat(64),
        input_size: 56,
        precision: Default::default(),
    };
    let mut samples = Vec::new();
    let n = 2000;
    for i in 0..n {
        let rel = std::path::PathBuf::from(format!("{i:05}.png"));
        let image = image::RgbImage::from_fn(160, 120, |x, y| {
            image::Rgb([(x * 7 + i) as u8, (y * 5) as u8, (x ^ y) as u8])
        });
        image.save(photos.join(&rel)).unwrap();
        let label = Target::new(
            56,
            42,
            TargetKind::Disparity,
            (0..56 * 42).map(|k| (k % 56 + i) as f32).collect(),
            |_| true,
        );
        write_pseudo_label(&files, &rel, &label, (160, 120), &teacher, "").unwrap();
        let bytes = label_bytes(&rel, &label, (160, 120), &teacher, "").unwrap();
        samples.push(ShardSample { path: photos.join(&rel), rel, image_sha256: String::new(), label: bytes });
    }
    for (j, chunk) in samples.chunks(100).enumerate() {
        write_shard(&shards, &format!("{j:03}"), &teacher, chunk).unwrap();
    }
    let stores: [(&str, Arc<dyn Dataset>); 2] = [
        ("files_random", Arc::new(PseudoLabeled::new("files", &photos, &files).unwrap())),
        ("shards_streamed", Arc::new(ShardedPseudo::open("shards", &shards).unwrap())),
    ];
    let mut g = c.benchmark_group("pseudo_store");
    g.sample_size(10).measurement_time(Duration::from_secs(30));
    g.throughput(Throughput::Elements(n as u64));
    for (name, dataset) in stores {
        let augment = Augment { input_size: 112, crop: Some(112), ..Augment::default() };
        let cfg =
            LoaderConfig { batch_size: 16, workers: 2, prefetch: 4, augment, ..LoaderConfig::default() };
        let loader =
            Loader::new(vec![Source { dataset, ratio: 1.0, strong: false, pseudo: true }], cfg).unwrap();
        g.bench_function(name, |b| {
            b.iter(|| loader.iter(Cursor::default()).try_fold(0, |n, batch| batch.map(|_| n + 1)).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
