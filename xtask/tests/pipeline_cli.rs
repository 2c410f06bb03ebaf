//! The distillation pipeline as a user runs it: `pseudo-label` split into shards covers every
//! image exactly once, a labelling run killed with SIGKILL and rerun ends with the labels of an
//! uninterrupted run, and `train` without a config runs the whole mini reproduction (tiny sizes
//! here) to a report — killed half-way, the same command finishes it without redoing stages.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn xtask(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.args(args).current_dir(repo()).env("HF_HUB_OFFLINE", "1").env_remove("DEPTH_TRAIN_PAUSE");
    cmd
}

fn ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run xtask");
    assert!(out.status.success(), "xtask failed:\n{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn teacher() -> String {
    let w = depth_core::fixtures::fixtures_dir().unwrap().join("weights/da2_vits_random.pth");
    format!("vits:{}", w.display())
}

/// Every label in a store: relative path → (disparity values, teacher hash, image hash).
fn labels(store: &Path) -> BTreeMap<PathBuf, (Vec<u32>, String, String)> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(store).unwrap().flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "safetensors") {
            let (t, meta) = depth_data::formats::pseudo::read_pseudo_label(&p).unwrap();
            let bits = t.values.iter().map(|v| v.to_bits()).collect();
            out.insert(p.strip_prefix(store).unwrap().into(), (bits, meta.teacher_sha256, meta.image_sha256));
        }
    }
    out
}

