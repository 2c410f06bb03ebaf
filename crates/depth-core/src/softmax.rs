//! Softmax over the last dim, fused and differentiable (candle's fused `softmax_last_dim`
//! detaches the graph). Forward is one pass per row; backward `dx = y ⊙ (dy − Σ dy ⊙ y)` is one
//! fused pass too. Off the CPU it falls back to candle's composed, differentiable softmax.

use crate::error::Result;
use crate::float::{Float, contiguous};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, D, Layout, Shape, Tensor};
use rayon::prelude::*;

/// Softmax over the last dimension.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() {
        return Ok(candle_nn::ops::softmax(x, D::Minus1)?);
    }
    Ok(x.contiguous()?.apply_op1(Softmax)?)
}

struct Softmax;

fn forward<T: Float>(x: &[T], d: usize) -> Vec<T> {
    let mut y = vec![T::zero(); x.len()];
    y.par_chunks_mut(d).zip(x.par_chunks(d)).with_min_len(8).for_each(|(yr, xr)| {
        yr.copy_from_slice(xr);
        T::softmax_row(yr, T::one());
    });
    y
}

pub(crate) fn backward<T: Float>(y: &[T], dy: &[T], d: usize) -> Vec<T> {
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

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "depth-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let d = l.shape().dims().last().copied().unwrap_or(1);
        let out = match s {
            CpuStorage::F32(_) => CpuStorage::F32(forward::<f32>(contiguous(self.name(), s, l)?, d)),
            CpuStorage::F64(_) => CpuStorage::F64(forward::<f64>(contiguous(self.name(), s, l)?, d)),
            s => candle_core::bail!("depth-softmax: unsupported dtype {:?}", s.dtype()),
        };
        Ok((out, l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, dy: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(y.apply_op2_no_bwd(&dy.contiguous()?, &SoftmaxBwd)?))
    }
}

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
        let n = self.name();
        let d = l1.shape().dims().last().copied().unwrap_or(1);
        let out = match s1 {
            CpuStorage::F32(_) => {
                CpuStorage::F32(backward::<f32>(contiguous(n, s1, l1)?, contiguous(n, s2, l2)?, d))
            }
            CpuStorage::F64(_) => {
                CpuStorage::F64(backward::<f64>(contiguous(n, s1, l1)?, contiguous(n, s2, l2)?, d))
            }
            s => candle_core::bail!("{n}: unsupported dtype {:?}", s.dtype()),
        };
        Ok((out, l1.shape().clone()))
    }
}
