//! Depth for one photo with the library API: the float32 depth as `.npy`, the 16-bit PNG and the
//! official coloured picture.
//!
//! ```sh
//! cargo run --release -p depth-models --example estimate -- photo.jpg            # official ViT-S (Hub)
//! cargo run --release -p depth-models --example estimate -- photo.jpg model.pth  # any checkpoint
//! ```
//!
//! The second argument is what `--weights` takes: an encoder name (vits, vitb, vitl, vitg), a
//! checkpoint file, an HF folder or a Hub id.

use depth_models::{Colormap, DepthEstimator, Encoder, WeightsSource};
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let Some(photo) = args.next().map(PathBuf::from) else {
        return Err("usage: estimate PHOTO [WEIGHTS]".into());
    };
    let source = match args.next() {
        Some(spec) => spec.parse::<WeightsSource>()?,
        None => Encoder::Vits.into(),
    };

    let estimator = DepthEstimator::from_pretrained(source, &candle_core::Device::Cpu)?;
    let depth = estimator.estimate(&photo)?;
    depth.to_npy(photo.with_extension("depth.npy"))?;
    depth.to_png16(photo.with_extension("depth16.png"))?;
    depth.colorize(Colormap::SpectralR).save(photo.with_extension("depth.png"))?;

    let (lo, hi) = depth.min_max();
    println!("{}×{} depth of {} in {lo:.3}…{hi:.3}", depth.width, depth.height, photo.display());
    Ok(())
}
