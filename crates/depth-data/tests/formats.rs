//! The format readers: each on a small file written here in the true format (exact values and
//! the invalid convention), bad inputs (typed errors, no panics), and the real frames of the
//! shared fixtures (sizes, ranges, valid fractions).

use depth_core::CoreError;
use depth_data::formats::{
    Pairs, annotations, diode, eth3d, folder, hypersim, kitti, middlebury, nyu, png16, pseudo, read_split,
    redwood, sintel, vkitti2,
};
use depth_data::{DataError, Dataset, Intrinsics, Target, TargetKind};
use image::{GrayImage, ImageBuffer, Luma, Rgb, RgbImage};
use std::fs;
use std::path::{Path, PathBuf};

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn mkdirs(path: &Path) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
}

fn write_png16(path: &Path, w: u32, h: u32, v: &[u16]) {
    mkdirs(path);
    ImageBuffer::<Luma<u16>, _>::from_raw(w, h, v.to_vec()).unwrap().save(path).unwrap();
}

fn write_rgb(path: &Path, w: u32, h: u32) {
    mkdirs(path);
    RgbImage::from_fn(w, h, |x, y| Rgb([(x * 10 % 256) as u8, (y * 10 % 256) as u8, 128]))
        .save(path)
        .unwrap();
}

fn write_npy(path: &Path, shape: &[u64], data: &[f32]) {
    mkdirs(path);
    let mut f = std::io::BufWriter::new(fs::File::create(path).unwrap());
    depth_core::npy::write_f32(&mut f, shape, data).unwrap();
}

fn le_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn assert_target(t: &Target, w: u32, h: u32, values: &[f32], valid: &[bool]) {
    assert_eq!((t.width, t.height, t.kind), (w, h, TargetKind::Depth));
    assert_eq!(t.valid, valid);
    for (i, (&a, &b)) in t.values.iter().zip(values).enumerate() {
        assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0), "pixel {i}: {a} vs {b}");
    }
}

fn fmt_err(r: depth_data::Result<impl std::fmt::Debug>, needle: &str) -> String {
    let e = r.expect_err("expected an error");
    let msg = e.to_string();
    assert!(matches!(e, DataError::Core(CoreError::Format { .. })), "not a format error: {msg}");
    assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
    msg
}

// ---------------------------------------------------------------- png16 and the pair formats

#[test]
fn png16_scale_and_invalid_values() {
    let d = tmp();
    let p = d.path().join("d.png");
    write_png16(&p, 3, 2, &[0, 256, 512, 65535, 1000, 1]);
    let t = png16::read_png16_depth(&p, 256.0, &[65535]).unwrap();
    assert_target(
        &t,
        3,
        2,
        &[0.0, 1.0, 2.0, 0.0, 1000.0 / 256.0, 1.0 / 256.0],
        &[false, true, true, false, true, true],
    );
    // without the sentinel 65535 is a depth
    assert_eq!(png16::read_png16_depth(&p, 256.0, &[]).unwrap().get(0, 1), 65535.0 / 256.0);
    // Virtual KITTI 2: centimetres, 65535 = sky
    let t = vkitti2::read_vkitti2_depth(&p).unwrap();
    assert_target(&t, 3, 2, &[0.0, 2.56, 5.12, 0.0, 10.0, 0.01], &[false, true, true, false, true, true]);
    // NYU / Redwood millimetres, KITTI /256
    assert_eq!(nyu::read_nyu_depth(&p).unwrap().get(1, 1), 1.0);
    assert_eq!(redwood::read_redwood_depth(&p).unwrap().get(2, 0), 0.512);
    assert_eq!(kitti::read_kitti_depth(&p).unwrap().get(2, 0), 2.0);
}

#[test]
fn png16_rejects_8bit_rgb_junk_and_missing() {
    let d = tmp();
    let gray8 = d.path().join("g.png");
    GrayImage::from_raw(2, 2, vec![1, 2, 3, 4]).unwrap().save(&gray8).unwrap();
    fmt_err(png16::read_png16_depth(&gray8, 1000.0, &[]), "L8");
    let rgb16 = d.path().join("c.png");
    ImageBuffer::<Rgb<u16>, _>::from_raw(1, 1, vec![1u16, 2, 3]).unwrap().save(&rgb16).unwrap();
    fmt_err(png16::read_png16_depth(&rgb16, 1000.0, &[]), "Rgb16");
    let junk = d.path().join("j.png");
    fs::write(&junk, b"\x89PNG\r\n\x1a\nnot really").unwrap();
    assert!(png16::read_png16_depth(&junk, 1000.0, &[]).is_err());
    let e = png16::read_png16_depth(&d.path().join("none.png"), 1000.0, &[]).unwrap_err();
    assert!(matches!(e, DataError::Core(CoreError::Io { .. })), "{e}");
    assert!(matches!(
        png16::read_png16_depth(&junk, 0.0, &[]),
        Err(DataError::Core(CoreError::BadInput { .. }))
    ));
}

#[test]
fn pairs_reject_size_mismatch() {
    let d = tmp();
    write_rgb(&d.path().join("i.png"), 4, 3);
    write_png16(&d.path().join("t.png"), 3, 3, &[1; 9]);
    let item = depth_data::formats::PairItem {
        image: d.path().join("i.png"),
        target: d.path().join("t.png"),
        intrinsics: None,
    };
    let ds = Pairs::new("x", vec![item], |p, _| nyu::read_nyu_depth(p));
    let e = ds.load(0).unwrap_err();
    assert!(matches!(e, DataError::SizeMismatch { depth_w: 3, image_w: 4, .. }), "{e}");
}

