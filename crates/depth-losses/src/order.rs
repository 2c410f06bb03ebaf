//! Why this file: the losses need two order statistics per sample — the lower median of the
//! valid values and the set of residuals kept after trimming — over up to every pixel of a 518²
//! crop. A device-wide sort cannot do it: candle's CUDA argsort holds a whole row in shared
//! memory (next_pow2(n) × 4 bytes: 1 MiB at 518²) and its launch fails. They are selections,
//! not sorts, so they are computed on the host: one transfer of the row (≤ 1 MiB per sample),
//! an O(n) `select_nth_unstable`, and the answer goes back as indices the device gathers with,
//! so the gradient flows exactly where a sort's would.
//!
//! The order is the one a stable ascending sort gives (value, then position), so ties resolve
//! as `arg_sort_last_dim` resolved them before: the same median element, the same kept set.

use crate::error::Result;
use candle_core::{DType, Tensor};
use std::cmp::Ordering;

/// A 1-D tensor's values on the host, as f64 (exact for every float dtype).
pub(crate) fn host(values: &Tensor) -> Result<Vec<f64>> {
    Ok(values.to_dtype(DType::F64)?.to_vec1::<f64>()?)
}

/// Value first, position second: a total order equal to a stable ascending sort's.
fn by_value(v: &[f64]) -> impl Fn(&u32, &u32) -> Ordering + '_ {
    |&i, &j| v[i as usize].total_cmp(&v[j as usize]).then(i.cmp(&j))
}

/// The position of the lower median (the ⌊(n−1)/2⌋-th smallest, torch.median's choice).
pub(crate) fn lower_median(v: &[f64]) -> usize {
    let mut idx: Vec<u32> = (0..v.len() as u32).collect();
    let mid = (v.len() - 1) / 2;
    idx.select_nth_unstable_by(mid, by_value(v));
    idx[mid] as usize
}

/// The positions of the `keep` smallest values, in ascending position order.
pub(crate) fn smallest(v: &[f64], keep: usize) -> Vec<u32> {
    let mut idx: Vec<u32> = (0..v.len() as u32).collect();
    if keep < v.len() {
        idx.select_nth_unstable_by(keep, by_value(v));
        idx.truncate(keep);
        idx.sort_unstable();
    }
    idx
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// What a stable sort says, the slow way.
    fn sorted(v: &[f64]) -> Vec<u32> {
        let mut idx: Vec<u32> = (0..v.len() as u32).collect();
        idx.sort_by(|&i, &j| v[i as usize].total_cmp(&v[j as usize]));
        idx
    }

    fn pseudo_random(n: usize, levels: u64, seed: u64) -> Vec<f64> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 33) % levels) as f64 - (levels / 2) as f64
            })
            .collect()
    }

    #[test]
    fn selections_equal_a_stable_sort_ties_included() {
        for (n, levels, seed) in [(1, 5, 1), (2, 1, 2), (7, 3, 3), (100, 4, 4), (1001, 1000, 5), (4096, 2, 6)]
        {
            let v = pseudo_random(n, levels, seed);
            let order = sorted(&v);
            assert_eq!(lower_median(&v), order[(n - 1) / 2] as usize, "n {n} levels {levels}");
            for keep in [0, 1, n / 2, n.saturating_sub(1), n] {
                let mut want = order[..keep].to_vec();
                want.sort_unstable();
                assert_eq!(smallest(&v, keep), want, "n {n} keep {keep}");
            }
        }
    }

    #[test]
    fn values_reach_the_host_exactly() {
        let t = Tensor::new(&[1.5f32, -0.1, 3.0e-8], &Device::Cpu).unwrap();
        assert_eq!(host(&t).unwrap(), vec![1.5, -0.1f32 as f64, 3.0e-8f32 as f64]);
    }
}
