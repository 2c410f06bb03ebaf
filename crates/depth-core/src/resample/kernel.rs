//! The CPU kernel: a separable 2-D resampling of contiguous (…, H, W) planes, first along W
//! into a float64 buffer, then along H (the order OpenCV uses), accumulating in float64.
//! Its backward is the same op with both matrices transposed, so gradients of any order exist.

use super::taps::Taps;
use crate::float::{Float, Kernel, dispatch};
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::Arc;

/// Applies `rows` along the second-last dim and `cols` along the last dim.
#[derive(Clone)]
pub(crate) struct Resample2d {
    pub rows: Arc<Taps>,
    pub cols: Arc<Taps>,
}

impl Resample2d {
    fn adjoint(&self) -> Self {
        Self { rows: Arc::new(self.rows.transpose()), cols: Arc::new(self.cols.transpose()) }
    }
}

impl Kernel for Resample2d {
    fn run<T: Float>(&self, xs: &[&[T]]) -> Vec<T> {
        let x = xs[0];
        let planes = x.len() / (self.rows.n_in() * self.cols.n_in());
        let (h, w) = (self.rows.n_in(), self.cols.n_in());
        let (ho, wo) = (self.rows.n_out(), self.cols.n_out());
        let mut tmp = vec![0f64; planes * h * wo];
        tmp.par_chunks_mut(wo).enumerate().for_each(|(r, out)| {
            let src = &x[r * w..(r + 1) * w];
            for (o, acc) in out.iter_mut().enumerate() {
                let (is, ws) = self.cols.row(o);
                *acc = is.iter().zip(ws).map(|(&i, &wk)| wk * src[i as usize].to_f64()).sum();
            }
        });
        let mut out = vec![T::zero(); planes * ho * wo];
        out.par_chunks_mut(wo).enumerate().for_each_init(
            || vec![0f64; wo],
            |acc, (r, dst)| {
                let (plane, o) = (r / ho, r % ho);
                let base = plane * h * wo;
                acc.fill(0.0);
                let (is, ws) = self.rows.row(o);
                for (&i, &wk) in is.iter().zip(ws) {
                    let src = &tmp[base + i as usize * wo..base + (i as usize + 1) * wo];
                    acc.iter_mut().zip(src).for_each(|(a, &s)| *a += wk * s);
                }
                dst.iter_mut().zip(acc.iter()).for_each(|(d, &a)| *d = T::from_f64(a));
            },
        );
        out
    }
}

impl CustomOp1 for Resample2d {
    fn name(&self) -> &'static str {
        "resample2d"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let dims = layout.shape().dims();
        let rank = dims.len();
        if rank < 2 || dims[rank - 2] != self.rows.n_in() || dims[rank - 1] != self.cols.n_in() {
            candle_core::bail!(
                "resample2d: input {:?} does not end in ({}, {})",
                dims,
                self.rows.n_in(),
                self.cols.n_in()
            );
        }
        let mut out_dims = dims.to_vec();
        out_dims[rank - 2] = self.rows.n_out();
        out_dims[rank - 1] = self.cols.n_out();
        Ok((dispatch(self.name(), self, &[(storage, layout)])?, Shape::from(out_dims)))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad_res.contiguous()?.apply_op1(self.adjoint())?))
    }
}
