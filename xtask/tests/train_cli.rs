//! `cargo xtask train` end to end as a user runs it: a run killed with SIGKILL — between the
//! two files of a checkpoint, or at any moment — and continued with `--resume` ends with the
//! same losses and weights as a run that was never interrupted; the checkpoint resumed after a
//! kill between the files is the previous complete one. Bad flags lose nothing.

use depth_core::weights::load_safetensors;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The tiny relative run of `tests/data/tiny_train.toml` (8 steps, a checkpoint every 2), copied
/// into `dir`.
fn config(dir: &Path) -> PathBuf {
    let p = dir.join("train.toml");
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny_train.toml"), &p).unwrap();
    p
}

fn xtask() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.arg("train").env("HF_HUB_OFFLINE", "1").env_remove("DEPTH_TRAIN_PAUSE");
    cmd
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run xtask");
    assert!(out.status.success(), "xtask failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// (step, loss bits) of every training record.
fn losses(run: &Path) -> Vec<(u64, u64)> {
    std::fs::read_to_string(run.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "train")
        .map(|v| (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap().to_bits()))
        .collect()
}

fn same_weights(a: &Path, b: &Path) {
    let (wa, wb) = (load_safetensors(a).unwrap(), load_safetensors(b).unwrap());
    assert_eq!(wa.len(), wb.len());
    for (k, v) in &wa {
        let d = (v - &wb[k]).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(d, 0.0, "{k} differs between {} and {}", a.display(), b.display());
    }
}

/// Starts a run and SIGKILLs it once `ready` says so.
fn kill_when(cmd: &mut Command, ready: impl Fn() -> bool) {
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn xtask");
    let t0 = Instant::now();
    while !ready() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before the kill point");
        }
        assert!(t0.elapsed() < Duration::from_secs(300), "kill point not reached");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

#[test]
fn killed_runs_resume_to_the_uninterrupted_result() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let cfg_s = cfg.to_str().unwrap();
    let out = |name: &str| dir.path().join(name);
    run(xtask().args(["--config", cfg_s, "--set", &format!("out={}", out("a").display())]));
    let reference = losses(&out("a"));
    assert_eq!(reference.len(), 8);

    // SIGKILL between model.safetensors and state.safetensors of the step-4 checkpoint
    let b = out("b");
    let marker = b.join("checkpoints/paused-checkpoint-between-files");
    kill_when(
        xtask()
            .args(["--config", cfg_s, "--set", &format!("out={}", b.display())])
            .env("DEPTH_TRAIN_PAUSE", "checkpoint-between-files:4"),
        || marker.exists(),
    );
    let pointer: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.join("checkpoints/latest.json")).unwrap()).unwrap();
    assert_eq!(pointer["step"], 2, "the pointer still names the previous complete checkpoint");
    assert!(b.join("checkpoints/step-00000004/model.safetensors").is_file());
    assert!(!b.join("checkpoints/step-00000004/state.safetensors").exists());
    let stderr = run(xtask().args(["--resume", b.to_str().unwrap()])).stderr;
    assert!(String::from_utf8_lossy(&stderr).contains("from step 2"), "resumed from the step-2 checkpoint");
    assert_eq!(losses(&b), reference, "losses after a kill between the checkpoint files");
    same_weights(&out("a").join("final.safetensors"), &b.join("final.safetensors"));

    // SIGKILL at an arbitrary moment: as soon as the step-4 checkpoint is complete (the run is
    // then somewhere in step 5 or 6)
    let c = out("c");
    let ptr = c.join("checkpoints/latest.json");
    kill_when(xtask().args(["--config", cfg_s, "--set", &format!("out={}", c.display())]), || {
        std::fs::read(&ptr)
            .ok()
            .and_then(|t| serde_json::from_slice::<serde_json::Value>(&t).ok())
            .is_some_and(|v| v["step"].as_u64() >= Some(4))
    });
    run(xtask().args(["--resume", c.to_str().unwrap()]));
    assert_eq!(losses(&c), reference, "losses after a kill past step 4");
    same_weights(&out("a").join("final.safetensors"), &c.join("final.safetensors"));
}

#[test]
fn a_trained_student_of_any_size_is_evaluated_by_path() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let run_dir = dir.path().join("run");
    run(xtask().args(["--config", cfg.to_str().unwrap(), "--set", "schedule.steps=2"]));
    let student = run_dir.join("final.safetensors");
    let report = dir.path().join("report");
    let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/eval.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "eval",
            "--config",
            configs.to_str().unwrap(),
            "--benchmark",
            "nyu_frames",
            "--input-size",
            "70",
        ])
        .args(["--model", &format!("student={}", student.display()), "--out", report.to_str().unwrap()])
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report.join("report.json")).unwrap()).unwrap();
    let text = json.to_string();
    assert!(text.contains("\"student\"") && text.contains("abs_rel"), "{text}");
}

#[test]
fn flags_that_would_change_a_resumed_run_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out =
        xtask().args(["--resume", dir.path().to_str().unwrap(), "--set", "optim.lr=1"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--set would change the run"));
    let cfg = config(dir.path());
    let out = xtask().args(["--config", cfg.to_str().unwrap(), "--set", "optim.lrr=1"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lrr") && err.contains("train.toml"), "{err}");
    assert!(!dir.path().join("run").exists(), "nothing was written");
}
