//! The learner: it loops, optimises and checkpoints; the task ([`TaskStep`]) owns the targets
//! and the loss. A step: `accumulate` batches from depth-data's loader → the task's loss →
//! backward → global-norm clip → AdamW over the parameter groups → EMA → schedule. A non-finite
//! loss or gradient skips the step (counted); too many in a row stop the run with the last good
//! checkpoint untouched. Every `validate.every` steps the benchmarks are scored; every
//! `checkpoint.every` steps (and at the end) a checkpoint is written. A run stopped at any
//! point and resumed from its checkpoint computes the same losses, bit for bit on the CPU, as
//! one that never stopped.
//!
//! Data parallel (`dist`): `data.loader.batch_size` is the optimiser's batch, split as ranks ×
//! per-rank batch × accumulate ([`BatchPlan`]); every rank loads its shard of each epoch (the
//! loader's rank/world), the gradients and the logged numbers are averaged over the ranks, and
//! every rank applies the same update; rank 0 alone writes the run folder (config, logs,
//! checkpoints, validation, final model, summary). One config takes the same steps on any
//! number of ranks.

use crate::batch::BatchPlan;
use crate::checkpoint::{self, Checkpoint, Contents};
use crate::config::{Labels, TrainConfig};
use crate::dist::{Collective, Solo};
use crate::ema::Ema;
use crate::error::{Result, TrainError};
use crate::grads::Grads;
use crate::log::{RunLog, StepRecord};
use crate::optim::{AdamW, Applied, OptimState, groups_for};
use crate::run_dir::{Best, Outcome, RunDir};
use crate::task::{StepLoss, TaskStep, task_for};
use crate::validate::Validator;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use depth_core::config::ConfigFile;
use depth_core::weights::{Metadata, StrictWeights, TensorMap};
use depth_core::{CoreError, DeviceSpec, Progress};
use depth_data::{Batch, BatchIter, Cursor, DataConfig, DatasetRef, Kind, Loader, LoaderConfig, Source};
use depth_models::{
    DepthAnythingV2, ModelConfig, WeightsInit, build_trainable, model_tensors, parameters, save_model,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// The bias of the head's last conv (`model.output_bias`).
const OUTPUT_BIAS: &str = "depth_head.scratch.output_conv2.2.bias";

/// Everything besides tensors that a resumed run needs (saved in the checkpoint's state file).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LearnerState {
    /// Optimiser steps done.
    pub step: u64,
    /// The loader's position after the last batch used.
    pub cursor: Cursor,
    pub optim: OptimState,
    pub bad_in_row: usize,
    pub skipped_steps: u64,
    pub images: u64,
    pub best: Option<Best>,
}

pub struct Learner {
    cfg: TrainConfig,
    run: RunDir,
    device: Device,
    model_cfg: ModelConfig,
    model: DepthAnythingV2,
    varmap: VarMap,
    optim: AdamW,
    /// The optimised parameters (the encoder's are absent when it is frozen).
    params: Vec<(String, Var)>,
    ema: Option<Ema>,
    task: Box<dyn TaskStep>,
    batches: Batches,
    plan: BatchPlan,
    /// Rank 0's validation and log; the other ranks write nothing.
    validator: Option<Validator>,
    log: Option<RunLog>,
    state: LearnerState,
    dist: Arc<dyn Collective>,
}

/// One step's micro-batches: their summed gradients, loss and terms.
#[derive(Default)]
struct Accumulated {
    grads: Grads,
    terms: BTreeMap<String, f64>,
    loss_sum: f64,
    images: usize,
    /// Why the step must be skipped (a non-finite loss or gradient).
    bad: Option<String>,
}

impl Learner {
    /// A new run in `cfg.out`. A folder that already holds a checkpoint is refused (resume it,
    /// or choose another `out`); everything is opened and checked before the first step.
    pub fn start(cfg: TrainConfig) -> Result<Learner> {
        Self::start_with(cfg, Arc::new(Solo))
    }

