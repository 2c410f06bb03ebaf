//! AdamW with parameter groups, step for step `torch.optim.AdamW` (decoupled weight decay,
//! bias-corrected moments, per-parameter step counts, parameters without a gradient skipped),
//! each group with its own learning rate, weight decay, betas and eps. Its state — the moments
//! and step counts — is saved and restored exactly, so a resumed run continues bit for bit.
//!
//! Groups are built from depth-models' typed parameters ([`groups_for`]): encoder and decoder,
//! each split into a decaying and a non-decaying group. A frozen part simply has no group, so it
//! keeps no state.

use crate::error::Result;
use crate::grads::Grads;
use candle_core::{Tensor, Var};
use depth_core::CoreError;
use depth_core::config::Invalid;
use depth_core::weights::TensorMap;
use depth_models::{Param, Part};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Whether [`AdamW::step`] changed the weights.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    Done,
    /// Nothing changed: this parameter's update was not finite.
    Refused {
        param: String,
        what: &'static str,
    },
}

/// Whether every value of `t` is finite (0·x is 0 for those, NaN for ±inf and NaN).
fn all_finite(t: &Tensor) -> Result<bool> {
    let probe = t.affine(0.0, 0.0)?.sum_all()?.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
    Ok(probe == 0.0)
}

/// The hyper-parameters of one group (`lr` is the base rate; the schedule scales it).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupSettings {
    pub lr: f64,
    pub weight_decay: f64,
    pub betas: (f64, f64),
    pub eps: f64,
}

/// Named parameters sharing settings.
#[derive(Clone, Debug)]
pub struct ParamGroup {
    pub name: String,
    pub settings: GroupSettings,
    pub params: Vec<(String, Var)>,
}

/// The optimiser's settings for a Depth Anything V2 model: the paper's encoder rate, the
/// decoder at `decoder_lr_mult` times it, AdamW's decay and betas.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    /// The encoder's learning rate (the paper: 5e-6).
    pub lr: f64,
    /// The decoder's rate is this times `lr` (the paper: 10).
    pub decoder_lr_mult: f64,
    pub weight_decay: f64,
    pub betas: (f64, f64),
    pub eps: f64,
    /// Exempt norms, biases, tokens and LayerScale from weight decay (DINOv2's rule). The
    /// official metric_depth/train.py decays every parameter: set false to do the same.
    pub exempt_no_decay: bool,
    /// Train the head only: the encoder gets no gradient and no optimiser state.
    pub freeze_encoder: bool,
    /// Clip the global gradient norm to this (None: no clipping, as the official loop).
    pub grad_clip: Option<f64>,
    /// Forward/backward passes per rank per optimiser step, their gradients averaged; derived
    /// from the batch when left out (see `BatchPlan`).
    pub accumulate: Option<usize>,
    /// Images in one rank's forward pass; derived when left out (see `BatchPlan`).
    pub per_rank_batch: Option<usize>,
    /// Keep an exponential moving average of the weights with this decay (e.g. 0.999).
    pub ema: Option<f64>,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            lr: 5e-6,
            decoder_lr_mult: 10.0,
            weight_decay: 0.01,
            betas: (0.9, 0.999),
            eps: 1e-8,
            exempt_no_decay: true,
            freeze_encoder: false,
            grad_clip: None,
            accumulate: None,
            per_rank_batch: None,
            ema: None,
        }
    }
}

impl OptimConfig {
    pub fn validate(&self) -> std::result::Result<(), Invalid> {
        let (b1, b2) = self.betas;
        let bad = |key: &str, reason: String| Err(Invalid::new(key, reason));
        if !(self.lr > 0.0 && self.decoder_lr_mult > 0.0) {
            return bad(
                "lr",
                format!("lr {} and decoder_lr_mult {} must be positive", self.lr, self.decoder_lr_mult),
            );
        }
        if !((0.0..1.0).contains(&b1) && (0.0..1.0).contains(&b2)) {
            return bad("betas", format!("betas ({b1}, {b2}) must be in [0, 1)"));
        }
        if !(self.eps > 0.0 && self.weight_decay >= 0.0) {
            return bad(
                "eps",
                format!("eps {} must be positive and weight_decay {} ≥ 0", self.eps, self.weight_decay),
            );
        }
        if self.accumulate == Some(0) || self.per_rank_batch == Some(0) {
            return bad("accumulate", "accumulate and per_rank_batch must be at least 1".into());
        }
        if let Some(c) = self.grad_clip.filter(|c| c.is_nan() || *c <= 0.0) {
            return bad("grad_clip", format!("grad_clip {c} must be positive"));
        }
        if let Some(d) = self.ema.filter(|d| !(0.0..1.0).contains(d)) {
            return bad("ema", format!("ema decay {d} must be in [0, 1)"));
        }
        Ok(())
    }
}

