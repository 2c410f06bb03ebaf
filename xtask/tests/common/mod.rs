//! Helpers shared by the CLI tests. Each test crate that includes this module uses a part of it.
#![allow(dead_code)]

use std::process::{Command, Output};

/// `xtask ARGS`, offline (no Hub downloads), its output collected.
pub fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("run xtask")
}

/// `out`, after asserting that its command succeeded (its stdout and stderr shown if not).
pub fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "xtask failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A valid 1×1 PNG whose header (CRC fixed up) claims `w`×`h`: a decompression bomb.
pub fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut png = Vec::new();
    image::DynamicImage::new_rgb8(1, 1)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    png[16..20].copy_from_slice(&w.to_be_bytes());
    png[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = crc32fast::hash(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}