#[test]
fn split_files_resolve_paths_numbers_and_missing_entries() {
    let d = tmp();
    let root = d.path().join("sync");
    write_rgb(&root.join("kitchen/rgb_00001.jpg"), 4, 3);
    write_png16(
        &root.join("kitchen/sync_depth_00001.png"),
        4,
        3,
        &[0, 1000, 2000, 3000, 4, 5, 6, 7, 8, 9, 10, 11],
    );
    let split = d.path().join("train.txt");
    fs::write(
        &split,
        "# comment\n/kitchen/rgb_00001.jpg /kitchen/sync_depth_00001.png 518.8579\n\n\
         kitchen/rgb_00001.jpg None 518.8579\n",
    )
    .unwrap();
    let entries = read_split(&split, &[&root]).unwrap();
    assert_eq!(entries.len(), 1, "the None line is skipped");
    assert_eq!(
        entries[0].paths,
        [root.join("kitchen/rgb_00001.jpg"), root.join("kitchen/sync_depth_00001.png")]
    );
    assert_eq!(entries[0].numbers, [518.8579]);

    let ds = nyu::nyu_bts_split(&split, &root).unwrap();
    assert_eq!((ds.name(), ds.len()), ("nyu", 1));
    let s = ds.load(0).unwrap().checked().unwrap();
    assert_eq!(s.intrinsics, Some(nyu::NYU_INTRINSICS));
    let t = s.target.unwrap();
    assert_eq!((t.get(0, 0), t.get(1, 0), t.get(3, 0)), (0.0, 1.0, 3.0));
    assert!(!t.valid[0] && t.valid[1]);

    fs::write(&split, "kitchen/rgb_00001.jpg kitchen/sync_depth_00002.png 518.8579\n").unwrap();
    match nyu::nyu_bts_split(&split, &root).unwrap_err() {
        DataError::MissingEntry { path, split: s } => {
            assert_eq!(path, root.join("kitchen/sync_depth_00002.png"));
            assert_eq!(s, split);
        }
        e => panic!("expected MissingEntry, got {e}"),
    }
    fs::write(&split, "kitchen/rgb_00001.jpg 518.8579 kitchen/sync_depth_00001.png\n").unwrap();
    fmt_err(read_split(&split, &[&root]), "after a number");
    fs::write(&split, "kitchen/rgb_00001.jpg 518.8579\n").unwrap();
    fmt_err(nyu::nyu_bts_split(&split, &root), "fewer than two paths");
}

