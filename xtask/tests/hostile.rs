//! Every command against hostile and absurd input, as a user would feed it: each case must end
//! in a clean failure (an exit code, not a signal; no panic) whose message names the file or
//! the argument, and must leave no partial output. The count per command is in
//! docs/reliability.md.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> PathBuf {
    depth_core::fixtures::fixtures_dir().expect("shared fixtures are required")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs `xtask ARGS` (through `sh -c 'ulimit -f N; exec …'` when `file_limit_kb` is set) and
/// checks a clean failure that mentions `names`.
fn refuses(case: &str, args: &[&str], names: &str, file_limit_kb: Option<u64>) {
    let bin = env!("CARGO_BIN_EXE_xtask");
    let mut cmd = match file_limit_kb {
        Some(kb) => {
            let mut c = Command::new("sh");
            c.arg("-c").arg(format!("ulimit -f {kb}; exec \"$0\" \"$@\"")).arg(bin).args(args);
            c
        }
        None => {
            let mut c = Command::new(bin);
            c.args(args);
            c
        }
    };
    let out = cmd.env("HF_HUB_OFFLINE", "1").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code().is_some(), "{case}: killed by a signal ({:?})\n{stderr}", out.status);
    assert!(!out.status.success(), "{case}: succeeded\n{stderr}");
    assert!(!stderr.contains("panicked"), "{case}: panicked\n{stderr}");
    assert!(stderr.contains(names), "{case}: the message does not name {names:?}\n{stderr}");
}

fn png(img: image::DynamicImage) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
    out
}

/// The bad images: (file name, bytes, what the message must say).
fn bad_images() -> Vec<(&'static str, Vec<u8>)> {
    let good = png(image::DynamicImage::new_rgb8(20, 10));
    vec![
        ("zero.png", Vec::new()),
        ("truncated.png", good[..good.len() / 2].to_vec()),
        ("fake.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF garbage after a valid magic".to_vec()),
        ("animated.gif", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec()),
        ("text.png", b"this is not an image".to_vec()),
        ("bomb.png", common::png_claiming(100_000, 100_000)),
        ("wide.png", png(image::DynamicImage::new_rgb8(4000, 20))),
    ]
}

/// Images that look odd but are fine: each must be done.
fn odd_but_good() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("png_named.jpg", png(image::DynamicImage::new_rgb8(30, 20))),
        ("grey16.png", png(image::DynamicImage::new_luma16(30, 20))),
        ("grey.png", png(image::DynamicImage::new_luma8(30, 20))),
        ("alpha.png", png(image::DynamicImage::new_rgba8(30, 20))),
        ("one_pixel.png", png(image::DynamicImage::new_rgb8(1, 1))),
        ("cmyk.jpg", std::fs::read(repo().join("crates/depth-core/tests/data/cmyk.jpg")).unwrap()),
        ("palette.png", std::fs::read(repo().join("crates/depth-core/tests/data/palette.png")).unwrap()),
    ]
}

fn weights() -> String {
    s(&fixtures().join("weights/da2_vits_random.pth")).to_string()
}

