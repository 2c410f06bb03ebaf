//! A CPU stride-1 conv2d as tiled im2col + gemm: each tile of output rows builds its column
//! matrix (C·k·k × positions, cache-sized) and multiplies it by the weights straight into the
//! NCHW output, tiles in parallel. candle's im2col builds the whole column matrix at once
//! (≈300 MB for 32 channels at 518²) and runs 3–5× slower. The bias is part of the op: the
//! output rows start at the bias and the gemm accumulates onto them (a separate broadcast add
//! and the strided reduction of its backward cost more than the conv at the DPT head's sizes).
//! Backward: dx is the same conv of the gradient with the flipped, transposed kernel; dW and db
//! accumulate gradient × columnsᵀ and the gradient's sums per tile, in fixed groups of tiles
//! added in order, so the result never depends on thread scheduling.

use crate::disjoint::DisjointOut;
use crate::float::{Float, Kernel, dispatch};
use crate::gemm::{Mat, gemm_into, gemm_raw};
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

/// Output positions per tile: the column matrix stays within a few hundred KB.
const TILE_POSITIONS: usize = 1024;

#[derive(Clone, Copy, Debug)]
struct Geometry {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    k: usize,
    p: usize,
    ho: usize,
    wo: usize,
    /// Convolve max(x, 0) instead of x (a ReLU fused in front, see `conv2d_relu_input`).
    relu: bool,
}

impl Geometry {
    fn new(x: &Layout, w: &Layout, p: usize, relu: bool) -> Result<Self> {
        let (n, c, h, wd) = x.shape().dims4()?;
        let (o, c2, k, k2) = w.shape().dims4()?;
        if c != c2 || k != k2 || p >= k || h + 2 * p < k || wd + 2 * p < k {
            candle_core::bail!(
                "conv2d: input {:?}, kernel {:?}, padding {p} not supported",
                x.dims(),
                w.dims()
            );
        }
        Ok(Self { n, c, h, w: wd, o, k, p, ho: h + 2 * p - k + 1, wo: wd + 2 * p - k + 1, relu })
    }

    fn ckk(&self) -> usize {
        self.c * self.k * self.k
    }

    /// (batch index, first output row, rows) of every tile.
    fn tiles(&self) -> Vec<(usize, usize, usize)> {
        let rows = (TILE_POSITIONS / self.wo).clamp(1, self.ho);
        (0..self.n)
            .flat_map(|b| (0..self.ho).step_by(rows).map(move |y| (b, y, rows.min(self.ho - y))))
            .collect()
    }

    /// Fills `col` (ckk × rows·wo) with the input patches of output rows y0..y0+rows of image `b`.
    fn im2col<T: WithDType>(&self, x: &[T], b: usize, y0: usize, rows: usize, col: &mut [T]) {
        let npos = rows * self.wo;
        let (k, p) = (self.k, self.p);
        for c in 0..self.c {
            let plane = &x[(b * self.c + c) * self.h * self.w..][..self.h * self.w];
            for ky in 0..k {
                for kx in 0..k {
                    let q = (c * k + ky) * k + kx;
                    // output columns whose input column xo + kx − p lies inside the image
                    let lo = p.saturating_sub(kx).min(self.wo);
                    let hi = (self.w + p).saturating_sub(kx).min(self.wo).max(lo);
                    for r in 0..rows {
                        let dst = &mut col[q * npos + r * self.wo..][..self.wo];
                        let yi = (y0 + r + ky) as isize - p as isize;
                        if yi < 0 || yi >= self.h as isize {
                            dst.fill(T::zero());
                            continue;
                        }
                        let src = &plane[yi as usize * self.w..][..self.w];
                        dst[..lo].fill(T::zero());
                        let src = &src[lo + kx - p..hi + kx - p];
                        if self.relu {
                            dst[lo..hi]
                                .iter_mut()
                                .zip(src)
                                .for_each(|(d, &v)| *d = if v > T::zero() { v } else { T::zero() });
                        } else {
                            dst[lo..hi].copy_from_slice(src);
                        }
                        dst[hi..].fill(T::zero());
                    }
                }
            }
        }
    }
}

/// The forward of one geometry, from (x, w, bias).
struct Forward(Geometry);

impl Kernel for Forward {
    fn run<T: Float>(&self, xs: &[&[T]]) -> Vec<T> {
        forward(self.0, xs[0], xs[1], xs[2])
    }
}

/// dW (o × c·k·k) followed by db (o) of one geometry, from (x, dy).
struct WeightGradKernel(Geometry);

impl Kernel for WeightGradKernel {
    fn run<T: Float>(&self, xs: &[&[T]]) -> Vec<T> {
        weight_grad(self.0, xs[0], xs[1])
    }
}

fn forward<T: WithDType>(g: Geometry, x: &[T], wt: &[T], bias: &[T]) -> Vec<T> {
    let plane = g.ho * g.wo;
    let mut y = vec![T::zero(); g.n * g.o * plane];
    let out = DisjointOut::new(&mut y);
    let ckk = g.ckk();
    g.tiles().into_par_iter().for_each_init(Vec::new, |col: &mut Vec<T>, (b, y0, rows)| {
        let npos = rows * g.wo;
        col.resize(ckk * npos, T::zero());
        g.im2col(x, b, y0, rows, col);
        let first = b * g.o * plane + y0 * g.wo;
        for (o, &bo) in bias.iter().enumerate() {
            // SAFETY: this tile alone writes rows y0..y0+rows (npos values from `first`) of every
            // output plane of image b.
            unsafe { out.region(first + o * plane, npos) }.fill(bo);
        }
        // SAFETY: as above; dst rows are `npos` long at stride `plane`, accumulated onto the bias.
        let dst = unsafe { out.at(first, g.o.saturating_sub(1) * plane + npos) };
        unsafe {
            gemm_raw((g.o, npos, ckk), dst, plane, true, Mat::rows(wt, ckk), Mat::rows(col, npos), T::one())
        };
    });
    y
}

