//! `cargo xtask pseudo-label`: a frozen teacher labels a folder, a list of images or an image
//! dataset of configs/data.toml into a pseudo-label store (depth-train's labelling job), sharded
//! with `--shard k/n` and resumable: finished labels are verified and skipped. Broken images are
//! reported and skipped; the run ends non-zero when any image failed.

use crate::error::{Result, XtaskError};
use crate::progress::Bar;
use depth_core::DeviceSpec;
use depth_core::config::ConfigFile;
use depth_data::DataConfig;
use depth_models::NamedModel;
use depth_train::pseudo_label::{LabelJob, Shard, label};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct PseudoLabelArgs {
    /// The teacher as for `eval --model`: ENCODER[:WEIGHTS] (official weights, HF folder or Hub
    /// id) or the path of a checkpoint written by `train` (any size).
    #[arg(long, default_value = "vitl")]
    teacher: NamedModel,
    /// A folder of images (recursive) or a .txt list of image paths (relative to the list).
    #[arg(long, conflicts_with = "dataset", required_unless_present = "dataset")]
    images: Option<PathBuf>,
    /// An image-folder dataset of the data config (kind `folder` or `pseudo`).
    #[arg(long)]
    dataset: Option<String>,
    #[arg(long, default_value = "configs/data.toml")]
    data_config: PathBuf,
    /// The label store (one .safetensors per image, named by its relative path).
    #[arg(long)]
    store: PathBuf,
    /// This process's share, k/n (0-based): the images whose path hashes to k modulo n.
    /// Default: all of them, or under mpirun/torchrun this rank's share (rank/world).
    #[arg(long)]
    shard: Option<Shard>,
    #[command(flatten)]
    input: crate::net_input::NetInput,
    /// Images per forward pass (those whose network inputs have one shape).
    #[arg(long, default_value_t = 4, value_parser = crate::net_input::positive())]
    batch_size: usize,
    /// Write the labels into tar shards of N images each (WebDataset's layout: the image and
    /// its label side by side, an index beside each shard) instead of one file per label; a
    /// rerun skips every shard whose index exists without reading its images.
    #[arg(long, value_parser = crate::net_input::positive())]
    shard_size: Option<usize>,
    /// With --shard-size: re-hash the images of finished shards and redo a shard whose images
    /// changed (a rerun otherwise trusts a finished shard's index).
    #[arg(long, requires = "shard_size")]
    verify: bool,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
}

pub fn run(args: PseudoLabelArgs) -> Result<()> {
    let images = match (args.images, &args.dataset) {
        (Some(p), _) => p,
        (None, Some(name)) => DataConfig::load(&args.data_config, &[])?.image_root(name)?.to_path_buf(),
        (None, None) => {
            return Err(XtaskError::usage("--images", "give --images DIR|LIST or --dataset NAME"));
        }
    };
    let job = LabelJob {
        teacher: args.teacher,
        images,
        store: args.store,
        shard: args.shard,
        input_size: args.input.input_size,
        max_tokens: args.input.max_tokens,
        precision: args.input.precision,
        batch: args.batch_size,
        shard_size: args.shard_size,
        verify: args.verify,
        device: args.device,
    };
    let (summary, path) = label(&job, &Bar::new("label"))?;
    println!(
        "{} images: {} labelled ({} redone), {} already done, {} failed; {:.2} images/s → {}",
        summary.images,
        summary.labelled,
        summary.redone,
        summary.already_done,
        summary.failed.len(),
        summary.images_per_s,
        path.display()
    );
    for (image, error) in &summary.failed {
        eprintln!("failed: {image}: {error}");
    }
    match summary.failed.len() {
        0 => Ok(()),
        failed => Err(XtaskError::SomeFailed { failed, total: summary.images }),
    }
}
