//! ReLU with a one-pass backward. candle's ReLU backward builds a comparison, a cast and a
//! product — three full-size tensors — where dx = dy·`[y > 0]` needs one pass over (y, dy); in
//! the DPT head at training sizes that was a quarter of the head's backward. The gradient at 0
//! is 0, as PyTorch's. Off the CPU: candle's op.

use crate::error::Result;
use crate::float::{Float, Kernel, dispatch};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

const CHUNK: usize = 16384;

/// max(x, 0).
pub fn relu(x: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() {
        return Ok(x.relu()?);
    }
    Ok(x.contiguous()?.apply_op1(Relu)?)
}

struct Relu;

impl Kernel for Relu {
    fn run<T: Float>(&self, xs: &[&[T]]) -> Vec<T> {
        let x = xs[0];
        let mut y = vec![T::zero(); x.len()];
        y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(y, x)| {
            y.iter_mut().zip(x).for_each(|(y, &x)| *y = if x > T::zero() { x } else { T::zero() })
        });
        y
    }
}

impl CustomOp1 for Relu {
    fn name(&self) -> &'static str {
        "depth-relu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        Ok((dispatch(self.name(), self, &[(s, l)])?, l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, dy: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(y.apply_op2_no_bwd(&dy.contiguous()?, &ReluBwd)?))
    }
}

/// dx from (y, dy): dy where y > 0 (y may be the ReLU's input or output: same sign test).
pub(crate) struct ReluBwd;

impl Kernel for ReluBwd {
    fn run<T: Float>(&self, xs: &[&[T]]) -> Vec<T> {
        let (y, dy) = (xs[0], xs[1]);
        let mut dx = vec![T::zero(); y.len()];
        dx.par_chunks_mut(CHUNK).zip(y.par_chunks(CHUNK).zip(dy.par_chunks(CHUNK))).for_each(
            |(dx, (y, dy))| {
                for ((dx, &y), &g) in dx.iter_mut().zip(y).zip(dy) {
                    *dx = if y > T::zero() { g } else { T::zero() };
                }
            },
        );
        dx
    }
}

impl CustomOp2 for ReluBwd {
    fn name(&self) -> &'static str {
        "depth-relu-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        Ok((dispatch(self.name(), self, &[(s1, l1), (s2, l2)])?, l1.shape().clone()))
    }
}