#[test]
fn annotations_json_resolves_last_two_components() {
    let d = tmp();
    write_rgb(&d.path().join("rgb/a.jpg"), 2, 2);
    write_png16(&d.path().join("depth/a.png"), 2, 2, &[0, 256, 512, 768]);
    let json = d.path().join("test_annotations.json");
    let entry = r#"{"cam_in": [1.0, 2.0, 3.0, 4.0], "rgb": "data/x_demo/rgb/a.jpg", "depth": "data/x_demo/depth/a.png", "depth_scale": 256.0}"#;
    fs::write(&json, format!(r#"{{"files": [{entry}]}}"#)).unwrap();
    let ds = annotations::read_annotations(&json, "demo").unwrap();
    let s = ds.load(0).unwrap();
    assert_eq!(s.intrinsics, Some(Intrinsics { fx: 1.0, fy: 2.0, cx: 3.0, cy: 4.0 }));
    assert_target(&s.target.unwrap(), 2, 2, &[0.0, 1.0, 2.0, 3.0], &[false, true, true, true]);
    fs::write(
        &json,
        r#"{"files": [{"cam_in": [1,2,3,4], "rgb": "rgb/b.jpg", "depth": "depth/a.png", "depth_scale": 1}]}"#,
    )
    .unwrap();
    assert!(matches!(annotations::read_annotations(&json, "demo"), Err(DataError::MissingEntry { .. })));
    fs::write(&json, r#"{"files": [{"rgb": "rgb/a.jpg"}]}"#).unwrap();
    fmt_err(annotations::read_annotations(&json, "demo"), "cam_in");
}

// ---------------------------------------------------------------- KITTI

const CAM_TO_CAM: &str = "calib_time: 09-Jan-2012 13:57:47\n\
    R_rect_00: 1 0 0 0 1 0 0 0 1\n\
    P_rect_02: 100 0 50.5 0 0 100 20.6 0 0 0 1 0\n\
    P_rect_03: 100 0 50.5 -50 0 100 20.6 0 0 0 1 0\n";
// Velodyne (x forward, y left, z up) → camera (x right, y down, z forward)
const VELO_TO_CAM: &str = "calib_time: 15-Mar-2012 11:37:16\nR: 0 -1 0 0 0 -1 1 0 0\nT: 0 0 0\n";

fn write_velodyne(path: &Path, points: &[[f32; 4]]) {
    mkdirs(path);
    fs::write(path, le_bytes(&points.concat())).unwrap();
}

#[test]
fn kitti_lidar_projection_matches_monodepth2_semantics() {
    let d = tmp();
    fs::write(d.path().join("calib_cam_to_cam.txt"), CAM_TO_CAM).unwrap();
    fs::write(d.path().join("calib_velo_to_cam.txt"), VELO_TO_CAM).unwrap();
    let velo = d.path().join("0000000000.bin");
    write_velodyne(
        &velo,
        &[
            [10.0, 0.0, 0.0, 0.3],  // u = 50.5 → round-half-even 50 → x 49; v = 20.6 → 21 → y 20
            [5.0, 0.0, 0.0, 0.9],   // same pixel, closer: kept
            [20.0, 0.0, 0.0, 0.1],  // same pixel, farther: dropped
            [-3.0, 0.0, 0.0, 0.5],  // behind the sensor (x < 0): dropped
            [10.0, -1.0, 0.5, 0.5], // u = 60.5 → 60 → 59; v = 15.6 → 16 → 15
            [1.0, -10.0, 0.0, 0.5], // u = 1050.5: outside
            [10.0, 5.1, 0.0, 0.5],  // u = -0.5 → -0 → -1: outside
        ],
    );
    let t = kitti::read_velodyne_depth(d.path(), &velo, 2, 80, 30).unwrap();
    assert_eq!((t.width, t.height, t.valid_count()), (80, 30, 2));
    assert_eq!(t.get(49, 20), 5.0);
    assert_eq!(t.get(59, 15), 10.0);
    // camera 3: P_rect_03's 4th column shifts u by -50/z
    let t3 = kitti::read_velodyne_depth(d.path(), &velo, 3, 80, 30).unwrap();
    assert_eq!(t3.get(39, 20), 5.0, "u = 50.5 - 50/5 = 40.5 → 40 → 39");

    // bad inputs
    fs::write(&velo, [0u8; 15]).unwrap();
    fmt_err(kitti::read_velodyne(&velo), "multiple of 16");
    fs::write(d.path().join("calib_velo_to_cam.txt"), "R: 1 0 0 0 1 0 0 0 1\n").unwrap();
    fmt_err(kitti::velo_to_image(d.path(), 2), "no T");
    fs::write(d.path().join("calib_velo_to_cam.txt"), "R: 1 0 0\nT: 0 0 0\n").unwrap();
    fmt_err(kitti::velo_to_image(d.path(), 2), "R has 3 values");
}

#[test]
fn kitti_raw_drive_and_depth_split() {
    let d = tmp();
    let date = d.path().join("2011_09_26");
    let drive = date.join("2011_09_26_drive_0001_sync");
    fs::create_dir_all(&drive).unwrap();
    fs::write(date.join("calib_cam_to_cam.txt"), CAM_TO_CAM).unwrap();
    fs::write(date.join("calib_velo_to_cam.txt"), VELO_TO_CAM).unwrap();
    for i in 0..2 {
        write_rgb(&drive.join(format!("image_02/data/000000000{i}.png")), 80, 30);
    }
    write_velodyne(&drive.join("velodyne_points/data/0000000000.bin"), &[[8.0, 0.0, 0.0, 1.0]]);
    let ds = kitti::kitti_raw(&drive, 2).unwrap();
    assert_eq!(ds.len(), 1, "the frame without a scan is left out");
    let s = ds.load(0).unwrap().checked().unwrap();
    assert_eq!(s.intrinsics, Some(Intrinsics { fx: 100.0, fy: 100.0, cx: 50.5, cy: 20.6 }));
    let t = s.target.unwrap();
    assert_eq!((t.valid_count(), t.get(49, 20)), (1, 8.0));
    assert!(matches!(kitti::kitti_raw(&drive, 1), Err(DataError::Core(CoreError::BadInput { .. }))));

    // benchmark split: images under the raw root, depth under the benchmark root
    let gt = d.path().join("gt/2011_09_26_drive_0001_sync/proj_depth/groundtruth/image_02/0000000000.png");
    write_png16(&gt, 80, 30, &[2560; 80 * 30]);
    let split = d.path().join("eigen.txt");
    fs::write(
        &split,
        "2011_09_26/2011_09_26_drive_0001_sync/image_02/data/0000000000.png \
         2011_09_26_drive_0001_sync/proj_depth/groundtruth/image_02/0000000000.png 721.5377\n\
         2011_09_26/2011_09_26_drive_0001_sync/image_02/data/0000000001.png None 721.5377\n",
    )
    .unwrap();
    let ds = kitti::kitti_depth_split(&split, d.path(), &d.path().join("gt")).unwrap();
    assert_eq!(ds.len(), 1);
    let t = ds.load(0).unwrap().target.unwrap();
    assert_eq!((t.valid_count(), t.get(5, 5)), (2400, 10.0));
}

// ---------------------------------------------------------------- Virtual KITTI 2

#[test]
fn vkitti2_tree_with_intrinsics() {
    let d = tmp();
    let var = d.path().join("Scene01/clone");
    write_rgb(&var.join("frames/rgb/Camera_0/rgb_00000.jpg"), 3, 2);
    write_rgb(&var.join("frames/rgb/Camera_1/rgb_00000.jpg"), 3, 2);
    write_rgb(&var.join("frames/rgb/Camera_1/rgb_00001.jpg"), 3, 2); // no depth: left out
    write_png16(&var.join("frames/depth/Camera_0/depth_00000.png"), 3, 2, &[65535, 100, 250, 0, 8000, 1]);
    write_png16(&var.join("frames/depth/Camera_1/depth_00000.png"), 3, 2, &[1; 6]);
    fs::write(
        var.join("intrinsic.txt"),
        "frame cameraID K[0,0] K[1,1] K[0,2] K[1,2]\n0 0 725.0087 725.0087 620.5 187\n0 1 725.0 725.0 621.5 188\n",
    )
    .unwrap();
    let ds = vkitti2::vkitti2(d.path()).unwrap();
    assert_eq!(ds.len(), 2);
    let s = ds.load(0).unwrap();
    assert!(s.id.ends_with("Camera_0/rgb_00000.jpg"));
    assert_eq!(s.intrinsics, Some(Intrinsics { fx: 725.0087, fy: 725.0087, cx: 620.5, cy: 187.0 }));
    assert_target(
        &s.target.unwrap(),
        3,
        2,
        &[0.0, 1.0, 2.5, 0.0, 80.0, 0.01],
        &[false, true, true, false, true, true],
    );
    assert_eq!(ds.load(1).unwrap().intrinsics.unwrap().cx, 621.5);
}

// ---------------------------------------------------------------- NYU labeled .mat (HDF5)

#[cfg(feature = "hdf5")]
#[test]
fn nyu_labeled_mat_is_transposed_matlab_hdf5_with_user_block() {
    let d = tmp();
    let path = d.path().join("nyu_depth_v2_labeled.mat");
    let (n, w, h) = (2usize, 5usize, 4usize);
    {
        let file = hdf5::File::with_options().with_fcpl(|p| p.userblock(512)).create(&path).unwrap();
        // HDF5 (C order) shapes N×3×W×H and N×W×H: MATLAB's H×W×3×N and H×W×N, reversed
        let mut img = vec![0u8; n * 3 * w * h];
        let mut dep = vec![0f32; n * w * h];
        for i in 0..n {
            for x in 0..w {
                for y in 0..h {
                    for c in 0..3 {
                        img[((i * 3 + c) * w + x) * h + y] = (i * 100 + c * 30 + x * 5 + y) as u8;
                    }
                    dep[(i * w + x) * h + y] = if (i, x, y) == (1, 0, 0) {
                        f32::NAN
                    } else {
                        1.0 + i as f32 + x as f32 * 0.5 + y as f32 * 0.25
                    };
                }
            }
        }
        file.new_dataset::<u8>().shape([n, 3, w, h]).create("images").unwrap().write_raw(&img[..]).unwrap();
        file.new_dataset::<f32>().shape([n, w, h]).create("depths").unwrap().write_raw(&dep[..]).unwrap();
    }
    // a MATLAB v7.3 header in the user block, the HDF5 superblock after it
    let mut bytes = fs::read(&path).unwrap();
    assert_eq!(&bytes[512..520], b"\x89HDF\r\n\x1a\n");
    let header =
        b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 .";
    bytes[..header.len()].copy_from_slice(header);
    fs::write(&path, bytes).unwrap();

    let ds = nyu::NyuLabeled::open(&path).unwrap();
    assert_eq!((ds.name(), ds.len(), ds.size()), ("nyu_labeled", 2, (5, 4)));
    let s = ds.load(1).unwrap();
    assert_eq!(s.image.dimensions(), (5, 4));
    assert_eq!(s.intrinsics, Some(nyu::NYU_INTRINSICS));
    for (x, y) in [(0, 0), (4, 0), (2, 3), (4, 3)] {
        let p = s.image.get_pixel(x, y).0;
        let v = |c: u32| (100 + c * 30 + x * 5 + y) as u8;
        assert_eq!(p, [v(0), v(1), v(2)], "pixel ({x}, {y})");
    }
    let t = s.target.unwrap();
    assert_eq!((t.width, t.height), (5, 4));
    assert_eq!(t.get(4, 1), 2.0 + 2.0 + 0.25);
    assert_eq!(t.get(1, 3), 2.0 + 0.5 + 0.75);
    assert!(!t.valid[0] && t.get(0, 0) == 0.0, "NaN is invalid");
    assert_eq!(t.valid_count(), 19);
    assert!(ds.load(2).is_err());

    // wrong layout
    let bad = d.path().join("bad.mat");
    let file = hdf5::File::create(&bad).unwrap();
    file.new_dataset::<u8>().shape([2, 3, 5, 4]).create("images").unwrap();
    file.new_dataset::<f32>().shape([2, 4, 5]).create("depths").unwrap();
    drop(file);
    fmt_err(nyu::NyuLabeled::open(&bad), "N×3×W×H");
    fs::write(&bad, b"MATLAB 5.0 MAT-file, not HDF5").unwrap();
    fmt_err(nyu::NyuLabeled::open(&bad), "NYU labeled");
}

#[cfg(not(feature = "hdf5"))]
#[test]
fn hdf5_formats_need_the_feature() {
    let p = Path::new("x.hdf5");
    assert!(matches!(nyu::NyuLabeled::open(p), Err(DataError::NoHdf5 { .. })));
    assert!(matches!(hypersim::read_hypersim_depth(p), Err(DataError::NoHdf5 { .. })));
}

// ---------------------------------------------------------------- Hypersim (HDF5)

#[cfg(feature = "hdf5")]
fn write_h5<T: hdf5::H5Type>(path: &Path, shape: &[usize], data: &[T]) {
    mkdirs(path);
    let file = hdf5::File::create(path).unwrap();
    file.new_dataset::<T>().shape(shape).create("dataset").unwrap().write_raw(data).unwrap();
}

#[cfg(feature = "hdf5")]
#[test]
fn hypersim_distance_becomes_planar_depth() {
    use half::f16;
    assert!((hypersim::hypersim_focal(1024) - 886.81).abs() < 1e-3);
    let d = tmp();
    let images = d.path().join("ai_001_001/images");
    let (w, h) = (16usize, 12usize);
    let mut dist = vec![f16::from_f32(4.5); w * h];
    dist[3] = f16::NAN;
    dist[w * 6 + 8] = f16::from_f32(2.0); // pixel (8, 6): centre (0.5, 0.5)
    let path = images.join("scene_cam_00_geometry_hdf5/frame.0007.depth_meters.hdf5");
    write_h5(&path, &[h, w], &dist);
    write_rgb(&images.join("scene_cam_00_final_preview/frame.0007.tonemap.jpg"), w as u32, h as u32);
    write_h5(&images.join("scene_cam_01_geometry_hdf5/frame.0000.depth_meters.hdf5"), &[h, w], &dist); // no image

    let f = 886.81 * w as f64 / 1024.0;
    let planar = |x: f64, y: f64, d: f64| {
        let (xc, yc) = (x + 0.5 - w as f64 / 2.0, y + 0.5 - h as f64 / 2.0);
        (d * f / (xc * xc + yc * yc + f * f).sqrt()) as f32
    };
    let t = hypersim::read_hypersim_depth(&path).unwrap();
    assert_eq!((t.width, t.height, t.valid_count()), (16, 12, 16 * 12 - 1));
    assert!(!t.valid[3] && t.values[3] == 0.0);
    for (x, y, dd) in [(8, 6, 2.0), (0, 0, 4.5), (15, 11, 4.5), (4, 9, 4.5)] {
        let got = t.get(x, y);
        let want = planar(x as f64, y as f64, dd);
        assert!((got - want).abs() < 1e-4, "({x}, {y}): {got} vs {want}");
    }
    assert!(t.get(0, 0) < 4.0, "corners shrink: {}", t.get(0, 0));

    // float32 files read the same
    let p32 = d.path().join("f32.hdf5");
    write_h5(&p32, &[h, w], &dist.iter().map(|v| v.to_f32()).collect::<Vec<_>>());
    assert_eq!(hypersim::read_hypersim_depth(&p32).unwrap(), t);

    let ds = hypersim::hypersim(d.path()).unwrap();
    assert_eq!(ds.len(), 1);
    let s = ds.load(0).unwrap();
    assert!(s.id.ends_with("scene_cam_00_final_preview/frame.0007.tonemap.jpg"));
    assert_eq!(s.intrinsics, Some(hypersim::HYPERSIM_INTRINSICS));
    assert_eq!(s.target.unwrap(), t);

    let bad = d.path().join("bad.hdf5");
    write_h5(&bad, &[2, 3, 4], &[0f32; 24]);
    fmt_err(hypersim::read_hypersim_depth(&bad), "not H×W");
    write_h5(&bad, &[3, 4], &[0i32; 12]);
    fmt_err(hypersim::read_hypersim_depth(&bad), "not float");
}

// ---------------------------------------------------------------- DIODE

#[test]
fn diode_depth_and_mask() {
    let d = tmp();
    let scan = d.path().join("val/indoors/scene_00019/scan_00183");
    let stem = scan.join("00019_00183_indoors_000_010");
    write_rgb(&stem.with_extension("png"), 3, 2);
    write_npy(
        &scan.join("00019_00183_indoors_000_010_depth.npy"),
        &[2, 3, 1],
        &[1.5, 2.0, 0.0, 3.25, f32::NAN, 7.0],
    );
    write_npy(
        &scan.join("00019_00183_indoors_000_010_depth_mask.npy"),
        &[2, 3],
        &[1.0, 0.0, 1.0, 1.0, 1.0, 1.0],
    );
    write_rgb(&scan.join("lonely.png"), 3, 2); // no depth: not an item
    let ds = diode::diode(d.path()).unwrap();
    assert_eq!(ds.len(), 1);
    let s = ds.load(0).unwrap();
    assert_eq!(s.intrinsics, Some(diode::DIODE_INTRINSICS));
    assert_target(
        &s.target.unwrap(),
        3,
        2,
        &[1.5, 0.0, 0.0, 3.25, 0.0, 7.0],
        &[true, false, false, true, false, true],
    );

    write_npy(&scan.join("00019_00183_indoors_000_010_depth_mask.npy"), &[3, 2], &[1.0; 6]);
    fmt_err(ds.load(0), "mask shape");
    write_npy(&scan.join("00019_00183_indoors_000_010_depth.npy"), &[6], &[1.0; 6]);
    fmt_err(ds.load(0), "not H×W×1");
}

// ---------------------------------------------------------------- ETH3D

#[test]
fn eth3d_raw_float32_sized_by_the_image() {
    let d = tmp();
    let scene = d.path().join("courtyard");
    write_rgb(&scene.join("images/dslr_images/DSC_0286.JPG"), 3, 2);
    let gt = scene.join("ground_truth_depth/dslr_images/DSC_0286.JPG");
    mkdirs(&gt);
    fs::write(&gt, le_bytes(&[1.25, f32::INFINITY, 0.0, 40.0, 2.0, f32::NAN])).unwrap();
    let ds = eth3d::eth3d(d.path()).unwrap();
    assert_eq!(ds.len(), 1);
    let s = ds.load(0).unwrap();
    assert_target(
        &s.target.unwrap(),
        3,
        2,
        &[1.25, 0.0, 0.0, 40.0, 2.0, 0.0],
        &[true, false, false, true, true, false],
    );
    fs::write(&gt, le_bytes(&[1.0; 5])).unwrap();
    let msg = fmt_err(ds.load(0), "20 bytes, but the image is 3×2 (expected 24");
    assert!(msg.contains("DSC_0286.JPG"), "{msg}");
}

// ---------------------------------------------------------------- Sintel

fn dpt_bytes(w: i32, h: i32, v: &[f32]) -> Vec<u8> {
    let mut b = sintel::SINTEL_TAG.to_le_bytes().to_vec();
    b.extend(w.to_le_bytes());
    b.extend(h.to_le_bytes());
    b.extend(le_bytes(v));
    b
}

#[test]
fn sintel_dpt_and_cam() {
    let d = tmp();
    let tr = d.path().join("training");
    write_rgb(&tr.join("final/alley_1/frame_0001.png"), 3, 2);
    let dpt = tr.join("depth/alley_1/frame_0001.dpt");
    mkdirs(&dpt);
    fs::write(&dpt, dpt_bytes(3, 2, &[1.0, 2.5, 0.0, f32::INFINITY, 1e3, 7.0])).unwrap();
    let cam = tr.join("camdata_left/alley_1/frame_0001.cam");
    mkdirs(&cam);
    let mut c = sintel::SINTEL_TAG.to_le_bytes().to_vec();
    let k = [1120.0f64, 0.0, 511.5, 0.0, 1121.0, 217.5, 0.0, 0.0, 1.0];
    let ext = [1.0f64, 0.0, 0.0, 0.1, 0.0, 1.0, 0.0, 0.2, 0.0, 0.0, 1.0, 0.3];
    c.extend(k.iter().chain(&ext).flat_map(|v| v.to_le_bytes()));
    fs::write(&cam, &c).unwrap();

    let ds = sintel::sintel(&tr, "final").unwrap();
    assert_eq!(ds.len(), 1);
    let s = ds.load(0).unwrap();
    assert_eq!(s.intrinsics, Some(Intrinsics { fx: 1120.0, fy: 1121.0, cx: 511.5, cy: 217.5 }));
    assert_target(
        &s.target.unwrap(),
        3,
        2,
        &[1.0, 2.5, 0.0, 0.0, 1e3, 7.0],
        &[true, true, false, false, true, true],
    );

    // bad inputs
    let bad = d.path().join("bad.dpt");
    let full = dpt_bytes(3, 2, &[1.0; 6]);
    fs::write(&bad, &full[..full.len() - 3]).unwrap();
    fmt_err(sintel::read_dpt(&bad), "truncated");
    fs::write(&bad, &full[..10]).unwrap();
    fmt_err(sintel::read_dpt(&bad), "truncated header");
    fs::write(&bad, &full[..2]).unwrap();
    fmt_err(sintel::read_dpt(&bad), "tag");
    fs::write(&bad, dpt_bytes(-3, 2, &[])).unwrap();
    fmt_err(sintel::read_dpt(&bad), "implausible size");
    let mut wrong = full.clone();
    wrong[..4].copy_from_slice(&1.0f32.to_le_bytes());
    fs::write(&bad, wrong).unwrap();
    fmt_err(sintel::read_dpt(&bad), "tag 1 is not 202021.25");
    fs::write(&bad, &c[..100]).unwrap();
    fmt_err(sintel::read_cam(&bad), "expected 172");
}

// ---------------------------------------------------------------- Middlebury

fn pfm_bytes(header: &str, little: bool, rows_top_down: &[&[f32]]) -> Vec<u8> {
    let mut b = header.as_bytes().to_vec();
    for row in rows_top_down.iter().rev() {
        for v in *row {
            b.extend(if little { v.to_le_bytes() } else { v.to_be_bytes() });
        }
    }
    b
}

const CALIB: &str = "cam0=[3979.911 0 1244.772; 0 3979.911 1019.507; 0 0 1]\n\
    cam1=[3979.911 0 1369.115; 0 3979.911 1019.507; 0 0 1]\n\
    doffs=124.343\nbaseline=193.001\nwidth=3\nheight=2\nndisp=270\nisint=0\nvmin=23\nvmax=245\n";

#[test]
fn middlebury_pfm_calib_and_depth() {
    let d = tmp();
    let top: &[f32] = &[100.0, f32::INFINITY, 200.0];
    let bottom: &[f32] = &[-130.0, 50.5, 0.0];
    let p = d.path().join("le.pfm");
    fs::write(&p, pfm_bytes("Pf\n3 2\n-1.0\n", true, &[top, bottom])).unwrap();
    let (w, h, v) = middlebury::read_pfm(&p).unwrap();
    assert_eq!((w, h), (3, 2));
    assert_eq!(v[..3], top[..], "rows are flipped to top-to-bottom");
    assert_eq!(v[3..], bottom[..]);
    fs::write(&p, pfm_bytes("Pf 3\n2 1.0\n", false, &[top, bottom])).unwrap();
    assert_eq!(middlebury::read_pfm(&p).unwrap().2[..3], top[..], "big-endian for a positive scale");

    let scene = d.path().join("Motorcycle-perfect");
    fs::create_dir_all(&scene).unwrap();
    write_rgb(&scene.join("im0.png"), 3, 2);
    fs::write(scene.join("disp0.pfm"), pfm_bytes("Pf\n3 2\n-1\n", true, &[top, bottom])).unwrap();
    fs::write(scene.join("calib.txt"), CALIB).unwrap();
    let ds = middlebury::middlebury(d.path()).unwrap();
    assert_eq!(ds.len(), 1);
    let s = ds.load(0).unwrap();
    assert_eq!(s.intrinsics, Some(Intrinsics { fx: 3979.911, fy: 3979.911, cx: 1244.772, cy: 1019.507 }));
    let z = |disp: f64| (193.001 * 3979.911 / (disp + 124.343) / 1000.0) as f32;
    assert_target(
        &s.target.unwrap(),
        3,
        2,
        &[z(100.0), 0.0, z(200.0), 0.0, z(50.5), z(0.0)],
        &[true, false, true, false, true, true],
    );

    // bad inputs
    fs::write(&p, pfm_bytes("PF\n1 1\n-1\n", true, &[&[1.0, 2.0, 3.0]])).unwrap();
    fmt_err(middlebury::read_pfm(&p), "3-channel");
    fs::write(&p, pfm_bytes("P6\n1 1\n-1\n", true, &[&[1.0]])).unwrap();
    fmt_err(middlebury::read_pfm(&p), "magic");
    fs::write(&p, pfm_bytes("Pf\n3 2\n0\n", true, &[top, bottom])).unwrap();
    fmt_err(middlebury::read_pfm(&p), "bad scale");
    fs::write(&p, pfm_bytes("Pf\n3 2\n-1\n", true, &[top])).unwrap();
    fmt_err(middlebury::read_pfm(&p), "12 data bytes for 3×2");
    fs::write(&p, "Pf\n3").unwrap();
    fmt_err(middlebury::read_pfm(&p), "truncated header");
    fs::write(scene.join("calib.txt"), "cam0=[1 0 0; 0 1 0]\ndoffs=1\nbaseline=1\n").unwrap();
    fmt_err(ds.load(0), "cam0");
    fs::write(scene.join("calib.txt"), "cam0=[1 0 0; 0 1 0; 0 0 1]\nbaseline=1\n").unwrap();
    fmt_err(ds.load(0), "missing or bad doffs");
}

#[test]
fn middlebury_npz_fixture_layout() {
    use npyz::WriterBuilder;
    let d = tmp();
    write_rgb(&d.path().join("motorcycle_left.png"), 2, 2);
    let mut npz = npyz::npz::NpzWriter::create(d.path().join("motorcycle_disp.npz")).unwrap();
    let mut w = npz
        .array::<f32>("arr_0", Default::default())
        .unwrap()
        .default_dtype()
        .shape(&[2, 2])
        .begin_nd()
        .unwrap();
    w.extend([10.0f32, f32::INFINITY, 60.0, -40.0]).unwrap();
    w.finish().unwrap();
    drop(npz);
    let s = middlebury::motorcycle_fixture(d.path()).load(0).unwrap();
    let z = |disp: f64| (994.978 * 193.001 / (disp + 31.086) / 1000.0) as f32;
    assert_target(&s.target.unwrap(), 2, 2, &[z(10.0), 0.0, z(60.0), 0.0], &[true, false, true, false]);
    fmt_err(middlebury::read_npz_disparity(&d.path().join("motorcycle_disp.npz"), "disp"), "no array");
}

// ---------------------------------------------------------------- folders and pseudo-labels

#[test]
fn image_folder_is_sorted_recursive_and_filtered() {
    let d = tmp();
    for f in ["b.png", "a/z.JPG", "a/y.jpeg", "c/d/e.webp", "c/x.tif", "note.txt", ".hidden.png", "m.bmp"] {
        let p = d.path().join(f);
        mkdirs(&p);
        if folder::is_image(&p) {
            let img = RgbImage::from_pixel(2, 1, Rgb([1, 2, 3]));
            let fmt = if f.ends_with("webp") {
                image::ImageFormat::Png
            } else {
                image::ImageFormat::from_path(&p).unwrap()
            };
            img.save_with_format(&p, fmt).unwrap();
        } else {
            fs::write(&p, "x").unwrap();
        }
    }
    let ds = folder::ImageFolder::new("web", d.path()).unwrap();
    let rel: Vec<_> = ds.relative_paths().iter().map(|p| p.to_str().unwrap()).collect();
    assert_eq!(rel, ["a/y.jpeg", "a/z.JPG", "b.png", "c/d/e.webp", "c/x.tif", "m.bmp"]);
    let s = ds.load(4).unwrap();
    assert_eq!((s.image.dimensions(), s.target.is_none()), ((2, 1), true));
    assert_eq!(s.id, d.path().join("c/x.tif").display().to_string());
}

#[test]
fn pseudo_labels_round_trip_atomically_and_are_checked() {
    let d = tmp();
    let (images, store) = (d.path().join("images"), d.path().join("labels"));
    write_rgb(&images.join("web/a.jpg"), 5, 3);
    write_rgb(&images.join("b.png"), 3, 2);
    // a 3×2 label at the teacher's resolution of a 5×3 image
    let values = vec![0.5, -1.0, 2.0, 3.0, 1e-30, 7.1234];
    let mut t = Target::new(3, 2, TargetKind::Disparity, values, |_| true);
    t.valid[2] = false;
    t.values[2] = 0.0;
    let teacher = pseudo::TeacherId {
        name: "depth-anything-v2-large".into(),
        sha256: "ab12".into(),
        input_size: 518,
        precision: depth_core::Precision::Bf16,
    };
    let p = pseudo::write_pseudo_label(&store, Path::new("web/a.jpg"), &t, (5, 3), &teacher, "cd34").unwrap();
    assert_eq!(p, store.join("web/a.safetensors"));
    assert_eq!(fs::read_dir(store.join("web")).unwrap().count(), 1, "no temp file left");
    let (back, meta) = pseudo::read_pseudo_label(&p).unwrap();
    // float16: each value within its rounding (2⁻¹¹ relative; 1e-30 flushes to 0), invalid kept invalid
    assert_eq!((back.width, back.height, &back.valid), (3, 2, &t.valid));
    for (a, b) in back.values.iter().zip(&t.values) {
        assert!((a - b).abs() <= b.abs() / 2048.0 + 6e-8, "{a} stored for {b}");
    }
    assert_eq!(back.values[5], half::f16::from_f32(7.1234).to_f32());
    assert_eq!(
        meta,
        pseudo::PseudoMeta {
            teacher: "depth-anything-v2-large".into(),
            teacher_sha256: "ab12".into(),
            input_size: 518,
            precision: depth_core::Precision::Bf16,
            image: "web/a.jpg".into(),
            image_sha256: "cd34".into(),
            image_size: (5, 3),
            checked: true,
        }
    );
    // one flipped byte in the data is an error naming the label, not a wrong target
    let clean = fs::read(&p).unwrap();
    let mut flipped = clean.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x40;
    fs::write(&p, &flipped).unwrap();
    fmt_err(pseudo::read_pseudo_label(&p), "damaged");
    fs::write(&p, &clean).unwrap();
    // the stored tensor itself: (H, W) float16 with NaN where invalid, and the metadata
    let bytes = fs::read(&p).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let m = header.metadata().clone().unwrap();
    assert_eq!((m["format"].as_str(), m["kind"].as_str()), ("depth-pseudo-label/2", "disparity"));
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let tv = st.tensor("disparity").unwrap();
    assert_eq!((tv.dtype(), tv.shape()), (safetensors::Dtype::F16, &[2usize, 3][..]));
    assert!(half::f16::from_le_bytes(tv.data()[4..6].try_into().unwrap()).is_nan());
    // a value beyond float16's range keeps the label in float32, exactly
    let big = Target::new(3, 2, TargetKind::Disparity, vec![1e5, 1.0, 2.0, 3.0, 4.0, 5.0], |_| true);
    let pb = pseudo::write_pseudo_label(&store, Path::new("big.png"), &big, (3, 2), &teacher, "").unwrap();
    assert_eq!(pseudo::read_pseudo_label(&pb).unwrap().0, big);
    fs::remove_file(pb).unwrap();

    let ds = pseudo::PseudoLabeled::new("pl", &images, &store).unwrap();
    assert_eq!(ds.len(), 2);
    // "b.png" sorts first and has no label
    match ds.load(0).unwrap_err() {
        DataError::Core(CoreError::Io { path, source }) => {
            assert_eq!(path, store.join("b.safetensors"));
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            assert!(source.to_string().contains("b.png"));
        }
        e => panic!("expected a NotFound Io error, got {e}"),
    }
    // the loader upsamples the label to the image as the official inference does
    let s = ds.load(1).unwrap().target.unwrap();
    assert_eq!(s, pseudo::upsample_label(&back, (5, 3)).unwrap());
    assert_eq!((s.width, s.height), (5, 3));
    assert_eq!(s.values[0], back.values[0], "corners are kept (align_corners)");
    assert_eq!(s.values[14], back.values[5]);
    // the invalid label pixel (2, 0) is a tap of image columns 2–4 (column 2 at weight 0) of rows 0–1
    let invalid: Vec<usize> = (0..15).filter(|&i| !s.valid[i]).collect();
    assert_eq!(invalid, [2, 3, 4, 7, 8, 9], "NaN spreads to the pixels it is a tap of only");

    // a label of another image's size is rejected
    let small = Target::new(2, 2, TargetKind::Disparity, vec![1.0; 4], |_| true);
    pseudo::write_pseudo_label(&store, Path::new("b.png"), &small, (2, 2), &teacher, "").unwrap();
    assert!(matches!(ds.load(0), Err(DataError::SizeMismatch { depth_w: 2, image_w: 3, .. })));
    // a file with another format tag is rejected
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2, 3], &[0u8; 24]).unwrap();
    let meta = std::collections::HashMap::from([("format".to_string(), "something-else".to_string())]);
    fs::write(&p, safetensors::serialize([("disparity", view)], Some(meta)).unwrap()).unwrap();
    fmt_err(ds.load(1), "metadata format");
    fs::write(&p, b"junk").unwrap();
    fmt_err(pseudo::read_pseudo_label(&p), "pseudo-label");
    // a label of the first version (float32 at the image's resolution) is still read
    let v1: Vec<u8> = (0..15).flat_map(|i| (i as f32 * 0.5).to_le_bytes()).collect();
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![3, 5], &v1).unwrap();
    let meta = std::collections::HashMap::from([
        ("format".to_string(), "depth-pseudo-label/1".to_string()),
        ("kind".to_string(), "disparity".to_string()),
        ("input_size".to_string(), "518".to_string()),
    ]);
    fs::write(&p, safetensors::serialize([("disparity", view)], Some(meta)).unwrap()).unwrap();
    let old = ds.load(1).unwrap().target.unwrap();
    assert_eq!(old.values, (0..15).map(|i| i as f32 * 0.5).collect::<Vec<_>>());

    // bad arguments
    let depth = Target::depth(1, 1, vec![1.0]);
    assert!(matches!(
        pseudo::write_pseudo_label(&store, Path::new("x.png"), &depth, (1, 1), &teacher, ""),
        Err(DataError::Core(CoreError::BadInput { .. }))
    ));
    for bad in ["../x.png", "/abs/x.png"] {
        assert!(matches!(
            pseudo::write_pseudo_label(&store, Path::new(bad), &t, (3, 2), &teacher, ""),
            Err(DataError::Core(CoreError::BadInput { .. }))
        ));
    }
    write_rgb(&images.join("web/a.png"), 3, 2);
    assert!(matches!(
        pseudo::PseudoLabeled::new("pl", &images, &store),
        Err(DataError::Core(CoreError::Config { .. }))
    ));
}

