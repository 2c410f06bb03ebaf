//! Why this file: under bf16 autocast PyTorch runs the DPT head's convolutions in bfloat16 too
//! (oneDNN, on AMX tiles); in float32 they were a sixth of our bf16 forward. A stride-1
//! convolution is a product whose right operand (input patches) a tile can load straight from
//! memory, with no im2col, when the input is laid out right: the input is converted once to
//! bfloat16 with pairs of channels interleaved (`[row][channel pair][column]`, zero-padded), so
//! for one kernel tap and 32 input channels the 16 × 64-byte tile of 16 output columns is 16
//! rows (channel pairs) of 16 consecutive (column, pair) words. The weight is packed once as
//! the left operand, its k ordered (tap, channel) to match. Tiles start from the bias and sum
//! in float32 (`tdpbf16ps`); results go straight into the NCHW output. A ReLU in front (the
//! residual units' `conv(relu(x))`) is applied during the conversion.

use super::{CONFIG, TILE_K, step, store};
use crate::disjoint::DisjointOut;
use crate::fastmath::bf16_bits;
use rayon::prelude::*;

/// Output columns per tile (one tile row of float32).
const COLS: usize = 16;
/// Output channels per block: two tiles of 16 rows.
const OUT_BLOCK: usize = 32;
/// Pairs of 16-column chunks per parallel task.
const UNITS_PER_TASK: usize = 16;

/// A conv weight (o × c × k × k) as AMX left operands: `o_pad × kdim` bfloat16 row-major, k
/// ordered (ky, kx, channel), channels padded to whole 32-deep tiles, rows to 32.
pub struct PackedConv {
    o: usize,
    c: usize,
    k: usize,
    c_pad: usize,
    a: Vec<u16>,
}

impl PackedConv {
    pub fn new(w: &[f32], o: usize, c: usize, k: usize) -> Self {
        assert_eq!(w.len(), o * c * k * k, "conv weight of {o} × {c} × {k} × {k}");
        let c_pad = c.div_ceil(TILE_K) * TILE_K;
        let kdim = k * k * c_pad;
        let mut a = vec![0u16; o.div_ceil(OUT_BLOCK) * OUT_BLOCK * kdim];
        for oo in 0..o {
            for cc in 0..c {
                for tap in 0..k * k {
                    a[oo * kdim + tap * c_pad + cc] = super::bf16(w[(oo * c + cc) * k * k + tap]);
                }
            }
        }
        Self { o, c, k, c_pad, a }
    }
}

/// The geometry of one call.
#[derive(Clone, Copy)]
struct Geometry {
    h: usize,
    w: usize,
    p: usize,
    ho: usize,
    wo: usize,
    /// Output columns padded to whole chunks, and the converted input's row length.
    wo_pad: usize,
    row_len: usize,
    pairs: usize,
}

/// Cross-correlation of `x` (n × c × h × w, float32) with the packed weight, zero padding `p`,
/// stride 1, plus the bias; `relu` rectifies the input first. Returns n × o × ho × wo. Call only
/// when [`super::available`].
pub fn conv2d(
    x: &[f32],
    (n, h, w): (usize, usize, usize),
    pw: &PackedConv,
    bias: Option<&[f32]>,
    p: usize,
    relu: bool,
) -> Vec<f32> {
    let (o, c, k) = (pw.o, pw.c, pw.k);
    assert!(super::available() && x.len() == n * c * h * w && bias.is_none_or(|b| b.len() == o));
    assert!(h + 2 * p >= k && w + 2 * p >= k, "conv input {h}×{w} smaller than its kernel {k}");
    let (ho, wo) = (h + 2 * p - k + 1, w + 2 * p - k + 1);
    let wo_pad = wo.div_ceil(COLS) * COLS;
    let g = Geometry { h, w, p, ho, wo, wo_pad, row_len: wo_pad + k - 1, pairs: pw.c_pad / 2 };
    // every output row's bias, each broadcast over a tile row of 16 columns
    let mut bias_rows = vec![0f32; pw.a.len() / (k * k * pw.c_pad) * COLS];
    if let Some(b) = bias {
        bias_rows.chunks_mut(COLS).zip(b).for_each(|(r, &v)| r.fill(v));
    }
    let mut out = vec![0f32; n * o * ho * wo];
    CONVERTED.with_borrow_mut(|xb| {
        for (b, out) in out.chunks_mut(o * ho * wo).enumerate() {
            convert(&x[b * c * h * w..][..c * h * w], c, g, relu, xb);
            tiles(pw, g, xb, &bias_rows, out);
        }
    });
    out
}