    /// [`Learner::start`] as one rank of a data-parallel job (see `dist::connect`).
    pub fn start_with(mut cfg: TrainConfig, dist: Arc<dyn Collective>) -> Result<Learner> {
        cfg.validate().map_err(|e| CoreError::config(&cfg.out, e))?;
        (cfg.data.loader.rank, cfg.data.loader.world) = (dist.rank(), dist.world());
        let run = RunDir::new(&cfg.out);
        let at = match run.latest_checkpoint() {
            Ok(None) => None,
            Ok(Some(c)) => Some(format!("checkpoint at step {}", c.step)),
            Err(_) => Some("a checkpoint that does not verify".to_string()),
        };
        if let Some(at) = at {
            return Err(TrainError::RunExists { run: run.root().into(), at });
        }
        if dist.rank() == 0 {
            depth_core::atomic::check_writable(run.root())?;
        }
        Self::build(cfg, run, None, true, dist)
    }

    /// Continues the run in `run` from its newest complete checkpoint (from the start when it
    /// has none yet), with the configuration saved there; `device` may move it.
    pub fn resume(run: &Path, device: Option<DeviceSpec>) -> Result<Learner> {
        Self::resume_with(run, device, Arc::new(Solo))
    }

    /// [`Learner::resume`] as one rank of a data-parallel job: the job has as many ranks as the
    /// run had (a rank's place in an epoch depends on it).
    pub fn resume_with(run: &Path, device: Option<DeviceSpec>, dist: Arc<dyn Collective>) -> Result<Learner> {
        let run = RunDir::new(run);
        if !run.config().is_file() {
            return Err(TrainError::NotARun { path: run.root().into() });
        }
        let mut cfg = TrainConfig::load(&run.config(), &[])?;
        cfg.device = device.unwrap_or(cfg.device);
        if cfg.data.loader.world != dist.world() {
            return Err(TrainError::WorldChanged {
                config: run.config(),
                trained: cfg.data.loader.world,
                now: dist.world(),
            });
        }
        cfg.data.loader.rank = dist.rank();
        if dist.rank() == 0 {
            depth_core::atomic::sweep_stale_temps(run.root());
        }
        let ckpt = run.latest_checkpoint()?;
        match &ckpt {
            Some(c) => tracing::info!("resuming {} from step {}", run.root().display(), c.step),
            None => tracing::info!(
                "{} has no checkpoint yet: starting it from the beginning",
                run.root().display()
            ),
        }
        Self::build(cfg, run, ckpt, false, dist)
    }

