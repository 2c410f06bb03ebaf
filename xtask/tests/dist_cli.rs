//! Data-parallel training over MPI as a user launches it (`mpirun -np 2 xtask train`): one
//! config (`batch_size` is the optimiser's batch) takes the same steps on two ranks as in one
//! process (losses and weights to 1e-6), the split ranks × per-rank batch × accumulate derived
//! or refused, a rank killed with SIGKILL ends the whole job with a message naming it, and
//! `--resume` continues the run with the same number of ranks (and refuses another number).
//! Needs OpenMPI's `mpirun` (CI installs openmpi-bin): without it these tests fail, they do not
//! skip.

use depth_core::weights::load_safetensors;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A tiny relative run over rooms only (every pixel has depth), so each rank's half of a batch
/// has as many valid pixels as the other: the losses normalise by the valid pixels of the
/// batch, and only then is the mean over ranks the loss of the whole batch (PyTorch's DDP
/// averages the same way). AdamW's eps = 1: with the default 1e-8 its first steps move a
/// weight by ±lr whatever the size of its gradient, so a gradient that is zero up to rounding
/// (last bits differ between a sum over 4 samples and two sums over 2) moves by ±lr one way or
/// the other, in PyTorch as here; with eps = 1 the update is smooth in the gradient.
fn config(dir: &Path, steps: u64) -> PathBuf {
    let text = format!(
        r#"out = "run"
[model]
embed_dim = 32
depth = 2
num_heads = 2
features = 16
output_bias = 1.0
seed = 1
[data.loader]
batch_size = 4
workers = 1
seed = 3
[data.loader.augment]
input_size = 56
crop = 56
[[data.source]]
synth = {{ seed = 11, count = 12, width = 72, height = 64, outdoor_fraction = 0.0 }}
[optim]
lr = 1e-4
eps = 1.0
[schedule]
steps = {steps}
[checkpoint]
every = 2
keep_last = 2
"#
    );
    let p = dir.join("train.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn xtask() -> &'static str {
    env!("CARGO_BIN_EXE_xtask")
}

/// `mpirun -np n` as root where CI runs as root, one thread per rank (the machines have 2 cores).
fn mpirun(n: usize) -> Command {
    let mut cmd = Command::new("mpirun");
    cmd.args(["-np", &n.to_string(), "--oversubscribe", "-x", "RAYON_NUM_THREADS=1"])
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("HF_HUB_OFFLINE", "1")
        .env_remove("DEPTH_TRAIN_PAUSE");
    cmd
}

fn ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("mpirun (OpenMPI: apt-get install openmpi-bin) or xtask did not start");
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn losses(run: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(run.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "train")
        .map(|v| (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap()))
        .collect()
}

/// Batch 4 in one process (4 images per pass) and on two ranks that each accumulate two
/// passes of one image: the same four images per step, the same steps.
#[test]
fn two_ranks_take_the_steps_of_one_process_with_the_same_batch() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 4);
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    let one_out = ok(Command::new(xtask())
        .args(["train", "--config"])
        .arg(&cfg)
        .args(["--set", &format!("out={}", one.display())])
        .env("HF_HUB_OFFLINE", "1"));
    assert!(
        String::from_utf8_lossy(&one_out.stderr).contains("batch 4 = 1 rank × 4 per rank × accumulate 1")
    );
    let out = ok(mpirun(2).args([xtask(), "train", "--config"]).arg(&cfg).args([
        "--set",
        &format!("out={}", two.display()),
        "--set",
        "optim.accumulate=2",
    ]));
    assert!(String::from_utf8_lossy(&out.stderr).contains("batch 4 = 2 ranks × 1 per rank × accumulate 2"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches("trained 4 steps").count(), 1, "rank 0 alone reports: {stdout}");

    let (a, b) = (losses(&one), losses(&two));
    assert_eq!(a.iter().map(|x| x.0).collect::<Vec<_>>(), (1..=4).collect::<Vec<_>>());
    assert_eq!(a.len(), b.len(), "rank 0 logs each step once");
    for ((step, la), (_, lb)) in a.iter().zip(&b) {
        // float32 losses near 10: 1e-6 relative is a few units in the last place
        eprintln!(
            "step {step}: loss {la} one process, {lb} two ranks ({:.1e} relative)",
            (la - lb).abs() / la.abs()
        );
        assert!(
            (la - lb).abs() <= 1e-6 * la.abs().max(1.0),
            "step {step}: loss {la} one process, {lb} two ranks"
        );
    }
    assert!(a.first().unwrap().1 != a.last().unwrap().1, "the weights moved");
    let (wa, wb) = (
        load_safetensors(&one.join("final.safetensors")).unwrap(),
        load_safetensors(&two.join("final.safetensors")).unwrap(),
    );
    assert_eq!(wa.len(), wb.len());
    for (k, v) in &wa {
        let d = (v - &wb[k]).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(d <= 1e-6, "{k}: weights differ by {d} after 4 steps");
    }
    // only rank 0 wrote: one log, one final model, checkpoints of the run
    assert!(two.join("checkpoints/latest.json").is_file());
}

