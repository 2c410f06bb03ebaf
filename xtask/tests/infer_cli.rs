//! `cargo xtask infer` end to end: the written depth equals the official one, bad files are
//! skipped with a non-zero exit and leave nothing behind, same-size images batch, and a Hub id
//! resolves through the Hugging Face cache offline.

mod common;

use candle_core::{DType, Device, Tensor};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    depth_core::fixtures::fixtures_dir().expect("shared fixtures are required")
}

fn xtask(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.arg("infer").args(args).env("HF_HUB_OFFLINE", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run xtask")
}

fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + hlen]).unwrap();
    let shape = header.split("'shape': (").nth(1).unwrap().split(')').next().unwrap();
    let shape = shape.split(',').filter_map(|s| s.trim().parse().ok()).collect();
    let data = bytes[10 + hlen..].chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    (shape, data)
}

#[test]
fn writes_official_depth_skips_bad_files_and_batches() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let square = fixtures().join("images/square04.png");
    std::fs::copy(&square, input.join("a.png")).unwrap();
    std::fs::copy(&square, input.join("b.png")).unwrap();
    std::fs::write(input.join("broken.jpg"), b"\xff\xd8\xff\xe0 not really a jpeg").unwrap();
    let out = dir.path().join("out");
    let weights = fixtures().join("weights/da2_vits_random.pth");
    let args = ["--weights", weights.to_str().unwrap(), "--img-path", input.to_str().unwrap()];
    let run = xtask(
        &[&args[..], &["--outdir", out.to_str().unwrap(), "--save-raw", "npy", "--batch-size", "3"]].concat(),
        &[],
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "a failed image must make the run fail");
    assert!(stderr.contains("broken.jpg"), "{stderr}");

    let mut written: Vec<String> =
        std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    written.sort();
    assert_eq!(written, ["a.npy", "a.png", "b.npy", "b.png"], "no output for the bad file, no temp files");

    let reference = candle_core::safetensors::load(
        fixtures().join("reference/vits_518/square04.safetensors"),
        &Device::Cpu,
    )
    .unwrap()["depth"]
        .to_dtype(DType::F32)
        .unwrap();
    for name in ["a.npy", "b.npy"] {
        let (shape, data) = read_npy(&out.join(name));
        let ours = Tensor::from_vec(data, shape, &Device::Cpu).unwrap();
        let diff =
            (&ours - &reference).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        let scale = reference.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff <= 1e-4 * scale, "{name}: {diff} vs max {scale}");
    }
    let picture = image::open(out.join("a.png")).unwrap();
    assert_eq!((picture.width(), picture.height()), (700 + 50 + 700, 700), "image | gap | depth");
}

#[test]
fn loads_a_hub_id_from_the_cache_offline() {
    let cache = tempfile::tempdir().unwrap();
    let repo = cache.path().join("models--acme--tiny-depth-hf");
    let commit = "89abcdef0123456789abcdef0123456789abcdef";
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    let snap = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snap).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixtures().join("weights/hf_tiny").join(f), snap.join(f)).unwrap();
    }
    let out = tempfile::tempdir().unwrap();
    let img = fixtures().join("images/square04.png");
    let env = [("HF_HUB_CACHE", cache.path())];
    let base = ["--img-path", img.to_str().unwrap(), "--outdir", out.path().to_str().unwrap(), "--pred-only"];
    let ok = xtask(&[&["--weights", "acme/tiny-depth-hf"], &base[..]].concat(), &env);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert_eq!(image::open(out.path().join("square04.png")).unwrap().width(), 700);

    let miss = xtask(&[&["--weights", "acme/not-cached"], &base[..]].concat(), &env);
    assert!(!miss.status.success());
    assert!(String::from_utf8_lossy(&miss.stderr).contains("HF_HUB_OFFLINE"));
    // the Giant is looked for on the Hub like the others; while it is missing, the error says why
    let giant = xtask(&[&["--weights", "vitg"], &base[..]].concat(), &env);
    let err = String::from_utf8_lossy(&giant.stderr);
    assert!(
        !giant.status.success() && err.contains("Depth-Anything-V2-Giant") && err.contains("use vitl"),
        "{err}"
    );
}