    /// Opens everything a run needs; a `new_run` writes its folder only once all of it opened,
    /// so a config that cannot run (a missing dataset, a bad encoder file) leaves nothing.
    fn build(
        cfg: TrainConfig,
        run: RunDir,
        ckpt: Option<Checkpoint>,
        new_run: bool,
        dist: Arc<dyn Collective>,
    ) -> Result<Learner> {
        let lead = dist.rank() == 0;
        let plan = BatchPlan::new(
            cfg.data.loader.batch_size,
            dist.world(),
            cfg.optim.per_rank_batch,
            cfg.optim.accumulate,
        )
        .map_err(|e| CoreError::config(if new_run { cfg.out.clone() } else { run.config() }, e))?;
        tracing::info!("{plan}");
        let device = cfg.device.open()?;
        // on GPUs the gradients are summed there (NCCL), bootstrapped by the launcher's collective
        let dist = crate::dist::on_device(dist, &device)?;
        let model_cfg = cfg.model.config().map_err(|e| CoreError::config(run.config(), e.under("model")))?;
        let init = match &ckpt {
            Some(c) => WeightsInit::Full(c.model.clone().into()),
            None => cfg.model.init.clone(),
        };
        let mut built = build_trainable(&model_cfg, &init, cfg.model.seed, &device)?;
        built.model = built.model.with_precision(cfg.precision);
        if let (None, Some(b)) = (&ckpt, cfg.model.output_bias) {
            let data = built.varmap.data().lock().expect("varmap lock");
            let bias = data.get(OUTPUT_BIAS).expect("every head has its last conv");
            bias.set(&bias.as_tensor().ones_like()?.affine(b, 0.0)?)?;
        }
        let s = &built.summary;
        tracing::info!(
            "model: {} tensors loaded from {}, {} fresh, {} ignored",
            s.loaded,
            s.source,
            s.fresh.len(),
            s.ignored.len()
        );
        let all = parameters(&built.varmap)?;
        let optim = AdamW::new(groups_for(&all, &cfg.optim))?;
        let params = optim.params();
        broadcast_vars(dist.as_ref(), &params)?;
        let ema = cfg.optim.ema.map(|d| Ema::new(d, &params)).transpose()?;
        let batches = Batches { loader: open_loader(&cfg, plan.per_rank)?, iter: None };
        let task = task_for(&cfg, &model_cfg, &device)?;
        let validator = match (&cfg.validate, lead) {
            (Some(v), true) => Some(Validator::new(v, cfg.task, &run)?),
            _ => None,
        };
        if new_run && lead {
            let ckpts = run.checkpoints();
            std::fs::create_dir_all(&ckpts).map_err(|e| CoreError::write(&ckpts, e))?;
            let text = cfg.to_toml();
            depth_core::atomic::write_atomic(&run.config(), |w| w.write_all(text.as_bytes()))?;
        }
        let log = lead
            .then(|| RunLog::open(&run, ckpt.as_ref().map(|c| c.step), cfg.log.tensorboard))
            .transpose()?;
        let mut learner = Learner {
            log,
            state: LearnerState {
                step: 0,
                cursor: Cursor::default(),
                optim: optim.state()?.1,
                bad_in_row: 0,
                skipped_steps: 0,
                images: 0,
                best: None,
            },
            cfg,
            run,
            device,
            model_cfg,
            model: built.model,
            varmap: built.varmap,
            optim,
            params,
            ema,
            task,
            batches,
            plan,
            validator,
            dist,
        };
        if let Some(c) = ckpt {
            learner.restore(&c)?;
        }
        Ok(learner)
    }

    /// Loads the optimiser, EMA and learner state of a checkpoint (its model is already built).
    fn restore(&mut self, c: &Checkpoint) -> Result<()> {
        let (tensors, json) = c.read_state()?;
        self.state = serde_json::from_str(&json)
            .map_err(|e| TrainError::checkpoint(&c.state, format!("trainer state does not parse: {e}")))?;
        if self.state.step != c.step {
            return Err(TrainError::checkpoint(
                &c.state,
                format!("holds step {}, the pointer {}", self.state.step, c.step),
            ));
        }
        let (ema, moments): (TensorMap, TensorMap) =
            tensors.into_iter().partition(|(k, _)| k.starts_with("ema."));
        self.optim
            .load_state(&moments, &self.state.optim)
            .map_err(|e| TrainError::checkpoint(&c.state, e.to_string()))?;
        if let Some(average) = &mut self.ema {
            let ema = ema.into_iter().map(|(k, v)| (k["ema.".len()..].to_string(), v)).collect();
            average.load(&ema).map_err(|e| TrainError::checkpoint(&c.state, e.to_string()))?;
        }
        Ok(())
    }

    pub fn run_dir(&self) -> &RunDir {
        &self.run
    }

    pub fn state(&self) -> &LearnerState {
        &self.state
    }

    pub fn model(&self) -> &DepthAnythingV2 {
        &self.model
    }

    pub fn optimizer(&self) -> &AdamW {
        &self.optim
    }

    /// The run's log (rank 0 alone keeps one).
    pub fn log(&self) -> Option<&RunLog> {
        self.log.as_ref()
    }

    /// The EMA's averages (None without EMA).
    pub fn ema_tensors(&self) -> Result<Option<TensorMap>> {
        self.ema.as_ref().map(|e| e.tensors()).transpose()
    }

