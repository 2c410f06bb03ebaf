//! The training loop. A step: `accumulate` batches from depth-data's loader → forward →
//! the objective of the task (relative: L_ssi + gm_weight·L_gm on disparity, trimmed on
//! pseudo-labels, plus feature alignment to a frozen encoder; metric: SiLog on depth in
//! [min_depth, max_depth]) → backward → global-norm clip → AdamW over the parameter groups →
//! EMA → schedule. A non-finite loss or gradient skips the step (counted); too many in a row
//! stop the run with the last good checkpoint untouched. Every `validate.every` steps the
//! benchmarks are scored; every `checkpoint.every` steps (and at the end) a checkpoint is
//! written. A run stopped at any point and resumed from its checkpoint computes the same
//! losses, bit for bit on the CPU, as one that never stopped.
//!
//! Data parallel (`dist`): every rank loads its shard of each epoch (the loader's rank/world)
//! with batch_size samples per step, the gradients and the logged numbers are averaged over
//! the ranks, and every rank applies the same update; rank 0 alone writes the run folder
//! (config, logs, checkpoints, validation, final model). N ranks with batch B take the steps
//! one process takes with batch N·B.

use crate::checkpoint::{self, Checkpoint, Contents};
use crate::config::{Labels, Task, TrainConfig};
use crate::dist::{Collective, Solo};
use crate::ema::Ema;
use crate::error::{Result, TrainError};
use crate::grads::Grads;
use crate::log::{RunLog, StepRecord};
use crate::optim::{AdamW, OptimState, groups_for};
use crate::validate::Validator;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use depth_core::weights::{Metadata, StrictWeights, TensorMap};
use depth_data::config::{DataConfig, Kind};
use depth_data::loader::BatchIter;
use depth_data::{Batch, Cursor, Loader, Source, TargetKind};
use depth_losses::{Objective, feature_alignment_loss, silog_loss};
use depth_models::dinov2::DinoVisionTransformer;
use depth_models::{
    DepthAnythingV2, ModelConfig, WeightsInit, build_trainable, load_frozen_encoder, model_tensors,
    parameters, save_model,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

pub const CONFIG_FILE: &str = "config.toml";
pub const FINAL_MODEL: &str = "final.safetensors";
pub const BEST_MODEL: &str = "best.safetensors";
/// The bias of the head's last conv (`model.output_bias`).
const OUTPUT_BIAS: &str = "depth_head.scratch.output_conv2.2.bias";

/// The best validation so far.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Best {
    pub step: u64,
    pub metric: String,
    pub value: f64,
}

/// Everything besides tensors that a resumed run needs (saved in the checkpoint's state file).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
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

/// What a finished run produced.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    pub run: PathBuf,
    pub steps: u64,
    pub skipped_steps: u64,
    pub last_loss: Option<f64>,
    pub images_per_s: f64,
    pub final_model: PathBuf,
    pub best: Option<Best>,
}

pub struct Trainer {
    cfg: TrainConfig,
    run: PathBuf,
    device: Device,
    model_cfg: ModelConfig,
    model: DepthAnythingV2,
    varmap: VarMap,
    optim: AdamW,
    /// The optimised parameters (the encoder's are absent when it is frozen).
    params: Vec<(String, Var)>,
    ema: Option<Ema>,
    loader: Loader,
    iter: Option<BatchIter>,
    /// Per loader source: pseudo-labels (trimmed, feature-aligned) or ground truth.
    pseudo: Vec<bool>,
    objective: Objective,
    frozen: Option<DinoVisionTransformer>,
    validator: Option<Validator>,
    /// Rank 0's log; the other ranks write nothing.
    log: Option<RunLog>,
    state: TrainerState,
    dist: Arc<dyn Collective>,
}

impl Trainer {
    /// A new run in `cfg.out`. A folder that already holds a checkpoint is refused (resume it,
    /// or choose another `out`); everything is opened and checked before the first step.
    pub fn start(cfg: TrainConfig) -> Result<Trainer> {
        Self::start_with(cfg, Arc::new(Solo))
    }

