//! Multi-scale gradient matching (MiDaS) on the normalised residual r = d̂_pred − d̂_gt: at
//! scales 1, 2, 4, … (strided subsampling), Σ|∂x r| + Σ|∂y r| over pairs of valid pixels divided
//! by the valid pixels at that scale, summed over scales.

use crate::error::Result;
use crate::normalize::{BatchNorm, normalize_batch, sum_or_zero};
use candle_core::{DType, Tensor};

fn strided(x: &Tensor, step: usize) -> Result<Tensor> {
    let (_, h, w) = x.dims3()?;
    let rows = Tensor::arange_step(0u32, h as u32, step as u32, x.device())?;
    let cols = Tensor::arange_step(0u32, w as u32, step as u32, x.device())?;
    Ok(x.index_select(&rows, 1)?.index_select(&cols, 2)?)
}

/// |differences| along `dim` between neighbours that are both valid, summed.
fn masked_diff_sum(r: &Tensor, m: &Tensor, dim: usize) -> Result<Option<Tensor>> {
    let n = r.dim(dim)?;
    if n < 2 {
        return Ok(None);
    }
    let d = (r.narrow(dim, 1, n - 1)? - r.narrow(dim, 0, n - 1)?)?;
    let pair = (m.narrow(dim, 1, n - 1)? * m.narrow(dim, 0, n - 1)?)?;
    Ok(Some((depth_core::abs(&d)? * pair)?.sum_all()?))
}

pub fn gradient_matching_loss(
    pred: &Tensor,
    target: &Tensor,
    mask: &Tensor,
    scales: usize,
) -> Result<Tensor> {
    gm_from(&normalize_batch(pred, target, mask, "gradient_matching_loss")?, pred, target, scales)
}

/// [`gradient_matching_loss`] from normalisations already computed.
pub(crate) fn gm_from(norm: &BatchNorm, pred: &Tensor, target: &Tensor, scales: usize) -> Result<Tensor> {
    let (bsz, h, w) = pred.dims3()?;
    let keep: Vec<bool> = norm.samples.iter().map(Option::is_some).collect();
    let mut maps = Vec::with_capacity(bsz);
    for (b, sample) in norm.samples.iter().enumerate() {
        let r = match sample {
            Some((p, g)) => {
                let np = pred.get(b)?.broadcast_sub(&p.t)?.broadcast_div(&p.s)?;
                let ng = target.get(b)?.broadcast_sub(&g.t)?.broadcast_div(&g.s)?;
                (np - ng)?
            }
            _ => Tensor::zeros((h, w), pred.dtype(), pred.device())?,
        };
        maps.push(r);
    }
    let valid_mask = norm.valid.mask(&keep, pred.device())?;
    // invalid pixels may hold NaN/inf (from the target): select zeros there, not multiply
    let r = valid_mask
        .where_cond(&Tensor::stack(&maps, 0)?, &Tensor::zeros((bsz, h, w), pred.dtype(), pred.device())?)?;
    let m = valid_mask.to_dtype(pred.dtype())?;
    let mut terms = Vec::with_capacity(scales);
    for k in 0..scales {
        let (rk, mk) = (strided(&r, 1 << k)?, strided(&m, 1 << k)?);
        let count = mk.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?;
        if count == 0.0 {
            continue;
        }
        let diffs = [1, 2].iter().map(|&dim| masked_diff_sum(&rk, &mk, dim)).collect::<Result<Vec<_>>>()?;
        terms.push((sum_or_zero(diffs.into_iter().flatten().collect(), pred)? / count)?);
    }
    sum_or_zero(terms, pred)
}