    /// The model's current tensors (CPU, official keys).
    pub fn model_tensors(&self) -> Result<TensorMap> {
        Ok(model_tensors(&self.varmap)?)
    }

    /// Trains to `schedule.steps`, validating and checkpointing on the way, then writes the
    /// final model (`final.safetensors`: the EMA weights when enabled) and the summary that
    /// marks the run finished.
    pub fn run(&mut self, progress: &dyn Progress) -> Result<Outcome> {
        let (started, images) = (Instant::now(), self.state.images);
        let last_loss = self.run_until(self.cfg.schedule.steps, progress)?;
        if let Some(log) = &self.log {
            let tensors = finite(self.eval_tensors()?)?;
            save_model(&tensors, &self.model_cfg, &self.model_meta(), &self.run.final_model())?;
            log.plot()?;
        }
        let outcome = Outcome {
            run: self.run.root().into(),
            steps: self.state.step,
            skipped_steps: self.state.skipped_steps,
            last_loss,
            images_per_s: (self.state.images - images) as f64 / started.elapsed().as_secs_f64().max(1e-9),
            final_model: self.run.final_model(),
            best: self.state.best.clone(),
        };
        if self.log.is_some() {
            self.run.write_summary(&outcome)?;
        }
        Ok(outcome)
    }

    /// Trains until `stop` steps are done (at most `schedule.steps`); returns the last loss.
    pub fn run_until(&mut self, stop: u64, progress: &dyn Progress) -> Result<Option<f64>> {
        let total = self.cfg.schedule.steps;
        progress.start(total, self.state.step);
        let mut last_loss = None;
        while self.state.step < stop.min(total) {
            let rec = self.train_step()?;
            let (step, loss) = (rec.step, rec.loss);
            let lr = rec.lr.values().next().copied().unwrap_or(0.0);
            progress.message(&format!("loss {loss:.4} lr {lr:.2e} {:.1} img/s", rec.images_per_s));
            progress.advance(1);
            if let Some(log) = &mut self.log {
                log.step(rec)?;
            }
            let due = |every: u64| step % every == 0 || step == total;
            if self.cfg.validate.as_ref().is_some_and(|v| due(v.every)) {
                self.validate()?;
            }
            if self.log.is_some() && due(self.cfg.checkpoint.every) {
                self.save_checkpoint()?;
            }
            if let Some(log) = &self.log
                && due(self.cfg.log.plot_every)
            {
                log.plot()?;
            }
            last_loss = Some(loss);
        }
        Ok(last_loss)
    }

    /// One optimiser step; returns its record (not yet logged).
    pub fn train_step(&mut self) -> Result<StepRecord> {
        let t0 = Instant::now();
        self.optim.set_lr_factor(self.cfg.schedule.factor(self.state.step));
        let mut acc = self.accumulate()?;
        if self.dist.world() > 1 {
            self.average_over_ranks(&mut acc)?;
        }
        let norm = match self.cfg.optim.grad_clip {
            Some(max) => acc.grads.clip(max)?,
            None => acc.grads.global_norm()?,
        };
        if acc.bad.is_none() && !norm.is_finite() {
            acc.bad = Some(format!("gradient norm {norm}"));
        }
        let lr = self.optim.groups().map(|(n, s)| (n.to_string(), s.lr)).collect();
        self.state.step += 1;
        self.state.images += acc.images as u64;
        if acc.bad.is_none()
            && let Applied::Refused { param, what } = self.optim.step(&acc.grads)?
        {
            acc.bad = Some(format!("the update would make the {what} of {param} non-finite"));
        }
        match &acc.bad {
            None => self.applied()?,
            Some(detail) => self.skip(detail)?,
        }
        Ok(StepRecord {
            step: self.state.step,
            loss: acc.loss_sum / self.plan.accumulate as f64,
            terms: acc.terms,
            lr,
            grad_norm: norm,
            images_per_s: acc.images as f64 / t0.elapsed().as_secs_f64().max(1e-9),
            skipped: acc.bad.is_some(),
        })
    }

