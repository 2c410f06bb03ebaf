//! The compact pseudo-label store on real photos: labels at the teacher's resolution in
//! float16, upsampled by the loader, against the float32 full-resolution labels the store used
//! to hold (the official inference's output); and the size of an SA-1B-sized photo's label.

use candle_core::Device;
use depth_core::{Precision, Silent};
use depth_data::formats::pseudo::{PseudoLabeled, TeacherId};
use depth_data::{Dataset, list_images};
use depth_models::{DepthEstimator, ModelConfig, WeightsInit, build_trainable, load_model};
use depth_train::pseudo_label::{Labeller, Shard};

fn teacher(name: &str) -> TeacherId {
    TeacherId { name: name.into(), sha256: String::new(), input_size: 518, precision: Precision::F32 }
}

/// The fixtures' real photos labelled by the fixture ViT-S (seeded random weights): what the
/// loader reads back is the float32 full-resolution depth within float16's rounding.
#[test]
fn compact_labels_equal_the_full_resolution_float32_depth_to_float16_rounding() {
    let fixtures = depth_core::fixtures::fixtures_dir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    let mut names: Vec<_> =
        std::fs::read_dir(fixtures.join("unlabeled")).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    for p in names.iter().filter(|p| p.extension().is_some_and(|e| e == "jpg")).take(3) {
        std::fs::copy(p, photos.join(p.file_name().unwrap())).unwrap();
    }
    let weights = fixtures.join("weights/da2_vits_random.pth");
    let model = load_model(&weights.as_path().into(), &Device::Cpu).unwrap();
    let estimator = DepthEstimator::new(model, Device::Cpu);
    let store = dir.path().join("labels");
    let items = list_images(&photos).unwrap();
    let labeller = Labeller { estimator, teacher: teacher("vits-random"), batch: 2 };
    let s = labeller.run(&items, Shard::ALL, &store, &Silent).unwrap();
    assert_eq!(s.labelled, 3, "{:?}", s.failed);
    let ds = PseudoLabeled::new("photos", &photos, &store).unwrap();
    let reference =
        DepthEstimator::new(load_model(&weights.as_path().into(), &Device::Cpu).unwrap(), Device::Cpu);
    let mut worst: f64 = 0.0;
    for (i, item) in items.iter().enumerate() {
        let got = ds.load(i).unwrap().target.unwrap();
        let want = reference.estimate(item.path.as_path()).unwrap();
        assert_eq!((got.width, got.height), (want.width, want.height));
        assert!(got.valid.iter().all(|&v| v));
        let max = want.data.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
        let err = got.values.iter().zip(&want.data).map(|(a, b)| (a - b).abs() as f64).fold(0.0, f64::max);
        let bytes = std::fs::metadata(ds.label_path(i).unwrap()).unwrap().len();
        eprintln!(
            "{}: {}×{} image, label {} bytes ({:.1}× smaller than float32 at the image's size), max error {:.2e} of max",
            item.rel.display(),
            want.width,
            want.height,
            bytes,
            (want.width * want.height * 4) as f64 / bytes as f64,
            err / max
        );
        worst = worst.max(err / max);
    }
    // float16 keeps 11 bits: 2⁻¹¹ = 4.9e-4 of a value, at most of the largest
    assert!(worst <= 4.9e-4, "float16 labels differ by {worst:.2e} of the maximum");
}

