//! `cargo xtask infer`: depth maps for images, with the flags of the official run.py plus raw
//! outputs, batching and device choice. A file that fails is reported and skipped; the run then
//! ends non-zero. Outputs are written atomically.

use crate::error::{Result, XtaskError};
use crate::progress::Bar;
use crate::render::{RawFormat, Rendering};
use depth_core::atomic::write_atomic;
use depth_core::{DeviceSpec, Progress};
use depth_data::{ImageItem, list_images};
use depth_eval::visualize::save_png;
use depth_models::{Colormap, DepthEstimator, DepthMap, read_image, size_groups};
use image::RgbImage;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct InferArgs {
    #[command(flatten)]
    model: crate::net_input::ModelArgs,
    /// An image, a folder (its images, searched recursively), or a .txt list of paths (one per
    /// line, relative to the list's folder; `#` lines are comments).
    #[arg(long, required_unless_present = "video", conflicts_with = "video")]
    img_path: Option<PathBuf>,
    /// A video (any container and codec ffmpeg reads): writes <outdir>/<stem>.mp4, each frame
    /// beside its depth as run_video.py, one colour range for the whole video.
    #[arg(long)]
    video: Option<PathBuf>,
    /// Output folder (default ./vis_depth, or ./vis_video_depth for --video, as the official scripts).
    #[arg(long)]
    outdir: Option<PathBuf>,
    #[command(flatten)]
    input: crate::net_input::NetInput,
    /// Write only the depth picture, not the image beside it.
    #[arg(long)]
    pred_only: bool,
    /// Colour map of the depth pictures: spectral_r (the official demo's), turbo, inferno, gray.
    #[arg(long, default_value = "spectral_r")]
    cmap: Colormap,
    /// Fixed colour range LO,HI of the network output instead of each image's min–max (for a
    /// video: instead of the 2nd–98th percentile of its first 32 frames).
    #[arg(long, value_delimiter = ',')]
    range: Option<Vec<f32>>,
    /// Video: colour each frame over its own min–max (run_video.py; flickers).
    #[arg(long, requires = "video", conflicts_with = "range")]
    per_frame_range: bool,
    /// The official run.py flag: the same as --cmap gray.
    #[arg(long)]
    grayscale: bool,
    /// Also write the depth itself: npy/pfm (float32), png16 (min–max normalised 16-bit); for a
    /// video one file per frame in <outdir>/<stem>_depth/.
    #[arg(long)]
    save_raw: Option<RawFormat>,
    /// Images (video frames) per forward pass (same-size images only are batched together).
    #[arg(long, default_value_t = 1, value_parser = crate::net_input::positive())]
    batch_size: usize,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
}

/// Where each input's outputs go, relative to `--outdir` and without extension: its path
/// relative to the deepest folder holding all inputs, so images of the same name in different
/// folders (KITTI's drives, Sintel's scenes) keep apart; a folder of images gives their stems,
/// as the official run.py. Two inputs that differ only in extension are refused up front.
pub(crate) fn output_names(files: &[PathBuf]) -> Result<Vec<PathBuf>> {
    // folders as PredDir reads them (`..` resolved, so no name climbs out of --outdir)
    let dirs: Vec<Vec<String>> = files.iter().map(|f| depth_eval::folders(f)).collect();
    let first = dirs.first().cloned().unwrap_or_default();
    let common =
        dirs.iter().fold(first.len(), |n, d| n.min(d.iter().zip(&first).take_while(|(a, b)| a == b).count()));
    let names: Vec<PathBuf> = files
        .iter()
        .zip(&dirs)
        .map(|(f, d)| d[common..].iter().collect::<PathBuf>().join(f.file_stem().unwrap_or("image".as_ref())))
        .collect();
    let mut seen = std::collections::HashMap::new();
    for (f, n) in files.iter().zip(&names) {
        if let Some(other) = seen.insert(n, f) {
            return Err(XtaskError::OutputClash { first: other.clone(), second: f.clone(), name: n.clone() });
        }
    }
    Ok(names)
}

/// The images of one `infer` run and where their outputs go.
struct Job {
    est: DepthEstimator,
    rendering: Rendering,
    save_raw: Option<RawFormat>,
    outdir: PathBuf,
}

impl Job {
    /// Writes the picture (and raw depth) of the input whose output name is `name`.
    fn write_outputs(&self, name: &Path, img: &RgbImage, d: &DepthMap) -> Result<()> {
        let base = self.outdir.join(name);
        if let Some(dir) = base.parent() {
            std::fs::create_dir_all(dir).map_err(|source| depth_core::CoreError::write(dir, source))?;
        }
        let with = |suffix: &str| {
            let mut p = base.clone().into_os_string();
            p.push(suffix);
            PathBuf::from(p)
        };
        save_png(&self.rendering.picture(img, d), &with(".png"))?;
        if let Some(f) = self.save_raw {
            let path = match f {
                RawFormat::Png16 => with("_depth16.png"),
                _ => with(&format!(".{}", f.extension())),
            };
            write_atomic(&path, |w| f.write(d, w))?;
        }
        Ok(())
    }

