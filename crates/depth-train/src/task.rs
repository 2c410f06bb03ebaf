//! Why this file: what differs between relative distillation and metric fine-tuning is how a
//! batch becomes targets and a loss. Each task owns exactly that, behind [`TaskStep`]; the
//! learner loops, optimises and checkpoints, and knows no task.
//!
//! - [`Relative`]: disparity targets (1/depth for depth ground truth, pseudo-labels as they
//!   are), L_ssi + gm_weight·L_gm with the largest residuals of pseudo-labelled samples
//!   trimmed, plus feature alignment to a frozen encoder on the pseudo-labelled samples.
//! - [`Metric`]: depth targets valid in [min_depth, max_depth], SiLog, as the official
//!   `metric_depth/train.py`.

use crate::config::{FeatureAlign, Task, TrainConfig};
use crate::error::Result;
use candle_core::{DType, Device, Tensor};
use depth_data::{Batch, TargetKind};
use depth_losses::{Objective, feature_alignment_loss, silog_loss};
use depth_models::{
    DepthAnythingV2, DinoVisionTransformer, LayerOutput, ModelConfig, Recompute, load_frozen_encoder,
};

/// A batch's loss and the values of the terms it logs.
pub struct StepLoss {
    /// The scalar to minimise.
    pub loss: Tensor,
    /// (name, value) of each term this batch has, names from [`TaskStep::term_names`].
    pub terms: Vec<(&'static str, f64)>,
    /// With activation checkpointing: the encoder's part of the backward, which the learner
    /// runs after `loss.backward()`.
    pub recompute: Option<Recompute>,
}

/// What a task owns of a training step.
pub trait TaskStep: Send {
    /// Every term [`TaskStep::loss`] may log (the ranks of a data-parallel run average them by
    /// name, in this order).
    fn term_names(&self) -> &'static [&'static str];

    /// The loss of `batch` under `model`.
    fn loss(&self, model: &DepthAnythingV2, batch: &Batch) -> Result<StepLoss>;
}

/// The task a config trains.
pub fn task_for(cfg: &TrainConfig, model: &ModelConfig, device: &Device) -> Result<Box<dyn TaskStep>> {
    let pass = Pass { freeze_encoder: cfg.optim.freeze_encoder, recompute: cfg.activation_checkpointing };
    Ok(match cfg.task {
        Task::Relative => Box::new(Relative {
            objective: Objective {
                gm_weight: cfg.loss.gm_weight,
                trim_pseudo: cfg.loss.trim_pseudo,
                scales: cfg.loss.scales,
            },
            align: match &cfg.loss.feature_align {
                Some(fa) => Some((load_frozen_encoder(&fa.encoder, &model.vit, device)?, fa.clone())),
                None => None,
            },
            pass,
            device: device.clone(),
        }),
        Task::Metric => Box::new(Metric {
            min_depth: cfg.loss.min_depth,
            max_depth: model.max_depth.ok_or_else(|| {
                depth_core::CoreError::bad_input("model", "the metric task needs model.max_depth")
            })?,
            lambda: cfg.loss.silog_lambda,
            pass,
            device: device.clone(),
        }),
    })
}

/// How a training forward runs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Pass {
    /// The encoder gets no gradient (its features are detached).
    pub freeze_encoder: bool,
    /// Activation checkpointing of the encoder blocks.
    pub recompute: bool,
}

/// A training forward: the encoder features, the prediction (float32 whatever the precision:
/// the loss is computed in float32) and, with checkpointing, the encoder's deferred backward.
pub struct Forward {
    pub features: Vec<LayerOutput>,
    pub pred: Tensor,
    pub recompute: Option<Recompute>,
}

impl Pass {
    pub fn forward(self, model: &DepthAnythingV2, x: &Tensor) -> Result<Forward> {
        let (mut features, recompute) = if self.freeze_encoder {
            // nothing flows back into a frozen encoder: no graph to keep or to recompute
            (model.features(x)?, None)
        } else if self.recompute {
            let (f, r) = model.features_recomputed(x)?;
            (f, Some(r))
        } else {
            (model.features(x)?, None)
        };
        if self.freeze_encoder {
            for f in &mut features {
                f.patch_tokens = f.patch_tokens.detach();
                f.class_token = f.class_token.detach();
            }
        }
        let pred = model.forward_from(&features, x)?.to_dtype(DType::F32)?;
        Ok(Forward { features, pred, recompute })
    }
}

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