    /// [`Trainer::start`] as one rank of a data-parallel job (see `dist::connect`).
    pub fn start_with(mut cfg: TrainConfig, dist: Arc<dyn Collective>) -> Result<Trainer> {
        (cfg.data.loader.rank, cfg.data.loader.world) = (dist.rank(), dist.world());
        let run = cfg.out.clone();
        let ckpts = run.join("checkpoints");
        if ckpts.join(checkpoint::POINTER).exists() {
            let at = match checkpoint::latest(&ckpts) {
                Ok(Some(c)) => format!("checkpoint at step {}", c.step),
                _ => "a checkpoint that does not verify".to_string(),
            };
            return Err(TrainError::Config {
                path: run.clone(),
                reason: format!(
                    "already holds a run ({at}); continue it with --resume {}, or set another `out`",
                    run.display()
                ),
            });
        }
        if dist.rank() == 0 {
            depth_core::atomic::check_writable(&run)?;
        }
        Self::build(cfg, run, None, true, dist)
    }

    /// Continues the run in `run` from its newest complete checkpoint (from the start when it
    /// has none yet), with the configuration saved there; `device` may move it.
    pub fn resume(run: &Path, device: Option<String>) -> Result<Trainer> {
        Self::resume_with(run, device, Arc::new(Solo))
    }

    /// [`Trainer::resume`] as one rank of a data-parallel job: the job has as many ranks as the
    /// run had (a rank's place in an epoch depends on it).
    pub fn resume_with(run: &Path, device: Option<String>, dist: Arc<dyn Collective>) -> Result<Trainer> {
        let cfg_path = run.join(CONFIG_FILE);
        if !cfg_path.is_file() {
            return Err(TrainError::Config {
                path: run.into(),
                reason: format!("no {CONFIG_FILE}: not a run folder (start one with --config)"),
            });
        }
        let mut cfg = TrainConfig::load(&cfg_path, &[])?;
        if let Some(d) = device {
            cfg.device = d;
        }
        if cfg.data.loader.world != dist.world() {
            return Err(TrainError::Config {
                path: cfg_path,
                reason: format!(
                    "the run was trained on {} rank(s) and this job has {}: resume it with the same number \
                     (`mpirun -np {}`; 1 = without mpirun)",
                    cfg.data.loader.world,
                    dist.world(),
                    cfg.data.loader.world
                ),
            });
        }
        cfg.data.loader.rank = dist.rank();
        if dist.rank() == 0 {
            depth_core::atomic::sweep_stale_temps(run);
        }
        let ckpt = checkpoint::latest(&run.join("checkpoints"))?;
        match &ckpt {
            Some(c) => tracing::info!("resuming {} from step {}", run.display(), c.step),
            None => tracing::info!("{} has no checkpoint yet: starting it from the beginning", run.display()),
        }
        Self::build(cfg, run.into(), ckpt, false, dist)
    }