    /// The task's loss and its gradients over the step's micro-batches (a micro-batch with a
    /// non-finite loss adds no gradient and marks the step bad).
    fn accumulate(&mut self) -> Result<Accumulated> {
        let n = self.plan.accumulate;
        let mut acc = Accumulated::default();
        for _ in 0..n {
            let batch = self.batches.next(&mut self.state.cursor)?;
            acc.images += batch.ids.len();
            let StepLoss { loss, terms, recompute } = self.task.loss(&self.model, &batch)?;
            let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            acc.loss_sum += value;
            for (k, v) in terms {
                *acc.terms.entry(k.to_string()).or_default() += v / n as f64;
            }
            if !value.is_finite() {
                acc.bad = Some(format!("loss {value}"));
                continue;
            }
            let mut store = (loss / n as f64)?.backward()?;
            if let Some(encoder_backward) = recompute {
                encoder_backward.backward(&mut store)?;
            }
            acc.grads.accumulate(Grads::from_store(&store, &self.params))?;
        }
        Ok(acc)
    }

    /// After an optimiser step: the EMA.
    fn applied(&mut self) -> Result<()> {
        if let Some(ema) = &mut self.ema {
            ema.update(&self.params)?;
        }
        self.state.bad_in_row = 0;
        Ok(())
    }

    /// A skipped step; too many in a row stop the run.
    fn skip(&mut self, detail: &str) -> Result<()> {
        self.state.bad_in_row += 1;
        self.state.skipped_steps += 1;
        tracing::warn!(
            "step {}: {detail}; step skipped ({} in a row)",
            self.state.step,
            self.state.bad_in_row
        );
        if self.state.bad_in_row >= self.cfg.max_bad_steps {
            return Err(TrainError::Diverged {
                count: self.state.bad_in_row,
                step: self.state.step,
                detail: detail.to_string(),
            });
        }
        Ok(())
    }

    /// Averages the step's gradients, loss and terms over the ranks (every rank gets the same
    /// bits). The gradients travel as one flat float32 buffer over every optimised parameter
    /// (zeros where a rank has none), so each rank sends the same length whatever happened.
    fn average_over_ranks(&self, acc: &mut Accumulated) -> Result<()> {
        let world = self.dist.world();
        let mut parts = Vec::with_capacity(self.params.len());
        for (name, var) in &self.params {
            parts.push(match acc.grads.get(name) {
                Some(g) => g.flatten_all()?.to_dtype(DType::F32)?,
                None => Tensor::zeros(var.elem_count(), DType::F32, var.device())?,
            });
        }
        // on the device: NCCL sums it there, MPI through the host
        let flat = self.dist.sum_tensor(&Tensor::cat(&parts, 0)?)?;
        let mut summed = BTreeMap::new();
        let mut at = 0;
        for (name, var) in &self.params {
            let n = var.elem_count();
            if let Some(g) = acc.grads.get(name) {
                let sum = flat.narrow(0, at, n)?.reshape(g.shape())?;
                summed.insert(name.clone(), sum.to_dtype(g.dtype())?);
            }
            at += n;
        }
        acc.grads = Grads::from_map(summed);
        acc.grads.scale(1.0 / world as f64)?;
        // loss, images, bad, then each term's sum and the ranks that had it
        let names = self.task.term_names();
        let mut stats = vec![acc.loss_sum, acc.images as f64, f64::from(u8::from(acc.bad.is_some()))];
        for name in names {
            stats.extend(acc.terms.get(*name).map_or([0.0, 0.0], |v| [*v, 1.0]));
        }
        self.dist.sum_f64(&mut stats)?;
        acc.terms.clear();
        for (i, name) in names.iter().enumerate() {
            let (sum, ranks) = (stats[3 + 2 * i], stats[4 + 2 * i]);
            if ranks > 0.0 {
                acc.terms.insert(name.to_string(), sum / ranks);
            }
        }
        (acc.loss_sum, acc.images) = (stats[0] / world as f64, stats[1] as usize);
        if stats[2] > 0.0 && acc.bad.is_none() {
            acc.bad = Some("a non-finite loss on another rank".into());
        }
        Ok(())
    }

