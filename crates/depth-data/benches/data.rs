//! Throughput of the synthetic-scene renderer (scenes/s at 518×518) and of the loader (images/s
//! decoded, resized, cropped to 518 and augmented, from the real photos in the fixtures).

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
}

criterion_group!(benches, bench);
criterion_main!(benches);
