//! Valid pixels and the per-sample normalisation of MiDaS / Depth Anything: over a sample's
//! valid pixels, t = the lower median (torch.median), s = mean |d − t|, d̂ = (d − t)/s, with
//! gradients through t and s.

use crate::error::Result;
use candle_core::{DType, Tensor};
use depth_core::CoreError;

/// The valid pixels of each sample of a (B, H, W) batch: mask ≠ 0 and a finite target.
#[derive(Clone, Debug)]
pub struct Valid {
    indices: Vec<Vec<u32>>,
    hw: (usize, usize),
}

impl Valid {
    pub fn new(mask: &Tensor, target: &Tensor, loss: &'static str) -> Result<Self> {
        let (b, h, w) = target.dims3().map_err(|_| {
            CoreError::bad_input(loss, format!("target must be (B, H, W), got {:?}", target.dims()))
        })?;
        if mask.dims() != target.dims() {
            return Err(CoreError::bad_input(
                loss,
                format!("mask {:?} and target {:?} differ in shape", mask.dims(), target.dims()),
            )
            .into());
        }
        let m = mask.to_dtype(DType::F64)?.flatten_from(1)?.to_vec2::<f64>()?;
        let t = target.to_dtype(DType::F64)?.flatten_from(1)?.to_vec2::<f64>()?;
        let indices = (0..b)
            .map(|i| {
                (0..h * w).filter(|&j| m[i][j] != 0.0 && t[i][j].is_finite()).map(|j| j as u32).collect()
            })
            .collect();
        Ok(Self { indices, hw: (h, w) })
    }

    pub fn batch(&self) -> usize {
        self.indices.len()
    }

    pub fn count(&self, b: usize) -> usize {
        self.indices[b].len()
    }

    /// Sample `b`'s valid values of a (B, H, W) tensor, flattened (differentiable).
    pub fn select(&self, x: &Tensor, b: usize) -> Result<Tensor> {
        let idx = Tensor::new(self.indices[b].as_slice(), x.device())?;
        Ok(x.get(b)?.flatten_all()?.index_select(&idx, 0)?)
    }

    /// A (B, H, W) u8 mask of the valid pixels of the samples where `keep[b]`.
    pub fn mask(&self, keep: &[bool], device: &candle_core::Device) -> Result<Tensor> {
        let (h, w) = self.hw;
        let mut m = vec![0u8; self.batch() * h * w];
        for (b, idx) in self.indices.iter().enumerate().filter(|(b, _)| keep[*b]) {
            idx.iter().for_each(|&j| m[b * h * w + j as usize] = 1);
        }
        Ok(Tensor::from_vec(m, (self.batch(), h, w), device)?)
    }
}

/// A sample's normalisation: shift t (lower median) and scale s (mean absolute deviation).
#[derive(Clone, Debug)]
pub struct Normalized {
    /// (d − t)/s over the valid values.
    pub values: Tensor,
    pub t: Tensor,
    pub s: Tensor,
}

/// Normalises valid values (1-D); `None` when fewer than 2 values or zero deviation.
pub fn normalize(values: &Tensor) -> Result<Option<Normalized>> {
    let n = values.dim(0)?;
    if n < 2 {
        return Ok(None);
    }
    let t = values.narrow(0, crate::order::lower_median(&crate::order::host(values)?), 1)?;
    let centred = values.broadcast_sub(&t)?;
    let s = depth_core::abs(&centred)?.mean_keepdim(0)?;
    let s_value = s.to_dtype(DType::F64)?.to_vec1::<f64>()?[0];
    if !(s_value.is_finite() && s_value > 0.0) {
        return Ok(None);
    }
    Ok(Some(Normalized { values: centred.broadcast_div(&s)?, t, s }))
}

/// Both normalisations of every sample of a batch (`None` where a sample contributes nothing),
/// computed once and shared by the losses of the objective.
pub(crate) struct BatchNorm {
    pub valid: Valid,
    pub samples: Vec<Option<(Normalized, Normalized)>>,
}

pub(crate) fn normalize_batch(
    pred: &Tensor,
    target: &Tensor,
    mask: &Tensor,
    loss: &'static str,
) -> Result<BatchNorm> {
    let valid = Valid::new(mask, target, loss)?;
    let samples = (0..valid.batch())
        .map(|b| match (normalize(&valid.select(pred, b)?)?, normalize(&valid.select(target, b)?)?) {
            (Some(p), Some(g)) => Ok(Some((p, g))),
            _ => Ok(None),
        })
        .collect::<Result<_>>()?;
    Ok(BatchNorm { valid, samples })
}

/// Σ terms, or a zero scalar of `like`'s dtype and device when there are none (a loss with
/// nothing to learn from).
pub(crate) fn sum_or_zero(terms: Vec<Tensor>, like: &Tensor) -> Result<Tensor> {
    let mut terms = terms.into_iter();
    match terms.next() {
        Some(first) => Ok(terms.try_fold(first, |a, t| a + t)?),
        None => Ok(Tensor::zeros((), like.dtype(), like.device())?),
    }
}