// ---------------------------------------------------------------- real frames (shared fixtures)

fn rgbd() -> PathBuf {
    depth_core::fixtures::fixtures_dir().expect("shared fixtures").join("rgbd")
}

/// Loads every item, checks sizes, and compares (min, max, valid fraction) per frame.
fn check_real(ds: &dyn Dataset, size: (u32, u32), expect: &[(&str, f32, f32, f64)]) {
    assert_eq!(ds.len(), expect.len(), "{}", ds.name());
    for (i, &(name, lo, hi, frac)) in expect.iter().enumerate() {
        let s = ds.load(i).unwrap().checked().unwrap();
        let t = s.target.as_ref().unwrap();
        let (min, max) = t.valid_range().unwrap();
        println!(
            "{} {}: {:?} depth {min:.4}–{max:.4} m, valid {:.4}",
            ds.name(),
            s.id,
            s.image.dimensions(),
            t.valid_fraction()
        );
        assert!(s.id.contains(name), "{} is not {name}", s.id);
        assert_eq!(s.image.dimensions(), size);
        assert!((min - lo).abs() < 2e-3 && (max - hi).abs() < 2e-3, "{}: range {min}–{max}", s.id);
        assert!((t.valid_fraction() - frac).abs() < 2e-3, "{}: valid {}", s.id, t.valid_fraction());
    }
}