/// An SA-1B photo (2250×1500) gets a 784×518 label (the official resize: 518 × 777 up to a multiple
/// of 14): ≤ 0.9 MB, where float32 at the photo's size
/// was 13.5 MB.
#[test]
fn an_sa1b_sized_photo_has_a_label_under_a_megabyte() {
    let dir = tempfile::tempdir().unwrap();
    let photo = dir.path().join("photos/sa_1.png");
    std::fs::create_dir_all(photo.parent().unwrap()).unwrap();
    image::RgbImage::from_fn(2250, 1500, |x, y| {
        image::Rgb([(x % 251) as u8, (y % 241) as u8, ((x + y) % 239) as u8])
    })
    .save(&photo)
    .unwrap();
    let tiny =
        build_trainable(&ModelConfig::custom(32, 1, 2, 16), &WeightsInit::Scratch, 0, &Device::Cpu).unwrap();
    let labeller = Labeller {
        estimator: DepthEstimator::new(tiny.model, Device::Cpu),
        teacher: teacher("tiny"),
        batch: 1,
    };
    let store = dir.path().join("labels");
    let items = list_images(&dir.path().join("photos")).unwrap();
    labeller.run(&items, Shard::ALL, &store, &Silent).unwrap();
    let label = store.join("sa_1.safetensors");
    let (target, meta) = depth_data::formats::pseudo::read_pseudo_label(&label).unwrap();
    assert_eq!((target.width, target.height, meta.image_size), (784, 518, (2250, 1500)));
    let bytes = std::fs::metadata(&label).unwrap().len();
    eprintln!("2250×1500 photo: label {bytes} bytes (float32 at the photo's size: {})", 2250 * 1500 * 4);
    assert!(bytes <= 900_000, "{bytes} bytes");
}

