//! Differentiable 2-D resampling of (…, H, W) tensors with the exact semantics of the reference
//! libraries: PyTorch's bilinear (`align_corners=True`) and bicubic (size or scale-factor rule),
//! and OpenCV's `INTER_CUBIC`. On the CPU a native kernel runs (and on CUDA, float32, with the
//! fused kernels switched on, its CUDA twin); otherwise the same matrices are applied as two
//! matmuls. Both are differentiable (any order).

mod kernel;
mod taps;

pub use taps::Taps;

use crate::error::{CoreError, Result};
use candle_core::{DType, Tensor};
use kernel::Resample2d;
use std::sync::Arc;

/// Applies `rows` along dim −2 and `cols` along dim −1 of `x` (rank ≥ 2, f32 or f64).
pub fn resample(x: &Tensor, rows: Taps, cols: Taps) -> Result<Tensor> {
    let dims = x.dims();
    if dims.len() < 2 || dims[dims.len() - 2] != rows.n_in() || dims[dims.len() - 1] != cols.n_in() {
        return Err(CoreError::bad_input(
            "resample",
            format!("input {:?} does not end in ({}, {})", dims, rows.n_in(), cols.n_in()),
        ));
    }
    if !matches!(x.dtype(), DType::F32 | DType::F64) {
        return Err(CoreError::bad_input(
            "resample",
            format!("dtype {:?} is not supported, use f32 or f64", x.dtype()),
        ));
    }
    if x.device().is_cpu() || (crate::device::fused_route(x) && x.dtype() == DType::F32) {
        // the CPU kernel, or the fused CUDA kernels (float32) when switched on
        let op = Resample2d { rows: Arc::new(rows), cols: Arc::new(cols) };
        return Ok(x.contiguous()?.apply_op1(op)?);
    }
    let dense =
        |t: &Taps| Tensor::from_vec(t.to_dense(), (t.n_out(), t.n_in()), x.device())?.to_dtype(x.dtype());
    let (wr, wc) = (dense(&rows)?, dense(&cols)?);
    // candle's CUDA matmul takes only contiguous operands (the position embeddings come permuted)
    let y = x.contiguous()?.broadcast_matmul(&wc.t()?.contiguous()?)?;
    Ok(wr.broadcast_matmul(&y)?)
}

fn hw(x: &Tensor, op: &'static str) -> Result<(usize, usize)> {
    let d = x.dims();
    if d.len() < 2 {
        return Err(CoreError::bad_input(op, format!("input {d:?} has rank < 2")));
    }
    Ok((d[d.len() - 2], d[d.len() - 1]))
}

fn f32_math(x: &Tensor) -> bool {
    x.dtype() != DType::F64
}

/// PyTorch's output size for a scale factor: `floor(in · s)` in double precision.
pub fn scaled_size(n: usize, s: f64) -> usize {
    (n as f64 * s).floor() as usize
}

/// `F.interpolate(x, size, mode="bilinear", align_corners=True)`.
pub fn bilinear_align_corners(x: &Tensor, size: (usize, usize)) -> Result<Tensor> {
    let (h, w) = hw(x, "bilinear_align_corners")?;
    let f32 = f32_math(x);
    resample(x, Taps::linear_align_corners(h, size.0, f32), Taps::linear_align_corners(w, size.1, f32))
}

/// `F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=True)`.
pub fn bilinear_align_corners_scale(x: &Tensor, s: f64) -> Result<Tensor> {
    let (h, w) = hw(x, "bilinear_align_corners_scale")?;
    bilinear_align_corners(x, (scaled_size(h, s), scaled_size(w, s)))
}

/// `F.interpolate(x, size, mode="bicubic", align_corners=False, antialias=False)`.
pub fn bicubic(x: &Tensor, size: (usize, usize)) -> Result<Tensor> {
    let (h, w) = hw(x, "bicubic")?;
    let f32 = f32_math(x);
    resample(x, Taps::cubic_torch(h, size.0, None, f32), Taps::cubic_torch(w, size.1, None, f32))
}

/// `F.interpolate(x, scale_factor=(sh, sw), mode="bicubic", antialias=False)`: output
/// `floor(in · s)`, sampled at `(dst + 0.5)/s − 0.5` — the rule DINOv2's position-embedding
/// interpolation depends on.
pub fn bicubic_scale(x: &Tensor, scale: (f64, f64)) -> Result<Tensor> {
    let (h, w) = hw(x, "bicubic_scale")?;
    let f32 = f32_math(x);
    let rows = Taps::cubic_torch(h, scaled_size(h, scale.0), Some(scale.0), f32);
    let cols = Taps::cubic_torch(w, scaled_size(w, scale.1), Some(scale.1), f32);
    resample(x, rows, cols)
}

/// `cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC)` on (…, H, W) planes.
pub fn cv_resize_cubic(x: &Tensor, size: (usize, usize)) -> Result<Tensor> {
    let (h, w) = hw(x, "cv_resize_cubic")?;
    resample(x, Taps::cubic_opencv(h, size.0), Taps::cubic_opencv(w, size.1))
}

/// `Resize.constrain_to_multiple_of`: round half to even, `ceil` when below `min_val`.
fn constrain_to_multiple_of(x: f64, multiple: usize, min_val: usize) -> usize {
    let m = multiple as f64;
    let y = ((x / m).round_ties_even() * m) as usize;
    if y < min_val { ((x / m).ceil() * m) as usize } else { y }
}

/// The network input size (height, width) for an image of `h`×`w` pixels: the smallest size with
/// both sides ≥ `input_size` after an aspect-preserving scale, snapped to multiples of `multiple`.
pub fn lower_bound_size(h: usize, w: usize, input_size: usize, multiple: usize) -> (usize, usize) {
    let (sh, sw) = (input_size as f64 / h as f64, input_size as f64 / w as f64);
    let s = if sw > sh { sw } else { sh };
    (
        constrain_to_multiple_of(s * h as f64, multiple, input_size),
        constrain_to_multiple_of(s * w as f64, multiple, input_size),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_sizes_follow_the_official_rule() {
        assert_eq!(lower_bound_size(425, 640, 518, 14), (518, 784));
        assert_eq!(lower_bound_size(700, 700, 518, 14), (518, 518));
        assert_eq!(lower_bound_size(1362, 2047, 364, 14), (364, 546));
        // never below the requested size: ceil when rounding would go under
        assert_eq!(lower_bound_size(100, 1000, 518, 14), (518, 5180));
        let (h, w) = lower_bound_size(333, 500, 700, 14);
        assert!(h >= 700 && w >= 700 && h % 14 == 0 && w % 14 == 0);
    }
}
