//! `xtask bench`: the harness around the measurements (case selection, child processes, the
//! PyTorch twins' protocol, ratios, results.json and results.md), with and without a Python
//! that has torch. The speed itself is never asserted.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask")).arg("bench").args(args).output().unwrap()
}

fn results(out: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap()
}

fn row<'a>(r: &'a serde_json::Value, case: &str, imp: &str) -> &'a serde_json::Value {
    let c =
        r["cases"].as_array().unwrap().iter().find(|c| c["case"] == case).unwrap_or_else(|| panic!("{case}"));
    c["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["implementation"] == imp)
        .unwrap_or_else(|| panic!("{imp}"))
}

#[test]
#[cfg(not(feature = "cuda"))]
fn a_cuda_bench_without_cuda_is_refused_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let o = bench(&[
        "--device",
        "cuda",
        "--cases",
        "sgemm",
        "--python",
        "none",
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("this build has no CUDA"), "{o:?}");
    assert!(!dir.path().join("results.md").exists());
}

#[test]
fn lists_every_case_and_refuses_unknown_ones() {
    let o = bench(&["--list"]);
    assert!(o.status.success());
    let names = String::from_utf8(o.stdout).unwrap();
    for want in [
        "sgemm/2048",
        "infer/vits/518x518/b1",
        "infer/vitb/518x784/b4",
        "train/vits/266/b2",
        "train/vits/518/b1",
        // the GPU set (`--device cuda` without --cases)
        "infer/vitl/518x518/b1",
        "infer/vitl/518x518/b16",
        "train/vits/518/b16",
    ] {
        assert!(names.lines().any(|l| l == want), "{want} missing from {names}");
    }
    for want in ["loader/photos_518", "synth/scene_518", "pseudo-label/vits/518"] {
        assert!(names.lines().any(|l| l == want), "{want} missing from {names}");
    }
    let dir = tempfile::tempdir().unwrap();
    let o = bench(&["--cases", "nosuch", "--out", dir.path().to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no bench case starts with 'nosuch'"));
}

#[test]
fn without_torch_reports_ours_alone() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bench");
    let o = bench(
        &["--cases", "sgemm,synth", "--reps", "2", "--warmup", "0", "--python", "none"]
            .iter()
            .copied()
            .chain(["--out", out.to_str().unwrap()])
            .collect::<Vec<_>>(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("PyTorch twins skipped: --python none"));
    let r = results(&out);
    let sgemm = row(&r, "sgemm/2048", "ours");
    assert_eq!(sgemm["reps"], 2);
    assert_eq!(sgemm["raw"]["times_s"].as_array().unwrap().len(), 2);
    let g = sgemm["gflop_per_s"].as_f64().unwrap();
    assert!(g > 0.0 && g.is_finite());
    // ours is the only sgemm, so it is the peak
    assert_eq!(r["peak_gflop_per_s"][1], "ours");
    assert_eq!(sgemm["peak_share"].as_f64(), Some(1.0));
    assert!(row(&r, "sgemm/2048", "torch")["note"].as_str().unwrap().contains("--python none"));
    let synth = row(&r, "synth/scene_518", "ours");
    assert_eq!(synth["raw"]["items"], 4);
    assert!(synth["peak_rss_bytes"].as_u64().unwrap() > 1 << 20);
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(md.contains("| sgemm/2048 | ours |") && md.contains("| synth/scene_518 | ours |"), "{md}");
    assert!(md.contains("threads"), "{md}");
}

/// A stand-in Python in `dir` that logs its arguments (to the returned file), answers the
/// torch probe and prints `measurement` as the twin script would.
fn fake_python(dir: &Path, measurement: &str) -> (PathBuf, PathBuf) {
    let (py, log) = (dir.join("fakepython"), dir.join("calls.txt"));
    let script = format!(
        "#!/bin/sh\necho \"$@\" >> {}\n[ \"$1\" = -c ] && exit 0\necho '{measurement}'\n",
        log.display()
    );
    std::fs::write(&py, script).unwrap();
    std::fs::set_permissions(&py, std::fs::Permissions::from_mode(0o755)).unwrap();
    (py, log)
}

/// A stand-in Python: `-c "import torch"` succeeds, the twin script prints a fixed measurement
/// (twice ours' sgemm time would be a guess; a fixed 10 s makes the ratio exact to check).
#[test]
fn twins_are_run_and_compared() {
    let dir = tempfile::tempdir().unwrap();
    let (py, log) = fake_python(
        dir.path(),
        r#"{"times_s": [10.0, 12.0, 11.0], "items": 1, "flops": 1.72e10, "peak_rss_bytes": 1000000, "versions": {"torch": "fake"}}"#,
    );
    let out = dir.path().join("bench");
    let o = bench(&[
        "--cases",
        "sgemm",
        "--reps",
        "1",
        "--warmup",
        "0",
        "--threads",
        "1",
        "--python",
        py.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(
        calls.contains(
            "--case sgemm/2048 --impl torch --device cpu --precision f32 --reps 1 --warmup 0 --threads 1"
        ),
        "{calls}"
    );
    let r = results(&out);
    let torch = row(&r, "sgemm/2048", "torch");
    assert_eq!(torch["median_s"].as_f64(), Some(11.0));
    assert_eq!(torch["gflop_per_s"].as_f64(), Some(1.72e10 / 11.0 / 1e9));
    let ours = row(&r, "sgemm/2048", "ours")["median_s"].as_f64().unwrap();
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(md.contains(&format!("**{:.2}**", ours / 11.0)), "{md}");
    assert!(md.contains("torch fake"), "{md}");
}

/// `--paired`: the sides alternate (ours, twin, ours, twin, …), one ratio per pair, the median
/// with a bootstrap interval inside the ratios; without twins it is refused.
#[test]
fn paired_runs_alternate_and_report_the_median_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let (py, log) =
        fake_python(dir.path(), r#"{"times_s": [10.0], "items": 1, "flops": null, "peak_rss_bytes": 1}"#);
    let out = dir.path().join("bench");
    let args = ["--cases", "sgemm", "--reps", "1", "--warmup", "0", "--threads", "1", "--paired", "3"];
    let o = bench(&[&args[..], &["--python", py.to_str().unwrap(), "--out", out.to_str().unwrap()]].concat());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let twin_runs = std::fs::read_to_string(&log).unwrap().lines().filter(|l| l.contains("--impl")).count();
    assert_eq!(twin_runs, 3, "one twin run per pair");
    let paired: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("paired.json")).unwrap()).unwrap();
    let p = &paired[0];
    assert_eq!((p["case"].as_str(), p["twin"].as_str()), (Some("sgemm/2048"), Some("torch")));
    let ratios: Vec<f64> = p["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x[0].as_f64().unwrap() / x[1].as_f64().unwrap())
        .collect();
    assert_eq!(ratios.len(), 3);
    let mut sorted = ratios.clone();
    sorted.sort_by(f64::total_cmp);
    assert_eq!(p["ratio"].as_f64(), Some(sorted[1]), "the median of the pairs' ratios");
    let (lo, hi) = (p["lo"].as_f64().unwrap(), p["hi"].as_f64().unwrap());
    assert!(sorted[0] <= lo && lo <= sorted[1] && sorted[1] <= hi && hi <= sorted[2]);
    // ours' sgemm takes far less than the fake 10 s: faster, and the table says so
    let md = std::fs::read_to_string(out.join("paired.md")).unwrap();
    assert!(md.contains("| sgemm/2048 | torch | 3 |") && md.contains("ours faster"), "{md}");
    let o = bench(&[&args[..], &["--python", "none", "--out", out.to_str().unwrap()]].concat());
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("needs the PyTorch twins"));
}

#[test]
fn the_twin_script_compiles() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../benches/torch_bench.py");
    let o = Command::new("python3")
        .args(["-c", "import ast, sys; ast.parse(open(sys.argv[1]).read())"])
        .arg(&script)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn cases_that_need_the_fixtures_say_so_without_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bench");
    let o = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["bench", "--cases", "loader", "--reps", "1", "--warmup", "0", "--python", "none", "--out"])
        .arg(&out)
        .env("DEPTH_FIXTURES", dir.path().join("missing"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = results(&out);
    let ours = row(&r, "loader/photos_518", "ours");
    assert!(ours["note"].as_str().unwrap().contains("needs the fixtures"), "{ours}");
    assert!(ours.get("median_s").is_none());
}

#[test]
fn a_python_that_never_answers_and_an_empty_case_name_end_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    // an empty name would select every case: refused before anything is written
    let out = dir.path().join("empty");
    let o = bench(&["--cases", "", "--out", out.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("empty case name"));
    assert!(!out.exists(), "{} was created", out.display());
    // a Python that hangs: the probe gives up after --timeout, ours is measured alone, and
    // nothing but the results is left in --out
    let py = dir.path().join("hangs");
    std::fs::write(&py, "#!/bin/sh\nexec sleep 1000\n").unwrap();
    std::fs::set_permissions(&py, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = dir.path().join("bench");
    let t0 = std::time::Instant::now();
    let o = bench(&[
        "--cases",
        "sgemm",
        "--reps",
        "1",
        "--warmup",
        "0",
        "--timeout",
        "2",
        "--python",
        py.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(t0.elapsed() < std::time::Duration::from_secs(120), "took {:?}", t0.elapsed());
    assert!(String::from_utf8_lossy(&o.stdout).contains("did not answer within 2 s"));
    let mut files: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["results.json", "results.md"]);
}