    /// Opens everything a run needs; a `new_run` writes its folder only once all of it opened,
    /// so a config that cannot run (a missing dataset, a bad encoder file) leaves nothing.
    fn build(
        cfg: TrainConfig,
        run: PathBuf,
        ckpt: Option<Checkpoint>,
        new_run: bool,
        dist: Arc<dyn Collective>,
    ) -> Result<Trainer> {
        let lead = dist.rank() == 0;
        let device = depth_core::parse_device(&cfg.device)?;
        let model_cfg =
            cfg.model.config().map_err(|reason| TrainError::Config { path: run.clone(), reason })?;
        let init = match &ckpt {
            Some(c) => WeightsInit::Full(c.model.to_string_lossy().into_owned()),
            None => cfg.model.init(),
        };
        let built = build_trainable(&model_cfg, &init, cfg.model.seed, &device)?;
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
        let all =
            parameters(&built.varmap).map_err(|reason| TrainError::BadInput { what: "model", reason })?;
        let optim = AdamW::new(groups_for(&all, &cfg.optim))?;
        let params = optim.params();
        broadcast_vars(dist.as_ref(), &params)?;
        let ema = cfg.optim.ema.map(|d| Ema::new(d, &params)).transpose()?;
        let (loader, pseudo) = open_loader(&cfg)?;
        let frozen = match &cfg.loss.feature_align {
            Some(fa) => {
                let enc = load_frozen_encoder(&fa.encoder, &model_cfg.vit, &device)?;
                Some(enc)
            }
            None => None,
        };
        let validator = match (&cfg.validate, lead) {
            (Some(v), true) => Some(Validator::new(v, cfg.task, &run)?),
            _ => None,
        };
        let objective = Objective {
            gm_weight: cfg.loss.gm_weight,
            trim_pseudo: cfg.loss.trim_pseudo,
            scales: cfg.loss.scales,
        };
        if new_run && lead {
            let ckpts = run.join("checkpoints");
            std::fs::create_dir_all(&ckpts).map_err(|e| TrainError::io(&ckpts, e))?;
            let text = cfg.to_toml();
            depth_core::atomic::write_atomic(&run.join(CONFIG_FILE), |w| w.write_all(text.as_bytes()))?;
        }
        let log = lead
            .then(|| RunLog::open(&run, ckpt.as_ref().map(|c| c.step), cfg.log.tensorboard))
            .transpose()?;
        let mut trainer = Trainer {
            log,
            state: TrainerState {
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
            loader,
            iter: None,
            pseudo,
            objective,
            frozen,
            validator,
            dist,
        };
        if let Some(c) = ckpt {
            trainer.restore(&c)?;
        }
        Ok(trainer)
    }

    /// Loads the optimiser, EMA and trainer state of a checkpoint (its model is already built).
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
        let strip = |prefix: &str| -> TensorMap {
            tensors
                .iter()
                .filter_map(|(k, v)| k.strip_prefix(prefix).map(|k| (k.to_string(), v.clone())))
                .collect()
        };
        let moments: TensorMap = tensors
            .iter()
            .filter(|(k, _)| !k.starts_with("ema."))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        self.optim
            .load_state(&moments, &self.state.optim)
            .map_err(|e| TrainError::checkpoint(&c.state, e.to_string()))?;
        if let Some(ema) = &mut self.ema {
            ema.load(&strip("ema.")).map_err(|e| TrainError::checkpoint(&c.state, e.to_string()))?;
        }
        Ok(())
    }

    pub fn run_dir(&self) -> &Path {
        &self.run
    }

