//! The two float types the CPU kernels run on, and the one place that turns candle storages
//! into typed slices. Type-specific inner loops live on [`Float`]: float32 goes through the
//! vectorised `fastmath` loops (float32 accumulation, like PyTorch), float64 is computed exactly.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, Layout, Result, WithDType};

pub(crate) trait Float: WithDType {
    /// In place: row ← softmax(scale · row).
    fn softmax_row(row: &mut [Self], scale: Self);
    /// LayerNorm of consecutive rows of length `g.len()`.
    fn layer_norm_rows(y: &mut [Self], x: &[Self], g: &[Self], b: &[Self], eps: f64);
    /// y ← x · Φ(x).
    fn gelu(y: &mut [Self], x: &[Self]);
    /// dx ← dy · (Φ(x) + x · φ(x)).
    fn gelu_grad(dx: &mut [Self], x: &[Self], dy: &[Self]);
}

impl Float for f32 {
    fn softmax_row(row: &mut [f32], scale: f32) {
        crate::fastmath::softmax_row_f32(row, scale)
    }
    fn layer_norm_rows(y: &mut [f32], x: &[f32], g: &[f32], b: &[f32], eps: f64) {
        crate::fastmath::layer_norm_f32(y, x, g, b, eps as f32)
    }
    fn gelu(y: &mut [f32], x: &[f32]) {
        crate::fastmath::gelu_f32(y, x)
    }
    fn gelu_grad(dx: &mut [f32], x: &[f32], dy: &[f32]) {
        crate::fastmath::gelu_grad_f32(dx, x, dy)
    }
}

fn cdf(x: f64) -> f64 {
    0.5 * (1.0 + candle_core::cpu::erf::erf_f64(x * std::f64::consts::FRAC_1_SQRT_2))
}

impl Float for f64 {
    fn softmax_row(row: &mut [f64], scale: f64) {
        let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v * scale));
        let mut sum = 0.0;
        for v in row.iter_mut() {
            *v = (*v * scale - max).exp();
            sum += *v;
        }
        row.iter_mut().for_each(|v| *v /= sum);
    }
    fn layer_norm_rows(y: &mut [f64], x: &[f64], g: &[f64], b: &[f64], eps: f64) {
        for (yr, xr) in y.chunks_exact_mut(g.len()).zip(x.chunks_exact(g.len())) {
            let (mean, rstd) = moments(xr, eps);
            for i in 0..g.len() {
                yr[i] = (xr[i] - mean) * rstd * g[i] + b[i];
            }
        }
    }
    fn gelu(y: &mut [f64], x: &[f64]) {
        y.iter_mut().zip(x).for_each(|(y, &x)| *y = x * cdf(x));
    }
    fn gelu_grad(dx: &mut [f64], x: &[f64], dy: &[f64]) {
        for ((dx, &x), &g) in dx.iter_mut().zip(x).zip(dy) {
            let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
            *dx = g * (cdf(x) + x * pdf);
        }
    }
}

/// Mean and 1/std (biased variance) of one row, accumulated in f64.
pub(crate) fn moments<T: WithDType>(row: &[T], eps: f64) -> (f64, f64) {
    let n = row.len() as f64;
    let mean = row.iter().map(|v| v.to_f64()).sum::<f64>() / n;
    let var = row.iter().map(|v| (v.to_f64() - mean).powi(2)).sum::<f64>() / n;
    (mean, 1.0 / (var + eps).sqrt())
}

/// The per-type body of a CPU op: the contiguous inputs, all of one float type.
pub(crate) trait Kernel {
    fn run<T: Float>(&self, inputs: &[&[T]]) -> Vec<T>;
}

/// Runs `kernel` on f32 or f64 storages (the first input's type; candle ops share one dtype).
pub(crate) fn dispatch(
    name: &str,
    kernel: &impl Kernel,
    inputs: &[(&CpuStorage, &Layout)],
) -> Result<CpuStorage> {
    fn slices<'a, T: WithDType>(name: &str, inputs: &[(&'a CpuStorage, &Layout)]) -> Result<Vec<&'a [T]>> {
        inputs
            .iter()
            .map(|(s, l)| match l.contiguous_offsets() {
                Some((a, b)) => Ok(&s.as_slice::<T>()?[a..b]),
                None => candle_core::bail!("{name}: inputs must be contiguous"),
            })
            .collect()
    }
    Ok(match inputs[0].0 {
        CpuStorage::F32(_) => CpuStorage::F32(kernel.run(&slices::<f32>(name, inputs)?)),
        CpuStorage::F64(_) => CpuStorage::F64(kernel.run(&slices::<f64>(name, inputs)?)),
        s => candle_core::bail!("{name}: unsupported dtype {:?}, use f32 or f64", s.dtype()),
    })
}
