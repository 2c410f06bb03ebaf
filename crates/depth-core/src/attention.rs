//! Scaled dot-product attention `softmax(scale · Q Kᵀ) V` over (…, N, D) tensors, fused on the
//! CPU: per head and block of 64 queries the scores go to a cache-sized buffer, through the
//! vectorised softmax and straight into `· V`, blocks in parallel — the (N × N) matrix is never
//! written out. Backward recomputes the probabilities and applies the exact formulas. Off the
//! CPU, and under bf16 autocast (`precision.rs`: the products in bfloat16, the softmax in
//! float32), it is the composed (differentiable) candle ops; for inference under bf16 on a CPU
//! with AMX, the same blocks on bf16 tiles (`amx/`); on CUDA with the fused kernels switched on
//! (`device::fused_route`), flash-style kernels forward and backward (`cuda/`).

use crate::error::{CoreError, Result};
use crate::float::{Float, Kernel, dispatch};
use crate::gemm::{Mat, gemm_into};
use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

const BLOCK: usize = 64;
/// The head dimension the fused CUDA kernel takes (every DINOv2 size has 64).
pub(crate) const FUSED_HEAD_DIM: usize = 64;

/// `softmax(scale · q kᵀ) v` for q, k, v of shape (…, N, D) (same leading dims).
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Result<Tensor> {
    if q.dims() != k.dims() || q.dims() != v.dims() || q.rank() < 2 {
        return Err(CoreError::bad_input(
            "attention",
            format!("q {:?}, k {:?}, v {:?} must have one shape (…, N, D)", q.dims(), k.dims(), v.dims()),
        ));
    }
    if crate::device::fused_route(q) && q.dim(candle_core::D::Minus1)? == FUSED_HEAD_DIM {
        return fused_cuda_attention(q, k, v, scale);
    }
    if crate::precision::amx_inference(&[q, k, v]) {
        // bf16 autocast for inference on an AMX CPU: both products on bf16 tiles
        return amx_attention(q, k, v, scale);
    }
    if let Some(low) = crate::precision::lowered(q) {
        // bf16 autocast: both products in bfloat16, the softmax in float32
        let (f32, low_of) = (q.dtype(), |t: &Tensor| t.to_dtype(low));
        let scores = low_of(q)?.matmul(&low_of(k)?.t()?)?.to_dtype(f32)?;
        let p = crate::softmax::softmax_last_dim(&(scores * scale)?)?;
        return Ok(low_of(&p)?.matmul(&low_of(v)?)?.to_dtype(f32)?);
    }
    if !q.device().is_cpu() {
        let p = crate::softmax::softmax_last_dim(&(q.matmul(&k.t()?)? * scale)?)?;
        return Ok(p.matmul(v)?);
    }
    let op = Attention { scale };
    Ok(q.contiguous()?.apply_op3(&k.contiguous()?, &v.contiguous()?, op)?)
}

/// The fused CUDA kernel (flash-style, head dimension 64): float32, or bfloat16 under bf16
/// autocast (the inputs rounded to bfloat16 as autocast's products take them, the softmax and
/// both sums in float32 inside the kernel, the output widened back).
fn fused_cuda_attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Result<Tensor> {
    let low = crate::precision::lowered(q);
    let prep = |t: &Tensor| -> Result<Tensor> {
        let t = match low {
            Some(dt) => t.to_dtype(dt)?,
            None => t.to_dtype(q.dtype())?,
        };
        aligned(&t)
    };
    let out = prep(q)?.apply_op3(&prep(k)?, &prep(v)?, Attention { scale })?;
    Ok(if low.is_some() { out.to_dtype(q.dtype())? } else { out })
}

/// `t` contiguous and starting at a multiple of 8 elements (a copy if it does not), as the
/// tensor-core kernels' 16-byte loads need.
fn aligned(t: &Tensor) -> Result<Tensor> {
    let t = t.contiguous()?;
    let offset = t.storage_and_layout().1.start_offset();
    Ok(if offset % 8 == 0 { t } else { t.copy()? })
}