/// The groups of a model's parameters: `encoder`, `encoder_no_decay`, `decoder`,
/// `decoder_no_decay` (empty ones left out; the encoder's left out when frozen).
pub fn groups_for(params: &[Param], cfg: &OptimConfig) -> Vec<ParamGroup> {
    let mut groups = Vec::new();
    for part in [Part::Encoder, Part::Decoder] {
        if part == Part::Encoder && cfg.freeze_encoder {
            continue;
        }
        let lr = if part == Part::Encoder { cfg.lr } else { cfg.lr * cfg.decoder_lr_mult };
        let base = if part == Part::Encoder { "encoder" } else { "decoder" };
        for decay in [true, false] {
            let members: Vec<(String, Var)> = params
                .iter()
                .filter(|p| p.kind.part == part && (p.kind.decay || !cfg.exempt_no_decay) == decay)
                .map(|p| (p.name.clone(), p.var.clone()))
                .collect();
            if members.is_empty() {
                continue;
            }
            let weight_decay = if decay { cfg.weight_decay } else { 0.0 };
            groups.push(ParamGroup {
                name: if decay { base.to_string() } else { format!("{base}_no_decay") },
                settings: GroupSettings { lr, weight_decay, betas: cfg.betas, eps: cfg.eps },
                params: members,
            });
        }
    }
    groups
}

struct Group {
    name: String,
    base_lr: f64,
    settings: GroupSettings,
    params: Vec<(String, Var)>,
}

/// One parameter's moments.
struct Moments {
    step: u64,
    m: Tensor,
    v: Tensor,
}

/// What the optimiser saves besides the moment tensors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OptimState {
    /// Steps taken per parameter (PyTorch's `state[p]["step"]`).
    pub steps: BTreeMap<String, u64>,
    /// Current learning rate per group.
    pub lrs: BTreeMap<String, f64>,
}

pub struct AdamW {
    groups: Vec<Group>,
    state: BTreeMap<String, Moments>,
}

impl AdamW {
    /// A parameter may belong to one group only.
    pub fn new(groups: Vec<ParamGroup>) -> Result<Self> {
        let mut seen = std::collections::BTreeSet::new();
        for g in &groups {
            let s = &g.settings;
            if !(s.lr >= 0.0 && s.eps > 0.0 && s.betas.0 < 1.0 && s.betas.1 < 1.0) {
                return Err(CoreError::bad_input("optimizer", format!("group {}: {s:?}", g.name)).into());
            }
            if let Some((p, _)) = g.params.iter().find(|(p, _)| !seen.insert(p.clone())) {
                return Err(
                    CoreError::bad_input("optimizer", format!("parameter {p} is in two groups")).into()
                );
            }
        }
        let groups = groups
            .into_iter()
            .map(|g| Group { name: g.name, base_lr: g.settings.lr, settings: g.settings, params: g.params })
            .collect();
        Ok(Self { groups, state: BTreeMap::new() })
    }

    /// (group name, current settings) in order.
    pub fn groups(&self) -> impl Iterator<Item = (&str, &GroupSettings)> {
        self.groups.iter().map(|g| (g.name.as_str(), &g.settings))
    }

    /// Every optimised parameter, by name.
    pub fn params(&self) -> Vec<(String, Var)> {
        self.groups.iter().flat_map(|g| g.params.iter().cloned()).collect()
    }

    /// Sets each group's rate to its base rate times `factor` (the schedule).
    pub fn set_lr_factor(&mut self, factor: f64) {
        for g in &mut self.groups {
            g.settings.lr = g.base_lr * factor;
        }
    }

    /// Sets one group's current rate.
    pub fn set_lr(&mut self, group: usize, lr: f64) {
        self.groups[group].settings.lr = lr;
    }

    /// Parameters with optimiser state (those that have had a gradient).
    pub fn state_len(&self) -> usize {
        self.state.len()
    }

