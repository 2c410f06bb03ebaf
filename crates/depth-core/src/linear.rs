//! PyTorch's `nn.Linear` (y = x·Wᵀ + b over the last dim) as one differentiable CPU op.
//! candle_nn's Linear is a matmul plus a broadcast add: its backward reduces the bias gradient
//! over every leading dim with a strided sum, and its autograd adds a zero tensor and a copy for
//! each of the three gradients. Here the bias is part of the gemm (rows start at the bias) and
//! the backward computes dx, dW and db directly: dx by independent row blocks, dW and db as
//! sums over fixed groups of rows added in order, so they are the same bits on any thread count.
//! Off the CPU: candle's matmul and broadcast add; under bf16 autocast (`precision.rs`) the
//! matmul in bfloat16.

use crate::disjoint::DisjointOut;
use crate::error::Result;
use crate::float::{Float, Kernel, dispatch};
use crate::gemm::{Mat, gemm_into, gemm_raw};
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor, WithDType};
use rayon::prelude::*;

/// The fewest rows per block of the forward and dx.
const MIN_ROWS: usize = 64;
/// Rows per partial sum of dW and db.
const GROUP: usize = 256;

/// x (…, K) · wᵀ (w: N × K) + b (N).
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let k =
        *dims.last().ok_or_else(|| crate::CoreError::bad_input("linear", "the input has no dimensions"))?;
    let (n, k2) = w.dims2()?;
    if k != k2 || b.is_some_and(|b| b.dims() != [n]) {
        return Err(crate::CoreError::bad_input(
            "linear",
            format!("input {dims:?}, weight {:?}, bias {:?}", w.dims(), b.map(|b| b.dims().to_vec())),
        ));
    }
    if crate::precision::amx_inference(&[x, w]) {
        // bf16 autocast for inference on a CPU with AMX: the product on bf16 tiles, the weight
        // packed once
        let m = x.elem_count() / k.max(1);
        let packed = crate::amx::packed(w.id(), || {
            crate::amx::with_values(w, |wv| crate::amx::PackedWeight::new(wv, n, k))
        })?;
        let bias = b.map(|b| crate::amx::with_values(b, <[f32]>::to_vec)).transpose()?;
        let mut out = vec![0f32; m * n];
        crate::amx::with_values(x, |xv| crate::amx::linear(xv, m, &packed, bias.as_deref(), &mut out))?;
        let mut shape = dims;
        *shape.last_mut().expect("checked above") = n;
        return Ok(Tensor::from_vec(out, shape, x.device())?);
    }
    if let Some(low) = crate::precision::lowered(x) {
        // bf16 autocast: the product in bfloat16, widened, the bias added in float32
        let y = x.to_dtype(low)?.broadcast_matmul(&w.to_dtype(low)?.t()?)?.to_dtype(x.dtype())?;
        return Ok(match b {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        });
    }
    let cpu = x.device().is_cpu() && matches!(x.dtype(), candle_core::DType::F32 | candle_core::DType::F64);
    if !cpu {
        let y = x.broadcast_matmul(&w.t()?)?;
        return Ok(match b {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        });
    }
    let m = x.elem_count() / k.max(1);
    let bias = match b {
        Some(b) => b.contiguous()?,
        None => Tensor::zeros(n, w.dtype(), w.device())?,
    };
    let y = x.contiguous()?.reshape((m, k))?.apply_op3(&w.contiguous()?, &bias, LinearOp)?;
    let mut out = dims;
    *out.last_mut().expect("checked above") = n;
    Ok(y.reshape(out)?)
}

struct LinearOp;

/// out (m × n) = [init +] lhs (m × kk) · rhs, by independent blocks of rows; `init(r)`
/// gives the starting value of every row (the bias) or None for zero.
fn rows_gemm<T: WithDType>(
    m: usize,
    n: usize,
    kk: usize,
    lhs: &[T],
    rhs: Mat<T>,
    init: Option<&[T]>,
) -> Vec<T> {
    let mut out = vec![T::zero(); m * n];
    let ptr = DisjointOut::new(&mut out);
    // One block per thread: gemm repacks the whole weight for every call, which at 64 rows cost
    // as much as the products. A row's result does not depend on its block (gemm's k-blocking
    // depends on k alone), so the bits are the same for any block size and thread count.
    let rows_per = m.div_ceil(rayon::current_num_threads()).max(MIN_ROWS);
    let blocks = m.div_ceil(rows_per);
    let run = |blk: usize| {
        let (r0, rows) = (blk * rows_per, rows_per.min(m - blk * rows_per));
        // SAFETY: block `blk` alone writes rows r0..r0+rows.
        let dst = unsafe { ptr.region(r0 * n, rows * n) };
        if let Some(b) = init {
            dst.chunks_mut(n).for_each(|row| row.copy_from_slice(b));
        }
        // SAFETY: dst covers the rows written (rows × n at stride n).
        unsafe {
            gemm_raw(
                (rows, n, kk),
                dst.as_mut_ptr(),
                n,
                init.is_some(),
                Mat::rows(&lhs[r0 * kk..][..rows * kk], kk),
                rhs,
                T::one(),
            )
        };
    };
    (0..blocks).into_par_iter().for_each(run);
    out
}

