//! Why this file: on CPUs with AMX (Intel Sapphire Rapids and later: `amx_bf16`, `amx_tile`)
//! a bfloat16 matrix product runs on tile units many times faster than float32 FMAs, which is
//! how PyTorch's CPU autocast gets its bf16 speed (through oneDNN). Under bf16 autocast, for
//! inference on such a CPU, `linear.rs` sends `x·Wᵀ` here: x rounded to bfloat16 (nearest even,
//! as PyTorch's conversion), W packed once into AMX's pair-interleaved tiles and kept per
//! weight tensor (inference reuses its weights: the packing is paid once), products summed in
//! float32 by `tdpbf16ps`, the bias added in float32. The tile instructions are written as
//! inline assembly (stable Rust has no AMX intrinsics); the kernel runs only after CPUID says
//! the CPU has AMX-BF16 and the kernel granted this process the tile state
//! (`arch_prctl(ARCH_REQ_XCOMP_PERM)`); elsewhere `available()` is false and callers keep
//! their other path.

use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Rows and columns of a product block: 2×2 tiles of 16×16 float32.
const BLOCK: usize = 32;
/// bfloat16 values along k in one tile row (64 bytes).
const TILE_K: usize = 32;
/// Packed weights kept at most (a model's linear layers; beyond it the cache starts over).
const CACHED: usize = 1024;

/// Whether this CPU and kernel run AMX bf16 tiles (checked once).
pub fn available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            // CPUID.(7,0):EDX bit 22 AMX-BF16, bit 24 AMX-TILE; then the tile data permission
            let edx = std::arch::x86_64::__cpuid_count(7, 0).edx;
            const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
            const XFEATURE_XTILEDATA: libc::c_long = 18;
            edx & (1 << 22) != 0
                && edx & (1 << 24) != 0
                && unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) }
                    == 0
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    })
}

/// float32 → bfloat16 bits, round to nearest even (a NaN stays a NaN), as PyTorch converts.
pub fn bf16(x: f32) -> u16 {
    half::bf16::from_f32(x).to_bits()
}

/// A weight W (n × k, row-major) as Wᵀ in AMX tiles: per 16-column block and 32-deep k block
/// one 16×64-byte tile whose row r holds, for each column c, W[c][2r] and W[c][2r + 1]. k and n
/// are padded with zeros to whole tiles (n to whole 32-column blocks).
pub struct PackedWeight {
    n: usize,
    k: usize,
    k_blocks: usize,
    tiles: Vec<u16>,
}

impl PackedWeight {
    pub fn new(w: &[f32], n: usize, k: usize) -> Self {
        Self::pack(n, k, |col, kk| w[col * k + kk])
    }

    /// The same for a right operand B given as k × n row-major (x·B, e.g. attention's V).
    pub fn from_kn(b: &[f32], k: usize, n: usize) -> Self {
        Self::pack(n, k, |col, kk| b[kk * n + col])
    }

    fn pack(n: usize, k: usize, at: impl Fn(usize, usize) -> f32) -> Self {
        let k_blocks = k.div_ceil(TILE_K);
        let n_pad = n.div_ceil(BLOCK) * BLOCK;
        let mut tiles = vec![0u16; n_pad * k_blocks * TILE_K];
        for col in 0..n {
            let (nb, c) = (col / 16, col % 16);
            for kk in 0..k {
                let (kb, r, p) = (kk / TILE_K, (kk % TILE_K) / 2, kk % 2);
                tiles[(nb * k_blocks + kb) * 512 + r * 32 + c * 2 + p] = bf16(at(col, kk));
            }
        }
        Self { n, k, k_blocks, tiles }
    }
}

/// The packed form of a weight tensor, made on first use and kept (keyed by the tensor).
pub fn packed<E>(
    id: candle_core::TensorId,
    make: impl FnOnce() -> Result<PackedWeight, E>,
) -> Result<Arc<PackedWeight>, E> {
    static CACHE: OnceLock<Mutex<HashMap<candle_core::TensorId, Arc<PackedWeight>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(p) = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&id) {
        return Ok(p.clone());
    }
    let p = Arc::new(make()?);
    let mut c = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if c.len() >= CACHED {
        c.clear();
    }
    c.insert(id, p.clone());
    Ok(p)
}

/// 64-byte tile configuration: palette 1, every tile 16 rows of 64 bytes.
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    colsb: [u16; 16],
    rows: [u8; 16],
}

const CONFIG: TileConfig = TileConfig {
    palette: 1,
    start_row: 0,
    reserved: [0; 14],
    colsb: [64, 64, 64, 64, 64, 64, 64, 64, 0, 0, 0, 0, 0, 0, 0, 0],
    rows: [16, 16, 16, 16, 16, 16, 16, 16, 0, 0, 0, 0, 0, 0, 0, 0],
};