thread_local! {
    /// The converted input, kept between calls on this thread: a fresh buffer of this size
    /// (up to ~18 MB for the ViT-S head at 518²) costs page faults and zero-filling every time.
    static CONVERTED: std::cell::RefCell<Vec<u32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// One converted image times the packed weight into `out` (o × ho × wo).
fn tiles(pw: &PackedConv, g: Geometry, xb: &[u32], bias_rows: &[f32], out: &mut [f32]) {
    let chunks = g.ho * (g.wo_pad / COLS);
    let units = chunks.div_ceil(2);
    let shared = DisjointOut::new(out);
    (0..units.div_ceil(UNITS_PER_TASK)).into_par_iter().for_each(|task| {
        let first = task * UNITS_PER_TASK;
        let last = (first + UNITS_PER_TASK).min(units);
        // SAFETY: `available()` holds (asserted by `conv2d`); the tile configuration is this thread's.
        unsafe { std::arch::asm!("ldtilecfg [{}]", in(reg) &CONFIG) };
        for unit in first..last {
            let pair = [2 * unit, (2 * unit + 1).min(chunks - 1)];
            run_unit(pw, g, xb, bias_rows, pair, &shared);
        }
        unsafe { std::arch::asm!("tilerelease") };
    });
}

/// One image into `xb`: `[row][channel pair][column]` of (even channel, odd channel) bfloat16
/// words, `p` zero rows and columns around it, zero channels up to the padded count. Every word
/// is written (the buffer is reused, its old contents are not zeros).
fn convert(x: &[f32], c: usize, g: Geometry, relu: bool, xb: &mut Vec<u32>) {
    let hp = g.h + 2 * g.p;
    xb.resize(hp * g.pairs * g.row_len, 0);
    xb.par_chunks_mut(g.pairs * g.row_len).enumerate().for_each(|(yy, row)| {
        if yy < g.p || yy >= g.h + g.p {
            row.fill(0);
            return;
        }
        // SAFETY: AMX CPUs have AVX-512 (`available` checks it).
        unsafe { convert_row(x, c, g, relu, yy - g.p, row) }
    });
}

/// Input row `y` of every channel pair into `row` (`[channel pair][column]`), padding zeroed.
#[target_feature(enable = "avx512f,avx512bw,avx2,fma")]
fn convert_row(x: &[f32], c: usize, g: Geometry, relu: bool, y: usize, row: &mut [u32]) {
    let plane = g.h * g.w;
    for (cp, words) in row.chunks_exact_mut(g.row_len).enumerate() {
        let (left, rest) = words.split_at_mut(g.p);
        let (dst, right) = rest.split_at_mut(g.w);
        left.fill(0);
        right.fill(0);
        if 2 * cp >= c {
            dst.fill(0);
            continue;
        }
        let even = &x[2 * cp * plane + y * g.w..][..g.w];
        if 2 * cp + 1 < c {
            let odd = &x[(2 * cp + 1) * plane + y * g.w..][..g.w];
            for ((d, &e), &o) in dst.iter_mut().zip(even).zip(odd) {
                *d = bf16_bits(rect(e, relu)) | bf16_bits(rect(o, relu)) << 16;
            }
        } else {
            for (d, &e) in dst.iter_mut().zip(even) {
                *d = bf16_bits(rect(e, relu));
            }
        }
    }
}

#[inline(always)]
fn rect(v: f32, relu: bool) -> f32 {
    if !relu || v > 0.0 { v } else { 0.0 }
}

/// Two chunks of 16 output columns (possibly on different rows; the second may repeat the
/// first, then its result is dropped) for every block of 32 output channels.
fn run_unit(
    pw: &PackedConv,
    g: Geometry,
    xb: &[u32],
    bias_rows: &[f32],
    pair: [usize; 2],
    out: &DisjointOut<f32>,
) {
    let (k, c_pad, o) = (pw.k, pw.c_pad, pw.o);
    let kdim = k * k * c_pad;
    let per_row = g.wo_pad / COLS;
    let at = |chunk: usize| (chunk / per_row, chunk % per_row * COLS);
    let [(y0, x0), (y1, x1)] = pair.map(at);
    let stride_b = g.row_len * 4;
    let mut scratch = [0f32; 4 * 256];
    for ob in 0..o.div_ceil(OUT_BLOCK) {
        let bias0 = bias_rows[ob * OUT_BLOCK * COLS..].as_ptr();
        let bias1 = bias_rows[(ob * OUT_BLOCK + 16) * COLS..].as_ptr();
        // SAFETY: `bias_rows` holds whole 32-row blocks of 16 values (64-byte rows).
        unsafe {
            std::arch::asm!(
                "tileloadd tmm0, [{b0} + {s}*1]",
                "tileloadd tmm1, [{b0} + {s}*1]",
                "tileloadd tmm2, [{b1} + {s}*1]",
                "tileloadd tmm3, [{b1} + {s}*1]",
                b0 = in(reg) bias0, b1 = in(reg) bias1, s = in(reg) 64usize,
                options(nostack),
            )
        };
        for ky in 0..k {
            for kx in 0..k {
                for cb in 0..c_pad / TILE_K {
                    let kk = (ky * k + kx) * c_pad + cb * TILE_K;
                    let a0 = pw.a[ob * OUT_BLOCK * kdim + kk..].as_ptr();
                    let a1 = pw.a[(ob * OUT_BLOCK + 16) * kdim + kk..].as_ptr();
                    let b = |y: usize, x: usize| {
                        xb[((y + ky) * g.pairs + cb * 16) * g.row_len + x + kx..].as_ptr()
                    };
                    let (b0, b1) = (b(y0, x0), b(y1, x1));
                    // SAFETY: A tiles are 16 rows of 32 values inside the padded weight (rows to
                    // a whole 32-row block, kk + 32 <= kdim); B tiles are 16 channel-pair rows
                    // from `cb * 16` (pairs is a multiple of 16) of 16 words from column x + kx,
                    // x + 15 + kx < wo_pad + k - 1 = row_len, in input row y + ky < ho + k - 1.
                    unsafe { step([a0, a1], kdim * 2, [b0, b1], stride_b) };
                }
            }
        }
        let s = scratch.as_mut_ptr();
        // SAFETY: four 16 × 16 float32 tiles into the 1024-value scratch.
        unsafe { store([s, s.add(256), s.add(512), s.add(768)], 64) };
        let plane = g.ho * g.wo;
        for (t, half) in [(0, 0), (1, 0), (2, 16), (3, 16)] {
            let (y, x) = if t % 2 == 0 { (y0, x0) } else { (y1, x1) };
            if t % 2 == 1 && pair[1] == pair[0] {
                continue;
            }
            let cols = (g.wo - x.min(g.wo)).min(COLS);
            for r in 0..16 {
                let oo = ob * OUT_BLOCK + half + r;
                if oo >= o || cols == 0 {
                    break;
                }
                // SAFETY: output (oo, y, x..x + cols) belongs to this unit's chunk alone.
                let dst = unsafe { out.region(oo * plane + y * g.wo + x, cols) };
                dst.copy_from_slice(&scratch[t * 256 + r * 16..][..cols]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The convolution of bf16-rounded operands in float64.
    fn reference(
        x: &[f32],
        wt: &[f32],
        bias: &[f32],
        (n, c, h, w, o, k, p): (usize, usize, usize, usize, usize, usize, usize),
        relu: bool,
    ) -> Vec<f32> {
        let r = |v: f32| f32::from_bits((super::super::bf16(v) as u32) << 16) as f64;
        let (ho, wo) = (h + 2 * p - k + 1, w + 2 * p - k + 1);
        let mut out = vec![0f32; n * o * ho * wo];
        for b in 0..n {
            for oo in 0..o {
                for y in 0..ho {
                    for xx in 0..wo {
                        let mut s = bias[oo] as f64;
                        for cc in 0..c {
                            for ky in 0..k {
                                for kx in 0..k {
                                    let (yi, xi) =
                                        ((y + ky) as isize - p as isize, (xx + kx) as isize - p as isize);
                                    if yi < 0 || xi < 0 || yi >= h as isize || xi >= w as isize {
                                        continue;
                                    }
                                    let v = x[((b * c + cc) * h + yi as usize) * w + xi as usize];
                                    let v = if relu { v.max(0.0) } else { v };
                                    s += r(v) * r(wt[((oo * c + cc) * k + ky) * k + kx]);
                                }
                            }
                        }
                        out[((b * o + oo) * ho + y) * wo + xx] = s as f32;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn tiles_give_the_bf16_convolution() {
        if !super::super::available() {
            eprintln!("NOT RUN: this CPU has no AMX-BF16 (the bf16 path keeps the float32 conv)");
            return;
        }
        // odd channel counts, padding 0 and 1, 1×1 and 3×3, widths under and over a chunk,
        // output channels under, at and over a 32-row block, two images
        for (n, c, h, w, o, k, p, relu) in [
            (1, 3, 5, 7, 2, 3, 1, false),
            (2, 33, 9, 20, 17, 3, 1, true),
            (1, 64, 6, 35, 64, 3, 1, true),
            (1, 48, 4, 18, 40, 1, 0, false),
            (1, 7, 8, 8, 33, 3, 0, false),
            (1, 32, 3, 3, 1, 3, 1, false),
        ] {
            let x: Vec<f32> = (0..n * c * h * w).map(|i| ((i * 37 % 101) as f32 - 50.0) / 37.0).collect();
            let wt: Vec<f32> = (0..o * c * k * k).map(|i| ((i * 53 % 97) as f32 - 48.0) / 41.0).collect();
            let bias: Vec<f32> = (0..o).map(|i| i as f32 / 7.0 - 1.0).collect();
            let got = conv2d(&x, (n, h, w), &PackedConv::new(&wt, o, c, k), Some(&bias), p, relu);
            let want = reference(&x, &wt, &bias, (n, c, h, w, o, k, p), relu);
            assert_eq!(got.len(), want.len());
            let scale = want.iter().fold(1f32, |a, v| a.max(v.abs()));
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!((a - b).abs() <= 1e-5 * scale, "{:?} at {i}: {a} vs {b}", (n, c, h, w, o, k, p));
            }
        }
    }
}
