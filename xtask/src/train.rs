//! `cargo xtask train`: one training run from a config (`--config`), the continuation of a run
//! folder (`--resume`), or — with neither — the mini reproduction of the whole recipe
//! (`mini.rs`). Everything is checked before the first step; a run writes its checkpoints, logs,
//! TensorBoard events, loss curve and final model into its folder and prints where they are.
//! Under `mpirun -np N` each process is one rank of a data-parallel run (docs/distributed.md).

use crate::error::{Result, XtaskError};
use crate::progress::Bar;
use depth_core::DeviceSpec;
use depth_core::config::ConfigFile;
use depth_train::{Collective, Learner, TrainConfig};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// The run's configuration (e.g. configs/train.toml). Without it and without --resume, the
    /// mini reproduction runs: teacher → pseudo-labels → distilled student → report.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Continue the run in this folder from its newest complete checkpoint, with the
    /// configuration saved there.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// cpu, cuda or cuda:N (overrides the config's `device`).
    #[arg(long)]
    device: Option<DeviceSpec>,
    /// Override a config value, e.g. `--set optim.lr=1e-4 --set schedule.steps=100` (in the
    /// mini reproduction: of every training stage).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Print the plan of --config (model, parameter counts, data, steps) and an estimated time
    /// on the device from a short probe, without training.
    #[arg(long, requires = "config")]
    dry_run: bool,
    /// --dry-run: the job's number of ranks (default: the launcher's, else 1).
    #[arg(long, requires = "dry_run")]
    ranks: Option<usize>,
    /// Mini reproduction: the folder of its stage configs.
    #[arg(long, default_value = "configs/mini")]
    pipeline: PathBuf,
    /// Mini reproduction: where its runs and report go.
    #[arg(long, default_value = "runs/mini")]
    out: PathBuf,
    /// Mini reproduction: more unlabeled photos to pseudo-label and distil from (repeatable).
    #[arg(long)]
    unlabeled: Vec<PathBuf>,
    /// Mini reproduction: more RGB-D frames to evaluate on, a folder with a
    /// `test_annotations.json` as shared/fixtures/rgbd/nyu_bts (repeatable).
    #[arg(long)]
    gt: Vec<PathBuf>,
}

pub fn run(args: TrainArgs) -> Result<()> {
    // kept to the end: MPI is finalised when the last handle drops
    let dist = depth_train::dist::connect()?;
    if dist.world() == 1 {
        return train(args, dist);
    }
    let rank = dist.rank();
    match train(args, dist.clone()) {
        Ok(()) => Ok(()),
        // the other ranks wait in a collective: end the whole job, not just this process
        Err(e) => dist.abort(&format!("rank {rank} of {} failed: {e}", dist.world())),
    }
}

fn train(args: TrainArgs, dist: Arc<dyn Collective>) -> Result<()> {
    let sets = || {
        let mut sets = args.sets.clone();
        sets.extend(args.device.map(|d| format!("device=\"{d}\"")));
        sets
    };
    let mut learner = match (&args.config, &args.resume) {
        (None, None) => return mini(args, dist.as_ref()),
        (Some(config), _) if args.dry_run => {
            let ranks = args.ranks.unwrap_or(dist.world());
            let mut plan = String::new();
            let outcome = depth_train::plan::dry_run(&TrainConfig::load(config, &sets())?, ranks, &mut plan);
            print!("{plan}");
            return Ok(outcome?);
        }
        (_, Some(dir)) if !args.sets.is_empty() => {
            return Err(XtaskError::usage(
                "--set",
                format!(
                    "--resume continues {} with its own config.toml; --set would change the run (start a new one instead)",
                    dir.display()
                ),
            ));
        }
        (_, Some(dir)) => Learner::resume_with(dir, args.device, dist.clone())?,
        (Some(config), None) => Learner::start_with(TrainConfig::load(config, &sets())?, dist.clone())?,
    };
    let lead = dist.rank() == 0;
    let bar = if lead {
        eprintln!("run folder: {}", learner.run_dir().root().display());
        Bar::new("train")
    } else {
        Bar::hidden()
    };
    let outcome = learner.run(&bar);
    drop(bar);
    let outcome = outcome?;
    if !lead {
        return Ok(());
    }
    let run = learner.run_dir();
    println!(
        "trained {} steps ({} skipped), last loss {}, {:.2} images/s",
        outcome.steps,
        outcome.skipped_steps,
        outcome.last_loss.map_or("n/a".into(), |l| format!("{l:.5}")),
        outcome.images_per_s
    );
    if let Some(b) = &outcome.best {
        println!("best {} {:.5} at step {} → {}", b.metric, b.value, b.step, run.best_model().display());
    }
    println!("model: {}", outcome.final_model.display());
    println!("loss curve: {}", run.loss_plot().display());
    Ok(())
}

/// The mini reproduction (no --config, no --resume).
fn mini(args: TrainArgs, dist: &dyn Collective) -> Result<()> {
    if dist.world() > 1 {
        return Err(XtaskError::usage(
            "mpirun",
            "the mini reproduction runs in one process; launch --config or --resume runs with mpirun",
        ));
    }
    crate::mini::run(crate::mini::MiniOptions {
        configs: args.pipeline,
        out: args.out,
        unlabeled: args.unlabeled,
        gt: args.gt,
        sets: args.sets,
        device: args.device,
    })
}
