//! xtask: `cargo xtask <phase>` runs the Depth Anything V2 pipeline. Each phase is a thin clap
//! front: it parses its flags into the libraries' typed options (devices, weights, models,
//! configs through their one loading contract) and calls them; the phases never call each
//! other's flags. What only the command line does lives here: drawing and writing depth
//! pictures (`render.rs`, shared by images and videos), ffmpeg pipes, the web demo, the bench
//! harness and the mini reproduction's orchestration. It holds no model or tensor logic.
// The doc comments of the argument structs are clap's `--help` text, written for a terminal
// (`ENCODER[:WEIGHTS]`, `DIR/<stem>.npy`), not rustdoc markdown.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]

mod bench;
mod data;
mod error;
mod eval;
mod export;
mod features;
mod infer;
mod mini;
mod net_input;
mod progress;
mod pseudo_label;
mod render;
mod serve;
mod train;
mod video;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "Depth Anything V2 in Rust: the pipeline phases")]
struct Cli {
    #[command(subcommand)]
    phase: Phase,
}

#[derive(Subcommand)]
enum Phase {
    /// Depth maps for images (run.py) or a video (run_video.py).
    Infer(infer::InferArgs),
    /// The web demo (app.py): upload an image, see and download its depth.
    Serve(serve::ServeArgs),
    /// Datasets: synthetic scenes, manifests, verification, validation, downloads.
    Data(data::DataArgs),
    /// Benchmarks: metrics, reports and pictures for models or precomputed predictions.
    Eval(eval::EvalArgs),
    /// DINOv2 feature exploration: PCA, norms and similarity maps of intermediate layers.
    Features(features::FeaturesArgs),
    /// Pseudo-labels: a frozen teacher labels images into a label store (sharded, resumable).
    PseudoLabel(pseudo_label::PseudoLabelArgs),
    /// Speed: every case by ours and by its PyTorch twins, side by side (bench/results.md).
    Bench(bench::BenchArgs),
    /// Export: a model as transformers, the official .pth or ONNX (--check runs it there).
    Export(export::ExportArgs),
    /// Training: relative distillation or metric fine-tuning from configs/train.toml; --resume.
    Train(train::TrainArgs),
}

fn main() -> std::process::ExitCode {
    // A write past a file-size limit (`ulimit -f`) then fails with EFBIG, reported as "cannot
    // write …", instead of SIGXFSZ killing the process with a partial temp file behind.
    // SAFETY: setting a signal's disposition to SIG_IGN before any thread starts.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match Cli::parse().phase {
        Phase::Infer(args) => infer::run(args),
        Phase::Serve(args) => serve::run_server(args),
        Phase::Data(args) => data::run(args),
        Phase::Eval(args) => eval::run(args),
        Phase::Features(args) => features::run(args),
        Phase::PseudoLabel(args) => pseudo_label::run(args),
        Phase::Train(args) => train::run(args),
        Phase::Bench(args) => bench::run(args),
        Phase::Export(args) => export::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            // 128 + SIGINT, as a shell reports a process ended by Ctrl-C
            let code = if matches!(e, error::XtaskError::Interrupted) { 130 } else { 1 };
            std::process::ExitCode::from(code)
        }
    }
}
