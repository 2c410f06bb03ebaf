//! The scale-invariant log loss for metric fine-tuning: sqrt(mean d² − λ·mean(d)²) with
//! d = log gt − log pred over all valid pixels of the batch (λ = 0.5 in Depth Anything).

use crate::error::Result;
use crate::normalize::Valid;
use candle_core::Tensor;

pub fn silog_loss(pred: &Tensor, target: &Tensor, mask: &Tensor, lambda: f64) -> Result<Tensor> {
    // a non-positive target has no logarithm: treat it as invalid like NaN/inf
    let positive = target.gt(0.0)?.to_dtype(mask.dtype())?;
    let valid = Valid::new(&(mask * positive)?, target, "silog_loss")?;
    let mut diffs = Vec::new();
    for b in 0..valid.batch() {
        if valid.count(b) > 0 {
            diffs.push((valid.select(target, b)?.log()? - valid.select(pred, b)?.log()?)?);
        }
    }
    if diffs.is_empty() {
        return Ok(Tensor::zeros((), pred.dtype(), pred.device())?);
    }
    let d = Tensor::cat(&diffs, 0)?;
    let mean = d.mean_all()?;
    Ok((d.sqr()?.mean_all()? - (mean.sqr()? * lambda)?)?.sqrt()?)
}
