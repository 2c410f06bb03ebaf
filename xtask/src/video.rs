//! `cargo xtask infer --video`: depth for every frame of a video, written as the official
//! run_video.py writes it (frame, a 50-pixel white gap, coloured depth; same frame rate and frame
//! count; audio dropped), but without its flicker: one colour range for the whole video, robust
//! percentiles of the first frames' depth, unless `--per-frame-range` asks for each frame's own.
//!
//! ffmpeg (Debian's binary) decodes and encodes, as two piped child processes rather than a
//! library binding: it reads any container and codec it was built with, needs no libav headers
//! or bindgen at build time, and a malformed file can only kill the decoder, never this process
//! (the decoder's death is how a broken video is noticed).

use crate::error::{Result, XtaskError};
use crate::progress::Bar;
use crate::render::{RawFormat, Rendering};
use depth_core::Progress;
use depth_core::atomic::write_atomic;
use depth_models::{DepthEstimator, DepthMap};
use image::RgbImage;
use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Frames whose depth sets the colour range of the whole video.
const RANGE_FRAMES: usize = 32;
/// The percentiles (of the pooled depth of those frames) that become the range's ends.
const RANGE_PERCENTILES: (f64, f64) = (0.02, 0.98);

/// What ffprobe says of the first video stream.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct VideoInfo {
    pub width: u32,
    pub height: u32,
    /// The frame rate as ffmpeg writes it ("30000/1001").
    pub fps: String,
    /// The frame count when the container states it.
    pub frames: Option<u64>,
    /// The stated count, else duration × rate (for the progress bar only).
    pub about: Option<u64>,
}

fn ffmpeg_missing(tool: &str, e: std::io::Error) -> XtaskError {
    XtaskError::Tool { tool: tool.into(), hint: "video needs ffmpeg (apt-get install ffmpeg)", source: e }
}

/// Reads the stream's size, rate and count with ffprobe.
pub(crate) fn probe(path: &Path) -> Result<VideoInfo> {
    let input = ffmpeg_input(path)?;
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-protocol_whitelist", "file", "-select_streams", "v:0", "-of", "json"])
        .args(["-show_entries", "stream=width,height,avg_frame_rate,r_frame_rate,nb_frames:format=duration"])
        .arg(input)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| ffmpeg_missing("ffprobe", e))?;
    let bad = |reason: String| XtaskError::Video {
        path: path.into(),
        reason: format!("not a readable video: {reason}"),
    };
    if !out.status.success() {
        return Err(bad(String::from_utf8_lossy(&out.stderr).trim().to_string()));
    }
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| bad(format!("ffprobe said something else: {e}")))?;
    let stream = json["streams"].get(0).ok_or_else(|| bad("it has no video stream".into()))?;
    let dim = |k: &str| stream[k].as_u64().filter(|&v| v > 0 && v <= 1 << 15).map(|v| v as u32);
    let (Some(width), Some(height)) = (dim("width"), dim("height")) else {
        return Err(bad(format!("the stream claims a size of {}×{}", stream["width"], stream["height"])));
    };
    depth_core::image_io::check_claimed_size(width, height).map_err(|e| bad(e.to_string()))?;
    let rate =
        |k: &str| stream[k].as_str().filter(|r| !r.starts_with('0') && r.contains('/')).map(str::to_string);
    let fps =
        rate("avg_frame_rate").or_else(|| rate("r_frame_rate")).ok_or_else(|| bad("no frame rate".into()))?;
    let frames = stream["nb_frames"].as_str().and_then(|n| n.parse().ok());
    let rate: Option<f64> =
        fps.split_once('/').and_then(|(n, d)| Some(n.parse::<f64>().ok()? / d.parse::<f64>().ok()?));
    let duration: Option<f64> = json["format"]["duration"].as_str().and_then(|d| d.parse().ok());
    let about = match (rate, duration) {
        (Some(r), Some(d)) if (r * d).is_finite() && r * d >= 0.0 => Some((r * d).round().min(1e9) as u64),
        _ => None,
    };
    Ok(VideoInfo { width, height, fps, frames, about: frames.or(about) })
}