#[test]
fn real_nyu_frames() {
    let ds = nyu::nyu_annotations(&rgbd().join("nyu_bts/test_annotations.json")).unwrap();
    check_real(
        &ds,
        (640, 480),
        &[
            ("rgb_00000", 1.39, 6.625, 0.7328),
            ("rgb_00050", 0.887, 8.266, 0.7506),
            ("rgb_00100", 0.713, 6.446, 0.6705),
        ],
    );
    let s = ds.load(0).unwrap();
    assert_eq!(s.intrinsics, Some(Intrinsics { fx: 518.8579, fy: 519.46961, cx: 325.58245, cy: 253.73617 }));
}

#[test]
fn real_kitti_frames() {
    let ds = kitti::kitti_annotations(&rgbd().join("kitti_depth/test_annotations.json")).unwrap();
    check_real(
        &ds,
        (1242, 375),
        &[
            ("0000000050", 5.2031, 83.2305, 0.2064),
            ("0000000100", 5.1289, 80.8086, 0.1827),
            ("0000000005", 5.3320, 84.8945, 0.1950),
        ],
    );
    assert_eq!(ds.load(0).unwrap().intrinsics.unwrap().fx, 707.0493);
}

#[test]
fn real_redwood_frames() {
    let ds = redwood::redwood(&rgbd().join("redwood")).unwrap();
    check_real(
        &ds,
        (640, 480),
        &[("00000", 0.955, 2.702, 0.8696), ("00001", 0.982, 2.702, 0.8715), ("00002", 1.007, 2.702, 0.8730)],
    );
}