/// Relative distillation (and training on relative ground truth).
pub struct Relative {
    objective: Objective,
    /// The frozen encoder features are aligned to, and how.
    align: Option<(DinoVisionTransformer, FeatureAlign)>,
    pass: Pass,
    device: Device,
}

impl Relative {
    /// Disparity (1/depth for depth targets; pseudo-labels as they are) and the mask of usable
    /// pixels, (B, H, W) on the CPU.
    fn targets(batch: &Batch) -> Result<(Tensor, Tensor)> {
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
        let cpu = Device::Cpu;
        Ok((Tensor::from_vec(target, (b, h, w), &cpu)?, Tensor::from_vec(mask, (b, h, w), &cpu)?))
    }
}

impl TaskStep for Relative {
    fn term_names(&self) -> &'static [&'static str] {
        &["ssi", "gm", "feature_align"]
    }

    fn loss(&self, model: &DepthAnythingV2, batch: &Batch) -> Result<StepLoss> {
        let x = batch.image.to_device(&self.device)?;
        let Forward { features: feats, pred, recompute } = self.pass.forward(model, &x)?;
        let (target, mask) = Self::targets(batch)?;
        let (target, mask) = (target.to_device(&self.device)?, mask.to_device(&self.device)?);
        let r = per_region(&pred, &target, &mask, &batch.pseudo, &batch.pasted)?;
        let (ssi, gm) = self.objective.terms(&r.pred, &r.target, &r.mask, &r.pseudo)?;
        let mut terms = vec![("ssi", scalar(&ssi)?), ("gm", scalar(&gm)?)];
        let mut loss = (ssi + (gm * self.objective.gm_weight)?)?;
        if let Some((encoder, fa)) = &self.align
            && batch.pseudo.iter().any(|&p| p)
        {
            let idx: Vec<u32> =
                (0..batch.pseudo.len() as u32).filter(|&i| batch.pseudo[i as usize]).collect();
            let idx = Tensor::new(idx.as_slice(), &self.device)?;
            let last = encoder.config().depth - 1;
            let teacher = depth_core::autocast(model.precision(), || {
                encoder.get_intermediate_layers(&x.index_select(&idx, 0)?, &[last])
            })?;
            let student =
                feats.last().expect("four layers").patch_tokens.contiguous()?.index_select(&idx, 0)?;
            let fa_loss = feature_alignment_loss(&student, &teacher[0].patch_tokens, fa.margin)?;
            terms.push(("feature_align", scalar(&fa_loss)?));
            loss = (loss + (fa_loss * fa.weight)?)?;
        }
        Ok(StepLoss { loss, terms, recompute })
    }
}

/// A batch as the relative objective sees it: each CutMix box apart from the rest of its sample.
struct Regions {
    pred: Tensor,
    target: Tensor,
    mask: Tensor,
    pseudo: Vec<bool>,
}

/// Depth Anything V1's CutMix loss: a sample with a pasted box holds two images' targets, whose
/// relative depths have unrelated scale and shift, so the affine-invariant loss normalises the
/// box and the rest each on their own. Here a pasted sample becomes two rows of the objective's
/// batch — the same prediction and target, masked outside and inside the box — each normalised
/// and weighted as a sample. A batch without boxes is passed on unchanged.
fn per_region(
    pred: &Tensor,
    target: &Tensor,
    mask: &Tensor,
    pseudo: &[bool],
    pasted: &[Option<depth_data::PastedBox>],
) -> Result<Regions> {
    let same = || Regions {
        pred: pred.clone(),
        target: target.clone(),
        mask: mask.clone(),
        pseudo: pseudo.to_vec(),
    };
    if pasted.iter().all(Option::is_none) {
        return Ok(same());
    }
    let (_, h, w) = mask.dims3()?;
    let (mut rows, mut regions, mut flags) = (Vec::new(), Vec::new(), Vec::new());
    for (i, b) in pasted.iter().enumerate() {
        let inside = |x: usize, y: usize| {
            b.is_some_and(|(x0, y0, bw, bh)| x >= x0 && x < x0 + bw && y >= y0 && y < y0 + bh)
        };
        let parts: &[Option<bool>] = if b.is_some() { &[Some(false), Some(true)] } else { &[None] };
        for part in parts {
            rows.push(i as u32);
            flags.push(pseudo[i]);
            regions.extend((0..h * w).map(|k| match part {
                None => 1f32,
                Some(want) => f32::from(u8::from(inside(k % w, k / w) == *want)),
            }));
        }
    }
    let device = mask.device();
    let idx = Tensor::new(rows.as_slice(), device)?;
    let region = Tensor::from_vec(regions, (rows.len(), h, w), &Device::Cpu)?.to_device(device)?;
    Ok(Regions {
        pred: pred.index_select(&idx, 0)?,
        target: target.index_select(&idx, 0)?,
        mask: (mask.index_select(&idx, 0)? * region)?,
        pseudo: flags,
    })
}

