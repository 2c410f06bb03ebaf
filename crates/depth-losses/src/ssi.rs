//! The scale-and-shift-invariant loss (MiDaS, Depth Anything), batch-based: Σ over samples of
//! the kept |d̂_pred − d̂_gt| divided by the number of kept pixels, where per sample the
//! int(trim · n) largest residuals are dropped ("ignore the top-n% largest-loss regions").

use crate::error::Result;
use crate::normalize::{BatchNorm, normalize_batch, sum_or_zero};
use candle_core::Tensor;

/// `trim[b]` is the fraction of sample b's residuals to drop (0 for ground truth, 0.1 for
/// pseudo-labels). Samples with < 2 valid pixels or zero deviation contribute nothing.
pub fn ssi_loss(pred: &Tensor, target: &Tensor, mask: &Tensor, trim: &[f64]) -> Result<Tensor> {
    ssi_from(&normalize_batch(pred, target, mask, "ssi_loss")?, trim, pred)
}

/// [`ssi_loss`] from normalisations already computed (`like`: dtype and device of a zero loss).
pub(crate) fn ssi_from(norm: &BatchNorm, trim: &[f64], like: &Tensor) -> Result<Tensor> {
    let mut sums = Vec::new();
    let mut kept = 0usize;
    for (b, sample) in norm.samples.iter().enumerate() {
        let Some((p, g)) = sample else { continue };
        let r = depth_core::abs(&(&p.values - &g.values)?)?;
        let n = r.dim(0)?;
        let drop = (trim.get(b).copied().unwrap_or(0.0) * n as f64).floor() as usize;
        let r = if drop > 0 {
            let kept = crate::order::smallest(&crate::order::host(&r)?, n - drop);
            r.index_select(&Tensor::new(kept.as_slice(), r.device())?, 0)?
        } else {
            r
        };
        sums.push(r.sum_all()?);
        kept += n - drop;
    }
    let total = sum_or_zero(sums, like)?;
    Ok(if kept > 0 { (total / kept as f64)? } else { total })
}
