//! Kill -9 chaos: `data synth`, `pseudo-label`, `train` and `eval` are SIGKILLed at random
//! moments (fixed seeds), then rerun to completion. After every kill, no final-named file is
//! partial (each is read back by its format: every file, not a count); after the rerun, no temp
//! file is left and the outputs equal an uninterrupted run's, bit for bit.
//!
//! `CHAOS_TRIALS` sets the kills per command: 2 in CI, `CHAOS_TRIALS=20 cargo test --release -p
//! xtask --test chaos` for the full run (docs/reliability.md has its result).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

fn fixtures() -> PathBuf {
    depth_core::fixtures::fixtures_dir().expect("shared fixtures are required")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn xtask(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.args(args).env("HF_HUB_OFFLINE", "1").env_remove("DEPTH_TRAIN_PAUSE");
    cmd
}

fn trials() -> usize {
    std::env::var("CHAOS_TRIALS").ok().and_then(|v| v.parse().ok()).unwrap_or(2)
}

/// splitmix64: the kill moments, reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) as f64 / u64::MAX as f64
    }
}

/// Files appended to as a run goes (a killed run may end them mid-record; the rerun repairs or
/// replaces them) and files that hold timings or the run's own path.
fn appended(rel: &Path) -> bool {
    let name = rel.file_name().unwrap().to_string_lossy();
    name == "log.jsonl" || name.starts_with("events.out.tfevents")
}

/// Checks that a final-named file is whole by reading it in its format.
fn check_whole(path: &Path) -> Result<(), String> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let ok = match ext {
        "safetensors" => safetensors::SafeTensors::deserialize(&bytes).map(|_| ()).map_err(|e| e.to_string()),
        "png" => image::load_from_memory(&bytes).map(|_| ()).map_err(|e| e.to_string()),
        "npy" => depth_core::npy::read_f32(path).map(|_| ()).map_err(|e| e.to_string()),
        "json" => serde_json::from_slice::<serde_json::Value>(&bytes).map(|_| ()).map_err(|e| e.to_string()),
        "jsonl" => std::str::from_utf8(&bytes).map_err(|e| e.to_string()).and_then(|t| {
            t.lines().try_for_each(|l| {
                serde_json::from_str::<serde_json::Value>(l).map(|_| ()).map_err(|e| e.to_string())
            })
        }),
        "toml" => std::str::from_utf8(&bytes)
            .map_err(|e| e.to_string())
            .and_then(|t| toml::from_str::<toml::Table>(t).map(|_| ()).map_err(|e| e.to_string())),
        "md" => std::str::from_utf8(&bytes).map(|_| ()).map_err(|e| e.to_string()),
        "tar" => tar::Archive::new(&bytes[..]).entries().map_err(|e| e.to_string()).and_then(|entries| {
            entries.into_iter().try_for_each(|e| e.map(|_| ()).map_err(|e| e.to_string()))
        }),
        _ => Ok(()),
    };
    ok.map_err(|e| format!("{}: {e}", path.display()))
}

/// Every file below `dir` (none when a kill came before it was made): relative path → bytes.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    if !dir.exists() {
        return BTreeMap::new();
    }
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| (e.path().strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(e.path()).unwrap()))
        .collect()
}

fn is_temp(rel: &Path) -> bool {
    rel.file_name().unwrap().to_string_lossy().starts_with(".partial-")
}

/// One command under chaos. `run` starts it into a folder; `rerun` is what a user types after
/// the kill; `compared` picks the outputs that must be bit-identical (the others hold timings).
struct Job {
    name: &'static str,
    seed: u64,
    run: Box<dyn Fn(&Path) -> Command>,
    rerun: Box<dyn Fn(&Path) -> Command>,
    compared: fn(&Path) -> bool,
}

fn chaos(job: Job) {
    let base = tempfile::tempdir().unwrap();
    let reference = base.path().join("reference");
    let t0 = Instant::now();
    let out = (job.run)(&reference).output().unwrap();
    assert!(out.status.success(), "{}: {}", job.name, String::from_utf8_lossy(&out.stderr));
    let took = t0.elapsed();
    let want: BTreeMap<_, _> = tree(&reference).into_iter().filter(|(p, _)| (job.compared)(p)).collect();
    assert!(!want.is_empty(), "{}: nothing to compare", job.name);
    let mut rng = Rng(job.seed);
    for trial in 0..trials() {
        let dir = base.path().join(format!("trial{trial}"));
        let delay = took.mul_f64(rng.uniform());
        let mut child = (job.run)(&dir).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(delay);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // right after the kill: every final-named file is whole
        for (rel, _) in tree(&dir).iter().filter(|(p, _)| !is_temp(p) && !appended(p)) {
            check_whole(&dir.join(rel))
                .unwrap_or_else(|e| panic!("{} trial {trial} (killed at {delay:?}): {e}", job.name));
        }
        let out = (job.rerun)(&dir).output().unwrap();
        assert!(
            out.status.success(),
            "{} trial {trial} (killed at {delay:?}): the rerun failed: {}",
            job.name,
            String::from_utf8_lossy(&out.stderr)
        );
        let got = tree(&dir);
        for rel in got.keys() {
            assert!(!is_temp(rel), "{} trial {trial}: temp file {} left", job.name, rel.display());
            check_whole(&dir.join(rel)).unwrap_or_else(|e| panic!("{} trial {trial}: {e}", job.name));
        }
        let got: BTreeMap<_, _> = got.into_iter().filter(|(p, _)| (job.compared)(p)).collect();
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "{} trial {trial} (killed at {delay:?}): other files",
            job.name
        );
        for (rel, bytes) in &want {
            if got[rel] != *bytes {
                let head = |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(400)]).into_owned();
                panic!(
                    "{} trial {trial} (killed at {delay:?}): {} differs ({} vs {} bytes)\nwant {}\ngot  {}",
                    job.name,
                    rel.display(),
                    bytes.len(),
                    got[rel].len(),
                    head(bytes),
                    head(&got[rel])
                );
            }
        }
    }
}

