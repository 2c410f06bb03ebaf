//! `--dry-run`: what a training config would do — the model and its parameter counts, the
//! data sources (and whether they can be opened), steps, images, optimiser groups — and an
//! estimate of its time on the chosen device from a probe: a few training steps of the same
//! model at the same crop with a small batch, scaled linearly to the configured batch — and of
//! its memory per rank (activations per image from the host's peak at batch 1 and 2), against
//! the device's; a plan that cannot fit is refused with what would make it fit.

use crate::batch::BatchPlan;
use crate::config::{Task, TrainConfig};
use crate::error::{Result, TrainError};
use crate::grads::Grads;
use crate::optim::{AdamW, groups_for};
use crate::task::Pass;
use candle_core::{DType, Device, Tensor};
use depth_core::config::ConfigFile;
use depth_core::{CoreError, Precision};
use depth_data::{DataConfig, DatasetRef};
use depth_losses::Objective;
use depth_models::{ModelConfig, Trainable, WeightsInit, WeightsSource, build_trainable, parameters};
use std::fmt::Write as _;
use std::time::Instant;

/// What a probe measured: time and memory of training steps of the configured model.
struct Probe {
    /// Seconds per image at the probe's batch on the configured device.
    seconds_per_image: f64,
    /// Host bytes a step holds per image in the batch: the activations kept for backward (None
    /// where the OS cannot tell).
    activations_per_image: Option<u64>,
}

/// A few training steps of `cfg` at `crop` with the run's precision and checkpointing. The time
/// comes from `device` at batch `batch`; the memory from the host's peak resident memory at
/// batch 1 and batch 2 (their difference is one image's activations), measured on the CPU
/// whatever the device: the tensors a step keeps are the same on a GPU, which adds its
/// libraries' workspaces and allocator slack.
fn probe(run: &TrainConfig, cfg: &ModelConfig, crop: usize, batch: usize, device: &Device) -> Result<Probe> {
    let pass = Pass { freeze_encoder: run.optim.freeze_encoder, recompute: run.activation_checkpointing };
    let step = |t: &Trainable, optim: &mut AdamW, batch: usize, device: &Device| -> Result<f64> {
        let x = Tensor::randn(0f32, 1.0, (batch, 3, crop, crop), device)?;
        let target = (Tensor::rand(0f32, 1.0, (batch, crop, crop), device)? + 0.1)?;
        let mask = Tensor::ones((batch, crop, crop), DType::F32, device)?;
        let t0 = Instant::now();
        let f = pass.forward(&t.model, &x)?;
        let pred = (f.pred + 0.5)?; // a fresh ReLU head may output zeros
        let loss = Objective::default().loss(&pred, &target, &mask, &vec![false; batch])?;
        let mut store = loss.backward()?;
        if let Some(r) = f.recompute {
            r.backward(&mut store)?;
        }
        optim.step(&Grads::from_store(&store, &optim.params()))?;
        // the result must be on the host before the clock stops
        loss.to_dtype(DType::F32)?.to_device(&Device::Cpu)?;
        Ok(t0.elapsed().as_secs_f64())
    };
    let build = |device: &Device| -> Result<(Trainable, AdamW)> {
        let mut t = build_trainable(cfg, &WeightsInit::Scratch, 0, device)?;
        t.model = t.model.with_precision(run.precision);
        let params = parameters(&t.varmap)?;
        let optim = AdamW::new(groups_for(&params, &run.optim))?;
        Ok((t, optim))
    };
    let (t, mut optim) = build(device)?;
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        best = best.min(step(&t, &mut optim, batch, device)?);
    }
    drop((t, optim));
    // the memory, on a fresh model (what the timed batch left resident would hide batch 1's
    // peak): AdamW's state exists after a first step, then one step at each batch, smaller first
    let host = Device::Cpu;
    let (t, mut optim) = build(&host)?;
    step(&t, &mut optim, 1, &host)?;
    let mut peak = |batch: usize| -> Result<Option<u64>> {
        if !depth_core::machine::reset_peak_resident_memory() {
            return Ok(None);
        }
        step(&t, &mut optim, batch, &host)?;
        Ok(depth_core::machine::peak_resident_memory())
    };
    let (one, two) = (peak(1)?, peak(2)?);
    Ok(Probe {
        seconds_per_image: best / batch as f64,
        activations_per_image: one.zip(two).map(|(a, b)| b.saturating_sub(a)),
    })
}

fn gib(bytes: u64) -> String {
    match bytes as f64 {
        b if b < (1u64 << 30) as f64 => format!("{:.0} MiB", b / (1u64 << 20) as f64),
        b => format!("{:.2} GiB", b / (1u64 << 30) as f64),
    }
}

