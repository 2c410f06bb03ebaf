//! Synthetic scenes: exact planar depth on hand-built scenes, determinism by seed, and the
//! on-disk dataset round trip.

use depth_data::synth::math::{Basis, V3, v3};
use depth_data::synth::scene::{Camera, Light, Object, Sky};
use depth_data::synth::shapes::{Shape, Terrain};
use depth_data::synth::texture::Texture;
use depth_data::synth::{PhotoBank, Scene, SceneConfig, SceneKind, SynthDataset, SynthFolder, write_dataset};
use depth_data::{Dataset, Intrinsics, Target};
use std::sync::Arc;

const W: u32 = 64;
const H: u32 = 48;
const K: Intrinsics = Intrinsics { fx: 50.0, fy: 52.0, cx: 31.0, cy: 24.5 };

fn scene(objects: Vec<Shape>, position: V3, basis: Basis) -> Scene {
    Scene {
        kind: SceneKind::Outdoor,
        camera: Camera { position, basis, intrinsics: K, width: W, height: H },
        objects: objects.into_iter().map(|shape| Object { shape, texture: 0 }).collect(),
        textures: vec![Texture::noise(1, v3(0.2, 0.3, 0.4), v3(0.9, 0.8, 0.7), 4.0, 1.0)],
        lights: vec![Light::Sun { direction: v3(0.0, -1.0, 0.5).normalized(), colour: v3(1.0, 1.0, 1.0) }],
        ambient: v3(0.2, 0.2, 0.2),
        sky: Some(Sky { horizon: v3(0.8, 0.8, 0.9), zenith: v3(0.2, 0.4, 0.9) }),
    }
}

/// The world point seen at pixel (x, y) with depth z.
fn unproject(s: &Scene, x: u32, y: u32, z: f32) -> V3 {
    let k = &s.camera.intrinsics;
    let d = v3((x as f32 - k.cx as f32) / k.fx as f32, (y as f32 - k.cy as f32) / k.fy as f32, 1.0);
    s.camera.position + s.camera.basis.apply(d) * z
}

fn rel(a: f32, b: f32) -> f32 {
    (a - b).abs() / b.abs().max(1e-6)
}

#[test]
fn a_fronto_parallel_plane_has_the_same_depth_everywhere() {
    let plane =
        Shape::Plane { origin: v3(0.0, 0.0, 7.25), u: v3(1.0, 0.0, 0.0), v: v3(0.0, 1.0, 0.0), half: None };
    let s = scene(vec![plane], v3(0.0, 0.0, 0.0), Basis::IDENTITY);
    let (img, depth) = s.render();
    assert_eq!(img.dimensions(), (W, H));
    assert_eq!(depth.valid_count(), (W * H) as usize);
    for &z in &depth.values {
        assert!(rel(z, 7.25) < 1e-6, "{z}");
    }
}

#[test]
fn depth_is_planar_and_back_projects_onto_the_surfaces() {
    // a tilted plane seen by a rotated camera: every back-projected point lies on the plane
    let (u, v) = (v3(1.0, 0.2, 0.1).normalized(), v3(0.0, 1.0, -0.3));
    let v = (v - u * u.dot(v)).normalized();
    let origin = v3(0.5, 1.0, 9.0);
    let basis = Basis::camera(0.3, -0.1, 0.05);
    let s = scene(vec![Shape::Plane { origin, u, v, half: None }], v3(0.2, 1.1, 0.0), basis);
    let (_, depth) = s.render();
    let n = u.cross(v);
    let mut checked = 0;
    for y in 0..H {
        for x in 0..W {
            let z = depth.get(x, y);
            if z > 0.0 {
                let p = unproject(&s, x, y, z);
                assert!((p - origin).dot(n).abs() < 1e-4 * z, "off-plane by {}", (p - origin).dot(n));
                checked += 1;
            }
        }
    }
    assert!(checked > 1000);

    // a sphere straight ahead: the ray through the principal point meets it at distance − radius
    let sphere = Shape::Sphere { centre: v3(0.0, 0.0, 5.0), radius: 1.5 };
    let mut s = scene(vec![sphere], v3(0.0, 0.0, 0.0), Basis::IDENTITY);
    s.camera.intrinsics = Intrinsics { cx: 32.0, cy: 24.0, ..K };
    let (_, depth) = s.render();
    assert!(rel(depth.get(32, 24), 3.5) < 1e-6, "{}", depth.get(32, 24));
    // off-centre pixels: the back-projected point is on the sphere; the corners see the sky
    for (x, y) in [(36, 24), (32, 30), (28, 20)] {
        let p = unproject(&s, x, y, depth.get(x, y));
        let off = ((p - v3(0.0, 0.0, 5.0)).norm() - 1.5).abs();
        assert!(off < 1e-5, "pixel ({x}, {y}) is {off} m off the sphere");
    }
    assert!(!depth.valid[0] && depth.values[0] == 0.0);
}

