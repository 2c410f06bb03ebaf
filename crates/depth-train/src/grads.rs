//! Gradients by parameter name, between `backward` and the optimiser step: collected from
//! candle's `GradStore`, summed over accumulated micro-batches, measured (the global L2 norm, which
//! is also the finiteness check: one NaN or inf makes it non-finite) and clipped as
//! `torch.nn.utils.clip_grad_norm_` does.

use crate::error::Result;
use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};
use std::collections::BTreeMap;

/// Gradients of the trainable parameters that received one.
#[derive(Clone, Debug, Default)]
pub struct Grads {
    map: BTreeMap<String, Tensor>,
}

impl Grads {
    /// The gradients in `store` of `params` (parameters without one are left out, as PyTorch
    /// leaves `.grad` None). They are detached: a gradient computed by candle's backward still
    /// points at the step's whole graph, and an optimiser state derived from it would keep
    /// every step's activations alive (a run grew past 24 GB in 120 steps before this).
    pub fn from_store(store: &GradStore, params: &[(String, Var)]) -> Self {
        let map = params
            .iter()
            .filter_map(|(name, var)| store.get(var.as_tensor()).map(|g| (name.clone(), g.detach())))
            .collect();
        Self { map }
    }

    /// From explicit tensors (tests, goldens).
    pub fn from_map(map: BTreeMap<String, Tensor>) -> Self {
        Self { map }
    }

    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.map.get(name)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Tensor)> {
        self.map.iter()
    }

    /// Adds `other` (gradient accumulation: the sum over micro-batches).
    pub fn accumulate(&mut self, other: Grads) -> Result<()> {
        for (k, g) in other.map {
            let sum = match self.map.remove(&k) {
                Some(acc) => (acc + g)?,
                None => g,
            };
            self.map.insert(k, sum);
        }
        Ok(())
    }

    /// Multiplies every gradient by `factor`.
    pub fn scale(&mut self, factor: f64) -> Result<()> {
        for g in self.map.values_mut() {
            *g = g.affine(factor, 0.0)?;
        }
        Ok(())
    }

    /// The L2 norm over all gradients together (NaN or inf when any element is).
    pub fn global_norm(&self) -> Result<f64> {
        let mut sq = 0.0f64;
        for g in self.map.values() {
            sq += g.sqr()?.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        }
        Ok(sq.sqrt())
    }

    /// Scales all gradients so that their global norm is at most `max_norm`, as
    /// `clip_grad_norm_`: by max_norm / (norm + 1e-6) when that is below 1. Returns the norm
    /// before clipping; a non-finite norm leaves the gradients unchanged.
    pub fn clip(&mut self, max_norm: f64) -> Result<f64> {
        let norm = self.global_norm()?;
        let coef = max_norm / (norm + 1e-6);
        if norm.is_finite() && coef < 1.0 {
            self.scale(coef)?;
        }
        Ok(norm)
    }
}
