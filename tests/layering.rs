//! The crate layering the architecture promises, read from `cargo tree`: a crate that needs only
//! the tensor ops (depth-losses) builds without depth-core's IO — no libjpeg-turbo (cmake,
//! nasm), no Hugging Face Hub client, no image codecs.

use std::process::Command;

fn normal_deps(package: &str) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["tree", "--locked", "-e", "normal", "--prefix", "none", "--format", "{p}", "-p", package])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    assert!(out.status.success(), "cargo tree -p {package}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

#[test]
fn the_losses_build_without_depth_cores_io() {
    let deps = normal_deps("depth-losses");
    assert!(deps.iter().any(|d| d == "depth-core") && deps.iter().any(|d| d == "candle-core"), "{deps:?}");
    for io in ["turbojpeg", "turbojpeg-sys", "hf-hub", "image", "cmake", "reqwest", "ureq"] {
        assert!(!deps.iter().any(|d| d == io), "depth-losses pulls in {io}: {deps:?}");
    }
    // and with IO, as the models need it, they are there (the check above can fail)
    let models = normal_deps("depth-models");
    for io in ["turbojpeg", "hf-hub", "image"] {
        assert!(models.iter().any(|d| d == io), "depth-models lacks {io}");
    }
}