fn human(seconds: f64) -> String {
    match seconds {
        s if s < 120.0 => format!("{s:.0} s"),
        s if s < 7200.0 => format!("{:.1} min", s / 60.0),
        s if s < 172_800.0 => format!("{:.1} h", s / 3600.0),
        s => format!("{:.1} days", s / 86400.0),
    }
}

/// The plan of `cfg` on `ranks` ranks, written to `s` line by line: a plan refused (it cannot
/// fit, its batch does not split) leaves what was found before the refusal in `s`.
pub fn dry_run(cfg: &TrainConfig, ranks: usize, s: &mut String) -> Result<()> {
    let model = cfg.model.config().map_err(|e| CoreError::bad_input("model", e))?;
    let total = model.parameter_count();
    let _ = writeln!(s, "run folder: {}", cfg.out.display());
    let _ = writeln!(s, "task: {:?}; device: {}", cfg.task, cfg.device);
    let vit = &model.vit;
    let _ = writeln!(
        s,
        "student: ViT {}×{} ({} heads, {:?}), DPT head {} features; {:.2} M parameters{}",
        vit.embed_dim,
        vit.depth,
        vit.num_heads,
        vit.ffn,
        model.head.features,
        total as f64 / 1e6,
        match model.official_encoder() {
            Some(e) => format!(" (the official {})", e.name()),
            None => String::new(),
        }
    );
    let _ = writeln!(s, "init: {:?}", cfg.model.init);
    if let Some(t) = &cfg.teacher {
        let size = t.model.expect.or(match &t.model.source {
            WeightsSource::Official(e) => Some(*e),
            _ => None,
        });
        match size {
            Some(e) => {
                let n = ModelConfig::official(e).parameter_count();
                let _ = writeln!(
                    s,
                    "teacher: {} ({:.1} M parameters), labels at input size {}",
                    t.model.spec(),
                    n as f64 / 1e6,
                    t.input_size
                );
            }
            None => {
                let _ = writeln!(s, "teacher: {} at input size {}", t.model.spec(), t.input_size);
            }
        }
    }
    let plan =
        BatchPlan::new(cfg.data.loader.batch_size, ranks, cfg.optim.per_rank_batch, cfg.optim.accumulate)
            .map_err(|e| CoreError::config(&cfg.out, e))?;
    let images = cfg.schedule.steps as f64 * plan.batch as f64;
    let _ = writeln!(
        s,
        "steps: {} × {plan} = {:.3} M images; warmup {}, poly {}",
        cfg.schedule.steps,
        images / 1e6,
        cfg.schedule.warmup,
        cfg.schedule.power
    );
    let data = DataConfig::load(&cfg.data.config, &[]);
    for (i, src) in cfg.data.sources.iter().enumerate() {
        let (what, available) = match &src.data {
            DatasetRef::Named(d) => {
                let opened = data
                    .as_ref()
                    .map_err(|e| e.to_string())
                    .and_then(|c| c.get(d).and_then(|spec| spec.open()).map_err(|e| e.to_string()));
                let available = match opened {
                    Ok(ds) => format!("{} items (≈ {:.1} epochs)", ds.len(), images / ds.len().max(1) as f64),
                    Err(e) => format!("NOT AVAILABLE: {}", e.lines().next().unwrap_or("")),
                };
                (format!("dataset '{d}'"), available)
            }
            DatasetRef::Synth(sy) => {
                (format!("{} procedural scenes (seed {})", sy.count, sy.seed), "generated on the fly".into())
            }
        };
        let _ = writeln!(s, "source {i}: {what}, ratio {}, labels {:?}: {available}", src.ratio, src.labels);
    }
    let _ = writeln!(s, "optimizer: AdamW {}", optimizer_summary(cfg));
    if cfg.task == Task::Metric {
        let _ = writeln!(
            s,
            "objective: SiLog λ {} on depth in [{}, {:?}]",
            cfg.loss.silog_lambda, cfg.loss.min_depth, model.max_depth
        );
    } else {
        let _ = writeln!(
            s,
            "objective: L_ssi + {}·L_gm ({} scales), pseudo-labels trimmed {}%",
            cfg.loss.gm_weight,
            cfg.loss.scales,
            cfg.loss.trim_pseudo * 100.0
        );
    }
    let device = cfg.device.open()?;
    let aug = &cfg.data.loader.augment;
    let crop = aug.crop.unwrap_or(aug.input_size);
    let probe_batch = plan.per_rank.min(2);
    let p = probe(cfg, &model, crop, probe_batch, &device)?;
    let _ = writeln!(
        s,
        "probe on {} ({}, activation checkpointing {}): {:.3} s per image at {crop}² (batch {probe_batch}) → {:.2} images/s",
        cfg.device,
        cfg.precision,
        if cfg.activation_checkpointing { "on" } else { "off" },
        p.seconds_per_image,
        1.0 / p.seconds_per_image
    );
    let _ = writeln!(
        s,
        "estimated training time: {} (linear in the batch from the probe; data loading and validation not included)",
        human(p.seconds_per_image * images)
    );
    if let Some(measured) = p.activations_per_image {
        // float32 weights, gradients and AdamW's two moments (a frozen encoder has only weights)
        let trained = if cfg.optim.freeze_encoder { total - model.encoder_parameter_count() } else { total };
        let fixed = 4 * total as u64 + 12 * trained as u64;
        let extra = if device.is_cuda() { composed_attention_bytes(&model, crop, cfg) } else { 0 };
        if extra > 0 {
            let _ = writeln!(
                s,
                "CUDA composes float32 attention (the host's kernel is fused): + {} of attention scores per image \
                 (heads × N² × 12 bytes per block kept for backward; computed, not measured)",
                gib(extra)
            );
        }
        let per_image = measured + extra;
        let need = fixed + per_image * plan.per_rank as u64;
        let _ = writeln!(
            s,
            "memory per rank: {} activations per image (measured on the host: peak at batch 2 − at batch 1) × {} + {} \
             weights, gradients, AdamW state = {} (not counted: the CUDA context and library workspaces)",
            gib(per_image),
            plan.per_rank,
            gib(fixed),
            gib(need)
        );
        // the CPU's ranks share this machine's memory; each GPU is one rank's
        let have = depth_core::machine::device_memory(&device)
            .map(|m| if device.is_cpu() { m / plan.ranks as u64 } else { m });
        if let Some(have) = have {
            let _ = writeln!(s, "device memory per rank: {}", gib(have));
            if need > have {
                return Err(TrainError::WontFit {
                    plan: plan.to_string(),
                    memory: format!(
                        "about {} per rank on {}, which has {}",
                        gib(need),
                        cfg.device,
                        gib(have)
                    ),
                    hint: fit_hint(cfg, plan.per_rank, per_image, fixed, have),
                });
            }
        }
    }
    Ok(())
}

