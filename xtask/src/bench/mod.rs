//! `cargo xtask bench`: every case run by ours and, where python3 with torch is present, by its
//! PyTorch twin (benches/torch_bench.py: the official code and transformers' DepthAnything), one
//! after the other on the same machine with the same threads, dtype and input. Each
//! implementation of each case runs in a process of its own (its peak RSS is its own); the
//! results go to `<out>/results.json` and `<out>/results.md`.

mod cases;
mod paired;
mod report;

use crate::error::{Result, XtaskError};
use cases::{Case, Inputs, Measurement};
use depth_core::Progress;
use report::{CaseResult, Machine, Results, Row, Stats};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Cases to run: comma-separated names or name prefixes (`infer/vits,train`; a full name
    /// selects that case alone); by default the CPU set, or the GPU set with `--device cuda`.
    /// `--list` prints every name.
    #[arg(long, value_delimiter = ',')]
    pub cases: Vec<String>,
    /// Print the case names and exit.
    #[arg(long)]
    pub list: bool,
    /// Where results.json and results.md are written.
    #[arg(long, default_value = "bench")]
    pub out: PathBuf,
    /// Timed repetitions per case (default: per case, 2 to 10).
    #[arg(long, value_parser = crate::net_input::positive())]
    pub reps: Option<usize>,
    /// Untimed warm-up repetitions per case (default: per case, 1 or 2).
    #[arg(long)]
    pub warmup: Option<usize>,
    /// Photos per repetition of the pseudo-label case.
    #[arg(long, default_value_t = 8, value_parser = crate::net_input::positive())]
    pub images: usize,
    /// The Python that runs the PyTorch twins, or `none` to run ours alone.
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// A checkout of the official Depth-Anything-V2 code (the `official` twins; skipped without).
    #[arg(long, env = "DA2_REPO")]
    pub official_repo: Option<PathBuf>,
    /// Threads for ours and the twins (default: the machine's cores).
    #[arg(long, value_parser = crate::net_input::positive())]
    pub threads: Option<usize>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: depth_core::DeviceSpec,
    /// f32 or bf16 (the products in bfloat16, as torch.autocast; the twins run under autocast):
    /// the infer, train and pseudo-label cases.
    #[arg(long, default_value_t = depth_core::Precision::F32)]
    pub precision: depth_core::Precision,
    /// Seconds a measuring process may take before it is killed and its row marked failed (the
    /// probe for torch waits at most 120 of them).
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    /// Interleaved pairs instead of one run each: ours and each twin alternately N times (fresh
    /// processes of --reps each), reported as the median of the per-pair ratios ours / twin with
    /// a 95% bootstrap interval (paired.md, paired.json).
    #[arg(long, value_parser = crate::net_input::positive())]
    pub paired: Option<usize>,
    /// Internal: run one case of ours in this process and print its measurement.
    #[arg(long, hide = true)]
    pub child: Option<String>,
}