impl Kernel for LinearOp {
    fn run<T: Float>(&self, xs: &[&[T]]) -> Vec<T> {
        let (x, w, b) = (xs[0], xs[1], xs[2]);
        let (n, k) = (b.len(), w.len() / b.len().max(1));
        rows_gemm(x.len() / k.max(1), n, k, x, Mat::transposed(w, k), Some(b))
    }
}

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "depth-linear"
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
        let (m, n) = (l1.dims()[0], l2.dims()[0]);
        Ok((dispatch(self.name(), self, &[(s1, l1), (s2, l2), (s3, l3)])?, Shape::from((m, n))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let dx = dy.apply_op2_no_bwd(w, &InputGrad)?;
        let (n, k) = w.dims2()?;
        let dwb = x.apply_op2_no_bwd(&dy, &WeightGrad)?;
        let dw = dwb.narrow(0, 0, n * k)?.reshape((n, k))?;
        let db = dwb.narrow(0, n * k, n)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// dx (m × k) = dy (m × n) · w (n × k).
struct InputGrad;

impl CustomOp2 for InputGrad {
    fn name(&self) -> &'static str {
        "depth-linear-dx"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (m, n) = l1.shape().dims2()?;
        let k = l2.dims()[1];
        Ok((dispatch(self.name(), &InputGradKernel { m, n, k }, &[(s1, l1), (s2, l2)])?, Shape::from((m, k))))
    }
}

struct InputGradKernel {
    m: usize,
    n: usize,
    k: usize,
}

impl Kernel for InputGradKernel {
    fn run<T: Float>(&self, xs: &[&[T]]) -> Vec<T> {
        rows_gemm(self.m, self.k, self.n, xs[0], Mat::rows(xs[1], self.k), None)
    }
}

/// dW (n × k) then db (n), flat, from (x (m × k), dy (m × n)).
struct WeightGrad;

struct WeightGradKernel {
    m: usize,
    n: usize,
    k: usize,
}

impl Kernel for WeightGradKernel {
    fn run<T: Float>(&self, xs: &[&[T]]) -> Vec<T> {
        let (x, dy) = (xs[0], xs[1]);
        let (m, n, k) = (self.m, self.n, self.k);
        let partials: Vec<Vec<T>> = (0..m.div_ceil(GROUP))
            .into_par_iter()
            .map(|g| {
                let (r0, rows) = (g * GROUP, GROUP.min(m - g * GROUP));
                let mut acc = vec![T::zero(); n * k + n];
                let (dw, db) = acc.split_at_mut(n * k);
                let dyg = &dy[r0 * n..][..rows * n];
                // dW (n × k) = dy_gᵀ (n × rows) · x_g (rows × k)
                gemm_into(
                    (n, k, rows),
                    dw,
                    k,
                    false,
                    Mat::transposed(dyg, n),
                    Mat::rows(&x[r0 * k..][..rows * k], k),
                    T::one(),
                );
                for row in dyg.chunks(n) {
                    db.iter_mut().zip(row).for_each(|(s, &v)| *s += v);
                }
                acc
            })
            .collect();
        let mut sum = vec![T::zero(); n * k + n];
        for p in partials {
            sum.iter_mut().zip(p).for_each(|(a, b)| *a += b);
        }
        sum
    }
}

impl CustomOp2 for WeightGrad {
    fn name(&self) -> &'static str {
        "depth-linear-dw"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (m, k) = l1.shape().dims2()?;
        let n = l2.dims()[1];
        Ok((
            dispatch(self.name(), &WeightGradKernel { m, n, k }, &[(s1, l1), (s2, l2)])?,
            Shape::from(n * k + n),
        ))
    }
}

/// A `Linear` layer (keys `weight`, `bias`) running [`linear`].
#[derive(Clone, Debug)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self { weight, bias }
    }
}

impl candle_core::Module for Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        Ok(linear(x, &self.weight, self.bias.as_ref())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, IndexOp};

    /// A row's output does not depend on the block it was computed in: rows 0..70 alone (one
    /// block) equal the same rows inside 301 (blocks per thread), bit for bit.
    #[test]
    fn rows_do_not_depend_on_their_block() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (301, 384), &dev).unwrap();
        let w = Tensor::randn(0f32, 0.05, (1152, 384), &dev).unwrap();
        let b = Tensor::randn(0f32, 0.1, 1152, &dev).unwrap();
        let full = linear(&x, &w, Some(&b)).unwrap().i(0..70).unwrap();
        let part = linear(&x.i(0..70).unwrap(), &w, Some(&b)).unwrap();
        let (a, c) = (
            full.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            part.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        assert!(a.iter().zip(&c).all(|(p, q)| p.to_bits() == q.to_bits()));
    }
}