#[test]
fn infer_and_features_refuse_hostile_images_and_weights() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    for (name, bytes) in bad_images().into_iter().chain(odd_but_good()) {
        std::fs::write(input.join(name), bytes).unwrap();
    }
    let w = weights();
    let out = dir.path().join("out");
    let small = ["--input-size", "56", "--max-tokens", "200"];
    // the whole folder: every bad image named, every good one done
    let run = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["infer", "--weights", &w, "--img-path", s(&input), "--outdir", s(&out), "--pred-only"])
        .args(small)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    // a folder gives its image files: the .gif is not one (named alone, below, it is refused)
    for (name, _) in bad_images().into_iter().filter(|(n, _)| !n.ends_with(".gif")) {
        assert!(stderr.contains(name), "{name} not named:\n{stderr}");
    }
    assert!(!stderr.contains("animated.gif"), "a non-image file was read:\n{stderr}");
    for (name, _) in odd_but_good() {
        let stem = Path::new(name).file_stem().unwrap().to_str().unwrap();
        assert!(out.join(format!("{stem}.png")).is_file(), "{name} was not done:\n{stderr}");
    }
    // one at a time, through infer and features
    for (name, _) in bad_images() {
        let img = input.join(name);
        for cmd in ["infer", "features"] {
            let o = dir.path().join(format!("{cmd}_{name}"));
            let flag = if cmd == "infer" { "--outdir" } else { "--out" };
            let args = [&[cmd, "--weights", &w, "--img-path", s(&img), flag, s(&o)][..], &small[..]].concat();
            refuses(&format!("{cmd} {name}"), &args, name, None);
        }
    }
    // hostile weights
    let junk = dir.path().join("junk.pth");
    std::fs::write(&junk, b"not a checkpoint").unwrap();
    let full = std::fs::read(fixtures().join("weights/da2_vits_random.pth")).unwrap();
    let cut = dir.path().join("truncated.pth");
    std::fs::write(&cut, &full[..full.len() / 2]).unwrap();
    let bomb = dir.path().join("memo_bomb.pth");
    {
        let mut z = zip::ZipWriter::new(std::fs::File::create(&bomb).unwrap());
        let opts =
            zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        z.start_file("archive/data.pkl", opts).unwrap();
        let levels = [b'(', b'h', 0, b'h', 0, b'l', b'q', 0].repeat(64);
        z.write_all(&[&[0x80, 2, b']', b'q', 0][..], &levels, b"."].concat()).unwrap();
        z.finish().unwrap();
    }
    let lying = dir.path().join("lying.safetensors");
    std::fs::write(&lying, [&1_000_000u64.to_le_bytes()[..], b"{}"].concat()).unwrap();
    let img = input.join("grey.png");
    for p in [&junk, &cut, &bomb, &lying] {
        let name = p.file_name().unwrap().to_str().unwrap();
        let o = dir.path().join(format!("w_{name}"));
        refuses(
            &format!("weights {name}"),
            &["infer", "--weights", s(p), "--img-path", s(&img), "--outdir", s(&o)],
            name,
            None,
        );
    }
    // hostile ONNX: not protobuf, external data cut short, external data outside its folder
    let junk_onnx = dir.path().join("junk.onnx");
    std::fs::write(&junk_onnx, b"\xff\xff\xff not a model").unwrap();
    let ext = dir.path().join("ab.onnx");
    let o = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["export", "--weights", &w, "--to", "onnx", "--external-data", "--out", s(&ext)])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let data = dir.path().join("ab.onnx.data");
    let short = std::fs::read(&data).unwrap();
    std::fs::write(&data, &short[..short.len() / 2]).unwrap();
    let escaping = dir.path().join("escape.onnx");
    let graph = std::fs::read(&ext).unwrap();
    // the first external tensor's location, made absolute (the same length keeps the protobuf whole)
    let at = graph.windows(12).position(|w| w == b"ab.onnx.data").expect("a location");
    let mut swapped = graph.clone();
    swapped[at..at + 12].copy_from_slice(b"/etc/passwd0");
    std::fs::write(&escaping, swapped).unwrap();
    for (p, says) in
        [(&junk_onnx, "junk.onnx"), (&ext, "ab.onnx.data"), (&escaping, "inside the model's folder")]
    {
        let o = dir.path().join("w_onnx");
        refuses(
            &format!("weights {}", p.display()),
            &["infer", "--weights", s(p), "--img-path", s(&img), "--outdir", s(&o)],
            says,
            None,
        );
    }
    // absurd arguments
    for (case, extra, says) in [
        ("input size 0", ["--input-size", "0"], "--input-size"),
        ("input size 100000", ["--input-size", "100000"], "--input-size"),
        ("batch size 0", ["--batch-size", "0"], "--batch-size"),
        ("max tokens 0", ["--max-tokens", "0"], "--max-tokens"),
    ] {
        refuses(
            case,
            &[&["infer", "--weights", &w, "--img-path", s(&img)][..], &extra[..]].concat(),
            says,
            None,
        );
    }
    refuses(
        "missing input",
        &["infer", "--weights", &w, "--img-path", "/nonexistent/x.png"],
        "/nonexistent/x.png",
        None,
    );
    let file = dir.path().join("a_file");
    std::fs::write(&file, b"x").unwrap();
    refuses(
        "outdir is a file",
        &["infer", "--weights", &w, "--img-path", s(&img), "--outdir", s(&file)],
        "a_file",
        None,
    );
}

