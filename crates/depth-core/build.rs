//! Why: depth-core's own CUDA kernels (`src/cuda/kernels.cu`) must reach the GPU through candle's
//! cudarc (a second cudarc in the build fails to link), which loads PTX; compiling that PTX here
//! with nvcc, as candle-kernels does for its own, keeps the kernels' source in the repository,
//! checked by the compiler at build time instead of at the first launch (NVRTC). With the
//! `cuda` feature this writes `OUT_DIR/depth_kernels.ptx`, which `src/cuda/mod.rs` embeds;
//! without it nothing happens (CI has no toolkit).
//!
//! The PTX targets compute capability 8.0 (the bf16 tensor-core instructions need it) and the
//! driver compiles it for the GPU it runs on (sm_80, sm_90 and later); `DEPTH_CUDA_ARCH`
//! overrides it (e.g. `sm_90`).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=src/cuda/kernels.cu");
    println!("cargo:rerun-if-env-changed=DEPTH_CUDA_ARCH");
    println!("cargo:rerun-if-env-changed=NVCC");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("depth_kernels.ptx");
    let arch = std::env::var("DEPTH_CUDA_ARCH").unwrap_or_else(|_| "compute_80".into());
    let nvcc = std::env::var("NVCC").unwrap_or_else(|_| "nvcc".into());
    let status = Command::new(&nvcc)
        .args(["--ptx", "-O3", &format!("-arch={arch}"), "-o"])
        .arg(&out)
        .arg("src/cuda/kernels.cu")
        .status()
        .unwrap_or_else(|e| {
            panic!("cannot run {nvcc} ({e}): the `cuda` feature needs the CUDA toolkit: eval \"$(../shared/gpu/setup-cuda.sh)\" (docs/gpu.md)")
        });
    assert!(
        status.success(),
        "{nvcc} failed on src/cuda/kernels.cu for -arch={arch} ({status}); the kernels need compute capability ≥ 8.0"
    );
}
