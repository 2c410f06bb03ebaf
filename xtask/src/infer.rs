//! `cargo xtask infer`: depth maps for images, with the flags of the official run.py plus raw
//! outputs, batching and device choice. A file that fails is reported and skipped; the run then
//! ends non-zero. Outputs are written atomically.

use crate::error::{Result, XtaskError};
use crate::raw::RawFormat;
use depth_core::atomic::write_atomic;
use depth_eval::visualize::save_png;
use depth_models::{Colormap, DepthEstimator, DepthMap, read_image, size_groups};
use image::RgbImage;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct InferArgs {
    #[command(flatten)]
    model: crate::net_input::ModelArgs,
    /// An image, a folder (searched recursively), or a .txt file with one path per line.
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
    pub(crate) pred_only: bool,
    /// Colour map of the depth pictures: spectral_r (the official demo's), turbo, inferno, gray.
    #[arg(long, default_value = "spectral_r")]
    cmap: Colormap,
    /// Fixed colour range LO,HI of the network output instead of each image's min–max (for a
    /// video: instead of the 2nd–98th percentile of its first 32 frames).
    #[arg(long, value_delimiter = ',')]
    pub(crate) range: Option<Vec<f32>>,
    /// Video: colour each frame over its own min–max (run_video.py; flickers).
    #[arg(long, requires = "video", conflicts_with = "range")]
    pub(crate) per_frame_range: bool,
    /// The official run.py flag: the same as --cmap gray.
    #[arg(long)]
    grayscale: bool,
    /// Also write the depth itself: npy/pfm (float32), png16 (min–max normalised 16-bit); for a
    /// video one file per frame in <outdir>/<stem>_depth/.
    #[arg(long)]
    pub(crate) save_raw: Option<RawFormat>,
    /// Images (video frames) per forward pass (same-size images only are batched together).
    #[arg(long, default_value_t = 1, value_parser = crate::net_input::positive())]
    pub(crate) batch_size: usize,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// The image paths an `--img-path` names.
pub(crate) fn list_images(p: &Path) -> Result<Vec<PathBuf>> {
    let io = |source| XtaskError::Io { path: p.into(), source };
    let files = if p.is_dir() {
        depth_core::walk_files(p, &|_| true)?
    } else if p.extension().is_some_and(|e| e == "txt") {
        let text = std::fs::read_to_string(p).map_err(io)?;
        text.lines().map(str::trim).filter(|l| !l.is_empty()).map(PathBuf::from).collect()
    } else if p.exists() {
        vec![p.to_path_buf()]
    } else {
        return Err(io(std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder")));
    };
    if files.is_empty() { Err(XtaskError::NoImages(p.into())) } else { Ok(files) }
}

/// Where each input's outputs go, relative to `--outdir` and without extension: its path
/// relative to the deepest folder holding all inputs, so images of the same name in different
/// folders (KITTI's drives, Sintel's scenes) keep apart; a folder of images gives their stems,
/// as the official run.py. Two inputs that differ only in extension are refused up front.
pub(crate) fn output_names(files: &[PathBuf]) -> Result<Vec<PathBuf>> {
    // folders as PredDir reads them (`..` resolved, so no name climbs out of --outdir)
    let dirs: Vec<Vec<String>> = files.iter().map(|f| depth_eval::predict::folders(f)).collect();
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
            return Err(XtaskError::Failed(format!(
                "{} and {} would write the same outputs ({}.*); rename one or run them separately",
                other.display(),
                f.display(),
                n.display()
            )));
        }
    }
    Ok(names)
}

/// The white gap between image and depth in the official pictures and videos.
pub(crate) const GAP: u32 = 50;

/// The official picture (run.py's, and each frame of run_video.py's): the depth coloured over
/// its own min–max or a fixed range and, unless `pred_only`, the image, a white gap and the
/// depth side by side.
pub(crate) fn picture(
    img: &RgbImage,
    d: &DepthMap,
    cmap: Colormap,
    range: Option<(f32, f32)>,
    pred_only: bool,
) -> RgbImage {
    let depth = match range {
        Some((lo, hi)) => d.colorize_range(cmap, lo, hi),
        None => d.colorize(cmap),
    };
    if pred_only {
        return depth;
    }
    let mut out = RgbImage::from_pixel(2 * d.width + GAP, d.height, image::Rgb([255; 3]));
    image::imageops::replace(&mut out, img, 0, 0);
    image::imageops::replace(&mut out, &depth, (d.width + GAP) as i64, 0);
    out
}

struct Job<'a> {
    args: &'a InferArgs,
    est: DepthEstimator,
}

