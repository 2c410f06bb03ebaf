//! With the `cuda` feature: compiles `src/cuda/kernels.cu` to PTX with nvcc (the toolkit of
//! docs/gpu.md; `NVCC` or `nvcc` on the PATH), for the compute capability in
//! `CUDA_COMPUTE_CAP` (default 90, the H100/H200), into `OUT_DIR/depth_kernels.ptx`, which
//! `src/cuda/mod.rs` embeds. Without the feature it does nothing (CI has no toolkit).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=src/cuda/kernels.cu");
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
    println!("cargo:rerun-if-env-changed=NVCC");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("depth_kernels.ptx");
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "90".into());
    let nvcc = std::env::var("NVCC").unwrap_or_else(|_| "nvcc".into());
    let status = Command::new(&nvcc)
        .args(["--ptx", "-O3", &format!("-arch=sm_{cap}"), "-o"])
        .arg(&out)
        .arg("src/cuda/kernels.cu")
        .status()
        .unwrap_or_else(|e| {
            panic!("cannot run {nvcc} ({e}): the `cuda` feature needs the CUDA toolkit: eval \"$(../shared/gpu/setup-cuda.sh)\" (docs/gpu.md)")
        });
    assert!(status.success(), "{nvcc} failed on src/cuda/kernels.cu ({status})");
}