    pub fn state(&self) -> &TrainerState {
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
    /// final model (`final.safetensors`: the EMA weights when enabled).
    pub fn run(&mut self, bar: &indicatif::ProgressBar) -> Result<Outcome> {
        let started = (Instant::now(), self.state.images);
        let last_loss = self.run_until(self.cfg.schedule.steps, bar)?;
        let final_model = self.run.join(FINAL_MODEL);
        if let Some(log) = &self.log {
            save_model(&self.eval_tensors()?, &self.model_cfg, &self.model_meta(), &final_model)?;
            log.plot()?;
        }
        let secs = started.0.elapsed().as_secs_f64();
        Ok(Outcome {
            run: self.run.clone(),
            steps: self.state.step,
            skipped_steps: self.state.skipped_steps,
            last_loss,
            images_per_s: (self.state.images - started.1) as f64 / secs.max(1e-9),
            final_model,
            best: self.state.best.clone(),
        })
    }

    /// Trains until `stop` steps are done (at most `schedule.steps`); returns the last loss.
    pub fn run_until(&mut self, stop: u64, bar: &indicatif::ProgressBar) -> Result<Option<f64>> {
        let total = self.cfg.schedule.steps;
        bar.set_length(total);
        bar.set_position(self.state.step);
        let mut last_loss = None;
        while self.state.step < stop.min(total) {
            let rec = self.train_step()?;
            let step = rec.step;
            last_loss = Some(rec.loss);
            let lr = rec.lr.values().next().copied().unwrap_or(0.0);
            bar.set_message(format!("loss {:.4} lr {lr:.2e} {:.1} img/s", rec.loss, rec.images_per_s));
            bar.set_position(step);
            if let Some(log) = &mut self.log {
                log.step(rec)?;
            }
            let last = step == total;
            if let Some(v) = &self.cfg.validate
                && (step % v.every == 0 || last)
            {
                self.validate()?;
            }
            if self.log.is_some() && (step % self.cfg.checkpoint.every == 0 || last) {
                self.save_checkpoint()?;
            }
            if let Some(log) = &self.log
                && (step % self.cfg.log.plot_every == 0 || last)
            {
                log.plot()?;
            }
        }
        Ok(last_loss)
    }

    /// The next batch, starting the next epoch when one ends.
    fn next_batch(&mut self) -> Result<Batch> {
        let mut fresh_epoch = false;
        loop {
            let iter = self.iter.get_or_insert_with(|| self.loader.iter(self.state.cursor));
            match iter.next() {
                Some(b) => {
                    let b = b?;
                    self.state.cursor = b.cursor;
                    return Ok(b);
                }
                None if fresh_epoch => {
                    return Err(TrainError::BadInput {
                        what: "data",
                        reason: format!(
                            "epoch {} yields no full batch of {}: add data, raise epoch_size or lower batch_size",
                            self.state.cursor.epoch,
                            self.loader.config().batch_size
                        ),
                    });
                }
                None => {
                    self.state.cursor = Cursor { epoch: self.state.cursor.epoch + 1, position: 0 };
                    self.iter = None;
                    fresh_epoch = true;
                }
            }
        }
    }

    /// One optimiser step; returns its record (not yet logged).
    pub fn train_step(&mut self) -> Result<StepRecord> {
        let t0 = Instant::now();
        let step = self.state.step;
        self.optim.set_lr_factor(self.cfg.schedule.factor(step));
        let accumulate = self.cfg.optim.accumulate;
        let mut grads = Grads::default();
        let mut terms: BTreeMap<String, f64> = BTreeMap::new();
        let (mut loss_sum, mut images, mut bad) = (0.0, 0usize, None);
        for _ in 0..accumulate {
            let batch = self.next_batch()?;
            images += batch.ids.len();
            let (loss, parts) = self.loss(&batch)?;
            let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            loss_sum += value;
            for (k, v) in parts {
                *terms.entry(k).or_default() += v / accumulate as f64;
            }
            if !value.is_finite() {
                bad = Some(format!("loss {value}"));
                continue;
            }
            let store = (loss / accumulate as f64)?.backward()?;
            grads.accumulate(Grads::from_store(&store, &self.params))?;
        }
        if self.dist.world() > 1 {
            let (l, n, other_bad) =
                self.average_over_ranks(&mut grads, &mut terms, loss_sum, images, bad.is_some())?;
            (loss_sum, images) = (l, n);
            if other_bad && bad.is_none() {
                bad = Some("a non-finite loss on another rank".into());
            }
        }
        let norm = match self.cfg.optim.grad_clip {
            Some(max) => grads.clip(max)?,
            None => grads.global_norm()?,
        };
        if bad.is_none() && !norm.is_finite() {
            bad = Some(format!("gradient norm {norm}"));
        }
        let lr = self.optim.groups().map(|(n, s)| (n.to_string(), s.lr)).collect();
        self.state.step += 1;
        self.state.images += images as u64;
        match &bad {
            None => {
                self.optim.step(&grads)?;
                if let Some(ema) = &mut self.ema {
                    ema.update(&self.params)?;
                }
                self.state.bad_in_row = 0;
            }
            Some(detail) => {
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
                        detail: detail.clone(),
                    });
                }
            }
        }
        Ok(StepRecord {
            step: self.state.step,
            loss: loss_sum / accumulate as f64,
            terms,
            lr,
            grad_norm: norm,
            images_per_s: images as f64 / t0.elapsed().as_secs_f64().max(1e-9),
            skipped: bad.is_some(),
        })
    }

    /// Averages the step's gradients, loss and terms over the ranks (every rank gets the same
    /// bits); returns the mean loss sum, the images of all ranks, and whether any rank had a
    /// non-finite loss. The gradients travel as one flat buffer over every optimised parameter
    /// (zeros where a rank has none), so each rank sends the same length whatever happened.
    fn average_over_ranks(
        &self,
        grads: &mut Grads,
        terms: &mut BTreeMap<String, f64>,
        loss_sum: f64,
        images: usize,
        bad: bool,
    ) -> Result<(f64, usize, bool)> {
        let world = self.dist.world();
        let mut flat = Vec::new();
        for (name, var) in &self.params {
            match grads.get(name) {
                Some(g) => flat.extend(g.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?),
                None => flat.resize(flat.len() + var.elem_count(), 0.0),
            }
        }
        self.dist.sum_f32(&mut flat)?;
        let mut summed = BTreeMap::new();
        let mut at = 0;
        for (name, var) in &self.params {
            let n = var.elem_count();
            if let Some(g) = grads.get(name) {
                let sum = Tensor::from_slice(&flat[at..at + n], g.shape(), g.device())?;
                summed.insert(name.clone(), sum.to_dtype(g.dtype())?);
            }
            at += n;
        }
        *grads = Grads::from_map(summed);
        grads.scale(1.0 / world as f64)?;
        // loss, images, bad, then each term's sum and the ranks that had it
        let mut stats = vec![loss_sum, images as f64, f64::from(u8::from(bad))];
        for name in TERMS {
            stats.extend(terms.get(name).map_or([0.0, 0.0], |v| [*v, 1.0]));
        }
        debug_assert!(terms.keys().all(|k| TERMS.contains(&k.as_str())), "a loss term missing from TERMS");
        self.dist.sum_f64(&mut stats)?;
        terms.clear();
        for (i, name) in TERMS.iter().enumerate() {
            let (sum, ranks) = (stats[3 + 2 * i], stats[4 + 2 * i]);
            if ranks > 0.0 {
                terms.insert(name.to_string(), sum / ranks);
            }
        }
        Ok((stats[0] / world as f64, stats[1] as usize, stats[2] > 0.0))
    }

    /// The batch's loss and its terms.
    fn loss(&self, batch: &Batch) -> Result<(Tensor, Vec<(String, f64)>)> {
        let x = batch.image.to_device(&self.device)?;
        let mut feats = self.model.features(&x)?;
        if self.cfg.optim.freeze_encoder {
            for f in &mut feats {
                f.patch_tokens = f.patch_tokens.detach();
                f.class_token = f.class_token.detach();
            }
        }
        let pred = self.model.forward_from(&feats, &x)?;
        let scalar = |t: &Tensor| -> Result<f64> { Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?) };
        match self.cfg.task {
            Task::Metric => {
                let max = self.model_cfg.max_depth.expect("checked: the metric task has max_depth");
                let (target, mask) = metric_targets(batch, self.cfg.loss.min_depth, max)?;
                let (target, mask) = (target.to_device(&self.device)?, mask.to_device(&self.device)?);
                let loss = silog_loss(&pred, &target, &mask, self.cfg.loss.silog_lambda)?;
                let v = scalar(&loss)?;
                Ok((loss, vec![("silog".into(), v)]))
            }
            Task::Relative => {
                let (target, mask) = relative_targets(batch)?;
                let (target, mask) = (target.to_device(&self.device)?, mask.to_device(&self.device)?);
                let pseudo: Vec<bool> = batch.sources.iter().map(|&s| self.pseudo[s]).collect();
                let (ssi, gm) = self.objective.terms(&pred, &target, &mask, &pseudo)?;
                let mut parts = vec![("ssi".to_string(), scalar(&ssi)?), ("gm".to_string(), scalar(&gm)?)];
                let mut loss = (ssi + (gm * self.objective.gm_weight)?)?;
                if let (Some(enc), Some(fa)) = (&self.frozen, &self.cfg.loss.feature_align)
                    && pseudo.iter().any(|&p| p)
                {
                    let idx: Vec<u32> = (0..pseudo.len() as u32).filter(|&i| pseudo[i as usize]).collect();
                    let idx = Tensor::new(idx.as_slice(), &self.device)?;
                    let last = enc.config().depth - 1;
                    let teacher = enc.get_intermediate_layers(&x.index_select(&idx, 0)?, &[last])?;
                    let student = feats
                        .last()
                        .expect("four layers")
                        .patch_tokens
                        .contiguous()?
                        .index_select(&idx, 0)?;
                    let fa_loss = feature_alignment_loss(&student, &teacher[0].patch_tokens, fa.margin)?;
                    parts.push(("feature_align".into(), scalar(&fa_loss)?));
                    loss = (loss + (fa_loss * fa.weight)?)?;
                }
                Ok((loss, parts))
            }
        }
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
        if let Some(score) = rec.score {
            let improved = self.state.best.as_ref().is_none_or(|b| v.better(score, b.value));
            if improved {
                let best = Best { step: self.state.step, metric: v.metric().to_string(), value: score };
                save_model(
                    &self.eval_tensors()?,
                    &self.model_cfg,
                    &self.model_meta(),
                    &self.run.join(BEST_MODEL),
                )?;
                let json = serde_json::to_vec_pretty(&best).expect("serialises");
                depth_core::atomic::write_atomic(&self.run.join("best.json"), |w| w.write_all(&json))?;
                self.state.best = Some(best);
            }
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
            state_json: serde_json::to_string(&self.state).expect("the trainer state serialises"),
        };
        checkpoint::write(&self.run.join("checkpoints"), &contents, self.cfg.checkpoint.keep_last)
    }
}

