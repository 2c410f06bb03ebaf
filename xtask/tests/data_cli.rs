//! `cargo xtask data` end to end: a synthetic dataset that reads back and validates, a report
//! that names a corrupt file, manifests that catch tampering, and downloads through the Hub
//! cache (offline) that are checksummed, or manual steps printed.

use depth_core::config::ConfigFile;
use depth_data::Dataset;
use depth_data::synth::SynthFolder;
use std::path::Path;
use std::process::{Command, Output};

fn xtask(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.arg("data").args(args).env("HF_HUB_OFFLINE", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run xtask")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn synth_writes_a_dataset_that_reads_back_and_validates() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("synth");
    let o =
        xtask(&["synth", "--count", "3", "--out", out.to_str().unwrap(), "--size", "64", "--seed", "4"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let folder = SynthFolder::open(&out).unwrap();
    assert_eq!(folder.len(), 3);
    let s = folder.load(2).unwrap();
    assert_eq!(s.image.dimensions(), (64, 64));
    assert!(s.target.unwrap().valid_count() > 0);

    let cfg = dir.path().join("data.toml");
    let toml = "[[dataset]]\nname = \"mine\"\nkind = \"synth\"\nroot = \"synth\"\nlicence = \"generated\"\nexpected = 3\n";
    std::fs::write(&cfg, toml).unwrap();
    let report = dir.path().join("report");
    let o = xtask(
        &["validate", "mine", "--config", cfg.to_str().unwrap(), "--report", report.to_str().unwrap()],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let md = std::fs::read_to_string(report.join("validation.md")).unwrap();
    assert!(md.contains("## mine") && md.contains("| 3 | 3 | 3 | 0 | 0 | 0 | 0 | 0 |"), "{md}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report.join("validation.json")).unwrap()).unwrap();
    assert_eq!(json[0]["ok"], 3);
}

#[test]
fn validation_reports_the_corrupt_file_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    std::fs::create_dir(&photos).unwrap();
    let good = depth_core::fixtures::fixtures_dir().unwrap().join("images/square04.png");
    std::fs::copy(&good, photos.join("a.png")).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(photos.join("b.png"), &bytes[..bytes.len() / 3]).unwrap();
    let cfg = dir.path().join("data.toml");
    std::fs::write(
        &cfg,
        "[[dataset]]\nname = \"p\"\nkind = \"folder\"\nroot = \"photos\"\nlicence = \"x\"\n",
    )
    .unwrap();
    let report = dir.path().join("r");
    let o = xtask(
        &["validate", "p", "--config", cfg.to_str().unwrap(), "--report", report.to_str().unwrap()],
        &[],
    );
    assert!(!o.status.success());
    let md = std::fs::read_to_string(report.join("validation.md")).unwrap();
    assert!(md.contains("b.png") && md.contains("Corrupt"), "{md}");
    assert!(!md.contains("a.png"), "the good file is not a failure: {md}");
}

#[test]
fn manifests_verify_and_catch_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ds");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("sub/x.bin"), b"12345").unwrap();
    let cfg = dir.path().join("data.toml");
    let toml = "[[dataset]]\nname = \"d\"\nkind = \"folder\"\nroot = \"ds\"\nlicence = \"x\"\nmanifest = \"d.json\"\n";
    std::fs::write(&cfg, toml).unwrap();
    let c = cfg.to_str().unwrap();
    assert!(xtask(&["manifest", "d", "--config", c], &[]).status.success());
    let o = xtask(&["verify", "d", "--config", c], &[]);
    assert!(o.status.success(), "{}", text(&o));
    std::fs::write(root.join("sub/x.bin"), b"12346").unwrap();
    let o = xtask(&["verify", "d", "--config", c], &[]);
    assert!(!o.status.success());
    assert!(text(&o).contains("x.bin: sha256"), "{}", text(&o));
}

#[test]
fn downloads_come_from_the_hub_cache_checksummed_or_print_manual_steps() {
    let dir = tempfile::tempdir().unwrap();
    // a dataset repository in the Hugging Face cache layout
    let cache = dir.path().join("hf");
    let repo = cache.join("datasets--acme--pairs");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    std::fs::create_dir_all(repo.join("snapshots").join(commit)).unwrap();
    std::fs::write(repo.join("snapshots").join(commit).join("pairs.json"), b"abc").unwrap();
    let cfg = dir.path().join("data.toml");
    let toml = "[[dataset]]\nname = \"h\"\nkind = \"folder\"\nroot = \"h\"\nlicence = \"x\"\nmanifest = \"h.json\"\n\
                hub = { repo = \"acme/pairs\", files = [\"pairs.json\"] }\n\n\
                [[dataset]]\nname = \"m\"\nkind = \"folder\"\nroot = \"m\"\nlicence = \"x\"\nmanual = \"step one: ask nicely\"\n";
    std::fs::write(&cfg, toml).unwrap();
    let c = cfg.to_str().unwrap();
    let env = [("HF_HUB_CACHE", cache.as_path())];
    let o = xtask(&["download", "h", "--config", c], &env);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(std::fs::read(dir.path().join("h/pairs.json")).unwrap(), b"abc");
    let manifest = std::fs::read_to_string(dir.path().join("h.json")).unwrap();
    assert!(
        manifest.contains("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        "{manifest}"
    );
    // a second download is checked against the recorded hash
    std::fs::write(dir.path().join("h.json"), manifest.replace("ba7816bf", "00000000")).unwrap();
    let o = xtask(&["download", "h", "--config", c], &env);
    assert!(!o.status.success() && text(&o).contains("the manifest expects"), "{}", text(&o));
    // manual datasets print their steps and fail
    let o = xtask(&["download", "m", "--config", c], &env);
    assert!(!o.status.success() && text(&o).contains("step one: ask nicely"), "{}", text(&o));
}

#[test]
fn the_shipped_config_opens_every_fixture_dataset() {
    let cfg = depth_data::DataConfig::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/data.toml"),
        &[],
    )
    .unwrap();
    for (name, n) in [
        ("nyu_fixture", 3),
        ("kitti_fixture", 3),
        ("redwood_fixture", 3),
        ("middlebury_fixture", 1),
        ("unlabeled_fixture", 28),
    ] {
        let d = cfg.get(name).unwrap();
        assert_eq!(d.expected, Some(n));
        assert_eq!(d.open().unwrap().len(), n, "{name}");
    }
    // absent datasets say how to get them
    let err = cfg.get("diode_val").unwrap().open().err().unwrap().to_string();
    assert!(err.contains("val.tar.gz"), "{err}");
}