#[test]
fn a_hostile_folder_fails_per_file_and_the_good_images_are_done_once() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([x as u8 * 6, y as u8 * 8, 90]))
        .save(input.join("good.png"))
        .unwrap();
    // 4000×40: at input size 70 a 7000×70 network input, 2,500 tokens, over a limit of 1,000
    image::RgbImage::new(4000, 40).save(input.join("wide.png")).unwrap();
    let png = common::png_claiming(100_000, 100_000);
    std::fs::write(input.join("bomb.png"), &png).unwrap();
    std::os::unix::fs::symlink(&input, input.join("loop")).unwrap();
    let out = dir.path().join("out");
    let weights = fixtures().join("weights/da2_vits_random.pth");
    let (w, i, o) = (weights.to_str().unwrap(), input.to_str().unwrap(), out.to_str().unwrap());
    let common = ["--weights", w, "--img-path", i, "--input-size", "70"];
    let run = xtask(&[&common[..], &["--outdir", o, "--max-tokens", "1000", "--pred-only"]].concat(), &[]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "{stderr}");
    assert!(stderr.contains("bomb.png") && stderr.contains("100000×100000"), "{stderr}");
    assert!(stderr.contains("wide.png") && stderr.contains("--max-tokens"), "{stderr}");
    let written: Vec<PathBuf> = depth_core::walk::walk_files(&out, &|_| true).unwrap();
    assert_eq!(written, [out.join("good.png")], "the good image once, nothing for the others");
    // arguments that cannot work are refused before the model loads, and so is a file as --outdir
    for bad in [["--input-size", "0"], ["--batch-size", "0"]] {
        let run = xtask(&[&["--weights", w, "--img-path", i], &bad[..]].concat(), &[]);
        assert!(!run.status.success() && String::from_utf8_lossy(&run.stderr).contains(bad[0]));
    }
    let file = dir.path().join("a_file");
    std::fs::write(&file, b"x").unwrap();
    let run = xtask(&[&common[..], &["--outdir", file.to_str().unwrap()]].concat(), &[]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        !run.status.success() && stderr.contains("cannot write") && stderr.contains("a_file"),
        "{stderr}"
    );
}

#[test]
fn the_encoder_size_is_read_from_the_checkpoint_and_a_contradicting_flag_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let weights = fixtures().join("weights/da2_vits_random.pth");
    let img = fixtures().join("images/square04.png");
    let (w, i) = (weights.to_str().unwrap(), img.to_str().unwrap());
    let out = dir.path().join("out");
    let o = out.to_str().unwrap();
    let base = ["--weights", w, "--img-path", i, "--outdir", o, "--input-size", "70", "--pred-only"];
    for (encoder, ok) in [(None, true), (Some("vits"), true), (Some("vitb"), false)] {
        let extra: Vec<&str> = encoder.map_or(vec![], |e| vec!["--encoder", e]);
        let run = xtask(&[&base[..], &extra[..]].concat(), &[]);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.success(), ok, "--encoder {encoder:?}: {stderr}");
        if !ok {
            assert!(stderr.contains("holds a vits model") && stderr.contains("vitb"), "{stderr}");
        }
    }
}

#[test]
fn an_official_metric_file_is_metric_by_its_name_and_max_depth_says_it_for_others() {
    let dir = tempfile::tempdir().unwrap();
    let weights = fixtures().join("weights/da2_vits_random.pth");
    let hypersim = dir.path().join("depth_anything_v2_metric_hypersim_vits.pth");
    std::os::unix::fs::symlink(&weights, &hypersim).unwrap();
    let img = fixtures().join("images/square04.png");
    let run = |name: &str, w: &Path, extra: &[&str]| {
        let out = dir.path().join(name);
        let base = ["--weights", w.to_str().unwrap(), "--img-path", img.to_str().unwrap()];
        let o = ["--outdir", out.to_str().unwrap(), "--input-size", "70", "--save-raw", "npy"];
        let run = xtask(&[&base[..], &o[..], extra].concat(), &[]);
        assert!(run.status.success(), "{name}: {}", String::from_utf8_lossy(&run.stderr));
        read_npy(&out.join("square04.npy")).1
    };
    let by_name = run("by_name", &hypersim, &[]);
    let by_flag = run("by_flag", &weights, &["--max-depth", "20"]);
    let relative = run("relative", &weights, &[]);
    assert_eq!(by_name, by_flag, "the hypersim file is the 20 m metric model");
    assert!(by_name.iter().all(|&d| d > 0.0 && d < 20.0), "metres in (0, 20)");
    assert_ne!(by_name, relative);
    for bad in ["0", "-3", "inf", "x"] {
        let o = dir.path().join("bad");
        let args = ["--weights", weights.to_str().unwrap(), "--img-path", img.to_str().unwrap()];
        let r = xtask(&[&args[..], &["--outdir", o.to_str().unwrap(), "--max-depth", bad]].concat(), &[]);
        let stderr = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success() && stderr.contains("no positive number of metres"), "{bad}: {stderr}");
        assert!(!o.exists(), "nothing written for a refused flag");
    }
}