/// Every loss term a step can log (averaged over the ranks by name).
const TERMS: [&str; 4] = ["ssi", "gm", "feature_align", "silog"];

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

/// The loader over the configured sources, and which of them carry pseudo-labels.
fn open_loader(cfg: &TrainConfig) -> Result<(Loader, Vec<bool>)> {
    let mut data: Option<DataConfig> = None;
    let mut sources = Vec::new();
    let mut pseudo = Vec::new();
    for s in &cfg.data.sources {
        let (dataset, default_labels) = match (&s.dataset, &s.synth) {
            (Some(name), _) => {
                if data.is_none() {
                    data = Some(DataConfig::load(&cfg.data.config)?);
                }
                let spec = data.as_ref().expect("loaded").get(name)?;
                let labels = if spec.kind == Kind::Pseudo { Labels::Pseudo } else { Labels::Gt };
                (spec.open()?, labels)
            }
            (None, Some(sy)) => {
                (std::sync::Arc::new(sy.open()?) as std::sync::Arc<dyn depth_data::Dataset>, Labels::Gt)
            }
            (None, None) => unreachable!("checked: a source names a dataset or synth"),
        };
        pseudo.push(s.labels.unwrap_or(default_labels) == Labels::Pseudo);
        sources.push(Source { dataset, ratio: s.ratio, strong: s.strong });
    }
    Ok((Loader::new(sources, cfg.data.loader.clone())?, pseudo))
}