#[test]
fn real_middlebury_motorcycle() {
    let ds = middlebury::motorcycle_fixture(&rgbd().join("middlebury"));
    check_real(&ds, (741, 500), &[("motorcycle_left", 2.1104, 5.0169, 0.9265)]);
}

#[test]
fn an_npy_header_that_claims_more_than_the_file_is_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bomb.npy");
    let mut header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 1000000), }".to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&[0u8; 16]);
    std::fs::write(&p, &bytes).unwrap();
    let err = depth_core::npy::read_f32(&p).unwrap_err().to_string();
    assert!(err.contains("bomb.npy") && err.contains("claims shape [1000000, 1000000]"), "{err}");
}

#[test]
fn npy_headers_are_parsed_without_backtracking_and_every_float_layout_reads() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    // found by fuzzing: npyz's header grammar took minutes on these 208 bytes
    let t = std::time::Instant::now();
    let err = depth_core::npy::read_f32(&data.join("fuzz_npy_header_hang.npy")).unwrap_err().to_string();
    assert!(err.contains("fuzz_npy_header_hang.npy"), "{err}");
    assert!(t.elapsed() < std::time::Duration::from_secs(5), "the header took {:?}", t.elapsed());
    // written by np.save(np.arange(6, dtype='>f8').reshape(2, 3))
    let (shape, values) = depth_core::npy::read_f32(&data.join("f8_big_endian.npy")).unwrap();
    assert_eq!((shape, values), (vec![2, 3], vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]));
    // our own writer round-trips, and a short file is refused
    let mut bytes = Vec::new();
    depth_core::npy::write_f32(&mut bytes, &[2, 2], &[1.0, -2.5, 3.0, 4.0]).unwrap();
    assert_eq!(depth_core::npy::parse_f32(&bytes).unwrap(), (vec![2, 2], vec![1.0, -2.5, 3.0, 4.0]));
    assert!(
        depth_core::npy::parse_f32(&bytes[..bytes.len() - 1]).unwrap_err().contains("claims shape [2, 2]")
    );
}
