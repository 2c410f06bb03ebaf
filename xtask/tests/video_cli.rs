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

#[test]
fn a_video_path_is_only_ever_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("a.mp4");
    make_clip(&clip, 4, (64, 48));
    let fifo = dir.path().join("pipe.mp4");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    for video in [
        "--video=-report",
        "--video=concat:a.mp4|a.mp4",
        "--video=http://127.0.0.1:9/x.mp4",
        "--video=pipe.mp4",
    ] {
        // in the clip's folder, where `concat:a.mp4|a.mp4` would name real files for ffmpeg
        let w = fixtures().join("weights/da2_vits_random.pth");
        let out = run(Command::new(env!("CARGO_BIN_EXE_xtask")).current_dir(dir.path()).args([
            "infer",
            "--weights",
            w.to_str().unwrap(),
            "--input-size",
            "70",
            video,
            "--outdir",
            "out",
        ]));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{video}: {err}");
        assert!(err.contains("No such file") || err.contains("FIFO"), "{video}: {err}");
        assert!(!dir.path().join("out").exists(), "{video}: wrote an output");
    }
    let logs: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("ffprobe-"))
        .collect();
    assert!(logs.is_empty(), "ffprobe took a path for an option and wrote {logs:?}");
}

#[test]
fn a_signal_leaves_nothing_partial_behind_and_names_keep_their_bytes() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    // a name that is not UTF-8: the outputs keep its bytes
    let name = std::ffi::OsStr::from_bytes(b"clip\xff");
    let clip = dir.path().join(name).with_extension("mp4");
    let made = dir.path().join("made.mp4");
    make_clip(&made, 60, (96, 64));
    std::fs::rename(&made, &clip).unwrap();
    let out = dir.path().join("out");
    let w = fixtures().join("weights/da2_vits_random.pth");
    let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["infer", "--weights", w.to_str().unwrap(), "--input-size", "266", "--video"])
        .arg(&clip)
        .args(["--outdir", out.to_str().unwrap(), "--save-raw", "npy"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // SIGTERM once frames are being written
    let partial = out.join(std::ffi::OsStr::from_bytes(b".clip\xff_depth.partial"));
    let t0 = std::time::Instant::now();
    while std::fs::read_dir(&partial).map_or(0, |d| d.count()) < 2 {
        assert!(child.try_wait().unwrap().is_none(), "finished before the signal");
        assert!(t0.elapsed() < std::time::Duration::from_secs(120));
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}");
    let left: Vec<_> = std::fs::read_dir(&out).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    // uninterrupted, the outputs carry the name's own bytes
    let ok = run(Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["infer", "--weights", w.to_str().unwrap(), "--input-size", "70", "--video"])
        .arg(&clip)
        .args(["--outdir", out.to_str().unwrap(), "--save-raw", "npy"]));
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let mut names: Vec<Vec<u8>> =
        std::fs::read_dir(&out).unwrap().flatten().map(|e| e.file_name().as_bytes().to_vec()).collect();
    names.sort();
    assert_eq!(names, [b"clip\xff.mp4".to_vec(), b"clip\xff_depth".to_vec()]);
}
