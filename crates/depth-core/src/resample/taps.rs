//! 1-D resampling rules as sparse matrices (CSR): output sample `o` is `Σ w[k] · x[idx[k]]` over
//! row `o`. Bilinear, PyTorch's bicubic and OpenCV's cubic are all such matrices; the 2-D op
//! applies one along H and one along W, and its gradient applies the transposes.

/// Keys A of the cubic convolution kernel used by both PyTorch and OpenCV.
const CUBIC_A: f64 = -0.75;

/// A 1-D resampling from `n_in` to `n_out` samples as a sparse row-major matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct Taps {
    n_in: usize,
    offsets: Vec<usize>,
    idx: Vec<u32>,
    w: Vec<f64>,
}

/// Two taps per output, split by tap: output o reads `i0[o]` and `i1[o]` with `w0[o]`, `w1[o]`.
pub(crate) struct TwoTaps {
    pub n_in: usize,
    pub i0: Vec<u32>,
    pub i1: Vec<u32>,
    pub w0: Vec<f32>,
    pub w1: Vec<f32>,
}

/// Arithmetic in the precision the reference library uses: with `f32` every result is rounded
/// to single precision, which reproduces IEEE float32 arithmetic exactly for +, −, ×, ÷.
#[derive(Clone, Copy)]
struct Arith {
    f32: bool,
}

impl Arith {
    fn r(self, v: f64) -> f64 {
        if self.f32 { v as f32 as f64 } else { v }
    }
    fn add(self, a: f64, b: f64) -> f64 {
        self.r(a + b)
    }
    fn sub(self, a: f64, b: f64) -> f64 {
        self.r(a - b)
    }
    fn mul(self, a: f64, b: f64) -> f64 {
        self.r(a * b)
    }
}

impl Taps {
    /// Builds a matrix where every output has `K` taps; indices are clamped to the input
    /// (replicated border), repeated indices simply add up.
    fn fixed<const K: usize>(n_in: usize, n_out: usize, f: impl Fn(usize) -> (i64, [f64; K])) -> Self {
        let mut idx = Vec::with_capacity(n_out * K);
        let mut w = Vec::with_capacity(n_out * K);
        for o in 0..n_out {
            let (first, weights) = f(o);
            for (k, wk) in weights.into_iter().enumerate() {
                idx.push((first + k as i64).clamp(0, n_in as i64 - 1) as u32);
                w.push(wk);
            }
        }
        let offsets = (0..=n_out).map(|o| o * K).collect();
        Self { n_in, offsets, idx, w }
    }

    /// PyTorch `interpolate(mode="bilinear"/"linear", align_corners=True)`:
    /// source = dst · (in − 1)/(out − 1). `f32` selects float32 arithmetic as PyTorch uses for
    /// float32 tensors.
    pub fn linear_align_corners(n_in: usize, n_out: usize, f32: bool) -> Self {
        let a = Arith { f32 };
        let scale = if n_out > 1 { a.r(a.r((n_in - 1) as f64) / (n_out - 1) as f64) } else { 0.0 };
        Self::fixed::<2>(n_in, n_out, |o| {
            let src = a.mul(scale, o as f64);
            let i0 = (src.floor() as i64).min(n_in as i64 - 1);
            let l1 = if i0 < n_in as i64 - 1 { a.sub(src, i0 as f64) } else { 0.0 };
            (i0, [a.sub(1.0, l1), l1])
        })
    }

    /// PyTorch `interpolate(mode="bicubic", align_corners=False, antialias=False)`.
    /// With `scale = Some(s)` (a `scale_factor` call without recompute) the source coordinate is
    /// `(dst + 0.5)/s − 0.5`, otherwise `(dst + 0.5)·in/out − 0.5`; A = −0.75, border clamped.
    pub fn cubic_torch(n_in: usize, n_out: usize, scale: Option<f64>, f32: bool) -> Self {
        let a = Arith { f32 };
        let step = match scale {
            Some(s) if s > 0.0 => a.r(1.0 / s),
            _ => a.r(a.r(n_in as f64) / n_out as f64),
        };
        let cc1 = |x: f64| {
            // ((A + 2)·x − (A + 3))·x·x + 1
            let t = a.sub(a.mul(CUBIC_A + 2.0, x), CUBIC_A + 3.0);
            a.add(a.mul(a.mul(t, x), x), 1.0)
        };
        let cc2 = |x: f64| {
            // ((A·x − 5A)·x + 8A)·x − 4A
            let t = a.sub(a.mul(CUBIC_A, x), 5.0 * CUBIC_A);
            let t = a.add(a.mul(t, x), 8.0 * CUBIC_A);
            a.sub(a.mul(t, x), 4.0 * CUBIC_A)
        };
        Self::fixed::<4>(n_in, n_out, |o| {
            let src = a.sub(a.mul(step, a.add(o as f64, 0.5)), 0.5);
            let i = src.floor();
            let t = a.sub(src, i);
            let u = a.sub(1.0, t);
            (i as i64 - 1, [cc2(a.add(t, 1.0)), cc1(t), cc1(u), cc2(a.add(u, 1.0))])
        })
    }