/// The AMX route: q, k and v read where they lie (the heads of a permuted qkv projection are
/// strided views of it), the output written as (B, N, H, D) for a rank-4 input and returned as
/// its (B, H, N, D) view, so that the usual transpose back to (B, N, H·D) costs no copy.
fn amx_attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Result<Tensor> {
    let rank = q.rank();
    let (n, d) = (q.dim(rank - 2)?, q.dim(rank - 1)?);
    let lead: usize = q.dims()[..rank - 2].iter().product();
    // a view whose columns are not adjacent, or not float32, is made so first
    let own = |t: &Tensor| -> Result<Tensor> {
        Ok(if t.dtype() == candle_core::DType::F32 && t.stride()[rank - 1] == 1 {
            t.clone()
        } else {
            t.to_dtype(candle_core::DType::F32)?.contiguous()?
        })
    };
    let (q, k, v) = (own(q)?, own(k)?, own(v)?);
    let guards = [&q, &k, &v].map(|t| t.storage_and_layout());
    let mut views = Vec::with_capacity(3);
    for (storage, layout) in &guards {
        let candle_core::Storage::Cpu(candle_core::CpuStorage::F32(data)) = &**storage else {
            return Err(CoreError::bad_input("attention", "the AMX route needs float32 tensors on the CPU"));
        };
        views.push(crate::amx::Heads {
            data,
            offsets: head_offsets(layout),
            row_stride: layout.stride()[rank - 2],
        });
    }
    let by_token = rank == 4;
    let (heads, out_row) = if by_token { (q.dim(1)?, q.dim(1)? * d) } else { (1, d) };
    let offsets: Vec<usize> = (0..lead)
        .map(|i| if by_token { (i / heads) * n * heads * d + (i % heads) * d } else { i * n * d })
        .collect();
    let mut out = vec![0f32; lead * n * d];
    crate::amx::attention(
        (&views[0], &views[1], &views[2]),
        (n, d),
        scale as f32,
        (&mut out, &offsets, out_row),
    );
    drop(guards);
    Ok(if by_token {
        Tensor::from_vec(out, (q.dim(0)?, n, heads, d), q.device())?.transpose(1, 2)?
    } else {
        Tensor::from_vec(out, q.shape(), q.device())?
    })
}

/// The start of every (N × D) matrix of a (…, N, D) layout, leading indices in row-major order.
fn head_offsets(layout: &Layout) -> Vec<usize> {
    let (dims, strides) = (layout.dims(), layout.stride());
    let lead = &dims[..dims.len() - 2];
    let mut offsets = vec![layout.start_offset()];
    for (&dim, &stride) in lead.iter().zip(strides) {
        offsets = offsets.iter().flat_map(|&o| (0..dim).map(move |i| o + i * stride)).collect();
    }
    offsets
}

struct Attention {
    scale: f64,
}

/// The blocked forward over heads of `n` rows of width `d`.
struct Blocked {
    n: usize,
    d: usize,
    scale: f64,
}

impl Kernel for Blocked {
    fn run<T: Float>(&self, xs: &[&[T]]) -> Vec<T> {
        let (q, k, v, n, d) = (xs[0], xs[1], xs[2], self.n, self.d);
        let scale = T::from_f64(self.scale);
        let mut out = vec![T::zero(); q.len()];
        out.par_chunks_mut(n * d).enumerate().for_each(|(head, o)| {
            let (kh, vh) = (&k[head * n * d..][..n * d], &v[head * n * d..][..n * d]);
            o.par_chunks_mut(BLOCK * d).enumerate().for_each_init(Vec::new, |s: &mut Vec<T>, (blk, ob)| {
                let rows = ob.len() / d;
                let qb = &q[head * n * d + blk * BLOCK * d..][..rows * d];
                s.resize(rows * n, T::zero());
                // S = scale · Q_blk Kᵀ, then row softmax, then O_blk = S V
                gemm_into((rows, n, d), s, n, false, Mat::rows(qb, d), Mat::transposed(kh, d), scale);
                s.chunks_mut(n).for_each(|row| T::softmax_row(row, T::one()));
                gemm_into((rows, d, n), ob, d, false, Mat::rows(s, n), Mat::rows(vh, d), T::one());
            });
        });
        out
    }
}