pub fn run(args: BenchArgs) -> Result<()> {
    if let Some(name) = &args.child {
        return child(&args, name);
    }
    if args.device.is_cuda() && !cfg!(feature = "cuda") {
        // refuse before any child starts: the error says how to build with CUDA
        args.device.open()?;
    }
    let all = Case::all();
    if args.list {
        for c in &all {
            println!("{}", c.name());
        }
        return Ok(());
    }
    let chosen: Vec<Case> = if args.cases.is_empty() {
        Case::default_for(args.device.is_cuda())
    } else {
        if args.cases.iter().any(|p| p.trim().is_empty()) {
            return Err(XtaskError::usage(
                "--cases",
                "an empty case name would select every case; name them",
            ));
        }
        for p in &args.cases {
            if !all.iter().any(|c| c.name().starts_with(p.as_str())) {
                return Err(XtaskError::usage(
                    "--case",
                    format!("no bench case starts with '{p}' (see --list)"),
                ));
            }
        }
        Case::select(&all, &args.cases)
    };
    depth_core::atomic::prepare_output_dir(&args.out)?;
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let python = Python::find(&args.python, args.timeout.min(120));
    if let Err(why) = &python {
        println!("PyTorch twins skipped: {why}; reporting ours alone");
    }
    // the twins' photo list lives outside --out, which only ever gets the finished results
    let list = Removed(std::env::temp_dir().join(format!("depth-bench-photos-{}.txt", std::process::id())));
    let list = &list.0;
    let inputs = Inputs::from_fixtures(args.images);
    if let Ok(inputs) = &inputs {
        cases::write_photo_list(inputs, list)?;
    }

    if let Some(pairs) = args.paired {
        let py =
            python.map_err(|why| XtaskError::usage("--paired", format!("needs the PyTorch twins: {why}")))?;
        let twins = |c: &Case| -> Vec<&'static str> {
            c.twins().iter().copied().filter(|t| *t != "official" || args.official_repo.is_some()).collect()
        };
        let bar = crate::progress::Bar::new("bench --paired");
        bar.start(chosen.iter().map(|c| twins(c).len() * pairs).sum::<usize>() as u64, 0);
        let weights = inputs.as_ref().ok().map(|i| i.weights.clone());
        let mut results = Vec::new();
        for case in &chosen {
            let (reps, warmup) = reps(case, &args);
            for twin in twins(case) {
                bar.message(&format!("{} ours vs {twin}", case.name()));
                let measure = |who: &str| match who {
                    "ours" => ours_in_child(&args, case, (reps, warmup), threads, ours_kernels(&args)),
                    _ => py.twin(case, who, reps, warmup, threads, &args, weights.as_deref(), list),
                };
                results.push(paired::Paired::measure(case, twin, pairs, measure, || bar.advance(1)));
            }
        }
        drop(bar);
        let md = paired::markdown(
            &results,
            &machine(threads, &format!("{}, {}", args.device, args.precision)).summary(),
        );
        let json = serde_json::to_vec_pretty(&results).expect("serialises");
        depth_core::atomic::write_atomic(&args.out.join("paired.json"), |w| w.write_all(&json))?;
        depth_core::atomic::write_atomic(&args.out.join("paired.md"), |w| w.write_all(md.as_bytes()))?;
        println!("{md}\nwritten: {} and paired.json", args.out.join("paired.md").display());
        return Ok(());
    }
    let composed = |c: &Case| args.device.is_cuda() && c.runs_kernels();
    let runs: usize = chosen.iter().map(|c| 1 + usize::from(composed(c)) + c.twins().len()).sum();
    let bar = crate::progress::Bar::new("bench");
    bar.start(runs as u64, 0);
    let (mut results, mut md) = (Vec::new(), String::new());
    for case in &chosen {
        let (reps, warmup) = reps(case, &args);
        let mut rows = Vec::new();
        bar.message(&format!("{} ours", case.name()));
        rows.push(match (&inputs, case.needs_fixtures()) {
            (Err(e), true) => skipped("ours", format!("needs the fixtures: {e}")),
            _ => measured("ours", ours_in_child(&args, case, (reps, warmup), threads, ours_kernels(&args))),
        });
        bar.advance(1);
        if composed(case) {
            // the composed candle path beside the fused kernels ("ours ÷ this" below 1: the
            // kernels are faster)
            bar.message(&format!("{} ours, composed", case.name()));
            let m = ours_in_child(&args, case, (reps, warmup), threads, Some("composed"));
            rows.push(measured(COMPOSED, m));
            bar.advance(1);
        }
        for twin in case.twins() {
            bar.message(&format!("{} {twin}", case.name()));
            let row = match &python {
                Err(why) => skipped(twin, format!("not run: {why}")),
                Ok(_) if *twin == "official" && args.official_repo.is_none() => {
                    skipped(twin, "not run: no official checkout (--official-repo or DA2_REPO)".into())
                }
                Ok(_) if case.needs_fixtures() && inputs.is_err() => {
                    skipped(twin, "not run: needs the fixtures".into())
                }
                Ok(py) => {
                    let weights = inputs.as_ref().ok().map(|i| i.weights.clone());
                    measured(
                        twin,
                        py.twin(case, twin, reps, warmup, threads, &args, weights.as_deref(), list),
                    )
                }
            };
            rows.push(row);
            bar.advance(1);
        }
        results.push(CaseResult { case: case.name(), unit: case.unit().into(), rows });
        // the files after every case: a run stopped part-way (a device lease's budget) keeps
        // the cases it finished; the last write is the whole run's
        md = write_results(&args, threads, &results)?;
    }
    drop(bar);
    println!("{md}\nwritten: {} and results.md", args.out.join("results.json").display());
    Ok(())
}

