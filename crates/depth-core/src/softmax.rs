//! Softmax over the last dim, fused and differentiable (candle's fused `softmax_last_dim`
//! detaches the graph). Forward is one pass per row; backward `dx = y ⊙ (dy − Σ dy ⊙ y)` is one
//! fused pass too. Off the CPU it falls back to candle's composed, differentiable softmax, or with
//! the fused CUDA kernels switched on (`device::fused_route`) runs this op's `cuda_fwd` (`cuda/`).

use crate::error::Result;
use crate::float::{Float, Kernel, dispatch};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, D, Layout, Shape, Tensor};
use rayon::prelude::*;

/// Softmax over the last dimension.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() && !crate::device::fused_route(x) {
        return Ok(candle_nn::ops::softmax(x, D::Minus1)?);
    }
    Ok(x.contiguous()?.apply_op1(Softmax)?)
}

/// Softmax over rows of length `d`.
struct Softmax;

struct Rows(usize);

impl Kernel for Rows {
    fn run<T: Float>(&self, xs: &[&[T]]) -> Vec<T> {
        let mut y = xs[0].to_vec();
        y.par_chunks_mut(self.0).with_min_len(8).for_each(|row| T::softmax_row(row, T::one()));
        y
    }
}

/// dx = y ⊙ (dy − Σ dy ⊙ y) over rows of length `d`, from (y, dy).
struct GradRows(usize);

impl Kernel for GradRows {
    fn run<T: Float>(&self, xs: &[&[T]]) -> Vec<T> {
        let (y, dy, d) = (xs[0], xs[1], self.0);
        let mut dx = vec![T::zero(); y.len()];
        dx.par_chunks_mut(d).zip(y.par_chunks(d).zip(dy.par_chunks(d))).with_min_len(8).for_each(
            |(dxr, (yr, dyr))| {
                let dot = yr.iter().zip(dyr).fold(T::zero(), |s, (&a, &b)| s + a * b);
                for ((o, &a), &b) in dxr.iter_mut().zip(yr).zip(dyr) {
                    *o = a * (b - dot);
                }
            },
        );
        dx
    }
}

fn last_dim(l: &Layout) -> usize {
    l.shape().dims().last().copied().unwrap_or(1)
}

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "depth-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        Ok((dispatch(self.name(), &Rows(last_dim(l)), &[(s, l)])?, l.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        Ok((crate::cuda::softmax((s, l), last_dim(l))?, l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, dy: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(y.apply_op2_no_bwd(&dy.contiguous()?, &SoftmaxBwd)?))
    }
}

/// The softmax gradient as an op of (y, dy); the attention backward uses it too.
pub(crate) struct SoftmaxBwd;

impl CustomOp2 for SoftmaxBwd {
    fn name(&self) -> &'static str {
        "depth-softmax-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        Ok((dispatch(self.name(), &GradRows(last_dim(l1)), &[(s1, l1), (s2, l2)])?, l1.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        Ok((crate::cuda::softmax_bwd((s1, l1), (s2, l2), last_dim(l1))?, l1.shape().clone()))
    }
}
