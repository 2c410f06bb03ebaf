//! The CPU kernel: a separable 2-D resampling of contiguous (…, H, W) planes, first along W
//! into a float64 buffer, then along H (the order OpenCV uses), accumulating in float64.
//! Bilinear on float32 planes (two taps per output, the DPT head's resizes) takes a float32
//! path in PyTorch's order instead: the float64 plane cost more than the head's convolutions
//! under bf16. Its backward is the same op with both matrices transposed, so gradients of any
//! order exist. On CUDA with the fused kernels on, the same op runs `cuda/`'s two passes.

use super::taps::{Taps, TwoTaps};
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

    /// The input's shape with its last two dims resampled (checked against the taps).
    fn out_shape(&self, layout: &Layout) -> Result<Shape> {
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
        Ok(Shape::from(out_dims))
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

/// Two taps per output in both dims (bilinear) on float32 planes, in float32 arithmetic and
/// PyTorch's order: each input row's columns blended (`w0·x[j0] + w1·x[j1]`, once per input
/// row into a plane-sized buffer), then per output row its two blended rows
/// (`h0·r[i0] + h1·r[i1]`); planes in parallel, no float64 plane in between.
fn bilinear_f32(x: &[f32], rows: &TwoTaps, cols: &TwoTaps) -> Vec<f32> {
    let (h, w, ho, wo) = (rows.n_in, cols.n_in, rows.i0.len(), cols.i0.len());
    let in_range = |t: &TwoTaps, n: usize| t.i0.iter().chain(&t.i1).all(|&i| (i as usize) < n);
    assert!(in_range(rows, h) && in_range(cols, w), "resample taps outside the input");
    let mut out = vec![0f32; x.len() / (h * w).max(1) * ho * wo];
    out.par_chunks_mut(ho * wo).enumerate().for_each_init(
        || vec![0f32; h * wo],
        |blended, (plane, dst)| {
            let src = &x[plane * h * w..][..h * w];
            for (row, b) in src.chunks_exact(w).zip(blended.chunks_exact_mut(wo)) {
                blend_columns(row, cols, b);
            }
            for (o, d) in dst.chunks_exact_mut(wo).enumerate() {
                let at = |i: u32| &blended[i as usize * wo..][..wo];
                let (a, b, wa, wb) = (at(rows.i0[o]), at(rows.i1[o]), rows.w0[o], rows.w1[o]);
                d.iter_mut().zip(a.iter().zip(b)).for_each(|(v, (&a, &b))| *v = wa * a + wb * b);
            }
        },
    );
    out
}

/// `out[o] = w0[o]·row[i0[o]] + w1[o]·row[i1[o]]`, compiled for AVX-512 (gathers) when the CPU
/// has it. The caller has checked every index against `row`.
fn blend_columns(row: &[f32], cols: &TwoTaps, out: &mut [f32]) {
    #[inline(always)]
    fn body(row: &[f32], cols: &TwoTaps, out: &mut [f32]) {
        let n = out.len().min(cols.i0.len()).min(cols.i1.len()).min(cols.w0.len()).min(cols.w1.len());
        for o in 0..n {
            // SAFETY: o < n bounds every per-output array; the indices were checked < row.len().
            unsafe {
                let (i0, i1) = (*cols.i0.get_unchecked(o) as usize, *cols.i1.get_unchecked(o) as usize);
                *out.get_unchecked_mut(o) = *cols.w0.get_unchecked(o) * *row.get_unchecked(i0)
                    + *cols.w1.get_unchecked(o) * *row.get_unchecked(i1);
            }
        }
    }
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") {
        #[target_feature(enable = "avx512f,avx2,fma")]
        fn avx512(row: &[f32], cols: &TwoTaps, out: &mut [f32]) {
            body(row, cols, out)
        }
        // SAFETY: the feature was detected at run time.
        return unsafe { avx512(row, cols, out) };
    }
    body(row, cols, out)
}

impl CustomOp1 for Resample2d {
    fn name(&self) -> &'static str {
        "resample2d"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let out_shape = self.out_shape(layout)?;
        let two_taps = (self.rows.two_taps(), self.cols.two_taps());
        if let (CpuStorage::F32(x), Some(range), (Some(rows), Some(cols))) =
            (storage, layout.contiguous_offsets(), two_taps)
        {
            let out = bilinear_f32(&x[range.0..range.1], &rows, &cols);
            return Ok((CpuStorage::F32(out), out_shape));
        }
        Ok((dispatch(self.name(), self, &[(storage, layout)])?, out_shape))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        storage: &candle_core::CudaStorage,
        layout: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let out_shape = self.out_shape(layout)?;
        Ok((crate::cuda::resample((storage, layout), &self.rows, &self.cols)?, out_shape))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad_res.contiguous()?.apply_op1(self.adjoint())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The float32 bilinear path against the float64 kernel on the same (float32) taps, up and
    /// down, several planes, odd sizes.
    #[test]
    fn bilinear_f32_is_the_f64_kernel_to_rounding() {
        for (planes, (h, w), (ho, wo)) in
            [(3, (5, 7), (11, 16)), (2, (37, 37), (74, 74)), (1, (9, 13), (4, 5)), (2, (1, 6), (3, 1))]
        {
            let x: Vec<f32> = (0..planes * h * w).map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0).collect();
            let (rows, cols) =
                (Taps::linear_align_corners(h, ho, true), Taps::linear_align_corners(w, wo, true));
            let got = bilinear_f32(&x, &rows.two_taps().unwrap(), &cols.two_taps().unwrap());
            let op = Resample2d { rows: Arc::new(rows), cols: Arc::new(cols) };
            let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
            let want = op.run::<f64>(&[&x64]);
            assert_eq!(got.len(), want.len());
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (*a as f64 - b).abs() <= 1e-6 * b.abs().max(1.0),
                    "{:?} at {i}: {a} vs {b}",
                    (h, w, ho, wo)
                );
            }
        }
    }
}