/// The attention scores a float32 step on CUDA keeps beyond the host's: there attention is
/// q·kᵀ, its scaling and its softmax as three N×N tensors per head (12 bytes an entry) that the
/// graph holds until backward, in every block — or in one at a time with checkpointing. On the
/// host the fused kernel holds none, and under bf16 both compose alike (measured).
fn composed_attention_bytes(model: &ModelConfig, crop: usize, cfg: &TrainConfig) -> u64 {
    if cfg.precision != Precision::F32 || cfg.optim.freeze_encoder {
        return 0;
    }
    let tokens = (crop / model.vit.patch_size).pow(2) as u64 + 1;
    let blocks = if cfg.activation_checkpointing { 1 } else { model.vit.depth as u64 };
    12 * model.vit.num_heads as u64 * tokens * tokens * blocks
}

/// How to make a plan fit: the per-rank batch that would, and the switches not yet on.
fn fit_hint(cfg: &TrainConfig, per_rank: usize, per_image: u64, fixed: u64, have: u64) -> String {
    let fits = if have > fixed { ((have - fixed) / per_image.max(1)) as usize } else { 0 };
    let mut hints = Vec::new();
    if fits >= 1 && fits < per_rank {
        hints.push(format!(
            "set optim.per_rank_batch to at most {fits} (accumulation makes up the batch of {})",
            cfg.data.loader.batch_size
        ));
    }
    if !cfg.activation_checkpointing && !cfg.optim.freeze_encoder {
        hints.push("set activation_checkpointing = true".to_string());
    }
    if cfg.precision == Precision::F32 {
        hints.push("set precision = \"bf16\"".to_string());
    }
    if hints.is_empty() {
        hints.push("use more ranks or a device with more memory".to_string());
    }
    hints.join("; or ")
}

/// The groups and their settings.
fn optimizer_summary(cfg: &TrainConfig) -> String {
    let o = &cfg.optim;
    format!(
        "encoder lr {:e}{}, decoder lr {:e}, weight decay {} ({}), betas {:?}{}{}",
        o.lr,
        if o.freeze_encoder { " (frozen)" } else { "" },
        o.lr * o.decoder_lr_mult,
        o.weight_decay,
        if o.exempt_no_decay { "not on norms, biases, tokens, LayerScale" } else { "on every parameter" },
        o.betas,
        o.grad_clip.map_or(String::new(), |c| format!(", clip {c}")),
        o.ema.map_or(String::new(), |e| format!(", EMA {e}"))
    )
}