/// Relative task targets: disparity (1/depth for depth targets; pseudo-labels as they are) and
/// the mask of usable pixels, (B, H, W) on the CPU.
fn relative_targets(batch: &Batch) -> Result<(Tensor, Tensor)> {
    let (b, h, w) = batch.target.dims3()?;
    let t = batch.target.flatten_from(1)?.to_vec2::<f32>()?;
    let m = batch.mask.flatten_from(1)?.to_vec2::<f32>()?;
    let mut target = Vec::with_capacity(b * h * w);
    let mut mask = Vec::with_capacity(b * h * w);
    for i in 0..b {
        for (&v, &ok) in t[i].iter().zip(&m[i]) {
            let (value, valid) = match batch.kinds[i] {
                Some(TargetKind::Depth) if ok > 0.0 && v > 0.0 && v.is_finite() => (1.0 / v, true),
                Some(TargetKind::Disparity) if ok > 0.0 && v.is_finite() => (v, true),
                _ => (0.0, false),
            };
            target.push(value);
            mask.push(f32::from(u8::from(valid)));
        }
    }
    Ok((Tensor::from_vec(target, (b, h, w), &Device::Cpu)?, Tensor::from_vec(mask, (b, h, w), &Device::Cpu)?))
}

/// Metric task targets: depth, valid where min ≤ depth ≤ max (non-depth targets masked out).
fn metric_targets(batch: &Batch, min: f64, max: f64) -> Result<(Tensor, Tensor)> {
    let depth: Vec<f32> =
        batch.kinds.iter().map(|k| f32::from(u8::from(*k == Some(TargetKind::Depth)))).collect();
    let is_depth = Tensor::new(depth.as_slice(), &Device::Cpu)?.reshape(((), 1, 1))?;
    let t = &batch.target;
    let in_range = (t.ge(min)?.to_dtype(DType::F32)? * t.le(max)?.to_dtype(DType::F32)?)?;
    let mask = ((&batch.mask * in_range)?.broadcast_mul(&is_depth))?;
    Ok((t.clone(), mask))
}
