//! A bounds-checked front to the `gemm` crate (the matmul candle itself runs on) for the CPU
//! kernels here: single-threaded, because the kernels parallelise over tiles themselves.

use candle_core::WithDType;

/// A matrix operand: elements with row and column strides.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a, T> {
    pub data: &'a [T],
    pub rs: usize,
    pub cs: usize,
}

impl<'a, T> Mat<'a, T> {
    /// A contiguous row-major matrix with `cols` columns.
    pub fn rows(data: &'a [T], cols: usize) -> Self {
        Self { data, rs: cols, cs: 1 }
    }

    /// The transpose of a contiguous row-major matrix with `cols` columns.
    pub fn transposed(data: &'a [T], cols: usize) -> Self {
        Self { data, rs: 1, cs: cols }
    }
}

/// `dst (m×n, contiguous rows at stride dst_rs) = [dst +] scale · lhs (m×k) · rhs (k×n)`.
///
/// # Safety
/// `dst` must be valid for writes of `m` rows of `n` elements at row stride `dst_rs`, and no
/// other thread may access that region during the call.
pub(crate) unsafe fn gemm_raw<T: WithDType>(
    (m, n, k): (usize, usize, usize),
    dst: *mut T,
    dst_rs: usize,
    accumulate: bool,
    lhs: Mat<T>,
    rhs: Mat<T>,
    scale: T,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(k == 0 || (m - 1) * lhs.rs + (k - 1) * lhs.cs < lhs.data.len(), "gemm: lhs out of bounds");
    assert!(k == 0 || (k - 1) * rhs.rs + (n - 1) * rhs.cs < rhs.data.len(), "gemm: rhs out of bounds");
    // SAFETY: reads are bounded by the asserts, the caller vouches for dst.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            T::one(),
            scale,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// [`gemm_raw`] into a contiguous slice (`dst.len() ≥ (m − 1)·dst_rs + n`).
pub(crate) fn gemm_into<T: WithDType>(
    mnk: (usize, usize, usize),
    dst: &mut [T],
    dst_rs: usize,
    accumulate: bool,
    lhs: Mat<T>,
    rhs: Mat<T>,
    scale: T,
) {
    let (m, n, _) = mnk;
    assert!(m == 0 || n == 0 || (m - 1) * dst_rs + n <= dst.len(), "gemm: dst out of bounds");
    // SAFETY: dst is an exclusive borrow covering the written region (asserted).
    unsafe { gemm_raw(mnk, dst.as_mut_ptr(), dst_rs, accumulate, lhs, rhs, scale) }
}
