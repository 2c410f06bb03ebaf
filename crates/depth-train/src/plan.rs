//! `--dry-run`: what a training config would do — the model and its parameter counts, the
//! data sources (and whether they can be opened), steps, images, optimiser groups — and an
//! estimate of its time on the chosen device from a probe: a few training steps of the same
//! model at the same crop with a small batch, scaled linearly to the configured batch.

use crate::config::{Task, TrainConfig};
use crate::error::Result;
use crate::grads::Grads;
use crate::optim::{AdamW, groups_for};
use candle_core::{DType, Device, Tensor};
use depth_core::CoreError;
use depth_core::config::ConfigFile;
use depth_data::{DataConfig, DatasetRef};
use depth_losses::Objective;
use depth_models::{ModelConfig, WeightsInit, WeightsSource, build_trainable, parameters};
use std::fmt::Write as _;
use std::time::Instant;

/// Seconds per training image measured on `device` for `cfg` at `crop`, with batch `batch`.
fn probe(cfg: &ModelConfig, crop: usize, batch: usize, device: &Device) -> Result<f64> {
    let t = build_trainable(cfg, &WeightsInit::Scratch, 0, device)?;
    let params = parameters(&t.varmap)?;
    let mut optim = AdamW::new(groups_for(&params, &Default::default()))?;
    let trained = optim.params();
    let x = Tensor::randn(0f32, 1.0, (batch, 3, crop, crop), device)?;
    let target = (Tensor::rand(0f32, 1.0, (batch, crop, crop), device)? + 0.1)?;
    let mask = Tensor::ones((batch, crop, crop), DType::F32, device)?;
    let objective = Objective::default();
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t0 = Instant::now();
        let pred = (t.model.forward(&x)? + 0.5)?; // a fresh ReLU head may output zeros
        let loss = objective.loss(&pred, &target, &mask, &vec![false; batch])?;
        optim.step(&Grads::from_store(&loss.backward()?, &trained))?;
        // the result must be on the host before the clock stops
        loss.to_dtype(DType::F32)?.to_device(&Device::Cpu)?;
        best = best.min(t0.elapsed().as_secs_f64());
    }
    Ok(best / batch as f64)
}

fn human(seconds: f64) -> String {
    match seconds {
        s if s < 120.0 => format!("{s:.0} s"),
        s if s < 7200.0 => format!("{:.1} min", s / 60.0),
        s if s < 172_800.0 => format!("{:.1} h", s / 3600.0),
        s => format!("{:.1} days", s / 86400.0),
    }
}

/// The plan of `cfg` as text.
pub fn dry_run(cfg: &TrainConfig) -> Result<String> {
    let mut s = String::new();
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
    let batch = cfg.data.loader.batch_size * cfg.optim.accumulate;
    let images = cfg.schedule.steps as f64 * batch as f64;
    let _ = writeln!(
        s,
        "steps: {} × batch {} ({} × accumulate {}) = {:.3} M images; warmup {}, poly {}",
        cfg.schedule.steps,
        batch,
        cfg.data.loader.batch_size,
        cfg.optim.accumulate,
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
    let probe_batch = cfg.data.loader.batch_size.min(2);
    let per_image = probe(&model, crop, probe_batch, &device)?;
    let _ = writeln!(
        s,
        "probe on {}: {:.3} s per image at {crop}² (batch {probe_batch}) → {:.2} images/s",
        cfg.device,
        per_image,
        1.0 / per_image
    );
    let _ = writeln!(
        s,
        "estimated training time: {} (linear in the batch from the probe; data loading and validation not included)",
        human(per_image * images)
    );
    Ok(s)
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