/// `out (m × n) = x (m × k) · Wᵀ + bias`, x row-major float32, row blocks in parallel. Call
/// only when [`available`].
pub fn linear(x: &[f32], m: usize, w: &PackedWeight, bias: Option<&[f32]>, out: &mut [f32]) {
    let (n, k) = (w.n, w.k);
    assert!(available() && x.len() == m * k && out.len() == m * n && bias.is_none_or(|b| b.len() == n));
    out.par_chunks_mut(BLOCK * n).enumerate().for_each(|(mb, out)| {
        let rows = out.len() / n;
        block(&x[mb * BLOCK * k..][..rows * k], w, bias, out);
    });
}

/// `out (rows × n) = x (rows × k) · Wᵀ [+ bias]` for at most 32 rows, on this thread.
pub fn block(x: &[f32], w: &PackedWeight, bias: Option<&[f32]>, out: &mut [f32]) {
    let (n, k, kb_n) = (w.n, w.k, w.k_blocks);
    let rows = x.len() / k.max(1);
    assert!(available() && rows <= BLOCK && x.len() == rows * k && out.len() == rows * n);
    let k_pad = kb_n * TILE_K;
    // the rows in bfloat16, padded with zeros to 32 rows and whole k tiles
    let mut a = vec![0u16; BLOCK * k_pad];
    for (r, src) in x.chunks_exact(k).enumerate() {
        a[r * k_pad..][..k].iter_mut().zip(src).for_each(|(d, &s)| *d = bf16(s));
    }
    let mut c = [0f32; BLOCK * BLOCK];
    // SAFETY: `available()` holds (asserted); every tile load reads 16 rows of 64 bytes inside
    // `a` (32 rows of k_pad values) or `w.tiles` (whole 512-value tiles), every store writes 16
    // rows of 64 bytes inside `c` (32 × 32 values).
    unsafe { std::arch::asm!("ldtilecfg [{}]", in(reg) &CONFIG) };
    for nb2 in 0..n.div_ceil(BLOCK) {
        unsafe { std::arch::asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3") };
        for kb in 0..kb_n {
            let a0 = a[kb * TILE_K..].as_ptr();
            let a1 = a[16 * k_pad + kb * TILE_K..].as_ptr();
            let b0 = w.tiles[((2 * nb2) * kb_n + kb) * 512..].as_ptr();
            let b1 = w.tiles[((2 * nb2 + 1) * kb_n + kb) * 512..].as_ptr();
            unsafe {
                std::arch::asm!(
                    "tileloadd tmm4, [{a0} + {sa}*1]",
                    "tileloadd tmm5, [{a1} + {sa}*1]",
                    "tileloadd tmm6, [{b0} + {sb}*1]",
                    "tileloadd tmm7, [{b1} + {sb}*1]",
                    "tdpbf16ps tmm0, tmm4, tmm6",
                    "tdpbf16ps tmm1, tmm4, tmm7",
                    "tdpbf16ps tmm2, tmm5, tmm6",
                    "tdpbf16ps tmm3, tmm5, tmm7",
                    a0 = in(reg) a0, a1 = in(reg) a1, b0 = in(reg) b0, b1 = in(reg) b1,
                    sa = in(reg) k_pad * 2, sb = in(reg) 64usize,
                    options(nostack),
                )
            };
        }
        let cp = c.as_mut_ptr();
        unsafe {
            std::arch::asm!(
                "tilestored [{c0} + {sc}*1], tmm0",
                "tilestored [{c1} + {sc}*1], tmm1",
                "tilestored [{c2} + {sc}*1], tmm2",
                "tilestored [{c3} + {sc}*1], tmm3",
                c0 = in(reg) cp, c1 = in(reg) cp.add(16), c2 = in(reg) cp.add(16 * BLOCK),
                c3 = in(reg) cp.add(16 * BLOCK + 16), sc = in(reg) BLOCK * 4,
                options(nostack),
            )
        };
        let cols = (n - nb2 * BLOCK).min(BLOCK);
        for r in 0..rows {
            let dst = &mut out[r * n + nb2 * BLOCK..][..cols];
            let src = &c[r * BLOCK..][..cols];
            match bias {
                Some(b) => dst.iter_mut().zip(src).zip(&b[nb2 * BLOCK..]).for_each(|((d, s), b)| *d = s + b),
                None => dst.copy_from_slice(src),
            }
        }
    }
    unsafe { std::arch::asm!("tilerelease") };
}

/// `softmax(scale · q kᵀ) v` for heads of `n` rows of width `d` (q, k, v: heads × n × d,
/// row-major): per head K and V packed once, per 32 queries the scores on tiles, the softmax
/// in float32, the probabilities rounded to bfloat16 for `· V` — PyTorch's bf16 SDPA on the CPU.
pub fn attention(q: &[f32], k: &[f32], v: &[f32], (n, d): (usize, usize), scale: f32) -> Vec<f32> {
    let mut out = vec![0f32; q.len()];
    out.par_chunks_mut(n * d).enumerate().for_each(|(h, o)| {
        let (kh, vh) = (
            PackedWeight::new(&k[h * n * d..][..n * d], n, d),
            PackedWeight::from_kn(&v[h * n * d..][..n * d], n, d),
        );
        o.par_chunks_mut(BLOCK * d).enumerate().for_each_init(Vec::new, |s: &mut Vec<f32>, (blk, ob)| {
            let rows = ob.len() / d;
            s.resize(rows * n, 0.0);
            block(&q[h * n * d + blk * BLOCK * d..][..rows * d], &kh, None, s);
            s.chunks_mut(n).for_each(|row| crate::float::Float::softmax_row(row, scale));
            block(s, &vh, None, ob);
        });
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The product of bf16-rounded operands in float64, to compare the tiles with.
    fn reference(x: &[f32], w: &[f32], bias: &[f32], (m, n, k): (usize, usize, usize)) -> Vec<f32> {
        let r = |v: f32| f32::from_bits((bf16(v) as u32) << 16) as f64;
        (0..m * n)
            .map(|i| {
                let (row, col) = (i / n, i % n);
                ((0..k).map(|kk| r(x[row * k + kk]) * r(w[col * k + kk])).sum::<f64>() + bias[col] as f64)
                    as f32
            })
            .collect()
    }

    #[test]
    fn tiled_attention_is_the_bf16_attention() {
        if !available() {
            eprintln!("NOT RUN: this CPU has no AMX-BF16");
            return;
        }
        let (heads, n, d) = (2, 45, 24);
        let make = |s: usize| {
            (0..heads * n * d).map(|i| (((i * s) % 89) as f32 - 44.0) / 30.0).collect::<Vec<f32>>()
        };
        let (q, k, v) = (make(7), make(11), make(13));
        let got = attention(&q, &k, &v, (n, d), 0.3);
        let r = |x: f32| f32::from_bits((bf16(x) as u32) << 16) as f64;
        for h in 0..heads {
            for i in 0..n {
                let at = |t: &[f32], row: usize, c: usize| t[(h * n + row) * d + c];
                let s: Vec<f64> = (0..n)
                    .map(|j| 0.3 * (0..d).map(|c| r(at(&q, i, c)) * r(at(&k, j, c))).sum::<f64>())
                    .collect();
                let mx = s.iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = s.iter().map(|x| (x - mx).exp()).collect();
                let z: f64 = e.iter().sum();
                for c in 0..d {
                    let want: f64 = (0..n).map(|j| r((e[j] / z) as f32) * r(at(&v, j, c))).sum();
                    let g = got[(h * n + i) * d + c] as f64;
                    assert!((g - want).abs() < 1e-4, "head {h} row {i} col {c}: {g} vs {want}");
                }
            }
        }
    }

    #[test]
    fn rounding_is_nearest_even() {
        assert_eq!(bf16(1.0), 0x3f80);
        assert_eq!(bf16(f32::from_bits(0x3f80_8000)), 0x3f80, "a tie goes to the even");
        assert_eq!(bf16(f32::from_bits(0x3f81_8000)), 0x3f82);
        assert_eq!(bf16(f32::from_bits(0x3f80_8001)), 0x3f81);
        assert!(f32::from_bits((bf16(f32::NAN) as u32) << 16).is_nan());
    }

    #[test]
    fn tiles_give_the_bf16_product_at_odd_sizes() {
        if !available() {
            eprintln!("NOT RUN: this CPU has no AMX-BF16 (the bf16 path keeps candle's product)");
            return;
        }
        for (m, n, k) in [(1, 1, 1), (37, 50, 70), (64, 96, 384), (33, 17, 31)] {
            let x: Vec<f32> = (0..m * k).map(|i| ((i * 37 % 101) as f32 - 50.0) / 37.0).collect();
            let w: Vec<f32> = (0..n * k).map(|i| ((i * 53 % 97) as f32 - 48.0) / 41.0).collect();
            let bias: Vec<f32> = (0..n).map(|i| i as f32 / 7.0).collect();
            let mut out = vec![0f32; m * n];
            linear(&x, m, &PackedWeight::new(&w, n, k), Some(&bias), &mut out);
            let want = reference(&x, &w, &bias, (m, n, k));
            let scale = want.iter().fold(1f32, |a, v| a.max(v.abs()));
            for (i, (a, b)) in out.iter().zip(&want).enumerate() {
                assert!((a - b).abs() <= 1e-5 * scale, "({m}, {n}, {k}) at {i}: {a} vs {b}");
            }
        }
    }
}