/// Tar shards: the same samples as the file store, a rerun that reads only the indexes (it
/// finishes with every image deleted), and a shard cut short (no index) redone to the same bytes.
#[test]
fn sharded_labels_equal_file_labels_and_resume_from_their_indexes() {
    use depth_data::formats::shards::{
        ShardHead, ShardedPseudo, index_path, read_head, read_index, tar_path,
    };
    let head_v1 = |h: &ShardHead| ShardHead { format: "depth-pseudo-shard/1".into(), ..h.clone() };
    let fixtures = depth_core::fixtures::fixtures_dir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    std::fs::create_dir_all(photos.join("sub")).unwrap();
    let mut names: Vec<_> =
        std::fs::read_dir(fixtures.join("unlabeled")).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    for (i, p) in names.iter().take(5).enumerate() {
        // small copies keep the test fast; one in a sub-folder
        let img = image::open(p).unwrap().thumbnail(120, 120).to_rgb8();
        let to = if i == 2 { photos.join("sub/p2.png") } else { photos.join(format!("p{i}.png")) };
        img.save(&to).unwrap();
    }
    let weights = fixtures.join("weights/da2_vits_random.pth");
    let estimator =
        DepthEstimator::new(load_model(&weights.as_path().into(), &Device::Cpu).unwrap(), Device::Cpu)
            .with_input_size(56);
    let labeller =
        Labeller { estimator, teacher: TeacherId { input_size: 56, ..teacher("vits-random") }, batch: 2 };
    let items = list_images(&photos).unwrap();
    let (files, shards) = (dir.path().join("files"), dir.path().join("shards"));
    labeller.run(&items, Shard::ALL, &files, &Silent).unwrap();
    let s = labeller.run_sharded(&items, Shard::ALL, &shards, (2, false), &Silent).unwrap();
    assert_eq!((s.labelled, s.already_done), (5, 0));
    let names: Vec<String> = (0..3).map(|j| format!("000-of-001-{j:06}")).collect();
    for n in &names {
        assert!(tar_path(&shards, n).is_file() && index_path(&shards, n).is_file(), "{n}");
    }
    // a plain tar: image and label side by side, in key order
    let members: Vec<String> = tar::Archive::new(std::fs::File::open(tar_path(&shards, &names[0])).unwrap())
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert_eq!(
        members,
        ["000000.png", "000000.disparity.safetensors", "000001.png", "000001.disparity.safetensors"]
    );
    // the loader reads the same samples from the shards as from the files
    let from_files = PseudoLabeled::new("files", &photos, &files).unwrap();
    let from_shards = ShardedPseudo::open("shards", &shards).unwrap();
    assert_eq!(from_shards.len(), 5);
    assert_eq!(from_shards.groups(), Some(vec![2, 2, 1]), "the loader streams whole shards");
    // opening reads each index's head only; an index of the first format (no count) is read whole
    let index = read_index(&index_path(&shards, &names[0])).unwrap();
    let head = read_head(&index_path(&shards, &names[0])).unwrap();
    assert_eq!((head.count, &head.teacher, head.input_size), (2, &index.teacher, 56));
    let first = std::fs::read_to_string(index_path(&shards, &names[0])).unwrap();
    let old = first.replace("depth-pseudo-shard/2", "depth-pseudo-shard/1").replace("  \"count\": 2,\n", "");
    assert_ne!(old, first);
    std::fs::write(index_path(&shards, &names[0]), &old).unwrap();
    assert_eq!(read_head(&index_path(&shards, &names[0])).unwrap(), head_v1(&head));
    let reopened = ShardedPseudo::open("shards", &shards).unwrap();
    assert_eq!(reopened.load(1).unwrap().target, from_shards.load(1).unwrap().target);
    std::fs::write(index_path(&shards, &names[0]), &first).unwrap();
    for (i, item) in items.iter().enumerate() {
        let (a, b) = (from_files.load(i).unwrap(), from_shards.load(i).unwrap());
        assert!(b.id.ends_with(&item.rel.display().to_string()), "{} for {}", b.id, item.rel.display());
        assert_eq!((a.image, a.target), (b.image, b.target), "sample {i}");
    }
    // a rerun reads the indexes only: it finishes with every image gone
    let tar1 = std::fs::read(tar_path(&shards, &names[1])).unwrap();
    let kept = dir.path().join("kept");
    std::fs::rename(&photos, &kept).unwrap();
    let s = labeller.run_sharded(&items, Shard::ALL, &shards, (2, false), &Silent).unwrap();
    assert_eq!((s.labelled, s.already_done, s.failed.len()), (0, 5, 0));
    // --verify re-hashes: a changed image redoes its shard only
    std::fs::rename(&kept, &photos).unwrap();
    let changed = photos.join("p0.png");
    image::RgbImage::from_pixel(40, 30, image::Rgb([9, 9, 9])).save(&changed).unwrap();
    let s = labeller.run_sharded(&items, Shard::ALL, &shards, (2, false), &Silent).unwrap();
    assert_eq!((s.labelled, s.already_done), (0, 5), "trusted without --verify");
    let s = labeller.run_sharded(&items, Shard::ALL, &shards, (2, true), &Silent).unwrap();
    assert_eq!((s.labelled, s.redone, s.already_done), (2, 2, 3));
    // an image added shifts the chunks: the shards that now hold other images are redone
    image::RgbImage::from_pixel(40, 30, image::Rgb([1, 2, 3])).save(photos.join("p00.png")).unwrap();
    let more = list_images(&photos).unwrap();
    let s = labeller.run_sharded(&more, Shard::ALL, &shards, (2, false), &Silent).unwrap();
    assert_eq!((s.labelled, s.already_done), (6, 0), "{s:?}");
    assert_eq!(ShardedPseudo::open("shards", &shards).unwrap().len(), 6);
    // and fewer images leave no shard behind that would be read twice
    let s = labeller.run_sharded(&more, Shard::ALL, &shards, (1, false), &Silent).unwrap();
    assert_eq!(s.labelled, 6);
    std::fs::remove_file(photos.join("p00.png")).unwrap();
    let s = labeller.run_sharded(&items, Shard::ALL, &shards, (2, false), &Silent).unwrap();
    assert_eq!((s.labelled, s.already_done), (5, 0));
    assert_eq!(ShardedPseudo::open("shards", &shards).unwrap().len(), 5);
    let kept = dir.path().join("kept");
    std::fs::rename(&photos, &kept).unwrap();
    // a shard killed before its index is redone, to the same bytes
    std::fs::rename(&kept, &photos).unwrap();
    std::fs::remove_file(index_path(&shards, &names[1])).unwrap();
    std::fs::write(tar_path(&shards, &names[1]), &tar1[..tar1.len() / 2]).unwrap();
    let s = labeller.run_sharded(&items, Shard::ALL, &shards, (2, false), &Silent).unwrap();
    assert_eq!((s.labelled, s.already_done), (2, 3));
    assert_eq!(std::fs::read(tar_path(&shards, &names[1])).unwrap(), tar1);
}