/// Starts ffmpeg with stderr collected on a thread (so a chatty child never blocks on a full
/// pipe).
fn spawn_ffmpeg(cmd: &mut Command) -> Result<(Child, std::thread::JoinHandle<String>)> {
    let mut child = cmd.stderr(Stdio::piped()).spawn().map_err(|e| ffmpeg_missing("ffmpeg", e))?;
    let mut err = child.stderr.take().expect("stderr is piped");
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    Ok((child, stderr))
}

/// The decoder: every frame of the first video stream as packed RGB, in order, none dropped or
/// repeated.
struct Decoder {
    child: Child,
    out: ChildStdout,
    stderr: std::thread::JoinHandle<String>,
    frame_bytes: usize,
}

impl Decoder {
    fn spawn(path: &Path, info: &VideoInfo) -> Result<Decoder> {
        let input = ffmpeg_input(path)?;
        let (mut child, stderr) = spawn_ffmpeg(
            Command::new("ffmpeg")
                // warnings too: a truncated file is only a warning ("File ended prematurely")
                .args(["-v", "warning", "-nostdin", "-protocol_whitelist", "file", "-i"])
                .arg(input)
                .args([
                    "-map",
                    "0:v:0",
                    "-fps_mode",
                    "passthrough",
                    "-f",
                    "rawvideo",
                    "-pix_fmt",
                    "rgb24",
                    "-",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::piped()),
        )?;
        let out = child.stdout.take().expect("stdout is piped");
        Ok(Decoder { child, out, stderr, frame_bytes: info.width as usize * info.height as usize * 3 })
    }

    /// The next frame; `None` at the end (a partial last frame is an error).
    fn next(&mut self, info: &VideoInfo) -> std::result::Result<Option<RgbImage>, String> {
        let mut buf = Vec::with_capacity(self.frame_bytes);
        (&mut self.out).take(self.frame_bytes as u64).read_to_end(&mut buf).map_err(|e| e.to_string())?;
        match buf.len() {
            0 => Ok(None),
            n if n < self.frame_bytes => {
                Err(format!("the last frame has {n} of its {} bytes", self.frame_bytes))
            }
            _ => Ok(Some(RgbImage::from_raw(info.width, info.height, buf).expect("a whole frame"))),
        }
    }

    /// Waits for ffmpeg; its complaint if it failed or met damaged data (ffmpeg decodes what it
    /// can of a truncated or corrupt file and still exits 0, so its warnings are read too).
    fn finish(mut self) -> std::result::Result<(), String> {
        drop(self.out);
        let status = self.child.wait().map_err(|e| e.to_string())?;
        let stderr = self.stderr.join().unwrap_or_default();
        let damaged = stderr.lines().filter(|l| {
            let l = l.to_ascii_lowercase();
            ["prematurely", "truncat", "corrupt", "invalid data", "error"].iter().any(|m| l.contains(m))
        });
        let damaged: Vec<&str> = damaged.collect();
        if !status.success() {
            Err(format!("ffmpeg {status}: {}", tail(&stderr)))
        } else if !damaged.is_empty() {
            Err(format!("ffmpeg: {}", tail(&damaged.join("\n"))))
        } else {
            Ok(())
        }
    }
}

/// The last lines of a child's complaint.
fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.trim().lines().collect();
    lines[lines.len().saturating_sub(3)..].join(" / ")
}

/// The encoder: H.264 in the output's container, the decoded rate, no audio; written to a
/// temporary name and renamed when it is complete.
struct Encoder {
    child: Child,
    input: ChildStdin,
    stderr: std::thread::JoinHandle<String>,
    temp: PathBuf,
    path: PathBuf,
}

impl Encoder {
    fn spawn(path: &Path, width: u32, height: u32, fps: &str) -> Result<Encoder> {
        let temp = path.with_file_name(hidden(path.file_name().unwrap_or_default(), ".partial"));
        let (mut child, stderr) = spawn_ffmpeg(
            Command::new("ffmpeg")
                .args(["-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24"])
                .args(["-s", &format!("{width}x{height}"), "-framerate", fps, "-i", "-"])
                // yuv420p (what players play) needs even sides
                .args([
                    "-an",
                    "-vf",
                    "pad=ceil(iw/2)*2:ceil(ih/2)*2",
                    "-c:v",
                    "libx264",
                    "-preset",
                    "veryfast",
                ])
                .args(["-crf", "18", "-pix_fmt", "yuv420p", "-f", "mp4"])
                .arg(file_url(&temp)?)
                .stdin(Stdio::piped())
                .stdout(Stdio::null()),
        )?;
        let input = child.stdin.take().expect("stdin is piped");
        Ok(Encoder { child, input, stderr, temp, path: path.into() })
    }