#[test]
fn rooms_boxes_and_cylinders_back_project_onto_their_faces() {
    let room = Shape::Cuboid { centre: v3(0.0, 1.5, 0.0), axes: Basis::IDENTITY, half: v3(3.0, 1.5, 4.0) };
    let pillar = Shape::Cylinder { base: v3(0.5, 0.0, 2.0), radius: 0.3, height: 2.0 };
    let s = scene(vec![room, pillar], v3(0.1, 1.4, -1.0), Basis::camera(0.2, -0.2, 0.0));
    let (_, depth) = s.render();
    assert_eq!(depth.valid_count(), (W * H) as usize, "a closed room has no sky");
    for y in 0..H {
        for x in 0..W {
            let p = unproject(&s, x, y, depth.get(x, y));
            let on_wall =
                [(p.x.abs() - 3.0), (p.y - 1.5).abs() - 1.5, p.z.abs() - 4.0].iter().any(|e| e.abs() < 1e-4);
            let q = p - v3(0.5, 0.0, 2.0);
            let on_pillar = ((q.x * q.x + q.z * q.z).sqrt() - 0.3).abs() < 1e-4 || (q.y - 2.0).abs() < 1e-4;
            assert!(on_wall || on_pillar, "pixel ({x}, {y}) → {p:?}");
        }
    }
}

#[test]
fn terrain_depth_lands_on_the_height_field() {
    let terrain = Terrain { seed: 9, base: 0.0, amplitude: 3.0, frequency: 0.05, extent: 300.0 };
    let s = scene(vec![Shape::Terrain(terrain.clone())], v3(0.0, 6.0, 0.0), Basis::camera(0.4, -0.3, 0.0));
    let (_, depth) = s.render();
    let mut hits = 0;
    for y in 0..H {
        for x in 0..W {
            let z = depth.get(x, y);
            if z > 0.0 {
                let p = unproject(&s, x, y, z);
                assert!((p.y - terrain.height(p.x, p.z)).abs() < 1e-5 * z.max(1.0) + 1e-4, "at {p:?}");
                hits += 1;
            }
        }
    }
    assert!(hits > (W * H) as usize / 2, "{hits}");
}

fn dataset(seed: u64, count: usize) -> SynthDataset {
    let config = SceneConfig { width: 96, height: 72, ..SceneConfig::default() };
    SynthDataset { config, bank: Arc::new(PhotoBank::default()), seed, count }
}

#[test]
fn scenes_are_deterministic_by_seed_and_differ_across_seeds() {
    let a = dataset(5, 6);
    let kinds: Vec<SceneKind> = (0..6).map(|i| a.scene(i).kind).collect();
    assert!(kinds.contains(&SceneKind::Indoor) && kinds.contains(&SceneKind::Outdoor), "{kinds:?}");
    for i in 0..6 {
        let (x, y) = (a.load(i).unwrap(), a.load(i).unwrap());
        assert!(x.image == y.image && x.target == y.target, "item {i} is not deterministic");
        let t: &Target = x.target.as_ref().unwrap();
        assert!(t.valid_fraction() > 0.2, "item {i}: valid {}", t.valid_fraction());
        let (lo, hi) = t.valid_range().unwrap();
        assert!(lo > 0.05 && hi < 400.0, "item {i}: {lo}..{hi}");
    }
    let b = dataset(6, 1);
    assert!(a.load(0).unwrap().image != b.load(0).unwrap().image);
}