    /// OpenCV `cv::resize(INTER_CUBIC)`: position `(float)((dst + 0.5)·in/out − 0.5)` from a
    /// double scale, weights in float32 (the fourth is 1 − the other three), replicated border,
    /// no antialiasing. Equal sizes copy, as OpenCV does.
    pub fn cubic_opencv(n_in: usize, n_out: usize) -> Self {
        if n_in == n_out {
            return Self::fixed::<1>(n_in, n_out, |o| (o as i64, [1.0]));
        }
        let a = Arith { f32: true };
        let scale = 1.0 / (n_out as f64 / n_in as f64);
        let ca = CUBIC_A;
        Self::fixed::<4>(n_in, n_out, |o| {
            let fx = a.r((o as f64 + 0.5) * scale - 0.5);
            let sx = fx.floor();
            let x = a.sub(fx, sx);
            let x1 = a.add(x, 1.0);
            let c0 = a.sub(a.mul(a.add(a.mul(a.sub(a.mul(ca, x1), 5.0 * ca), x1), 8.0 * ca), x1), 4.0 * ca);
            let c1 = a.add(a.mul(a.mul(a.sub(a.mul(ca + 2.0, x), ca + 3.0), x), x), 1.0);
            let y = a.sub(1.0, x);
            let c2 = a.add(a.mul(a.mul(a.sub(a.mul(ca + 2.0, y), ca + 3.0), y), y), 1.0);
            let c3 = a.sub(a.sub(a.sub(1.0, c0), c1), c2);
            (sx as i64 - 1, [c0, c1, c2, c3])
        })
    }

    /// These taps as two per output with float32 weights, when they are (bilinear; the
    /// weights are float32 values already when made for float32 arithmetic).
    pub(crate) fn two_taps(&self) -> Option<TwoTaps> {
        let n = self.n_out();
        if (0..n).any(|o| self.offsets[o + 1] - self.offsets[o] != 2)
            || self.w.iter().any(|&w| w as f32 as f64 != w)
        {
            return None;
        }
        let pick = |k: usize| (0..n).map(|o| self.idx[2 * o + k]).collect();
        let weight = |k: usize| (0..n).map(|o| self.w[2 * o + k] as f32).collect();
        Some(TwoTaps { n_in: self.n_in, i0: pick(0), i1: pick(1), w0: weight(0), w1: weight(1) })
    }

    pub fn n_in(&self) -> usize {
        self.n_in
    }

    pub fn n_out(&self) -> usize {
        self.offsets.len() - 1
    }

    /// The rule as CSR arrays: row offsets (`n_out + 1`), indices and weights.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub(crate) fn csr(&self) -> (&[usize], &[u32], &[f64]) {
        (&self.offsets, &self.idx, &self.w)
    }

    /// The indices and weights of output sample `o`.
    pub fn row(&self, o: usize) -> (&[u32], &[f64]) {
        let r = self.offsets[o]..self.offsets[o + 1];
        (&self.idx[r.clone()], &self.w[r])
    }

    /// The adjoint resampling (the transposed matrix): what the gradient applies.
    pub fn transpose(&self) -> Self {
        let mut count = vec![0usize; self.n_in + 1];
        for &i in &self.idx {
            count[i as usize + 1] += 1;
        }
        for i in 0..self.n_in {
            count[i + 1] += count[i];
        }
        let offsets = count.clone();
        let mut fill = count;
        let mut idx = vec![0u32; self.idx.len()];
        let mut w = vec![0f64; self.w.len()];
        for o in 0..self.n_out() {
            let (is, ws) = self.row(o);
            for (&i, &wk) in is.iter().zip(ws) {
                let slot = &mut fill[i as usize];
                idx[*slot] = o as u32;
                w[*slot] = wk;
                *slot += 1;
            }
        }
        Self { n_in: self.n_out(), offsets, idx, w }
    }

    /// The dense `n_out × n_in` matrix, row-major.
    pub fn to_dense(&self) -> Vec<f64> {
        let mut m = vec![0.0; self.n_out() * self.n_in];
        for o in 0..self.n_out() {
            let (is, ws) = self.row(o);
            for (&i, &wk) in is.iter().zip(ws) {
                m[o * self.n_in + i as usize] += wk;
            }
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_endpoints_and_partition_of_unity() {
        let t = Taps::linear_align_corners(19, 37, false);
        let d = t.to_dense();
        assert_eq!(d[0], 1.0);
        assert_eq!(d[36 * 19 + 18], 1.0);
        for o in 0..37 {
            let s: f64 = d[o * 19..(o + 1) * 19].iter().sum();
            assert!((s - 1.0).abs() < 1e-12);
        }
    }

    #[test]
    fn cubic_rows_sum_to_one_and_identity_at_same_size() {
        for t in [Taps::cubic_torch(37, 56, Some(56.1 / 37.0), true), Taps::cubic_opencv(2048, 784)] {
            let d = t.to_dense();
            for o in 0..t.n_out() {
                let s: f64 = d[o * t.n_in()..(o + 1) * t.n_in()].iter().sum();
                assert!((s - 1.0).abs() < 1e-6, "row {o} sums to {s}");
            }
        }
        let same = Taps::cubic_torch(9, 9, None, false).to_dense();
        for o in 0..9 {
            for i in 0..9 {
                assert!((same[o * 9 + i] - f64::from(u8::from(o == i))).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn transpose_is_the_matrix_transpose() {
        let t = Taps::cubic_torch(5, 12, None, false);
        let (d, dt) = (t.to_dense(), t.transpose().to_dense());
        for o in 0..12 {
            for i in 0..5 {
                assert_eq!(d[o * 5 + i], dt[i * 12 + o]);
            }
        }
        assert_eq!(t.transpose().transpose(), t);
    }
}