    /// The weights validation and the exported model use: the EMA when enabled.
    fn eval_tensors(&self) -> Result<TensorMap> {
        let mut tensors = model_tensors(&self.varmap)?;
        if let Some(ema) = &self.ema {
            tensors.extend(ema.tensors()?);
        }
        Ok(tensors)
    }

    fn eval_model(&self) -> Result<DepthAnythingV2> {
        if self.ema.is_none() {
            return Ok(self.model.clone());
        }
        let weights = StrictWeights::new("EMA weights", self.eval_tensors()?);
        Ok(weights.build(DType::F32, &self.device, |vb| DepthAnythingV2::new(&self.model_cfg, vb))?)
    }

    fn model_meta(&self) -> Metadata {
        [
            ("step".to_string(), self.state.step.to_string()),
            ("task".to_string(), format!("{:?}", self.cfg.task)),
        ]
        .into()
    }

    /// Scores the benchmarks; a better score writes `best.safetensors` and `best.json`.
    pub fn validate(&mut self) -> Result<()> {
        let Some(v) = &self.validator else { return Ok(()) };
        let (rec, pictures) = v.run(self.eval_model()?, &self.device, self.state.step)?;
        if let Some(score) = rec.score
            && self.state.best.as_ref().is_none_or(|b| v.better(score, b.value))
        {
            let best = Best { step: self.state.step, metric: v.metric().to_string(), value: score };
            let tensors = finite(self.eval_tensors()?)?;
            save_model(&tensors, &self.model_cfg, &self.model_meta(), &self.run.best_model())?;
            self.run.write_best(&best)?;
            self.state.best = Some(best);
        }
        match &mut self.log {
            Some(log) => log.validation(rec, &pictures),
            None => Ok(()),
        }
    }

    /// Writes a checkpoint of the current step.
    pub fn save_checkpoint(&mut self) -> Result<Checkpoint> {
        let model = model_tensors(&self.varmap)?;
        let (mut state, optim_state) = self.optim.state()?;
        if let Some(ema) = &self.ema {
            state.extend(ema.tensors()?.into_iter().map(|(k, v)| (format!("ema.{k}"), v)));
        }
        self.state.optim = optim_state;
        let contents = Contents {
            step: self.state.step,
            model: &model,
            config: &self.model_cfg,
            model_meta: &self.model_meta(),
            state: &state,
            state_json: serde_json::to_string(&self.state).expect("the learner state serialises"),
        };
        checkpoint::write(&self.run.checkpoints(), &contents, self.cfg.checkpoint.keep_last)
    }
}

/// `tensors`, when every value is finite: a model with NaN or ±inf is never written as the
/// final or best one (the steps that would make one are skipped, so this is the last guard).
fn finite(tensors: TensorMap) -> Result<TensorMap> {
    let bad = depth_core::weights::non_finite(&tensors)?;
    if let Some((name, count)) = bad.first() {
        let reason = format!(
            "{name} holds {count} non-finite values ({} tensors in all); it is not written",
            bad.len()
        );
        return Err(CoreError::bad_input("model", reason).into());
    }
    Ok(tensors)
}

/// The loader's batches in order across epochs, from a cursor.
struct Batches {
    loader: Loader,
    iter: Option<BatchIter>,
}

