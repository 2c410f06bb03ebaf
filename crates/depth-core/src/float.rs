//! The two float types the CPU kernels run on, and the storage access they share.

use candle_core::{CpuStorage, Layout, Result, WithDType};

/// f32 or f64: arithmetic comes from `WithDType`; `exp` runs in the tensor's own precision.
pub(crate) trait Float: WithDType {
    const NEG_INF: Self;
    fn exp(self) -> Self;
}

impl Float for f32 {
    const NEG_INF: Self = f32::NEG_INFINITY;
    fn exp(self) -> Self {
        f32::exp(self)
    }
}

impl Float for f64 {
    const NEG_INF: Self = f64::NEG_INFINITY;
    fn exp(self) -> Self {
        f64::exp(self)
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
