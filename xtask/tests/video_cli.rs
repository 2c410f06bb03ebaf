//! `cargo xtask infer --video` on short clips made here with ffmpeg: the output has the input's
//! frame count and rate, the run_video.py layout and no audio; each frame's raw depth equals
//! image inference on the same decoded frame; a truncated video ends with a clear error and a
//! playable file of the frames before the break; a file that is no video writes nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    depth_core::fixtures::fixtures_dir().expect("shared fixtures are required")
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("the command runs (video tests need ffmpeg: apt-get install ffmpeg)")
}

fn xtask(args: &[&str]) -> Output {
    let w = fixtures().join("weights/da2_vits_random.pth");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.args(["infer", "--weights", w.to_str().unwrap(), "--input-size", "70"]).args(args);
    run(&mut cmd)
}

/// A `frames`-frame 10 fps test pattern with a sine soundtrack.
fn make_clip(path: &Path, frames: u32, (w, h): (u32, u32)) {
    let out = run(Command::new("ffmpeg").args(["-v", "error", "-y", "-f", "lavfi", "-i"]).args([
        &format!("testsrc2=size={w}x{h}:rate=10:duration={}", frames as f64 / 10.0),
        "-f",
        "lavfi",
        "-i",
        &format!("sine=frequency=440:duration={}", frames as f64 / 10.0),
        "-shortest",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv444p",
        "-c:a",
        "aac",
        path.to_str().unwrap(),
    ]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// (frames counted by decoding, rate, width, height, has audio).
fn probe(path: &Path) -> (u64, String, u32, u32, bool) {
    let out = run(Command::new("ffprobe").args(["-v", "error", "-count_frames", "-of", "json"]).args([
        "-show_entries",
        "stream=codec_type,width,height,r_frame_rate,nb_read_frames",
        path.to_str().unwrap(),
    ]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let streams = json["streams"].as_array().unwrap();
    let v = streams.iter().find(|s| s["codec_type"] == "video").expect("a video stream");
    let audio = streams.iter().any(|s| s["codec_type"] == "audio");
    (
        v["nb_read_frames"].as_str().unwrap().parse().unwrap(),
        v["r_frame_rate"].as_str().unwrap().to_string(),
        v["width"].as_u64().unwrap() as u32,
        v["height"].as_u64().unwrap() as u32,
        audio,
    )
}

#[test]
fn frames_rate_layout_and_raw_depth_match_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    make_clip(&clip, 12, (64, 48));
    assert_eq!(probe(&clip), (12, "10/1".into(), 64, 48, true));
    let out = dir.path().join("out");
    let (c, o) = (clip.to_str().unwrap(), out.to_str().unwrap());
    let r = xtask(&["--video", c, "--outdir", o, "--save-raw", "npy", "--batch-size", "5"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    // run_video.py's layout: frame | 50 white | depth; same count and rate; the audio dropped
    assert_eq!(probe(&out.join("clip.mp4")), (12, "10/1".into(), 2 * 64 + 50, 48, false));
    let raw: Vec<PathBuf> = depth_core::walk::walk_files(&out.join("clip_depth"), &|_| true).unwrap();
    assert_eq!(raw.len(), 12);
    // frame 7's depth equals image inference on the same frame, decoded by the same ffmpeg
    let frame = dir.path().join("frame7.png");
    let dec = run(Command::new("ffmpeg")
        .args(["-v", "error", "-i", c, "-vf", "select=eq(n\\,7)", "-frames:v", "1"])
        .args(["-pix_fmt", "rgb24", frame.to_str().unwrap()]));
    assert!(dec.status.success(), "{}", String::from_utf8_lossy(&dec.stderr));
    let single = dir.path().join("single");
    let r = xtask(&[
        "--img-path",
        frame.to_str().unwrap(),
        "--outdir",
        single.to_str().unwrap(),
        "--save-raw",
        "npy",
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let (shape, from_video) = depth_core::npy::read_f32(&out.join("clip_depth/000007.npy")).unwrap();
    let (_, from_image) = depth_core::npy::read_f32(&single.join("frame7.npy")).unwrap();
    assert_eq!(shape, [48, 64]);
    let scale = from_image.iter().fold(0f32, |m, v| m.max(v.abs()));
    let err = from_video.iter().zip(&from_image).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(err <= 1e-5 * scale, "frame 7: video vs image max |Δ| {err} (scale {scale})");
    // --pred-only and per-frame colouring: the depth alone
    let pred = dir.path().join("pred");
    let r = xtask(&["--video", c, "--outdir", pred.to_str().unwrap(), "--pred-only", "--per-frame-range"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(probe(&pred.join("clip.mp4")), (12, "10/1".into(), 64, 48, false));
}

#[test]
fn a_truncated_video_ends_with_an_error_and_the_frames_before_the_break() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("long.mkv");
    make_clip(&clip, 40, (48, 32));
    let bytes = std::fs::read(&clip).unwrap();
    let cut = dir.path().join("cut.mkv");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let out = dir.path().join("out");
    let r =
        xtask(&["--video", cut.to_str().unwrap(), "--outdir", out.to_str().unwrap(), "--batch-size", "4"]);
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success(), "a broken video must fail: {stderr}");
    assert!(stderr.contains("cut.mkv") && stderr.contains("broken after frame"), "{stderr}");
    let (frames, rate, ..) = probe(&out.join("cut.mp4"));
    assert!((1..40).contains(&frames) && rate == "10/1", "{frames} frames at {rate}");
    let names: Vec<String> =
        std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    assert_eq!(names, ["cut.mp4"], "no partial file left");

    // the output never replaces the input
    let r = xtask(&["--video", clip.to_str().unwrap(), "--outdir", dir.path().to_str().unwrap()]);
    let same = dir.path().join("same.mp4");
    std::fs::copy(&clip, &same).unwrap();
    let r2 = xtask(&["--video", same.to_str().unwrap(), "--outdir", dir.path().to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&r2.stderr);
    assert!(r.status.success(), "long.mkv → long.mp4 beside it is fine");
    assert!(!r2.status.success() && stderr.contains("overwrite the input"), "{stderr}");
    assert_eq!(std::fs::read(&same).unwrap(), bytes, "the input is untouched");

    // not a video at all: a clear error, nothing written
    let junk = dir.path().join("junk.mp4");
    std::fs::write(&junk, b"this is not a video").unwrap();
    let out2 = dir.path().join("out2");
    let r = xtask(&["--video", junk.to_str().unwrap(), "--outdir", out2.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(
        !r.status.success() && stderr.contains("junk.mp4") && stderr.contains("not a readable video"),
        "{stderr}"
    );
    assert!(!out2.join("junk.mp4").exists());
}
