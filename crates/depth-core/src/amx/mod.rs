//! Why this module: on CPUs with AMX (Intel Sapphire Rapids and later: `amx_bf16`, `amx_tile`)
//! a bfloat16 matrix product runs on tile units many times faster than float32 FMAs, which is
//! how PyTorch's CPU autocast gets its bf16 speed (through oneDNN). Under bf16 autocast, for
//! inference on such a CPU, `linear.rs` sends `x·Wᵀ` here, `attention.rs` both products of
//! attention and `conv/` every convolution, transposed ones too (`conv.rs` here): operands rounded to
//! bfloat16 (nearest even, as PyTorch's conversion), weights packed once into AMX's tile
//! layouts and kept per weight tensor (inference reuses its weights: the packing is paid once),
//! products summed in float32 by `tdpbf16ps`, biases added in float32; activations are read
//! where they lie (no copies of strided heads). The tile instructions are written as inline
//! assembly (stable Rust has no AMX intrinsics); the kernels run only after CPUID says the CPU
//! has AMX-BF16 (and AVX-512, which the loops around the tiles are compiled for) and the kernel
//! granted this process the tile state (`arch_prctl(ARCH_REQ_XCOMP_PERM)`); elsewhere
//! `available()` is false and callers keep their other path.

mod aligned;
mod conv;

use aligned::Aligned;

pub use conv::{PackedConv, conv_transpose_stride_k, conv2d, conv2d_strided};

use crate::disjoint::DisjointOut;
use rayon::prelude::*;
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Rows and columns of a product block: 2×2 tiles of 16×16 float32.
const BLOCK: usize = 32;
/// bfloat16 values along k in one tile row (64 bytes).
const TILE_K: usize = 32;
/// Packed weights kept at most (a model's linear layers; beyond it the cache starts over).
const CACHED: usize = 1024;

/// Whether this CPU and kernel run AMX bf16 tiles (checked once; the loops around the tiles
/// are compiled for AVX-512, which every AMX CPU has, checked too).
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
                && is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) }
                    == 0
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    })
}

/// float32 → bfloat16 bits, round to nearest even (a NaN stays a NaN), as PyTorch converts
/// (`fastmath::bf16_bits`, the one rounding every tile operand goes through).
pub fn bf16(x: f32) -> u16 {
    crate::fastmath::bf16_bits(x) as u16
}

/// A weight W (n × k, row-major) as Wᵀ in AMX tiles: per 16-column block and 32-deep k block
/// one 16×64-byte tile whose row r holds, for each column c, W[c][2r] and W[c][2r + 1]. k and n
/// are padded with zeros to whole tiles (n to whole 32-column blocks).
pub struct PackedWeight {
    n: usize,
    k: usize,
    k_blocks: usize,
    tiles: Aligned<u16>,
}

impl PackedWeight {
    pub fn new(w: &[f32], n: usize, k: usize) -> Self {
        Self::pack(n, k, |col, kk| w[col * k + kk])
    }

    /// The same for a right operand B given as k × n row-major (x·B).
    pub fn from_kn(b: &[f32], k: usize, n: usize) -> Self {
        Self::pack(n, k, |col, kk| b[kk * n + col])
    }

    fn pack(n: usize, k: usize, at: impl Fn(usize, usize) -> f32) -> Self {
        let k_blocks = k.div_ceil(TILE_K);
        let n_pad = n.div_ceil(BLOCK) * BLOCK;
        let mut tiles = Aligned::zeroed(n_pad * k_blocks * TILE_K);
        let t = tiles.as_mut_slice();
        for col in 0..n {
            let (nb, c) = (col / 16, col % 16);
            for kk in 0..k {
                let (kb, r, p) = (kk / TILE_K, (kk % TILE_K) / 2, kk % 2);
                t[(nb * k_blocks + kb) * 512 + r * 32 + c * 2 + p] = bf16(at(col, kk));
            }
        }
        Self { n, k, k_blocks, tiles }
    }
}

/// The packed form (a [`PackedWeight`], a [`PackedConv`]) of a weight tensor, made on first
/// use and kept (keyed by the tensor and the form).
pub fn packed<T: Send + Sync + 'static, E>(
    id: candle_core::TensorId,
    make: impl FnOnce() -> Result<T, E>,
) -> Result<Arc<T>, E> {
    type Cache = HashMap<(candle_core::TensorId, TypeId), Arc<dyn Any + Send + Sync>>;
    static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = (id, TypeId::of::<T>());
    let found = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&key).cloned();
    if let Some(p) = found.and_then(|p| p.downcast::<T>().ok()) {
        return Ok(p);
    }
    let p = Arc::new(make()?);
    let mut c = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if c.len() >= CACHED {
        c.clear();
    }
    c.insert(key, p.clone());
    Ok(p)
}