/// A split that does not multiply to the batch is refused before anything runs, in the plan
/// (`--dry-run --ranks`) as in a launched job, with the rule.
#[test]
fn a_split_that_disagrees_with_the_batch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 4);
    let plan = |sets: &[&str]| {
        let mut cmd = Command::new(xtask());
        cmd.args(["train", "--dry-run", "--ranks", "2", "--config"]).arg(&cfg).env("HF_HUB_OFFLINE", "1");
        for s in sets {
            cmd.args(["--set", s]);
        }
        cmd.output().unwrap()
    };
    let refused = plan(&["optim.per_rank_batch=4"]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && err.contains("does not divide into 2 ranks × per-rank batch 4 = 8"),
        "{err}"
    );
    let refused = plan(&["data.loader.batch_size=3"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("does not divide into 2 ranks"));
    let run = dir.path().join("never");
    let out = mpirun(2)
        .args([xtask(), "train", "--config"])
        .arg(&cfg)
        .args(["--set", &format!("out={}", run.display())])
        .args(["--set", "optim.per_rank_batch=1", "--set", "optim.accumulate=1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("batch 4 ≠ 2 ranks × 1 × 1 = 2"), "{err}");
    assert!(!run.exists(), "a refused job wrote its folder");
}

#[test]
fn a_killed_rank_ends_the_job_and_resume_continues_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 40);
    let run = dir.path().join("run");
    // rank 1 is killed with SIGKILL once rank 0 has written a checkpoint
    let script = format!(
        "if [ \"$OMPI_COMM_WORLD_RANK\" = 1 ]; then \
           (while [ ! -f '{ckpt}' ]; do sleep 0.05; done; kill -9 $$) & \
         fi; exec '{x}' train --config '{cfg}' --set out='{run}'",
        ckpt = run.join("checkpoints/latest.json").display(),
        x = xtask(),
        cfg = cfg.display(),
        run = run.display()
    );
    let t = Instant::now();
    let out = mpirun(2).args(["sh", "-c", &script]).output().unwrap();
    let took = t.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the job went on without rank 1: {stderr}");
    assert!(took < Duration::from_secs(120), "the job took {took:?} to end: a rank hung");
    assert!(
        stderr.contains("rank 1") && stderr.contains("signal 9"),
        "the message does not name the rank: {stderr}"
    );
    let done = losses(&run).len();
    assert!(done < 40, "the run finished before the kill ({done} steps)");

    // another number of ranks cannot continue it: a rank's place in an epoch depends on it
    let alone = Command::new(xtask())
        .args(["train", "--resume"])
        .arg(&run)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&alone.stderr);
    assert!(!alone.status.success() && err.contains("2 rank(s)") && err.contains("mpirun -np 2"), "{err}");

    ok(mpirun(2).args([xtask(), "train", "--resume"]).arg(&run));
    let steps: Vec<u64> = losses(&run).iter().map(|x| x.0).collect();
    assert_eq!(steps.last(), Some(&40), "the resumed job did not finish: {steps:?}");
    assert!(run.join("final.safetensors").is_file());
}