    /// One AdamW step with `grads` (parameters without a gradient are skipped).
    pub fn step(&mut self, grads: &Grads) -> Result<Applied> {
        let todo: Vec<(GroupSettings, String, Var, Tensor)> = self
            .groups
            .iter()
            .flat_map(|g| {
                g.params.iter().filter_map(|(name, var)| {
                    grads.get(name).map(|grad| (g.settings, name.clone(), var.clone(), grad.clone()))
                })
            })
            .collect();
        // every update is computed and checked before any is applied: a step that would leave a
        // non-finite weight or moment (an overflow from a huge rate or gradient) changes nothing.
        // The updates are computed twice rather than held: holding them all would double the
        // model's memory.
        for (settings, name, var, grad) in &todo {
            let (p, m, v, _) = self.update(settings, name, var, grad)?;
            for (what, t) in [("weight", &p), ("first moment", &m), ("second moment", &v)] {
                if !all_finite(t)? {
                    return Ok(Applied::Refused { param: name.clone(), what });
                }
            }
        }
        for (settings, name, var, grad) in todo {
            let (p, m, v, step) = self.update(&settings, &name, &var, &grad)?;
            var.set(&p)?;
            self.state.insert(name, Moments { step, m, v });
        }
        Ok(Applied::Done)
    }

    /// The new weight, moments and step count of one parameter, from the current state.
    fn update(
        &self,
        settings: &GroupSettings,
        name: &str,
        var: &Var,
        grad: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor, u64)> {
        let GroupSettings { lr, weight_decay, betas: (b1, b2), eps } = *settings;
        let grad = grad.to_dtype(var.dtype())?.detach();
        let (step, m0, v0) = match self.state.get(name) {
            Some(s) => (s.step + 1, s.m.clone(), s.v.clone()),
            None => (1, grad.zeros_like()?, grad.zeros_like()?),
        };
        // decoupled weight decay, then the moments (lerp and addcmul as PyTorch); all detached,
        // so no state keeps a graph alive
        let p = var.as_tensor().detach().affine(1.0 - lr * weight_decay, 0.0)?;
        let m = (&m0 + ((&grad - &m0)? * (1.0 - b1))?)?.detach();
        let v = ((&v0 * b2)? + (grad.sqr()? * (1.0 - b2))?)?.detach();
        let bias1 = 1.0 - b1.powi(step as i32);
        let bias2_sqrt = (1.0 - b2.powi(step as i32)).sqrt();
        let denom = ((v.sqrt()? / bias2_sqrt)? + eps)?;
        let p = (p - ((&m / denom)? * (lr / bias1))?)?;
        Ok((p, m, v, step))
    }

    /// The state to save: `m.<param>` and `v.<param>` tensors (CPU) and the step counts and rates.
    pub fn state(&self) -> Result<(TensorMap, OptimState)> {
        let mut tensors = TensorMap::new();
        let mut steps = BTreeMap::new();
        for (name, s) in &self.state {
            tensors.insert(format!("m.{name}"), s.m.to_device(&candle_core::Device::Cpu)?);
            tensors.insert(format!("v.{name}"), s.v.to_device(&candle_core::Device::Cpu)?);
            steps.insert(name.clone(), s.step);
        }
        let lrs = self.groups.iter().map(|g| (g.name.clone(), g.settings.lr)).collect();
        Ok((tensors, OptimState { steps, lrs }))
    }

    /// Restores [`state`](Self::state): every saved parameter must be one of ours with the same
    /// shape, and every group must be known.
    pub fn load_state(&mut self, tensors: &TensorMap, saved: &OptimState) -> Result<()> {
        let bad = |reason: String| CoreError::bad_input("optimizer state", reason);
        let params: BTreeMap<&str, &Var> =
            self.groups.iter().flat_map(|g| g.params.iter().map(|(n, v)| (n.as_str(), v))).collect();
        let mut state = BTreeMap::new();
        for (name, &step) in &saved.steps {
            let var = params
                .get(name.as_str())
                .ok_or_else(|| bad(format!("{name} is not optimised by this run")))?;
            let get = |which: &str| -> Result<Tensor> {
                let t = tensors
                    .get(&format!("{which}.{name}"))
                    .ok_or_else(|| bad(format!("no {which}.{name}")))?;
                if t.dims() != var.dims() {
                    return Err(bad(format!(
                        "{which}.{name} is {:?}, the parameter {:?}",
                        t.dims(),
                        var.dims()
                    ))
                    .into());
                }
                Ok(t.to_dtype(var.dtype())?.to_device(var.device())?)
            };
            state.insert(name.clone(), Moments { step, m: get("m")?, v: get("v")? });
        }
        for g in &mut self.groups {
            g.settings.lr =
                *saved.lrs.get(&g.name).ok_or_else(|| bad(format!("no rate for group {}", g.name)))?;
        }
        self.state = state;
        Ok(())
    }
}