/// `f` over the float32 values of `t` (on the CPU) in row-major order, read in place when `t`
/// is contiguous float32 (converted or copied otherwise).
pub fn with_values<R>(t: &candle_core::Tensor, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    let t = t.to_dtype(candle_core::DType::F32)?.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match (&*storage, layout.contiguous_offsets()) {
        (candle_core::Storage::Cpu(candle_core::CpuStorage::F32(v)), Some((start, end))) => {
            Ok(f(&v[start..end]))
        }
        _ => candle_core::bail!("amx: expected a contiguous float32 tensor on the CPU, got {:?}", t.device()),
    }
}

/// A 32 × 32 float32 block for tiles to be stored to, on a cache line.
#[repr(C, align(64))]
struct Block([f32; BLOCK * BLOCK]);

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
    let bias = bias.map(|b| {
        let mut padded = b.to_vec();
        padded.resize(n.div_ceil(BLOCK) * BLOCK, 0.0);
        padded
    });
    out.par_chunks_mut(BLOCK * n).enumerate().for_each_init(Aligned::new, |a, (mb, out)| {
        let rows = out.len() / n;
        load_rows(&x[mb * BLOCK * k..], rows, k, k, a);
        product(a.as_slice(), rows, w, bias.as_deref(), (out, n));
    });
}

/// `rows` (≤ 32) rows of `k` values at stride `ld` from `x`, as bfloat16 left-operand tiles in
/// `a`: 32 rows of the k padded to whole tiles, zeros past the data.
fn load_rows(x: &[f32], rows: usize, ld: usize, k: usize, a: &mut Aligned<u16>) {
    let k_pad = k.div_ceil(TILE_K) * TILE_K;
    a.set_len(BLOCK * k_pad);
    // SAFETY: AMX CPUs have AVX-512 (`available` checks it).
    unsafe { load_rows_avx512(x, rows, ld, k, k_pad, a.as_mut_slice()) }
}

#[target_feature(enable = "avx512f,avx512bw,avx2,fma")]
fn load_rows_avx512(x: &[f32], rows: usize, ld: usize, k: usize, k_pad: usize, a: &mut [u16]) {
    for (r, dst) in a.chunks_exact_mut(k_pad).enumerate() {
        if r < rows {
            dst[..k]
                .iter_mut()
                .zip(&x[r * ld..][..k])
                .for_each(|(d, &s)| *d = crate::fastmath::bf16_bits(s) as u16);
            dst[k..].fill(0);
        } else {
            dst.fill(0);
        }
    }
}

/// `out (rows × n, rows ld apart) = A · Wᵀ [+ bias]` for the 32-row bfloat16 tiles `a` of
/// [`load_rows`] (`rows` of them real), on this thread; `bias` padded with zeros to whole
/// 32-column blocks. Whole 32 × 32 blocks go from the tiles straight into `out`, the bias is
/// the tiles' start.
fn product(a: &[u16], rows: usize, w: &PackedWeight, bias: Option<&[f32]>, (out, ld): (&mut [f32], usize)) {
    let (n, kb_n) = (w.n, w.k_blocks);
    let (k_pad, blocks) = (kb_n * TILE_K, n.div_ceil(BLOCK));
    assert!(available() && rows <= BLOCK && a.len() == BLOCK * k_pad && ld >= n && out.len() == rows * ld);
    assert!(bias.is_none_or(|b| b.len() == blocks * BLOCK), "bias not padded to whole blocks");
    let mut c = Block([0f32; BLOCK * BLOCK]);
    let tiles = w.tiles.as_slice();
    // SAFETY: `available()` holds (asserted); every tile load reads 16 rows of 64 bytes inside
    // `a` (32 rows of k_pad values), `w.tiles` (whole 512-value tiles) or the padded bias (one
    // row of 16 values, stride 0), every store writes 16 rows of 64 bytes inside `c` (32 × 32
    // values) or, for a whole block, inside `out` (32 rows ld apart, n ≥ (nb2 + 1) · 32).
    unsafe { std::arch::asm!("ldtilecfg [{}]", in(reg) &CONFIG) };
    for nb2 in 0..blocks {
        match bias {
            Some(b) => {
                let p = b[nb2 * BLOCK..].as_ptr();
                unsafe { load([p, p.add(16), p, p.add(16)], 0) }
            }
            None => unsafe {
                std::arch::asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3")
            },
        }
        for kb in 0..kb_n {
            let a0 = a[kb * TILE_K..].as_ptr();
            let a1 = a[16 * k_pad + kb * TILE_K..].as_ptr();
            let b0 = tiles[((2 * nb2) * kb_n + kb) * 512..].as_ptr();
            let b1 = tiles[((2 * nb2 + 1) * kb_n + kb) * 512..].as_ptr();
            unsafe { step([a0, a1], k_pad * 2, [b0, b1], 64) };
        }
        let cols = (n - nb2 * BLOCK).min(BLOCK);
        if rows == BLOCK && cols == BLOCK {
            let o = out[nb2 * BLOCK..].as_mut_ptr();
            unsafe { store([o, o.add(16), o.add(16 * ld), o.add(16 * ld + 16)], [ld * 4; 4]) };
            continue;
        }
        let cp = c.0.as_mut_ptr();
        unsafe { store([cp, cp.add(16), cp.add(16 * BLOCK), cp.add(16 * BLOCK + 16)], [BLOCK * 4; 4]) };
        for r in 0..rows {
            out[r * ld + nb2 * BLOCK..][..cols].copy_from_slice(&c.0[r * BLOCK..][..cols]);
        }
    }
    unsafe { std::arch::asm!("tilerelease") };
}