/// Metric fine-tuning.
pub struct Metric {
    min_depth: f64,
    max_depth: f64,
    lambda: f64,
    pass: Pass,
    device: Device,
}

impl Metric {
    /// Depth, valid where min ≤ depth ≤ max (non-depth targets masked out).
    fn targets(&self, batch: &Batch) -> Result<(Tensor, Tensor)> {
        let depth: Vec<f32> =
            batch.kinds.iter().map(|k| f32::from(u8::from(*k == Some(TargetKind::Depth)))).collect();
        let is_depth = Tensor::new(depth.as_slice(), &Device::Cpu)?.reshape(((), 1, 1))?;
        let t = &batch.target;
        let in_range =
            (t.ge(self.min_depth)?.to_dtype(DType::F32)? * t.le(self.max_depth)?.to_dtype(DType::F32)?)?;
        let mask = ((&batch.mask * in_range)?.broadcast_mul(&is_depth))?;
        Ok((t.clone(), mask))
    }
}

impl TaskStep for Metric {
    fn term_names(&self) -> &'static [&'static str] {
        &["silog"]
    }

    fn loss(&self, model: &DepthAnythingV2, batch: &Batch) -> Result<StepLoss> {
        let x = batch.image.to_device(&self.device)?;
        let Forward { pred, recompute, .. } = self.pass.forward(model, &x)?;
        let (target, mask) = self.targets(batch)?;
        let (target, mask) = (target.to_device(&self.device)?, mask.to_device(&self.device)?);
        let loss = silog_loss(&pred, &target, &mask, self.lambda)?;
        let value = scalar(&loss)?;
        Ok(StepLoss { loss, terms: vec![("silog", value)], recompute })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pasted box whose target is another affine map of the prediction than the rest: the
    /// per-region loss is zero (each region is exactly an affine map of the prediction); one
    /// normalisation over the whole sample is not.
    #[test]
    fn a_pasted_box_is_normalised_on_its_own() {
        let (h, w) = (16, 20);
        let pred = Tensor::rand(0.5f32, 2.0, (2, h, w), &Device::Cpu).unwrap();
        let p = pred.to_vec3::<f32>().unwrap();
        let boxed = (3, 4, 8, 6);
        let target: Vec<f32> = (0..2 * h * w)
            .map(|k| {
                let (b, y, x) = (k / (h * w), (k / w) % h, k % w);
                let inside = b == 0 && (3..11).contains(&x) && (4..10).contains(&y);
                if inside { 5.0 * p[b][y][x] + 3.0 } else { 2.0 * p[b][y][x] + 1.0 }
            })
            .collect();
        let target = Tensor::from_vec(target, (2, h, w), &Device::Cpu).unwrap();
        let mask = Tensor::ones((2, h, w), DType::F32, &Device::Cpu).unwrap();
        let objective = Objective::default();
        let loss = |r: &Regions| {
            objective.loss(&r.pred, &r.target, &r.mask, &r.pseudo).unwrap().to_scalar::<f32>().unwrap()
        };
        let split = per_region(&pred, &target, &mask, &[true, true], &[Some(boxed), None]).unwrap();
        assert_eq!(split.pseudo, [true, true, true]);
        let whole = per_region(&pred, &target, &mask, &[true, true], &[None, None]).unwrap();
        let (a, b) = (loss(&split), loss(&whole));
        assert!(a < 1e-4 && b > 1e-2, "per region {a}, whole {b}");
        // the two rows of the pasted sample cover each of its pixels once
        let cover = split.mask.narrow(0, 0, 2).unwrap().sum(0).unwrap().flatten_all().unwrap();
        assert!(cover.to_vec1::<f32>().unwrap().iter().all(|&c| c == 1.0));
    }
}
