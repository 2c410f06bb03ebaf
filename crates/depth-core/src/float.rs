//! The two float types the CPU kernels run on, and the storage access they share.

use candle_core::{CpuStorage, Layout, Result, WithDType};

/// f32 or f64: arithmetic comes from `WithDType`; softmax runs in the tensor's own precision
/// (float32 through the vectorised exp of `fastmath`).
pub(crate) trait Float: WithDType {
    /// In place: row ← softmax(scale · row).
    fn softmax_row(row: &mut [Self], scale: Self);
}

impl Float for f32 {
    fn softmax_row(row: &mut [f32], scale: f32) {
        crate::fastmath::softmax_row_f32(row, scale)
    }
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
}

/// The contiguous slice of a storage, or an error naming the op.
pub(crate) fn contiguous<'a, T: WithDType>(op: &str, s: &'a CpuStorage, l: &Layout) -> Result<&'a [T]> {
    let data = s.as_slice::<T>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{op}: input must be contiguous"),
    }
}
