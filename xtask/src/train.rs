//! `cargo xtask train`: one training run from a config (configs/train.toml), or the
//! continuation of a run folder (`--resume`). Everything is checked before the first step; the
//! run writes its checkpoints, logs, TensorBoard events, loss curve and final model into the
//! run folder and prints where they are.

use crate::error::{Result, XtaskError};
use depth_train::{TrainConfig, Trainer};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// The run's configuration.
    #[arg(long, default_value = "configs/train.toml")]
    config: PathBuf,
    /// Continue the run in this folder from its newest complete checkpoint, with the
    /// configuration saved there.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// cpu, cuda or cuda:N (overrides the config's `device`).
    #[arg(long)]
    device: Option<String>,
    /// Override a config value, e.g. `--set optim.lr=1e-4 --set schedule.steps=100`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
}

pub fn run(args: TrainArgs) -> Result<()> {
    let mut trainer = match &args.resume {
        Some(dir) => {
            if !args.sets.is_empty() {
                return Err(XtaskError::Failed(format!(
                    "--resume continues {} with its own config.toml; --set would change the run (start a new one instead)",
                    dir.display()
                )));
            }
            Trainer::resume(dir, args.device.clone())?
        }
        None => {
            let mut sets = args.sets.clone();
            if let Some(d) = &args.device {
                sets.push(format!("device={d}"));
            }
            Trainer::start(TrainConfig::load(&args.config, &sets)?)?
        }
    };
    eprintln!("run folder: {}", trainer.run_dir().display());
    let bar = crate::progress::bar(0, "train");
    let outcome = trainer.run(&bar);
    bar.finish();
    let outcome = outcome?;
    let summary = serde_json::to_vec_pretty(&outcome).expect("serialises");
    let path = outcome.run.join("summary.json");
    depth_core::atomic::write_atomic(&path, |w| w.write_all(&summary))?;
    println!(
        "trained {} steps ({} skipped), last loss {}, {:.2} images/s",
        outcome.steps,
        outcome.skipped_steps,
        outcome.last_loss.map_or("n/a".into(), |l| format!("{l:.5}")),
        outcome.images_per_s
    );
    if let Some(b) = &outcome.best {
        println!(
            "best {} {:.5} at step {} → {}",
            b.metric,
            b.value,
            b.step,
            outcome.run.join("best.safetensors").display()
        );
    }
    println!("model: {}", outcome.final_model.display());
    println!("loss curve: {}", outcome.run.join("loss.png").display());
    Ok(())
}