#[test]
fn configs_datasets_and_full_disks_are_refused_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let toml = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let base = std::fs::read_to_string(repo().join("xtask/tests/data/tiny_train.toml")).unwrap();
    let out = dir.path().join("run");
    let data_cfg = format!("data.config={}", repo().join("configs/data.toml").display());
    for (case, text, says) in [
        ("syntax error", "out = \"x\"\n[model\nembed_dim = 32\n".to_string(), "line 2"),
        ("unknown key", base.replace("embed_dim = 32", "embed_dimm = 32"), "embed_dimm"),
        ("wrong type", base.replace("embed_dim = 32", "embed_dim = \"wide\""), "embed_dim"),
        ("negative size", base.replace("batch_size = 2", "batch_size = -2"), "batch_size"),
        ("zero size", base.replace("batch_size = 2", "batch_size = 0"), "batch_size"),
        ("heads do not divide", base.replace("num_heads = 2", "num_heads = 5"), "num_heads"),
        (
            "missing dataset",
            base.replace("synth = { seed = 5, count = 10, width = 70, height = 64 }", "dataset = \"nope\""),
            "nope",
        ),
    ] {
        let cfg = toml(&format!("{}.toml", case.replace(' ', "_")), &text);
        refuses(
            &format!("train: {case}"),
            &["train", "--config", s(&cfg), "--set", &format!("out={}", out.display()), "--set", &data_cfg],
            says,
            None,
        );
        assert!(!out.exists(), "train: {case}: wrote {}", out.display());
    }
    let file = dir.path().join("a_file");
    std::fs::write(&file, b"x").unwrap();
    let cfg = toml("ok.toml", &base);
    refuses(
        "train: out is a file",
        &["train", "--config", s(&cfg), "--set", &format!("out={}", file.display())],
        "a_file",
        None,
    );
    refuses(
        "train: missing config",
        &["train", "--config", "/nonexistent/train.toml"],
        "/nonexistent/train.toml",
        None,
    );

    // eval: a broken config, an unknown benchmark, an output that is a file
    let bad_eval = toml("eval.toml", "data = \"data.toml\"\n[[benchmark]]\nname = 1\n");
    refuses("eval: bad config", &["eval", "--config", s(&bad_eval), "--baselines"], "eval.toml", None);
    let eval_cfg = repo().join("configs/mini/eval.toml");
    refuses(
        "eval: unknown benchmark",
        &["eval", "--config", s(&eval_cfg), "--benchmark", "nope", "--baselines"],
        "nope",
        None,
    );
    refuses(
        "eval: out is a file",
        &["eval", "--config", s(&eval_cfg), "--baselines", "--out", s(&file)],
        "a_file",
        None,
    );

    // data
    let synth = dir.path().join("synth");
    refuses("synth: count 0", &["data", "synth", "--count", "0", "--out", s(&synth)], "--count", None);
    refuses(
        "synth: out is a file",
        &["data", "synth", "--count", "1", "--size", "32", "--photos", "none", "--out", s(&file)],
        "a_file",
        None,
    );
    refuses("validate: bad config", &["data", "validate", "--config", s(&bad_eval)], "eval.toml", None);
    // a full disk: 64 KB of file size allowed, the first 256×256 scene PNG is larger
    refuses(
        "synth: file size limit",
        &["data", "synth", "--count", "2", "--size", "256", "--photos", "none", "--out", s(&synth)],
        "cannot write",
        Some(64),
    );
    let left: Vec<_> = depth_core::walk::walk_files(&synth, &|p| {
        p.file_name().unwrap().to_string_lossy().starts_with(".partial-")
    })
    .unwrap();
    assert!(left.is_empty(), "a failed write left {left:?}");

    // pseudo-label: a list that climbs out of its folder, a junk teacher, a store that is a file
    let list = toml("list.txt", "../../etc/passwd.jpg\n");
    let w = weights();
    let teacher = format!("vits:{w}");
    refuses(
        "pseudo-label: list escapes",
        &["pseudo-label", "--teacher", &teacher, "--images", s(&list), "--store", s(&dir.path().join("st"))],
        "list.txt",
        None,
    );
    let junk = dir.path().join("junk.pth");
    std::fs::write(&junk, b"junk").unwrap();
    let photos = repo().join("assets/photos");
    refuses(
        "pseudo-label: junk teacher",
        &[
            "pseudo-label",
            "--teacher",
            &format!("vits:{}", junk.display()),
            "--images",
            s(&photos),
            "--store",
            s(&dir.path().join("st2")),
        ],
        "junk.pth",
        None,
    );
    refuses(
        "pseudo-label: store is a file",
        &["pseudo-label", "--teacher", &teacher, "--images", s(&photos), "--store", s(&file)],
        "a_file",
        None,
    );
}