/// Tiles per group of the weight-gradient sum (a constant: the grouping, and so the rounding,
/// is the same on every run and thread count).
const TILES_PER_GROUP: usize = 4;

fn weight_grad<T: WithDType>(g: Geometry, x: &[T], dy: &[T]) -> Vec<T> {
    let (plane, ckk) = (g.ho * g.wo, g.ckk());
    let tiles = g.tiles();
    let partials: Vec<Vec<T>> = tiles
        .par_chunks(TILES_PER_GROUP)
        .map(|group| {
            let mut acc = vec![T::zero(); g.o * ckk + g.o];
            let mut col = Vec::new();
            for &(b, y0, rows) in group {
                let npos = rows * g.wo;
                col.resize(ckk * npos, T::zero());
                g.im2col(x, b, y0, rows, &mut col);
                let grad = &dy[b * g.o * plane + y0 * g.wo..];
                let (dw, db) = acc.split_at_mut(g.o * ckk);
                for (o, s) in db.iter_mut().enumerate() {
                    *s += grad[o * plane..][..npos].iter().fold(T::zero(), |a, &v| a + v);
                }
                // dW (o × ckk) += dy_tile (o × npos) · colᵀ (npos × ckk)
                let grad = Mat { data: grad, rs: plane, cs: 1 };
                gemm_into((g.o, ckk, npos), dw, ckk, true, grad, Mat::transposed(&col, npos), T::one());
            }
            acc
        })
        .collect();
    let mut sum = vec![T::zero(); g.o * ckk + g.o];
    for p in partials {
        sum.iter_mut().zip(p).for_each(|(a, b)| *a += b);
    }
    sum
}

/// Stride-1 convolution of contiguous NCHW `x` (or of max(x, 0) with `relu_input`) with OIHW
/// `w` plus a bias per output channel, zero padding `padding`.
#[derive(Clone, Copy, Debug)]
pub(super) struct TiledConv2d {
    pub padding: usize,
    pub relu_input: bool,
}

impl CustomOp3 for TiledConv2d {
    fn name(&self) -> &'static str {
        "tiled-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Geometry::new(l1, l2, self.padding, self.relu_input)?;
        if l3.dims() != [g.o] {
            candle_core::bail!("{}: bias {:?} for {} output channels", self.name(), l3.dims(), g.o);
        }
        let y = dispatch(self.name(), &Forward(g), &[(s1, l1), (s2, l2), (s3, l3)])?;
        Ok((y, Shape::from((g.n, g.o, g.ho, g.wo))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (o, c, k, _) = w.dims4()?;
        let dy = dy.contiguous()?;
        let rev: Vec<u32> = (0..k as u32).rev().collect();
        let rev = Tensor::new(rev.as_slice(), w.device())?;
        let flipped =
            w.transpose(0, 1)?.contiguous()?.index_select(&rev, 2)?.index_select(&rev, 3)?.contiguous()?;
        let zero = Tensor::zeros(c, w.dtype(), w.device())?;
        let dx =
            dy.apply_op3(&flipped, &zero, TiledConv2d { padding: k - 1 - self.padding, relu_input: false })?;
        // through the fused ReLU: the gradient passes where x > 0
        let dx = if self.relu_input { x.apply_op2_no_bwd(&dx, &crate::relu::ReluBwd)? } else { dx };
        let dwb =
            x.apply_op2_no_bwd(&dy, &WeightGrad { padding: self.padding, k, relu_input: self.relu_input })?;
        let dw = dwb.narrow(0, 0, o * c * k * k)?.reshape((o, c, k, k))?;
        let db = dwb.narrow(0, o * c * k * k, o)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// dW and db of [`TiledConv2d`] from (x, dy), flat: o·c·k·k weights then o biases.
struct WeightGrad {
    padding: usize,
    k: usize,
    relu_input: bool,
}

impl CustomOp2 for WeightGrad {
    fn name(&self) -> &'static str {
        "tiled-conv2d-weight-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = l1.shape().dims4()?;
        let o = l2.shape().dims4()?.1;
        let (k, p) = (self.k, self.padding);
        let g = Geometry {
            n,
            c,
            h,
            w,
            o,
            k,
            p,
            ho: h + 2 * p - k + 1,
            wo: w + 2 * p - k + 1,
            relu: self.relu_input,
        };
        if l2.shape().dims4()? != (n, o, g.ho, g.wo) {
            candle_core::bail!(
                "{}: gradient {:?} does not fit input {:?}",
                self.name(),
                l2.dims(),
                l1.dims()
            );
        }
        let dwb = dispatch(self.name(), &WeightGradKernel(g), &[(s1, l1), (s2, l2)])?;
        Ok((dwb, Shape::from(o * c * k * k + o)))
    }
}