impl Job<'_> {
    /// Writes the picture (and raw depth) of the input whose output name is `name`.
    fn write_outputs(&self, name: &Path, img: &RgbImage, d: &DepthMap) -> Result<()> {
        let a = self.args;
        let base = a.outdir().join(name);
        if let Some(dir) = base.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|source| depth_core::CoreError::Write { path: dir.into(), source })?;
        }
        let with = |suffix: &str| {
            let mut p = base.clone().into_os_string();
            p.push(suffix);
            PathBuf::from(p)
        };
        let cmap = a.colormap();
        let range = a.range.as_deref().map(|r| (r[0], r[1]));
        save_png(&picture(img, d, cmap, range, a.pred_only), &with(".png"))?;
        if let Some(f) = a.save_raw {
            let path = match f {
                RawFormat::Png16 => with("_depth16.png"),
                _ => with(&format!(".{}", f.extension())),
            };
            write_atomic(&path, |w| f.write(d, w))?;
        }
        Ok(())
    }

    /// Runs one chunk of (path, output name); returns the failures as (path, message).
    fn run_chunk(
        &self,
        paths: &[(PathBuf, PathBuf)],
        bar: &indicatif::ProgressBar,
    ) -> Vec<(PathBuf, String)> {
        let mut failed = Vec::new();
        let mut decoded: Vec<(&PathBuf, &PathBuf, RgbImage)> = Vec::new();
        for (p, name) in paths {
            match read_image(p) {
                Ok(img) => decoded.push((p, name, img)),
                Err(e) => {
                    failed.push((p.clone(), e.to_string()));
                    bar.inc(1);
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
            bar.inc(group.len() as u64);
        }
        failed
    }
}

impl InferArgs {
    /// `--cmap`, or gray with the official `--grayscale`.
    pub(crate) fn colormap(&self) -> Colormap {
        if self.grayscale { Colormap::Gray } else { self.cmap }
    }

    pub(crate) fn outdir(&self) -> PathBuf {
        let default = if self.video.is_some() { "./vis_video_depth" } else { "./vis_depth" };
        self.outdir.clone().unwrap_or_else(|| default.into())
    }
}

pub fn run(args: InferArgs) -> Result<()> {
    if let Some(r) = &args.range
        && (r.len() != 2 || r[1] <= r[0])
    {
        return Err(XtaskError::Failed(format!("--range takes LO,HI with LO < HI; got {r:?}")));
    }
    if let Some(video) = &args.video {
        let info = crate::video::probe(video)?;
        let out_path = crate::video::output_path(&args, video)?;
        let device = depth_core::parse_device(&args.device)?;
        let (source, model) = args.model.load(&device)?;
        tracing::info!(
            "loaded {source} on {}; {}×{} at {} fps",
            args.device,
            info.width,
            info.height,
            info.fps
        );
        depth_core::atomic::prepare_output_dir(&args.outdir())?;
        let est = args.input.estimator(model, device);
        return crate::video::run(&args, video, &info, &out_path, &est);
    }
    let img_path = args.img_path.clone().expect("clap requires --img-path without --video");
    let files = list_images(&img_path)?;
    let jobs: Vec<(PathBuf, PathBuf)> = files.iter().cloned().zip(output_names(&files)?).collect();
    let device = depth_core::parse_device(&args.device)?;
    let (source, model) = args.model.load(&device)?;
    tracing::info!("loaded {source} on {}", args.device);
    let outdir = args.outdir();
    depth_core::atomic::prepare_output_dir(&outdir)?;
    let job = Job { est: args.input.estimator(model, device), args: &args };
    let bar = crate::progress::bar(files.len() as u64, "infer");
    let failed: Vec<_> = jobs.chunks(args.batch_size.max(1)).flat_map(|c| job.run_chunk(c, &bar)).collect();
    bar.finish();
    for (p, e) in &failed {
        // model and IO errors already name the file
        if e.contains(&*p.to_string_lossy()) {
            eprintln!("failed: {e}")
        } else {
            eprintln!("failed: {}: {e}", p.display())
        }
    }
    println!("{} of {} images written to {}", files.len() - failed.len(), files.len(), outdir.display());
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
    fn pictures_use_the_colour_map_and_range() {
        let d = DepthMap { width: 3, height: 1, data: vec![1.0, 2.0, 3.0] };
        let img = RgbImage::new(3, 1);
        let own = picture(&img, &d, Colormap::Turbo, None, true);
        assert_eq!(own.get_pixel(0, 0).0, Colormap::Turbo.lut(0));
        assert_eq!(own.get_pixel(2, 0).0, Colormap::Turbo.lut(255));
        // a fixed 0…4 range: 2 → byte 127, 3 → 191
        let fixed = picture(&img, &d, Colormap::Inferno, Some((0.0, 4.0)), true);
        assert_eq!(fixed.get_pixel(1, 0).0, Colormap::Inferno.lut(127));
        assert_eq!(fixed.get_pixel(2, 0).0, Colormap::Inferno.lut(191));
        // side by side: image, 50 white columns, depth
        assert_eq!(picture(&img, &d, Colormap::Gray, None, false).width(), 56);
    }

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