/// results.json and results.md of the cases so far (atomically); returns the markdown.
fn write_results(args: &BenchArgs, threads: usize, cases: &[CaseResult]) -> Result<String> {
    let mut results = Results {
        machine: machine(threads, &format!("{}, {}", args.device, args.precision)),
        peak_gflop_per_s: None,
        cases: cases.to_vec(),
    };
    results.fill_peak();
    let json = serde_json::to_vec_pretty(&results).expect("serialises");
    let md = results.markdown();
    depth_core::atomic::write_atomic(&args.out.join("results.json"), |w| w.write_all(&json))?;
    depth_core::atomic::write_atomic(&args.out.join("results.md"), |w| w.write_all(md.as_bytes()))?;
    Ok(md)
}

/// A temporary file, removed however the run ends.
struct Removed(PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn reps(case: &Case, args: &BenchArgs) -> (usize, usize) {
    let (r, w) = case.default_reps();
    (args.reps.unwrap_or(r), args.warmup.unwrap_or(w))
}

fn measured(implementation: &str, m: Result<Measurement>) -> Row {
    match m {
        Ok(m) => match Stats::new(m) {
            Some(stats) => Row { implementation: implementation.into(), stats: Some(stats), note: None },
            None => skipped(implementation, "failed: no finite time was measured".into()),
        },
        Err(e) => skipped(implementation, format!("failed: {e}")),
    }
}

fn skipped(implementation: &str, note: String) -> Row {
    Row { implementation: implementation.into(), stats: None, note: Some(note.replace('\n', " ")) }
}

/// The child side: one case of ours, its measurement as the last stdout line.
fn child(args: &BenchArgs, name: &str) -> Result<()> {
    let case = Case::parse(name)
        .ok_or_else(|| XtaskError::usage("--child", format!("unknown bench case '{name}'")))?;
    let (reps, warmup) = reps(&case, args);
    let device = args.device.open()?;
    let inputs = Inputs::from_fixtures(args.images);
    let inputs = match (inputs, case.needs_fixtures()) {
        (Ok(i), _) => i,
        (Err(e), true) => return Err(e),
        (Err(_), false) => Inputs { photos: PathBuf::new(), weights: PathBuf::new(), images: args.images },
    };
    let m = cases::run_ours(&case, reps, warmup, (&device, args.precision), &inputs)?;
    println!("{}", serde_json::to_string(&m).expect("serialises"));
    Ok(())
}

/// The row of ours on CUDA that runs without the fused kernels.
const COMPOSED: &str = "ours, composed";

/// On CUDA "ours" is the fused kernels (`DEPTH_CUDA_KERNELS=fused`, what the GPU targets are
/// about); the composed path gets a row of its own. On the CPU the variable plays no part.
fn ours_kernels(args: &BenchArgs) -> Option<&'static str> {
    args.device.is_cuda().then_some("fused")
}

/// Ours in a child process; `kernels` sets `DEPTH_CUDA_KERNELS` for it.
fn ours_in_child(
    args: &BenchArgs,
    case: &Case,
    (reps, warmup): (usize, usize),
    threads: usize,
    kernels: Option<&str>,
) -> Result<Measurement> {
    let exe = std::env::current_exe().map_err(|source| XtaskError::Tool {
        tool: "xtask".into(),
        hint: "the bench runs each case in a child",
        source,
    })?;
    let mut cmd = Command::new(exe);
    cmd.args([
        "bench",
        "--child",
        &case.name(),
        "--reps",
        &reps.to_string(),
        "--warmup",
        &warmup.to_string(),
    ])
    .args(["--images", &args.images.to_string(), "--device", &args.device.to_string()])
    .args(["--precision", &args.precision.to_string()])
    .env("RAYON_NUM_THREADS", threads.to_string());
    if let Some(k) = kernels {
        cmd.env("DEPTH_CUDA_KERNELS", k);
    }
    last_json_line(cmd, "ours", args.timeout)
}