#[test]
fn absurd_training_sizes_and_values_are_refused_before_the_run_folder() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = repo().join("xtask/tests/data/tiny_train.toml");
    let out = dir.path().join("run");
    for (sets, says) in [
        (&["data.loader.batch_size=1000000000"][..], "batch_size"),
        (&["data.loader.augment.crop=100002"], "crop"),
        (&["data.loader.workers=1000000"], "workers"),
        (&["data.loader.augment.hflip=2"], "hflip"),
        (&["data.loader.augment.blur_sigma=[2.0, 0.1]"], "blur_sigma"),
        (&["data.loader.epoch_size=0"], "epoch_size"),
        (&["data.source.0.synth.count=100000000000"], "count"),
        (&["optim.lr=inf"], "optim.lr"),
        (&["optim.betas=[0.9, nan]"], "optim.betas"),
        (&["loss.gm_weight=-inf"], "loss.gm_weight"),
        // within the limits, but the batches in flight need far more than this machine has
        (&["data.loader.batch_size=4096", "data.loader.augment.crop=8190"], "free"),
        (&["optim.lr=1\n[evil]\nx=1"], "one line"),
    ] {
        let mut args = vec!["train".to_string(), "--config".into(), s(&cfg).into()];
        args.extend(["--set".into(), format!("out={}", out.display())]);
        for set in sets {
            args.extend(["--set".into(), set.to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        refuses(&format!("train --set {sets:?}"), &args, says, None);
        assert!(!out.exists(), "--set {sets:?}: wrote {}", out.display());
    }
}

#[test]
fn devices_and_fifos_are_refused_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.png");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let zero_link = dir.path().join("zero.jpg");
    std::os::unix::fs::symlink("/dev/zero", &zero_link).unwrap();
    let list = dir.path().join("list.txt");
    std::fs::write(&list, "pipe.png\nzero.jpg\n").unwrap();
    let w = weights();
    let out = dir.path().join("out");
    // each with a deadline: a reader that opens a FIFO waits for a writer forever
    let run = |args: &[&str]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let t0 = std::time::Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
                return (status, err);
            }
            if t0.elapsed() > std::time::Duration::from_secs(60) {
                let _ = child.kill();
                panic!("{args:?} hung");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    for args in [
        vec!["infer", "--weights", &w, "--img-path", s(&fifo), "--outdir", s(&out)],
        vec!["infer", "--weights", &w, "--img-path", "/dev/zero", "--outdir", s(&out)],
        vec!["infer", "--weights", &w, "--img-path", s(&list), "--outdir", s(&out), "--input-size", "56"],
        vec!["train", "--config", "/dev/zero"],
        vec!["train", "--config", s(&fifo)],
        vec!["eval", "--config", "/dev/urandom", "--baselines"],
        vec!["infer", "--weights", "/dev/zero", "--img-path", s(&list)],
    ] {
        let (status, err) = run(&args);
        assert!(status.code().is_some_and(|c| c != 0), "{args:?}: {status:?}\n{err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(
            err.contains("FIFO") || err.contains("character device"),
            "{args:?} does not say what it refused:\n{err}"
        );
    }
}