    fn write(&mut self, frame: &RgbImage) -> Result<()> {
        self.input.write_all(frame.as_raw()).map_err(|e| XtaskError::Video {
            path: self.path.clone(),
            reason: format!("the encoder stopped taking frames: {e}"),
        })
    }

    /// Closes the stream, waits for ffmpeg and renames the file into place.
    fn finish(mut self) -> Result<()> {
        drop(self.input);
        let status = self.child.wait().map_err(|e| ffmpeg_missing("ffmpeg", e))?;
        let stderr = self.stderr.join().unwrap_or_default();
        if !status.success() {
            let _ = std::fs::remove_file(&self.temp);
            return Err(XtaskError::Video {
                path: self.path.clone(),
                reason: format!("encoding failed ({status}): {}", tail(&stderr)),
            });
        }
        std::fs::rename(&self.temp, &self.path)
            .map_err(|source| depth_core::CoreError::write(&self.path, source))?;
        Ok(())
    }

    fn abandon(mut self) {
        drop(self.input);
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.temp);
    }
}

/// The colour range of a video: the given percentiles of the finite values of `maps` pooled
/// (robust to a few extreme pixels); `None` when they hold no finite value.
pub(crate) fn video_range(maps: &[&DepthMap], (lo, hi): (f64, f64)) -> Option<(f32, f32)> {
    let mut v: Vec<f32> =
        maps.iter().flat_map(|m| m.data.iter().copied()).filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f32::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    Some((at(lo), at(hi)))
}

/// The video's file stem, as the file system has it (a name that is not UTF-8 stays itself, so
/// two such videos never share an output).
fn stem(video: &Path) -> OsString {
    video.file_stem().map_or_else(|| "video".into(), OsStr::to_os_string)
}

/// `name` + `suffix`.
fn suffixed(name: &OsStr, suffix: &str) -> OsString {
    let mut s = name.to_os_string();
    s.push(suffix);
    s
}

/// `.name` + `suffix`: where an output is written until it is complete.
fn hidden(name: &OsStr, suffix: &str) -> OsString {
    let mut s = OsString::from(".");
    s.push(name);
    s.push(suffix);
    s
}

/// The video as ffmpeg and ffprobe take it: a regular file (checked first: a FIFO would block
/// them) named by its absolute path behind `file:`, so no name is read as an option (`-report`)
/// or another protocol (`concat:…`, `http://…`).
fn ffmpeg_input(path: &Path) -> Result<OsString> {
    depth_core::read::regular(path)?;
    file_url(path)
}

/// `file:` and the absolute path: a name ffmpeg reads as a file only.
fn file_url(path: &Path) -> Result<OsString> {
    let abs = std::path::absolute(path).map_err(|e| depth_core::CoreError::io(path, e))?;
    let mut url = OsString::from("file:");
    url.push(abs.as_os_str());
    Ok(url)
}

/// `<outdir>/<stem>.mp4`, refused when it is the input itself (`--outdir` the video's folder).
pub(crate) fn output_path(outdir: &Path, video: &Path) -> Result<PathBuf> {
    let out = outdir.join(suffixed(&stem(video), ".mp4"));
    let same = match (out.canonicalize(), video.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return Err(XtaskError::Video {
            path: video.into(),
            reason: "the output would overwrite the input video; choose another --outdir".into(),
        });
    }
    Ok(out)
}

/// One video to turn into a depth video.
pub(crate) struct VideoJob {
    pub video: PathBuf,
    pub info: VideoInfo,
    /// From [`output_path`].
    pub out: PathBuf,
    /// Its range (when fixed) is the whole video's; without one the video's own is taken from
    /// its first frames, or each frame's with `per_frame_range`.
    pub rendering: Rendering,
    pub per_frame_range: bool,
    /// Each frame's depth also as a file in `<outdir>/<stem>_depth/`.
    pub save_raw: Option<RawFormat>,
    pub batch_size: usize,
}

