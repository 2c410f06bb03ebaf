//! Why this file: the CPU kernels (the tiled conv, the row-blocked linear) fill one output
//! buffer from many rayon tasks, each writing its own region. Rust cannot see that the regions
//! are disjoint, so the buffer is shared through a raw pointer; this is the one place that
//! does so, with the bounds checked and the buffer's lifetime kept.

use std::marker::PhantomData;

/// An output buffer shared by parallel tasks that write disjoint parts of it.
pub(crate) struct DisjointOut<'a, T> {
    ptr: *mut T,
    len: usize,
    _buf: PhantomData<&'a mut [T]>,
}

// SAFETY: the buffer is borrowed mutably for 'a, so nothing else touches it; the tasks that
// share this handle write disjoint regions (the callers' contract on `region`/`at`), which is
// what `&mut [T]` sent to several threads would allow.
unsafe impl<T: Send> Send for DisjointOut<'_, T> {}
unsafe impl<T: Send> Sync for DisjointOut<'_, T> {}

impl<'a, T> DisjointOut<'a, T> {
    pub(crate) fn new(buf: &'a mut [T]) -> Self {
        Self { ptr: buf.as_mut_ptr(), len: buf.len(), _buf: PhantomData }
    }

    /// `len` values from `offset`, for one task to write.
    ///
    /// # Safety
    /// No other live reference (from any task) may overlap `offset..offset + len`.
    pub(crate) unsafe fn region(&self, offset: usize, len: usize) -> &'a mut [T] {
        assert!(offset.checked_add(len).is_some_and(|end| end <= self.len), "region outside the buffer");
        // SAFETY: in bounds (checked), alive for 'a (borrowed), not aliased (the caller's contract).
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(offset), len) }
    }

    /// A pointer to `offset` for a strided write that ends before `offset + extent`.
    ///
    /// # Safety
    /// What is written through it must lie in `offset..offset + extent` and overlap no region
    /// another task reads or writes.
    pub(crate) unsafe fn at(&self, offset: usize, extent: usize) -> *mut T {
        assert!(offset.checked_add(extent).is_some_and(|end| end <= self.len), "write outside the buffer");
        // SAFETY: in bounds (checked).
        unsafe { self.ptr.add(offset) }
    }
}
