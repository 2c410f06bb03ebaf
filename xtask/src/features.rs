//! `cargo xtask features`: DINOv2 intermediate layers of a model's encoder for a set of images —
//! per layer a PNG grid (image | first three PCA components as RGB | token norms | cosine
//! similarity to a selected patch) and a markdown summary with the statistics.

use crate::error::{Result, XtaskError};
use depth_core::{DeviceSpec, Progress};
use depth_data::list_images;
use depth_eval::features::{PatchGrid, cosine_to, extract, norms, pca_rgb};
use depth_eval::visualize::{self, Bar, Colormap, Panel, Range, Scale, draw};
use depth_models::read_image;
use image::{RgbImage, imageops};
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct FeaturesArgs {
    #[command(flatten)]
    model: crate::net_input::ModelArgs,
    /// An image, a folder (its images, searched recursively), or a .txt list of paths (one per
    /// line, relative to the list's folder; `#` lines are comments).
    #[arg(long)]
    img_path: PathBuf,
    /// Encoder layers (0-based block indices); default: the four the DPT head reads.
    #[arg(long, value_delimiter = ',')]
    layers: Vec<usize>,
    #[arg(long, default_value = "runs/features")]
    out: PathBuf,
    #[command(flatten)]
    input: crate::net_input::NetInput,
    /// Foreground: patches whose first component (min–max scaled to 0…1) is above this; the
    /// colours then come from a PCA of the foreground only, the background is black.
    #[arg(long)]
    fg_threshold: Option<f64>,
    /// The patch to compare with, as X,Y pixels of the original image (default: its centre).
    #[arg(long, value_delimiter = ',')]
    select: Option<Vec<f64>>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
}

struct Item {
    name: String,
    /// The image at the network's input size (what the patches see).
    view: RgbImage,
    /// Selected patch (row, col).
    selected: (usize, usize),
}

fn upscale(img: &RgbImage, w: u32, h: u32) -> RgbImage {
    imageops::resize(img, w, h, imageops::FilterType::Nearest)
}

pub fn run(args: FeaturesArgs) -> Result<()> {
    if let Some(v) = args.select.as_deref()
        && v.len() != 2
    {
        return Err(XtaskError::usage("--select", format!("takes X,Y; got {v:?}")));
    }
    let files: Vec<_> = list_images(&args.img_path)?.into_iter().map(|i| i.path).collect();
    depth_core::atomic::prepare_output_dir(&args.out)?;
    let device = args.device.open()?;
    let (source, model) = args.model.load(&device)?;
    let described = format!(
        "`{}` ({source})",
        model.config().official_encoder().map_or("custom size", depth_models::Encoder::name)
    );
    let layers = if args.layers.is_empty() { model.config().layers.to_vec() } else { args.layers.clone() };
    let p = model.config().vit.patch_size;
    let est = args.input.estimator(model, device.clone());
    let bar = crate::progress::Bar::new("features");
    bar.start(files.len() as u64, 0);
    let mut items = Vec::new();
    // patch grids, layer-major: by_layer[l][image]
    let mut by_layer: Vec<Vec<PatchGrid>> = layers.iter().map(|_| Vec::new()).collect();
    for f in &files {
        let img = read_image(f)?;
        let x = est
            .preprocess(&img)
            .and_then(|x| Ok(x.to_device(&device)?))
            .map_err(|e| XtaskError::usage("--img-path", format!("{}: {e}", f.display())))?;
        let grids = extract(est.model().encoder(), &x, &layers)?;
        let (rows, cols) = (grids[0].rows, grids[0].cols);
        let (sx, sy) = match args.select.as_deref() {
            Some(&[x, y]) => (x, y),
            _ => (img.width() as f64 / 2.0, img.height() as f64 / 2.0),
        };
        if sx < 0.0 || sy < 0.0 || sx >= img.width() as f64 || sy >= img.height() as f64 {
            return Err(XtaskError::usage(
                "--select",
                format!("{sx},{sy} is outside {} ({}×{})", f.display(), img.width(), img.height()),
            ));
        }
        let selected = (
            (sy * rows as f64 / img.height() as f64) as usize,
            (sx * cols as f64 / img.width() as f64) as usize,
        );
        let view =
            imageops::resize(&img, (cols * p) as u32, (rows * p) as u32, imageops::FilterType::Triangle);
        let name = f.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        items.push(Item { name, view, selected });
        by_layer.iter_mut().zip(grids).for_each(|(l, g)| l.push(g));
        bar.advance(1);
    }
    drop(bar);
    let md = write_layers(&args, &described, &layers, &items, &by_layer, p)?;
    depth_core::atomic::write_atomic(&args.out.join("features.md"), |w| w.write_all(md.as_bytes()))?;
    println!("{} images, layers {layers:?}: {}", items.len(), args.out.join("features.md").display());
    Ok(())
}