/// Writes the depth video of `job`. Until it is complete the video and the raw frames are
/// written under hidden `.partial` names; an error or SIGINT/SIGTERM removes them (a video
/// broken part-way keeps the frames before the break, named as complete ones).
pub(crate) fn run(job: &VideoJob, est: &DepthEstimator) -> Result<()> {
    let (video, info) = (&job.video, &job.info);
    let stop = interrupted()?;
    let raw = match job.save_raw {
        Some(format) => Some(RawFrames::start(format, &job.out, video)?),
        None => None,
    };
    est.input_shape(info.width, info.height)?;
    let mut decoder = Decoder::spawn(video, info)?;
    let encoder = Encoder::spawn(&job.out, job.rendering.width(info.width), info.height, &info.fps)?;
    let bar = Bar::new("video");
    bar.start(info.about.unwrap_or(0), 0);
    let mut sink = Sink { encoder, raw, written: 0, bar: &bar };
    let result = depth_frames(job, est, &mut decoder, &mut sink, &stop);
    let decoded = decoder.finish();
    let Sink { encoder, raw, written, .. } = sink;
    bar.set_length(written);
    drop(bar);
    let abandon = |encoder: Encoder, raw: Option<RawFrames>| {
        encoder.abandon();
        if let Some(r) = raw {
            r.abandon();
        }
    };
    let broken = match result {
        Ok(broken) => broken,
        Err(e) => {
            abandon(encoder, raw);
            return Err(e);
        }
    };
    let short = info.frames.filter(|&n| written < n).map(|n| format!("the container holds {n} frames"));
    let broken = broken.or(decoded.err()).or(short);
    if written == 0 {
        abandon(encoder, raw);
        let why = broken.unwrap_or_else(|| "the video stream is empty".into());
        return Err(XtaskError::Video {
            path: video.clone(),
            reason: format!("no frame could be decoded ({why})"),
        });
    }
    encoder.finish()?;
    if let Some(r) = raw {
        r.finish()?;
    }
    match broken {
        None => {
            println!("{written} frames at {} fps written to {}", info.fps, job.out.display());
            Ok(())
        }
        Some(e) => Err(XtaskError::Video {
            path: video.clone(),
            reason: format!(
                "the video is broken after frame {written} ({e}); the {written} frames before it are in {}",
                job.out.display()
            ),
        }),
    }
}

/// A flag that SIGINT and SIGTERM raise (a second one ends the process at once), so the frame
/// loop can stop and remove what it wrote.
fn interrupted() -> Result<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        let register = |r: std::io::Result<signal_hook::SigId>| {
            r.map_err(|e| XtaskError::Tool {
                tool: "a signal handler".into(),
                hint: "cannot watch for Ctrl-C",
                source: e,
            })
        };
        register(signal_hook::flag::register_conditional_shutdown(sig, 130, flag.clone()))?;
        register(signal_hook::flag::register(sig, flag.clone()))?;
    }
    Ok(flag)
}

/// The raw depth of every frame (`--save-raw`): written into `.<stem>_depth.partial/`, renamed
/// to `<stem>_depth/` once the video is complete.
struct RawFrames {
    format: RawFormat,
    partial: PathBuf,
    done: PathBuf,
}

impl RawFrames {
    fn start(format: RawFormat, out: &Path, video: &Path) -> Result<Self> {
        let name = stem(video);
        let partial = out.with_file_name(hidden(&name, "_depth.partial"));
        let done = out.with_file_name(suffixed(&name, "_depth"));
        // a killed run's frames are not this run's
        let _ = std::fs::remove_dir_all(&partial);
        std::fs::create_dir_all(&partial).map_err(|source| depth_core::CoreError::write(&partial, source))?;
        Ok(Self { format, partial, done })
    }

    fn write(&self, index: u64, depth: &DepthMap) -> Result<()> {
        let f = self.format;
        write_atomic(&self.partial.join(raw_name(index, f)), |w| f.write(depth, w))?;
        Ok(())
    }