/// tmm0..tmm3 (16 × 16 float32 each) from `c`, rows `sc` bytes apart (0: one row repeated).
///
/// # Safety
/// As [`step`], with the 16 rows of 64 bytes of every tile inside its buffer.
#[inline(always)]
unsafe fn load(c: [*const f32; 4], sc: usize) {
    // SAFETY: the caller's contract.
    unsafe {
        std::arch::asm!(
            "tileloadd tmm0, [{c0} + {sc}*1]",
            "tileloadd tmm1, [{c1} + {sc}*1]",
            "tileloadd tmm2, [{c2} + {sc}*1]",
            "tileloadd tmm3, [{c3} + {sc}*1]",
            c0 = in(reg) c[0], c1 = in(reg) c[1], c2 = in(reg) c[2], c3 = in(reg) c[3], sc = in(reg) sc,
            options(nostack),
        )
    }
}

/// One step of a 2 × 2 block of tiles: tmm0..tmm3 (the float32 sums of rows a0 × columns b0,
/// a0 × b1, a1 × b0, a1 × b1) += the bf16 products of the left tiles at `a` (16 rows of 32
/// values, `sa` bytes apart) and the right tiles at `b` (16 pair rows of 64 bytes, `sb` apart).
///
/// # Safety
/// [`available`], a tile configuration of 16 × 64-byte tiles loaded on this thread, and the 16
/// rows of every tile inside its buffer.
#[inline(always)]
unsafe fn step<B>(a: [*const u16; 2], sa: usize, b: [*const B; 2], sb: usize) {
    // SAFETY: the caller's contract.
    unsafe {
        std::arch::asm!(
            "tileloadd tmm4, [{a0} + {sa}*1]",
            "tileloadd tmm6, [{b0} + {sb}*1]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tileloadd tmm7, [{b1} + {sb}*1]",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tileloadd tmm5, [{a1} + {sa}*1]",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            a0 = in(reg) a[0], a1 = in(reg) a[1], b0 = in(reg) b[0], b1 = in(reg) b[1],
            sa = in(reg) sa, sb = in(reg) sb,
            options(nostack),
        )
    }
}

/// tmm0..tmm3 (16 × 16 float32 each) to `c`, each tile's rows `sc` bytes apart.
///
/// # Safety
/// As [`step`], with the 16 rows of 64 bytes of every tile inside its buffer.
#[inline(always)]
unsafe fn store(c: [*mut f32; 4], sc: [usize; 4]) {
    // SAFETY: the caller's contract.
    unsafe {
        std::arch::asm!(
            "tilestored [{c0} + {s0}*1], tmm0",
            "tilestored [{c1} + {s1}*1], tmm1",
            "tilestored [{c2} + {s2}*1], tmm2",
            "tilestored [{c3} + {s3}*1], tmm3",
            c0 = in(reg) c[0], c1 = in(reg) c[1], c2 = in(reg) c[2], c3 = in(reg) c[3],
            s0 = in(reg) sc[0], s1 = in(reg) sc[1], s2 = in(reg) sc[2], s3 = in(reg) sc[3],
            options(nostack),
        )
    }
}

/// Heads of an attention operand read in place: head h's N × D matrix starts at `offsets[h]`
/// of `data`, its rows `row_stride` apart, its columns adjacent.
pub struct Heads<'a> {
    pub data: &'a [f32],
    pub offsets: Vec<usize>,
    pub row_stride: usize,
}

impl Heads<'_> {
    fn row(&self, h: usize, i: usize) -> usize {
        self.offsets[h] + i * self.row_stride
    }
}