#[test]
fn shards_cover_every_image_once_and_a_killed_run_resumes_to_the_same_labels() {
    let dir = tempfile::tempdir().unwrap();
    let photos = repo().join("assets/photos");
    let n_photos = std::fs::read_dir(&photos).unwrap().count();
    let label = |store: &Path, shard: &str| {
        let mut cmd = xtask(&["pseudo-label", "--teacher", &teacher(), "--images", photos.to_str().unwrap()]);
        cmd.args(["--store", store.to_str().unwrap(), "--shard", shard, "--input-size", "70"]);
        cmd
    };
    // the reference: one uninterrupted run
    let full = dir.path().join("full");
    ok(&mut label(&full, "0/1"));
    let reference = labels(&full);
    assert_eq!(reference.len(), n_photos);

    // three shards in three processes: together exactly the same labels
    let sharded = dir.path().join("sharded");
    let mut counts = 0;
    for k in 0..3 {
        ok(&mut label(&sharded, &format!("{k}/3")));
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(sharded.join(format!("summary-{k}-of-3.json"))).unwrap())
                .unwrap();
        counts += summary["images"].as_u64().unwrap();
    }
    assert_eq!(counts as usize, n_photos, "each image in exactly one shard");
    assert_eq!(labels(&sharded), reference);

    // SIGKILL part-way, then the same command: the labels equal the uninterrupted run's
    let killed = dir.path().join("killed");
    let mut child = label(&killed, "0/1").stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let t0 = Instant::now();
    while std::fs::read_dir(&killed).map_or(0, |d| d.count()) < 6 {
        assert!(child.try_wait().unwrap().is_none(), "finished before the kill");
        assert!(t0.elapsed() < Duration::from_secs(300));
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let partial = labels(&killed).len();
    assert!(partial > 0 && partial < n_photos, "{partial} labels before the kill");
    // a damaged label is redone, not trusted: torn, or one flipped byte in its data
    let done: Vec<PathBuf> = labels(&killed).keys().map(|k| killed.join(k)).collect();
    let first = killed.join(reference.keys().next().unwrap());
    if first.exists() {
        std::fs::write(&first, b"torn").unwrap();
    }
    let flipped = done.iter().rfind(|p| **p != first).expect("two labels before the kill");
    let mut bytes = std::fs::read(flipped).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(flipped, bytes).unwrap();
    let out = ok(&mut label(&killed, "0/1"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("already done") && !text.contains("(0 redone)"), "{text}");
    assert_eq!(labels(&killed), reference);

    // a broken image is reported, the others labelled, and the exit is non-zero
    let broken = dir.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    std::fs::copy(photos.join("da2_demo01.jpg"), broken.join("good.jpg")).unwrap();
    std::fs::write(broken.join("bad.jpg"), b"not a jpeg").unwrap();
    let store = dir.path().join("broken_labels");
    let out = xtask(&["pseudo-label", "--teacher", &teacher(), "--images", broken.to_str().unwrap()])
        .args(["--store", store.to_str().unwrap(), "--input-size", "70"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.jpg"));
    assert_eq!(labels(&store).len(), 1);
}

/// The mini reproduction's stages at toy sizes.
const TINY: [&str; 12] = [
    "model.embed_dim=32",
    "model.depth=2",
    "model.num_heads=2",
    "model.features=16",
    "schedule.steps=3",
    "schedule.warmup=0",
    "data.loader.batch_size=2",
    "data.loader.augment.input_size=56",
    "data.loader.augment.crop=56",
    "checkpoint.every=2",
    "data.source.0.ratio=1",
    "log.plot_every=1",
];

fn mini(out: &Path) -> Command {
    let mut cmd = xtask(&["train", "--out", out.to_str().unwrap()]);
    for s in TINY {
        cmd.args(["--set", s]);
    }
    cmd
}

#[test]
fn the_mini_reproduction_runs_end_to_end_and_finishes_after_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mini");
    // kill it once the teacher is done, while later stages run
    let teacher_done = out.join("teacher/final.safetensors");
    let mut child = mini(&out).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let t0 = Instant::now();
    while !teacher_done.exists() {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(300), "the teacher stage did not finish");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let result = ok(&mut mini(&out));
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(stdout.contains("report:"), "{stdout}");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    for row in [
        "| constant |",
        "| position prior |",
        "| teacher |",
        "| distilled student |",
        "| synthetic-only student |",
    ] {
        assert!(report.contains(row), "no row {row} in the report:\n{report}");
    }
    assert!(report.contains("Protocol") && report.contains("aspect ratio kept"));
    let teacher_stage = report.lines().find(|l| l.starts_with("| teacher |") && l.contains("min |")).unwrap();
    assert!(
        teacher_stage.contains("already finished"),
        "the finished teacher was trained again: {teacher_stage}"
    );
    for f in [
        "loss_curves.png",
        "report.json",
        "eval/report.md",
        "labels/da2_demo01.safetensors",
        "student/final.safetensors",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    // the labels came from the teacher of this run
    let (_, meta) =
        depth_data::formats::pseudo::read_pseudo_label(&out.join("labels/da2_demo01.safetensors")).unwrap();
    let hash = depth_core::hash::sha256_file(&teacher_done).unwrap();
    assert_eq!(meta.teacher_sha256, hash);
    // a second run has nothing left to train
    let again = std::fs::read_to_string({
        ok(&mut mini(&out));
        out.join("report.md")
    })
    .unwrap();
    assert_eq!(again.matches("already finished").count(), 3, "{again}");
}

#[test]
fn the_mini_reproduction_takes_more_photos_and_more_ground_truth() {
    let dir = tempfile::tempdir().unwrap();
    let (out, extra) = (dir.path().join("mini"), dir.path().join("more_photos"));
    std::fs::create_dir(&extra).unwrap();
    for name in ["da2_demo03.jpg", "da2_demo04.jpg"] {
        std::fs::copy(repo().join("assets/photos").join(name), extra.join(format!("extra_{name}"))).unwrap();
    }
    let gt = depth_core::fixtures::fixtures_dir().unwrap().join("rgbd/nyu_bts");
    ok(mini(&out).args(["--unlabeled", extra.to_str().unwrap(), "--gt", gt.to_str().unwrap()]));
    assert!(out.join("labels_unlabeled0/extra_da2_demo03.safetensors").is_file());
    let cfg = std::fs::read_to_string(out.join("student/config.toml")).unwrap();
    assert!(cfg.contains("unlabeled0_pseudo"), "the student learns from the extra labels too:\n{cfg}");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("| gt0 | teacher | 3 |"), "the extra frames are scored:\n{report}");
    // the shipped real benchmarks hold 10 frames; the extra ground truth adds its 3
    assert!(
        report.contains("real frames (13:") && report.contains("gt0 3"),
        "and pooled with the real frames:\n{report}"
    );
}

/// One list means the same images to `infer` and to `pseudo-label`: paths relative to the
/// list's folder (not to where the command runs), `#` lines and blank lines skipped.
#[test]
fn a_list_names_the_same_images_for_infer_and_pseudo_label() {
    let dir = tempfile::tempdir().unwrap();
    let photos = repo().join("assets/photos");
    let mut names: Vec<String> = std::fs::read_dir(&photos)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".jpg"))
        .collect();
    names.sort();
    // the list sits beside copies of three photos, in a folder of its own
    let lists = dir.path().join("set");
    std::fs::create_dir_all(lists.join("sub")).unwrap();
    for n in &names[..3] {
        std::fs::copy(photos.join(n), lists.join("sub").join(n)).unwrap();
    }
    let text = format!("# three photos\nsub/{}\n\nsub/{}\n# sub/{}\n", names[0], names[1], names[2]);
    let list = lists.join("photos.txt");
    std::fs::write(&list, text).unwrap();
    // the commands run from the repository: a path relative to it would name nothing
    let out = dir.path().join("infer");
    ok(xtask(&["infer", "--weights", &teacher()[5..], "--img-path", list.to_str().unwrap()]).args([
        "--outdir",
        out.to_str().unwrap(),
        "--input-size",
        "70",
        "--pred-only",
    ]));
    let store = dir.path().join("labels");
    ok(xtask(&["pseudo-label", "--teacher", &teacher(), "--images", list.to_str().unwrap()]).args([
        "--store",
        store.to_str().unwrap(),
        "--input-size",
        "70",
    ]));
    let stems = |names: &[&String]| -> Vec<String> {
        names
            .iter()
            .map(|n| Path::new(n.as_str()).file_stem().unwrap().to_string_lossy().into_owned())
            .collect()
    };
    let expected = stems(&[&names[0], &names[1]]);
    let mut inferred: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.path().file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    inferred.sort();
    assert_eq!(inferred, expected, "infer");
    let labelled: Vec<String> = labels(&store.join("sub"))
        .keys()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(labelled, expected, "pseudo-label");
}