    /// Puts the frames in place of an earlier run's.
    fn finish(self) -> Result<()> {
        if self.done.exists() {
            std::fs::remove_dir_all(&self.done).map_err(|e| depth_core::CoreError::write(&self.done, e))?;
        }
        std::fs::rename(&self.partial, &self.done)
            .map_err(|e| depth_core::CoreError::write(&self.done, e))?;
        Ok(())
    }

    fn abandon(self) {
        let _ = std::fs::remove_dir_all(&self.partial);
    }
}

/// Where finished frames go: the encoder and, with `--save-raw`, one depth file per frame.
struct Sink<'a> {
    encoder: Encoder,
    raw: Option<RawFrames>,
    written: u64,
    bar: &'a Bar,
}

impl Sink<'_> {
    fn write(&mut self, pending: &mut Vec<(RgbImage, DepthMap)>, rendering: &Rendering) -> Result<()> {
        for (frame, depth) in pending.drain(..) {
            self.encoder.write(&rendering.picture(&frame, &depth))?;
            if let Some(raw) = &self.raw {
                raw.write(self.written, &depth)?;
            }
            self.written += 1;
            self.bar.advance(1);
        }
        Ok(())
    }
}

/// Decodes every frame, estimates its depth in batches and writes it once the video's colour
/// range is decided (from the first [`RANGE_FRAMES`] frames, unless fixed or per frame);
/// returns why decoding stopped early, if it did.
fn depth_frames(
    job: &VideoJob,
    est: &DepthEstimator,
    decoder: &mut Decoder,
    sink: &mut Sink,
    stop: &AtomicBool,
) -> Result<Option<String>> {
    let mut rendering = match (job.rendering.range, job.per_frame_range) {
        (Some(_), _) | (None, true) => Some(job.rendering),
        (None, false) => None,
    };
    let decided =
        |pending: &[(RgbImage, DepthMap)]| Rendering { range: fixed_range(pending), ..job.rendering };
    let mut pending: Vec<(RgbImage, DepthMap)> = Vec::new();
    let mut broken = None;
    loop {
        if stop.load(Ordering::SeqCst) {
            return Err(XtaskError::Interrupted);
        }
        let mut frames = Vec::with_capacity(job.batch_size);
        while frames.len() < job.batch_size.max(1) {
            match decoder.next(&job.info) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => {
                    broken = Some(e);
                    break;
                }
            }
        }
        if frames.is_empty() {
            break;
        }
        let depths = est.estimate_batch(&frames)?;
        pending.extend(frames.into_iter().zip(depths));
        if rendering.is_none() && pending.len() >= RANGE_FRAMES {
            rendering = Some(decided(&pending));
        }
        if let Some(r) = &rendering {
            sink.write(&mut pending, r)?;
        }
        if broken.is_some() {
            break;
        }
    }
    let r = rendering.unwrap_or_else(|| decided(&pending));
    sink.write(&mut pending, &r)?;
    Ok(broken)
}

/// The fixed range of the frames decoded so far (the first ones of the video); each frame's own
/// when they hold no finite value.
fn fixed_range(pending: &[(RgbImage, DepthMap)]) -> Option<(f32, f32)> {
    let maps: Vec<&DepthMap> = pending.iter().map(|(_, d)| d).collect();
    video_range(&maps, RANGE_PERCENTILES)
}

/// The file of frame `index`'s raw depth (in `<outdir>/<video stem>_depth/`).
pub(crate) fn raw_name(index: u64, f: RawFormat) -> String {
    format!("{index:06}.{}", f.extension())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_video_range_is_robust_to_outliers_and_pools_frames() {
        let a = DepthMap { width: 10, height: 10, data: (0..100).map(|i| i as f32).collect() };
        let mut b = a.clone();
        b.data[0] = f32::NAN;
        b.data[1] = 1e9;
        let (lo, hi) = video_range(&[&a, &b], (0.02, 0.98)).unwrap();
        assert!((2.0..=4.0).contains(&lo) && (96.0..=98.0).contains(&hi), "{lo} {hi}");
        let empty = DepthMap { width: 1, height: 1, data: vec![f32::NAN] };
        assert_eq!(video_range(&[&empty], (0.02, 0.98)), None);
        assert_eq!(raw_name(7, RawFormat::Npy), "000007.npy");
    }
}