/// `out ← softmax(scale · q kᵀ) v` for heads of `n` rows of width `d` (`out`'s heads laid out
/// by `out_offsets`/`out_row_stride` as [`Heads`]): per head K and V packed once, per 32
/// queries the scores on tiles, the softmax in float32, the probabilities rounded to bfloat16
/// for `· V` — PyTorch's bf16 SDPA on the CPU.
pub fn attention(
    (q, k, v): (&Heads, &Heads, &Heads),
    (n, d): (usize, usize),
    scale: f32,
    (out, out_offsets, out_row_stride): (&mut [f32], &[usize], usize),
) {
    let heads = q.offsets.len();
    let fits = |offsets: &[usize], row_stride: usize, len: usize| {
        offsets.len() == heads && (n == 0 || offsets.iter().all(|&o| o + (n - 1) * row_stride + d <= len))
    };
    assert!(available() && [q, k, v].iter().all(|t| fits(&t.offsets, t.row_stride, t.data.len())));
    assert!(fits(out_offsets, out_row_stride, out.len()), "attention output smaller than its layout");
    // the output rows of distinct (head, query) pairs must not overlap: they are written in parallel
    let mut starts: Vec<usize> =
        out_offsets.iter().flat_map(|&o| (0..n).map(move |i| o + i * out_row_stride)).collect();
    starts.sort_unstable();
    assert!(starts.windows(2).all(|w| w[1] - w[0] >= d), "attention output rows overlap");
    let shared = DisjointOut::new(out);
    (0..heads).into_par_iter().for_each(|h| {
        let at = |t: &Heads, i: usize, c: usize| t.data[t.row(h, i) + c];
        let kh = PackedWeight::pack(n, d, |col, kk| at(k, col, kk));
        let vh = PackedWeight::pack(d, n, |col, kk| at(v, kk, col));
        let init = || (Aligned::new(), Aligned::new(), Aligned::new(), Aligned::new());
        let n_pad = n.div_ceil(TILE_K) * TILE_K;
        (0..n.div_ceil(BLOCK)).into_par_iter().for_each_init(init, |(a, s, p, o), blk| {
            let rows = (n - blk * BLOCK).min(BLOCK);
            load_rows(&q.data[q.row(h, blk * BLOCK)..], rows, q.row_stride, d, a);
            // the scores' rows padded to whole cache lines, so tiles store them aligned
            s.set_len(rows * n_pad);
            product(a.as_slice(), rows, &kh, None, (s.as_mut_slice(), n_pad));
            p.set_len(BLOCK * n_pad);
            let s = s.as_mut_slice();
            for (r, dst) in p.as_mut_slice().chunks_exact_mut(n_pad).enumerate() {
                if r < rows {
                    // SAFETY: AMX CPUs have AVX-512 and FMA (`available` checks them).
                    unsafe {
                        crate::fastmath::softmax_row_bf16(&mut s[r * n_pad..][..n], scale, &mut dst[..n])
                    };
                    dst[n..].fill(0);
                } else {
                    dst.fill(0);
                }
            }
            o.set_len(rows * d);
            product(p.as_slice(), rows, &vh, None, (o.as_mut_slice(), d));
            for (r, src) in o.as_slice().chunks_exact(d).enumerate() {
                let at = out_offsets[h] + (blk * BLOCK + r) * out_row_stride;
                // SAFETY: row i of head h is written by this block alone (rows of distinct
                // (head, query) pairs do not overlap: asserted above).
                unsafe { shared.region(at, d) }.copy_from_slice(src);
            }
        });
    });
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
        // q, k and v as strided views of one (n, 3, heads, d) buffer, the output as (n, heads, d)
        let mut qkv = vec![0f32; 3 * heads * n * d];
        for (t, src) in [&q, &k, &v].into_iter().enumerate() {
            for h in 0..heads {
                for i in 0..n {
                    let at = ((i * 3 + t) * heads + h) * d;
                    qkv[at..at + d].copy_from_slice(&src[(h * n + i) * d..][..d]);
                }
            }
        }
        let view = |t: usize| Heads {
            data: &qkv,
            offsets: (0..heads).map(|h| (t * heads + h) * d).collect(),
            row_stride: 3 * heads * d,
        };
        let mut by_token = vec![0f32; heads * n * d];
        let out_offsets: Vec<usize> = (0..heads).map(|h| h * d).collect();
        attention((&view(0), &view(1), &view(2)), (n, d), 0.3, (&mut by_token, &out_offsets, heads * d));
        let got: Vec<f32> =
            (0..heads * n * d).map(|i| by_token[((i / d) % n * heads + i / (n * d)) * d + i % d]).collect();
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