impl CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        "depth-attention"
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
        let dims = l1.shape().dims();
        let kernel = Blocked { n: dims[dims.len() - 2], d: dims[dims.len() - 1], scale: self.scale };
        Ok((dispatch(self.name(), &kernel, &[(s1, l1), (s2, l2), (s3, l3)])?, l1.shape().clone()))
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
        let n = fused_rows(l1)?;
        Ok((crate::cuda::flash_fwd((s1, l1), (s2, l2), (s3, l3), n, self.scale)?, l1.shape().clone()))
    }

    /// P = softmax(s Q Kᵀ); dV = Pᵀ dO; dS = P ⊙ (dO Vᵀ − rowsum(P ⊙ dO Vᵀ)); dQ = s dS K; dK = s dSᵀ Q.
    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        out: &Tensor,
        d_out: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        if q.device().is_cuda() {
            // the fused kernels: q, k, v stacked as one input, dq, dk, dv stacked as the output
            let qkv = Tensor::stack(&[q.detach(), k.detach(), v.detach()], 0)?;
            let bwd = AttentionBwd { scale: self.scale };
            let (out, d_out) = (
                aligned(out).map_err(candle_core::Error::wrap)?,
                aligned(d_out).map_err(candle_core::Error::wrap)?,
            );
            let g = qkv.apply_op3_no_bwd(&out, &d_out, &bwd)?;
            return Ok((Some(g.get(0)?), Some(g.get(1)?), Some(g.get(2)?)));
        }
        let (q, k, v) = (q.detach(), k.detach(), v.detach());
        let p = crate::softmax::softmax_last_dim(&(q.matmul(&k.t()?)? * self.scale)?)?.detach();
        let d_out = d_out.contiguous()?;
        let dv = p.t()?.matmul(&d_out)?;
        let dp = d_out.matmul(&v.t()?)?.contiguous()?;
        let ds = p.apply_op2_no_bwd(&dp, &crate::softmax::SoftmaxBwd)?;
        let dq = (ds.matmul(&k)? * self.scale)?;
        let dk = (ds.t()?.matmul(&q)? * self.scale)?;
        Ok((Some(dq), Some(dk), Some(dv)))
    }
}

/// N of a (…, N, D) layout whose D is the fused kernel's head dimension.
#[cfg(feature = "cuda")]
fn fused_rows(l: &Layout) -> candle_core::Result<usize> {
    let dims = l.shape().dims();
    let (n, d) = (dims[dims.len() - 2], dims[dims.len() - 1]);
    if d != FUSED_HEAD_DIM {
        candle_core::bail!("depth-attention: the CUDA kernel takes head dimension {FUSED_HEAD_DIM}, got {d}");
    }
    Ok(n)
}

/// The fused CUDA backward: from q, k, v stacked (3, …, N, 64), the output and its gradient, to
/// dq, dk, dv stacked the same way. CUDA only (the CPU backward is the composed one above).
struct AttentionBwd {
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    scale: f64,
}

impl CustomOp3 for AttentionBwd {
    fn name(&self) -> &'static str {
        "depth-attention-bwd"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        candle_core::bail!("depth-attention-bwd is the CUDA kernels' backward; the CPU has its own")
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
        let n = fused_rows(l1)?;
        Ok((crate::cuda::flash_bwd((s1, l1), (s2, l2), (s3, l3), n, self.scale)?, l1.shape().clone()))
    }
}