fn write_layers(
    args: &FeaturesArgs,
    model: &str,
    layers: &[usize],
    items: &[Item],
    by_layer: &[Vec<PatchGrid>],
    p: usize,
) -> Result<String> {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# DINOv2 features\n\nEncoder {model}, {} images, input size {}. Per layer: the image as the \
         network sees it | the first three principal components of the patch tokens as RGB (PCA fitted \
         jointly over all images{}) | token L2 norm (inferno, per image) | cosine similarity to the \
         selected patch (turbo, −1…1, white square).\n",
        items.len(),
        args.input.input_size,
        args.fg_threshold
            .map_or(String::new(), |t| format!("; foreground = first component > {t}, background black")),
    );
    let _ = writeln!(
        md,
        "| layer | explained variance (PC1, PC2, PC3) | foreground | mean norm | norm std | picture |\n|---:|---|---:|---:|---:|---|"
    );
    for (li, layer) in layers.iter().enumerate() {
        let grids = &by_layer[li];
        let pics = pca_rgb(grids, args.fg_threshold)?;
        let all_norms: Vec<f32> = grids.iter().flat_map(norms).collect();
        let mean = all_norms.iter().map(|&v| v as f64).sum::<f64>() / all_norms.len() as f64;
        let std = (all_norms.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>()
            / all_norms.len() as f64)
            .sqrt();
        let mut rows = Vec::new();
        for ((it, g), pca) in items.iter().zip(grids).zip(&pics.images) {
            let (w, h) = (it.view.width(), it.view.height());
            let n = norms(g);
            let ns = Scale::new(Colormap::Inferno, Range::PerImage, &n, None);
            let cos = cosine_to(g, it.selected.0, it.selected.1)?;
            let cs = Scale::new(Colormap::Turbo, Range::Fixed(-1.0, 1.0), &[], None);
            let mut cos_img =
                upscale(&visualize::colorize(&cos, None, g.cols as u32, g.rows as u32, &cs), w, h);
            let (sy, sx) = ((it.selected.0 * p) as i64, (it.selected.1 * p) as i64);
            draw::frame(&mut cos_img, sx, sy, p as u32, p as u32, draw::WHITE);
            let fit = |img: RgbImage| visualize::fit_width(&img, 320);
            let panels = [
                Panel { title: it.name.clone(), image: fit(it.view.clone()), bar: None },
                Panel { title: format!("PCA layer {layer}"), image: fit(upscale(pca, w, h)), bar: None },
                Panel {
                    title: "token norm".into(),
                    image: fit(upscale(
                        &visualize::colorize(&n, None, g.cols as u32, g.rows as u32, &ns),
                        w,
                        h,
                    )),
                    bar: Some(Bar::new(ns, "norm")),
                },
                Panel {
                    title: format!("cos to patch ({}, {})", it.selected.0, it.selected.1),
                    image: fit(cos_img),
                    bar: Some(Bar::new(cs, "cos")),
                },
            ];
            rows.push(visualize::side_by_side(&panels, &[]));
        }
        let width = rows.iter().map(|r| r.width()).max().unwrap_or(1);
        let mut grid = RgbImage::from_pixel(
            width,
            rows.iter().map(|r| r.height()).sum::<u32>().max(1),
            image::Rgb(draw::WHITE),
        );
        let mut y = 0;
        for r in &rows {
            imageops::replace(&mut grid, r, 0, y);
            y += r.height() as i64;
        }
        let file = format!("layer_{layer:02}.png");
        visualize::save_png(&grid, &args.out.join(&file))?;
        let ev = pics.pca.explained_ratio();
        let _ = writeln!(
            md,
            "| {layer} | {} | {:.1} % | {mean:.3} | {std:.3} | [{file}]({file}) |",
            ev.iter().map(|v| format!("{:.3}", v)).collect::<Vec<_>>().join(", "),
            pics.foreground * 100.0
        );
    }
    md.push('\n');
    for layer in layers {
        let _ = writeln!(md, "## Layer {layer}\n\n![layer {layer}](layer_{layer:02}.png)\n");
    }
    Ok(md)
}