/// The output of `cmd`, which is killed when it runs longer than `seconds`.
fn output_within(mut cmd: Command, seconds: u64) -> Result<Option<std::process::Output>> {
    use std::io::Read;
    use std::process::Stdio;
    let tool = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| XtaskError::Tool { tool, hint: "a bench child", source })?;
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped")));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| depth_core::CoreError::io("bench child", e))? {
            break status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let (stdout, stderr) = (stdout.join().unwrap_or_default(), stderr.join().unwrap_or_default());
    Ok(Some(std::process::Output { status, stdout, stderr }))
}

/// Runs a measuring process and parses the JSON object on its last stdout line.
fn last_json_line(cmd: Command, who: &str, seconds: u64) -> Result<Measurement> {
    let Some(out) = output_within(cmd, seconds)? else {
        return Err(XtaskError::Bench {
            reason: format!("{who} did not finish within {seconds} s (killed)"),
        });
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().rev().find(|l| l.trim_start().starts_with('{'));
    match (out.status.success(), line) {
        (true, Some(line)) => serde_json::from_str(line).map_err(|e| XtaskError::Bench {
            reason: format!("{who}: unreadable measurement '{line}': {e}"),
        }),
        _ => {
            let err = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = err.lines().rev().take(3).collect();
            Err(XtaskError::Bench {
                reason: format!(
                    "{who} exited with {}: {}",
                    out.status,
                    tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
                ),
            })
        }
    }
}

/// A Python with torch, and the twin script.
struct Python {
    exe: String,
    script: PathBuf,
}

impl Python {
    /// The Python `exe` when it imports torch within `seconds`; else why not.
    fn find(exe: &str, seconds: u64) -> std::result::Result<Python, String> {
        if exe == "none" {
            return Err("--python none".into());
        }
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../benches/torch_bench.py");
        if !script.is_file() {
            return Err(format!("{} is missing", script.display()));
        }
        let mut probe = Command::new(exe);
        probe.args(["-c", "import torch"]);
        match output_within(probe, seconds) {
            Ok(Some(o)) if o.status.success() => Ok(Python { exe: exe.into(), script }),
            Ok(Some(_)) => Err(format!("{exe} has no torch (pip install torch transformers)")),
            Ok(None) => Err(format!("{exe} did not answer within {seconds} s")),
            Err(e) => Err(e.to_string()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn twin(
        &self,
        case: &Case,
        implementation: &str,
        reps: usize,
        warmup: usize,
        threads: usize,
        args: &BenchArgs,
        weights: Option<&Path>,
        list: &Path,
    ) -> Result<Measurement> {
        let mut cmd = Command::new(&self.exe);
        cmd.arg(&self.script)
            .args(["--case", &case.name(), "--impl", implementation, "--device", &args.device.to_string()])
            .args(["--precision", &args.precision.to_string()])
            .args([
                "--reps",
                &reps.to_string(),
                "--warmup",
                &warmup.to_string(),
                "--threads",
                &threads.to_string(),
            ])
            .env("OMP_NUM_THREADS", threads.to_string());
        if let Some(repo) = &args.official_repo {
            cmd.arg("--official-repo").arg(repo);
        }
        if let Some(w) = weights {
            cmd.arg("--weights").arg(w).arg("--images").arg(list);
        }
        last_json_line(cmd, implementation, args.timeout)
    }
}

fn machine(threads: usize, device: &str) -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("model name"))?.split(':').nth(1).map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let rustc = Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map_or("rustc unknown".into(), |s| s.trim().to_string());
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map_or("date unknown".into(), |s| s.trim().to_string());
    Machine {
        cpu,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        threads,
        device: device.into(),
        rustc,
        xtask: env!("CARGO_PKG_VERSION").into(),
        date,
    }
}
