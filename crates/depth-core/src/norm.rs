//! LayerNorm over the last dim, fused and differentiable. candle's fused `layer_norm` detaches
//! the graph; its composed `layer_norm_slow` is twice as slow. This op runs one fused pass
//! forward (float32: vectorised, float32 accumulation like PyTorch; float64: exact) and one fused
//! pass backward (dx, dγ and dβ together, accumulated in float64). Off the CPU it falls back to
//! the composed (differentiable) candle ops, or with the fused CUDA kernels switched on
//! (`device::fused_route`) to the same op's `cuda_fwd` (`cuda/`).

use crate::error::{CoreError, Result};
use crate::float::{Float, Kernel, dispatch, moments};
use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

/// `y = (x − mean) / sqrt(var + eps) · γ + β` over the last dim (biased variance, as PyTorch).
pub fn layer_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Result<Tensor> {
    let d = x.dim(candle_core::D::Minus1)?;
    if gamma.dims() != [d] || beta.dims() != [d] {
        return Err(CoreError::bad_input(
            "layer_norm",
            format!(
                "input {:?} needs weight and bias of shape [{d}], got {:?} and {:?}",
                x.dims(),
                gamma.dims(),
                beta.dims()
            ),
        ));
    }
    if gamma.dtype() != x.dtype() || beta.dtype() != x.dtype() {
        return Err(CoreError::bad_input(
            "layer_norm",
            format!(
                "input of dtype {:?} with weight {:?} and bias {:?}: cast the weight and bias to the input's dtype",
                x.dtype(),
                gamma.dtype(),
                beta.dtype()
            ),
        ));
    }
    if !x.device().is_cpu() && !crate::device::fused_route(x) {
        return Ok(candle_nn::ops::layer_norm_slow(x, gamma, beta, eps as f32)?);
    }
    Ok(x.contiguous()?.apply_op3(&gamma.contiguous()?, &beta.contiguous()?, LayerNorm { eps })?)
}

struct LayerNorm {
    eps: f64,
}

impl Kernel for LayerNorm {
    fn run<T: Float>(&self, xs: &[&[T]]) -> Vec<T> {
        let (x, g, b) = (xs[0], xs[1], xs[2]);
        let mut y = vec![T::zero(); x.len()];
        let rows = 16 * g.len();
        y.par_chunks_mut(rows)
            .zip(x.par_chunks(rows))
            .for_each(|(y, x)| T::layer_norm_rows(y, x, g, b, self.eps));
        y
    }
}

/// Rows `0..n` hold dx, row `n` dγ and row `n + 1` dβ.
struct LayerNormBwd {
    eps: f64,
}

impl Kernel for LayerNormBwd {
    fn run<T: Float>(&self, xs: &[&[T]]) -> Vec<T> {
        let (x, g, dy) = (xs[0], xs[1], xs[2]);
        let d = g.len();
        let mut out = vec![T::zero(); x.len() + 2 * d];
        let (dx, _) = out.split_at_mut(x.len());
        // dγ and dβ are sums over rows: each fixed group of ROWS rows is summed on one thread and
        // the group sums are added in order, so the result never depends on thread scheduling
        // (a resumed training run must repeat an uninterrupted one bit for bit)
        const ROWS: usize = 16;
        let partials: Vec<Vec<f64>> = dx
            .par_chunks_mut(d * ROWS)
            .zip(x.par_chunks(d * ROWS).zip(dy.par_chunks(d * ROWS)))
            .map(|(dxg, (xg, dyg))| {
                let mut acc = vec![0f64; 2 * d];
                for (dxr, (xr, dyr)) in dxg.chunks_mut(d).zip(xg.chunks(d).zip(dyg.chunks(d))) {
                    let (mean, rstd) = moments(xr, self.eps);
                    let (mut m1, mut m2) = (0.0, 0.0);
                    for i in 0..d {
                        let xh = (xr[i].to_f64() - mean) * rstd;
                        let gy = dyr[i].to_f64();
                        let gg = gy * g[i].to_f64();
                        m1 += gg;
                        m2 += gg * xh;
                        acc[i] += gy * xh;
                        acc[d + i] += gy;
                    }
                    let (m1, m2) = (m1 / d as f64, m2 / d as f64);
                    for i in 0..d {
                        let xh = (xr[i].to_f64() - mean) * rstd;
                        let gg = dyr[i].to_f64() * g[i].to_f64();
                        dxr[i] = T::from_f64(rstd * (gg - m1 - xh * m2));
                    }
                }
                acc
            })
            .collect();
        let mut sums = vec![0f64; 2 * d];
        for p in &partials {
            sums.iter_mut().zip(p).for_each(|(a, b)| *a += b);
        }
        for (o, s) in out[x.len()..].iter_mut().zip(sums) {
            *o = T::from_f64(s);
        }
        out
    }
}

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "depth-layer-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        Ok((dispatch(self.name(), self, &[(s1, l1), (s2, l2), (s3, l3)])?, l1.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        Ok((crate::cuda::layer_norm((s1, l1), (s2, l2), (s3, l3), self.eps)?, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let d = gamma.dim(0)?;
        let rows = x.elem_count() / d;
        let all = x.apply_op3_no_bwd(gamma, &grad.contiguous()?, &LayerNormBwd { eps: self.eps })?;
        let dx = all.narrow(0, 0, rows)?.reshape(x.shape())?;
        let dgamma = all.narrow(0, rows, 1)?.reshape(d)?;
        let dbeta = all.narrow(0, rows + 1, 1)?.reshape(d)?;
        Ok((Some(dx), Some(dgamma), Some(dbeta)))
    }
}

impl CustomOp3 for LayerNormBwd {
    fn name(&self) -> &'static str {
        "depth-layer-norm-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let d = l2.shape().elem_count();
        let rows = l1.shape().elem_count() / d;
        Ok((dispatch(self.name(), self, &[(s1, l1), (s2, l2), (s3, l3)])?, Shape::from((rows + 2, d))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        let d = l2.shape().elem_count();
        let rows = l1.shape().elem_count() / d;
        Ok((crate::cuda::layer_norm_bwd((s1, l1), (s2, l2), (s3, l3), self.eps)?, Shape::from((rows + 2, d))))
    }
}
