//! An exponential moving average of the weights (`ema ← decay·ema + (1 − decay)·w` after every
//! optimiser step), saved with the trainer state; validation and the exported model use it.

use crate::error::Result;
use candle_core::{Tensor, Var};
use depth_core::CoreError;
use depth_core::weights::TensorMap;
use std::collections::BTreeMap;

pub struct Ema {
    pub decay: f64,
    shadow: BTreeMap<String, Tensor>,
}

impl Ema {
    /// Starts at the current weights of `params`.
    pub fn new(decay: f64, params: &[(String, Var)]) -> Result<Self> {
        let shadow = params
            .iter()
            .map(|(n, v)| Ok((n.clone(), v.as_tensor().detach().copy()?)))
            .collect::<Result<_>>()?;
        Ok(Self { decay, shadow })
    }

    pub fn update(&mut self, params: &[(String, Var)]) -> Result<()> {
        for (name, var) in params {
            if let Some(e) = self.shadow.get_mut(name) {
                // detached: the average must not chain every step's graph to the next
                *e = ((&*e * self.decay)? + (var.as_tensor().detach() * (1.0 - self.decay))?)?;
            }
        }
        Ok(())
    }

    /// The averaged tensors by parameter name (CPU).
    pub fn tensors(&self) -> Result<TensorMap> {
        self.shadow.iter().map(|(n, t)| Ok((n.clone(), t.to_device(&candle_core::Device::Cpu)?))).collect()
    }

    /// Restores saved averages; every parameter must be there with its shape.
    pub fn load(&mut self, saved: &TensorMap) -> Result<()> {
        for (name, e) in &mut self.shadow {
            let t = saved
                .get(name)
                .ok_or_else(|| CoreError::bad_input("EMA state", format!("no average for {name}")))?;
            if t.dims() != e.dims() {
                return Err(CoreError::bad_input(
                    "EMA state",
                    format!("{name} is {:?}, the parameter {:?}", t.dims(), e.dims()),
                )
                .into());
            }
            *e = t.to_dtype(e.dtype())?.to_device(e.device())?;
        }
        Ok(())
    }
}