#[test]
fn photo_crops_texture_the_scenes() {
    let dir = depth_core::fixtures::fixtures_dir().unwrap().join("unlabeled");
    let paths = vec![dir.join("da2_demo07.jpg"), dir.join("skimage_chelsea.png")];
    let bank = Arc::new(PhotoBank::from_paths(&paths).unwrap());
    let config = SceneConfig { width: 64, height: 64, photo_fraction: 1.0, ..SceneConfig::default() };
    let with = SynthDataset { config: config.clone(), bank, seed: 3, count: 1 };
    let without = SynthDataset { config, bank: Arc::new(PhotoBank::default()), seed: 3, count: 1 };
    // same geometry (depth), different surfaces
    let (a, b) = (with.load(0).unwrap(), without.load(0).unwrap());
    assert!(a.target == b.target, "the photo bank changed the geometry");
    assert!(a.image != b.image, "photo crops did not change the surfaces");
}

#[test]
fn written_datasets_read_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(11, 3);
    let mut seen = Vec::new();
    let index = write_dataset(dir.path(), &data, |n| seen.push(n)).unwrap();
    assert_eq!(seen, vec![1, 2, 3]);
    assert_eq!(index.items.len(), 3);
    let folder = SynthFolder::open(dir.path()).unwrap();
    assert_eq!(folder.len(), 3);
    for i in 0..3 {
        let (a, b) = (data.load(i).unwrap(), folder.load(i).unwrap());
        assert!(a.image == b.image, "PNG is lossless");
        assert!(a.target == b.target, "npy float32 is lossless");
        assert_eq!(a.intrinsics, b.intrinsics);
    }
    std::fs::write(dir.path().join("index.json"), "{\"format\": \"other\"}").unwrap();
    let err = SynthFolder::open(dir.path()).err().unwrap().to_string();
    assert!(err.contains("index.json"), "{err}");
}

/// Every file under `dir` by relative path, with its bytes.
fn tree(dir: &std::path::Path) -> std::collections::BTreeMap<std::path::PathBuf, Vec<u8>> {
    depth_core::walk::walk_files(dir, &|_| true)
        .unwrap()
        .into_iter()
        .map(|p| (p.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&p).unwrap()))
        .collect()
}

#[test]
fn an_interrupted_set_finishes_on_rerun_and_nothing_else_is_mixed_in() {
    let (whole, cut) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let data = dataset(21, 4);
    write_dataset(whole.path(), &data, |_| {}).unwrap();
    // stop after two scenes, as a kill would (every file is atomic, so this is the same state)
    let stopped = std::panic::catch_unwind(|| {
        write_dataset(cut.path(), &data, |n| assert!(n < 2, "interrupted")).unwrap();
    });
    assert!(stopped.is_err());
    assert!(!cut.path().join("index.json").exists() && cut.path().join("partial.json").exists());
    write_dataset(cut.path(), &data, |_| {}).unwrap();
    assert_eq!(tree(cut.path()), tree(whole.path()), "the resumed set differs from an uninterrupted one");
    // a finished set is left alone by the same command, and refused to another
    write_dataset(cut.path(), &data, |_| {}).unwrap();
    let err = write_dataset(cut.path(), &dataset(22, 4), |_| {}).unwrap_err().to_string();
    assert!(err.contains("other arguments"), "{err}");
    // an unfinished set of other arguments, or stray files, are refused too
    let stray = tempfile::tempdir().unwrap();
    let _ = std::panic::catch_unwind(|| write_dataset(stray.path(), &data, |_| panic!("stop")));
    let err = write_dataset(stray.path(), &dataset(23, 4), |_| {}).unwrap_err().to_string();
    assert!(err.contains("unfinished") && err.contains("other arguments"), "{err}");
    std::fs::remove_file(stray.path().join("partial.json")).unwrap();
    let err = write_dataset(stray.path(), &data, |_| {}).unwrap_err().to_string();
    assert!(err.contains("no run of this command claims"), "{err}");
}