#[test]
fn data_synth_survives_kills() {
    let args = |d: &Path| {
        let d = d.to_str().unwrap().to_string();
        xtask(&[
            "data", "synth", "--count", "12", "--size", "96", "--photos", "none", "--seed", "3", "--out", &d,
        ])
    };
    chaos(Job {
        name: "data synth",
        seed: 1,
        run: Box::new(args),
        rerun: Box::new(args),
        compared: |_| true,
    });
}

#[test]
fn pseudo_label_survives_kills() {
    let teacher = format!("vits:{}", fixtures().join("weights/da2_vits_random.pth").display());
    let photos = repo().join("assets/photos");
    let args = move |d: &Path| {
        let (p, d) = (photos.to_str().unwrap().to_string(), d.to_str().unwrap().to_string());
        xtask(&["pseudo-label", "--teacher", &teacher, "--images", &p, "--store", &d, "--input-size", "56"])
    };
    let labels = |p: &Path| p.extension().is_some_and(|e| e == "safetensors");
    chaos(Job {
        name: "pseudo-label",
        seed: 2,
        run: Box::new(args.clone()),
        rerun: Box::new(args),
        compared: labels,
    });
}

/// The sharded store: a kill never leaves a shard with a partial tar or an index without its
/// tar, and the rerun's shards equal an uninterrupted run's, byte for byte.
#[test]
fn sharded_pseudo_label_survives_kills() {
    let teacher = format!("vits:{}", fixtures().join("weights/da2_vits_random.pth").display());
    let photos = repo().join("assets/photos");
    let args = move |d: &Path| {
        let (p, d) = (photos.to_str().unwrap().to_string(), d.to_str().unwrap().to_string());
        xtask(&[
            "pseudo-label",
            "--teacher",
            &teacher,
            "--images",
            &p,
            "--store",
            &d,
            "--input-size",
            "56",
            "--shard-size",
            "3",
        ])
    };
    let shards = |p: &Path| {
        let name = p.file_name().unwrap().to_string_lossy();
        name.ends_with(".tar") || name.ends_with(".index.json")
    };
    chaos(Job {
        name: "pseudo-label --shard-size",
        seed: 5,
        run: Box::new(args.clone()),
        rerun: Box::new(args),
        compared: shards,
    });
}

#[test]
fn train_survives_kills() {
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny_train.toml");
    let c = cfg.to_str().unwrap().to_string();
    let run = move |d: &Path| xtask(&["train", "--config", &c, "--set", &format!("out={}", d.display())]);
    // after a kill a run is continued with --resume (before its config is written, started again)
    let c2 = cfg.to_str().unwrap().to_string();
    let rerun = move |d: &Path| {
        if d.join("config.toml").is_file() {
            xtask(&["train", "--resume", d.to_str().unwrap()])
        } else {
            xtask(&["train", "--config", &c2, "--set", &format!("out={}", d.display())])
        }
    };
    let weights = |p: &Path| {
        p.extension().is_some_and(|e| e == "safetensors") || p.file_name().is_some_and(|n| n == "latest.json")
    };
    chaos(Job { name: "train", seed: 3, run: Box::new(run), rerun: Box::new(rerun), compared: weights });
}

#[test]
fn eval_survives_kills() {
    let model = format!("m=vits:{}", fixtures().join("weights/da2_vits_random.pth").display());
    let cfg = repo().join("configs/mini/eval.toml");
    let args = move |d: &Path| {
        let (c, d) = (cfg.to_str().unwrap().to_string(), d.to_str().unwrap().to_string());
        xtask(&[
            "eval",
            "--config",
            &c,
            "--benchmark",
            "redwood_frames",
            "--model",
            &model,
            "--input-size",
            "70",
            "--out",
            &d,
        ])
    };
    let results = |p: &Path| p.extension().is_some_and(|e| e == "png" || e == "json");
    chaos(Job {
        name: "eval",
        seed: 4,
        run: Box::new(args.clone()),
        rerun: Box::new(args),
        compared: results,
    });
}