    /// Runs one chunk of (path, output name); returns the failures as (path, message).
    fn run_chunk(&self, paths: &[(PathBuf, PathBuf)], progress: &dyn Progress) -> Vec<(PathBuf, String)> {
        let mut failed = Vec::new();
        let mut decoded: Vec<(&PathBuf, &PathBuf, RgbImage)> = Vec::new();
        for (p, name) in paths {
            match read_image(p) {
                Ok(img) => decoded.push((p, name, img)),
                Err(e) => {
                    failed.push((p.clone(), e.to_string()));
                    progress.advance(1);
                }
            }
        }
        // one estimate_batch per forward pass, so that a failing pass fails only its own images
        let sizes: Vec<(u32, u32)> = decoded.iter().map(|(_, _, i)| i.dimensions()).collect();
        for group in size_groups(&sizes) {
            let imgs: Vec<&RgbImage> = group.iter().map(|&k| &decoded[k].2).collect();
            match self.est.estimate_batch(&imgs) {
                Ok(depths) => {
                    for (&k, d) in group.iter().zip(&depths) {
                        let (p, name, img) = &decoded[k];
                        if let Err(e) = self.write_outputs(name, img, d) {
                            failed.push(((*p).clone(), e.to_string()));
                        }
                    }
                }
                Err(e) => failed.extend(group.iter().map(|&k| (decoded[k].0.clone(), e.to_string()))),
            }
            progress.advance(group.len() as u64);
        }
        failed
    }
}

impl InferArgs {
    /// `--cmap` (gray with the official `--grayscale`), `--range` and `--pred-only`.
    fn rendering(&self) -> Result<Rendering> {
        let range = match self.range.as_deref() {
            None => None,
            Some(&[lo, hi]) if lo < hi => Some((lo, hi)),
            Some(r) => {
                return Err(XtaskError::usage("--range", format!("takes LO,HI with LO < HI; got {r:?}")));
            }
        };
        let cmap = if self.grayscale { Colormap::Gray } else { self.cmap };
        Ok(Rendering { cmap, range, pred_only: self.pred_only })
    }

    fn outdir(&self) -> PathBuf {
        let default = if self.video.is_some() { "./vis_video_depth" } else { "./vis_depth" };
        self.outdir.clone().unwrap_or_else(|| default.into())
    }
}

pub fn run(args: InferArgs) -> Result<()> {
    let rendering = args.rendering()?;
    let outdir = args.outdir();
    if let Some(video) = &args.video {
        let job = crate::video::VideoJob {
            info: crate::video::probe(video)?,
            out: crate::video::output_path(&outdir, video)?,
            video: video.clone(),
            rendering,
            per_frame_range: args.per_frame_range,
            save_raw: args.save_raw,
            batch_size: args.batch_size,
        };
        let device = args.device.open()?;
        let (source, model) = args.model.load(&device)?;
        let info = &job.info;
        tracing::info!(
            "loaded {source} on {}; {}×{} at {} fps",
            args.device,
            info.width,
            info.height,
            info.fps
        );
        depth_core::atomic::prepare_output_dir(&outdir)?;
        return crate::video::run(&job, &args.input.estimator(model, device));
    }
    let img_path = args.img_path.clone().expect("clap requires --img-path without --video");
    let files: Vec<PathBuf> =
        list_images(&img_path)?.into_iter().map(|ImageItem { path, .. }| path).collect();
    let jobs: Vec<(PathBuf, PathBuf)> = files.iter().cloned().zip(output_names(&files)?).collect();
    let device = args.device.open()?;
    let (source, model) = args.model.load(&device)?;
    tracing::info!("loaded {source} on {}", args.device);
    depth_core::atomic::prepare_output_dir(&outdir)?;
    let job = Job { est: args.input.estimator(model, device), rendering, save_raw: args.save_raw, outdir };
    let bar = Bar::new("infer");
    bar.start(files.len() as u64, 0);
    let failed: Vec<_> = jobs.chunks(args.batch_size.max(1)).flat_map(|c| job.run_chunk(c, &bar)).collect();
    drop(bar);
    for (p, e) in &failed {
        // model and IO errors already name the file
        if e.contains(&*p.to_string_lossy()) {
            eprintln!("failed: {e}")
        } else {
            eprintln!("failed: {}: {e}", p.display())
        }
    }
    println!("{} of {} images written to {}", files.len() - failed.len(), files.len(), job.outdir.display());
    if failed.is_empty() {
        Ok(())
    } else {
        Err(XtaskError::SomeFailed { failed: failed.len(), total: files.len() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_names_keep_same_named_images_apart() {
        let names = |files: &[&str]| {
            output_names(&files.iter().map(PathBuf::from).collect::<Vec<_>>())
                .map(|v| v.iter().map(|p| p.to_string_lossy().into_owned()).collect::<Vec<_>>())
        };
        // a folder of images: their stems, as the official run.py
        assert_eq!(names(&["d/a.png", "d/b.jpg"]).unwrap(), ["a", "b"]);
        assert_eq!(names(&["/x/y/photo.jpg"]).unwrap(), ["photo"]);
        // same names in different folders: the folders are kept below the common one
        assert_eq!(
            names(&["k/drive1/image_02/0005.png", "k/drive2/image_02/0005.png", "k/top.png"]).unwrap(),
            ["drive1/image_02/0005", "drive2/image_02/0005", "top"]
        );
        assert_eq!(names(&["s/alley_1/f1.png", "s/bamboo_1/f1.png"]).unwrap(), ["alley_1/f1", "bamboo_1/f1"]);
        // a list mixing absolute and relative paths stays inside --outdir; `..` is resolved as
        // eval's --pred-dir resolves it
        assert_eq!(names(&["/abs/a.png", "../rel/b.png"]).unwrap(), ["abs/a", "rel/b"]);
        assert_eq!(names(&["q/a/../b/x.png", "q/c/y.png"]).unwrap(), ["b/x", "c/y"]);
        // names that differ only in the extension would overwrite each other
        let err = names(&["d/a.png", "d/a.jpg"]).unwrap_err().to_string();
        assert!(err.contains("d/a.png") && err.contains("d/a.jpg"), "{err}");
    }
}
