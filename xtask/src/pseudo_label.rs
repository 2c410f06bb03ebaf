//! `cargo xtask pseudo-label`: a frozen teacher labels a folder, a list of images or an image
//! dataset of configs/data.toml into a pseudo-label store (depth-data's format), sharded with
//! `--shard k/n` and resumable: finished labels are verified and skipped. Broken images are
//! reported and skipped; the run ends non-zero when any image failed.

use crate::error::{Result, XtaskError};
use depth_data::TeacherId;
use depth_data::config::{DataConfig, Kind};
use depth_train::pseudo_label::{Labeller, Shard, Summary, list_images};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct PseudoLabelArgs {
    /// The teacher as for `eval --model`: ENCODER[:WEIGHTS] (official weights, HF folder or Hub
    /// id) or the path of a checkpoint written by `train` (any size).
    #[arg(long, default_value = "vitl")]
    pub teacher: String,
    /// A folder of images (recursive) or a .txt list of image paths (relative to the list).
    #[arg(long, conflicts_with = "dataset")]
    pub images: Option<PathBuf>,
    /// An image-folder dataset of the data config (kind `folder` or `pseudo`).
    #[arg(long)]
    pub dataset: Option<String>,
    #[arg(long, default_value = "configs/data.toml")]
    pub data_config: PathBuf,
    /// The label store (one .safetensors per image, named by its relative path).
    #[arg(long)]
    pub store: PathBuf,
    /// This process's share, k/n (0-based): the images whose path hashes to k modulo n.
    /// Default: all of them, or under mpirun/torchrun this rank's share (rank/world).
    #[arg(long)]
    pub shard: Option<Shard>,
    #[command(flatten)]
    pub input: crate::net_input::NetInput,
    /// Same-size images per forward pass.
    #[arg(long, default_value_t = 4, value_parser = crate::net_input::positive())]
    pub batch_size: usize,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

pub fn run(args: PseudoLabelArgs) -> Result<()> {
    let summary = label(&args)?;
    let failed = summary.failed.len();
    if failed > 0 {
        return Err(XtaskError::SomeFailed { failed, total: summary.images });
    }
    Ok(())
}

/// Runs the labelling and writes and prints its summary (also on failures).
pub fn label(args: &PseudoLabelArgs) -> Result<Summary> {
    let source = match (&args.images, &args.dataset) {
        (Some(p), None) => p.clone(),
        (None, Some(name)) => {
            let data = DataConfig::load(&args.data_config)?;
            let spec = data.get(name)?;
            if !matches!(spec.kind, Kind::Folder | Kind::Pseudo) {
                return Err(XtaskError::Failed(format!(
                    "dataset '{name}' is of kind {:?}: pseudo-label takes image folders (kind folder or pseudo)",
                    spec.kind
                )));
            }
            spec.root.clone()
        }
        _ => return Err(XtaskError::Failed("give --images DIR|LIST or --dataset NAME".into())),
    };
    let items = list_images(&source)?;
    if items.is_empty() {
        return Err(XtaskError::NoImages(source));
    }
    depth_core::atomic::prepare_output_dir(&args.store)?;
    let (name, source, expect) = crate::eval::parse_model(&args.teacher)?;
    let file = source.file()?;
    tracing::info!("teacher {name}: {} — hashing the weights", file.display());
    let sha256 = depth_data::manifest::sha256_file(&file)?;
    let device = depth_core::parse_device(&args.device)?;
    let model = crate::net_input::load_checked(&source, expect, None, &device)?;
    let labeller = Labeller {
        estimator: args.input.estimator(model, device),
        teacher: TeacherId { name, sha256, input_size: args.input.input_size },
        batch: args.batch_size.max(1),
    };
    let shard = match args.shard {
        Some(s) => s,
        None => {
            let launch = depth_train::Launch::from_env()?;
            Shard { index: launch.rank, count: launch.world }
        }
    };
    let mine = items.iter().filter(|i| shard.owns(&i.rel)).count();
    let bar = crate::progress::bar(mine as u64, "label");
    let summary = labeller.run(&items, shard, &args.store, &|| bar.inc(1))?;
    bar.finish();
    let name = match summary.shard {
        Some(s) => format!("summary-{}-of-{}.json", s.index, s.count),
        None => "summary.json".into(),
    };
    let json = serde_json::to_vec_pretty(&summary).expect("serialises");
    depth_core::atomic::write_atomic(&args.store.join(&name), |w| w.write_all(&json))?;
    println!(
        "{} images: {} labelled ({} redone), {} already done, {} failed; {:.2} images/s → {}",
        summary.images,
        summary.labelled,
        summary.redone,
        summary.already_done,
        summary.failed.len(),
        summary.images_per_s,
        args.store.join(name).display()
    );
    for (image, error) in &summary.failed {
        eprintln!("failed: {image}: {error}");
    }
    Ok(summary)
}