impl Batches {
    /// The batch at `cursor`, which moves past it (into the next epoch when one ends).
    fn next(&mut self, cursor: &mut Cursor) -> Result<Batch> {
        let mut fresh_epoch = false;
        loop {
            let iter = self.iter.get_or_insert_with(|| self.loader.iter(*cursor));
            match iter.next() {
                Some(b) => {
                    let b = b?;
                    *cursor = b.cursor;
                    return Ok(b);
                }
                None if fresh_epoch => {
                    return Err(TrainError::NoFullBatch {
                        epoch: cursor.epoch,
                        batch_size: self.loader.config().batch_size,
                    });
                }
                None => {
                    *cursor = Cursor { epoch: cursor.epoch + 1, position: 0 };
                    self.iter = None;
                    fresh_epoch = true;
                }
            }
        }
    }
}

/// Rank 0's values of the parameters on every rank (they are built alike from the same seed
/// and files; this makes sure).
fn broadcast_vars(dist: &dyn Collective, params: &[(String, Var)]) -> Result<()> {
    if dist.world() == 1 {
        return Ok(());
    }
    for (_, var) in params {
        let t = var.as_tensor();
        let mut values = t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        dist.broadcast_f32(&mut values)?;
        var.set(&Tensor::from_vec(values, t.shape(), t.device())?.to_dtype(t.dtype())?)?;
    }
    Ok(())
}

/// Refuses a label store whose labelling runs (their `summary*.json`, or its shards' indexes) used another teacher or
/// input size than the config's `[teacher]`: a student would learn from a model it was not
/// configured to learn from.
fn check_teacher(store: &Path, teacher: &crate::config::TeacherSpec) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(store) else { return Ok(()) };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        // labelling runs' summaries, and the indexes of tar shards
        if !(name.starts_with("summary") && name.ends_with(".json") || name.ends_with(".index.json")) {
            continue;
        }
        // a shard index's head only (its samples are not read); a summary's two fields
        #[derive(Deserialize)]
        struct MadeBy {
            teacher: Option<String>,
            input_size: Option<u64>,
        }
        let made = if name.ends_with(".index.json") {
            let head = depth_data::formats::shards::read_head(&path)?;
            MadeBy { teacher: Some(head.teacher), input_size: Some(head.input_size as u64) }
        } else {
            let text = depth_core::read::text(&path)?;
            serde_json::from_str(&text).map_err(|e| CoreError::format(&path, "labelling summary", e))?
        };
        let (made_by, size) = (made.teacher.as_deref().unwrap_or(""), made.input_size);
        if made_by != teacher.model.name || size != Some(teacher.input_size as u64) {
            return Err(TrainError::TeacherMismatch {
                store: path,
                labels: format!("{made_by} at input size {}", size.map_or("?".into(), |s| s.to_string())),
                config: format!("{} at input size {}", teacher.model.name, teacher.input_size),
            });
        }
    }
    Ok(())
}

/// The loader over the configured sources, each with whether its targets are pseudo-labels.
/// The loader of this rank: `per_rank` images per batch.
fn open_loader(cfg: &TrainConfig, per_rank: usize) -> Result<Loader> {
    let named = cfg.data.sources.iter().any(|s| s.data.name().is_some());
    let data = if named { DataConfig::load(&cfg.data.config, &[])? } else { DataConfig::default() };
    let mut sources = Vec::new();
    for s in &cfg.data.sources {
        let pseudo = match (&s.labels, &s.data) {
            (Some(labels), _) => *labels == Labels::Pseudo,
            (None, DatasetRef::Named(name)) => data.get(name)?.kind == Kind::Pseudo,
            (None, DatasetRef::Synth(_)) => false,
        };
        if let (true, DatasetRef::Named(name), Some(teacher)) = (pseudo, &s.data, &cfg.teacher)
            && let Some(store) = &data.get(name)?.store
        {
            check_teacher(store, teacher)?;
        }
        sources.push(Source { dataset: s.data.open(&data)?, ratio: s.ratio, strong: s.strong, pseudo });
    }
    Ok(Loader::new(sources, LoaderConfig { batch_size: per_rank, ..cfg.data.loader.clone() })?)
}
