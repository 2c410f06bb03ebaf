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

use super::{CONFIG, TILE_K, load, step, store};
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
    a: super::Aligned<u16>,
}

impl PackedConv {
    pub fn new(w: &[f32], o: usize, c: usize, k: usize) -> Self {
        assert_eq!(w.len(), o * c * k * k, "conv weight of {o} × {c} × {k} × {k}");
        let c_pad = c.div_ceil(TILE_K) * TILE_K;
        let kdim = k * k * c_pad;
        let mut aligned = super::Aligned::zeroed(o.div_ceil(OUT_BLOCK) * OUT_BLOCK * kdim);
        let a = aligned.as_mut_slice();
        for oo in 0..o {
            for cc in 0..c {
                for tap in 0..k * k {
                    a[oo * kdim + tap * c_pad + cc] = super::bf16(w[(oo * c + cc) * k * k + tap]);
                }
            }
        }
        Self { o, c, k, c_pad, a: aligned }
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
    let mut bias_rows = super::Aligned::zeroed(pw.a.as_slice().len() / (k * k * pw.c_pad) * COLS);
    if let Some(b) = bias {
        bias_rows.as_mut_slice().chunks_mut(COLS).zip(b).for_each(|(r, &v)| r.fill(v));
    }
    let bias_rows = bias_rows.as_slice();
    let mut out = vec![0f32; n * o * ho * wo];
    CONVERTED.with_borrow_mut(|xb| {
        for (b, out) in out.chunks_mut(o * ho * wo).enumerate() {
            convert(&x[b * c * h * w..][..c * h * w], c, g, relu, xb);
            tiles(pw, g, xb, bias_rows, out);
        }
    });
    out
}

thread_local! {
    /// The converted input, kept between calls on this thread: a fresh buffer of this size
    /// (up to ~18 MB for the ViT-S head at 518²) costs page faults and zero-filling every time.
    static CONVERTED: std::cell::RefCell<Vec<u32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A strided convolution (the patch embedding, the head's stride-2 conv) as patches times the
/// weight: per image the input patches as rows (k ordered (channel, ky, kx), the weight's own
/// order, so `w` is the weight as o × c·k·k), one [`super::linear`] product, then transposed to
/// channels first. Returns n × o × ho × wo.
pub fn conv2d_strided(
    x: &[f32],
    (n, c, h, w): (usize, usize, usize, usize),
    pw: &super::PackedWeight,
    bias: Option<&[f32]>,
    (k, p, stride): (usize, usize, usize),
    relu: bool,
) -> Vec<f32> {
    let kdim = c * k * k;
    assert!(x.len() == n * c * h * w && pw.k == kdim && stride > 0 && h + 2 * p >= k && w + 2 * p >= k);
    let (ho, wo) = ((h + 2 * p - k) / stride + 1, (w + 2 * p - k) / stride + 1);
    let (o, positions) = (pw.n, ho * wo);
    let mut out = vec![0f32; n * o * positions];
    let (mut patches, mut by_position) = (vec![0f32; positions * kdim], vec![0f32; positions * o]);
    for (b, out) in out.chunks_exact_mut(o * positions).enumerate() {
        let image = &x[b * c * h * w..][..c * h * w];
        patches.par_chunks_mut(kdim).enumerate().for_each(|(pos, row)| {
            let (oy, ox) = (pos / wo, pos % wo);
            for (q, v) in row.iter_mut().enumerate() {
                let (cc, ky, kx) = (q / (k * k), q / k % k, q % k);
                let (yi, xi) =
                    ((oy * stride + ky) as isize - p as isize, (ox * stride + kx) as isize - p as isize);
                let inside = yi >= 0 && xi >= 0 && (yi as usize) < h && (xi as usize) < w;
                *v = if inside { rect(image[(cc * h + yi as usize) * w + xi as usize], relu) } else { 0.0 };
            }
        });
        super::linear(&patches, positions, pw, bias, &mut by_position);
        out.par_chunks_exact_mut(positions).enumerate().for_each(|(oo, plane)| {
            plane.iter_mut().enumerate().for_each(|(pos, v)| *v = by_position[pos * o + oo]);
        });
    }
    out
}

/// A transposed convolution whose stride is its kernel size `k` (no padding: the DPT head's ×4
/// and ×2 resizes): every input pixel's c values times the weight (c × o·k·k, packed with
/// [`super::PackedWeight::from_kn`]) give its k × k block of every output channel, plus the
/// bias. Returns n × o × h·k × w·k.
pub fn conv_transpose_stride_k(
    x: &[f32],
    (n, c, h, w): (usize, usize, usize, usize),
    pw: &super::PackedWeight,
    (o, k): (usize, usize),
    bias: Option<&[f32]>,
) -> Vec<f32> {
    assert!(x.len() == n * c * h * w && pw.k == c && pw.n == o * k * k && bias.is_none_or(|b| b.len() == o));
    let (positions, wide) = (h * w, o * k * k);
    let mut out = vec![0f32; n * o * positions * k * k];
    let (mut pixels, mut blocks) = (vec![0f32; positions * c], vec![0f32; positions * wide]);
    for (b, out) in out.chunks_exact_mut(o * positions * k * k).enumerate() {
        let image = &x[b * c * positions..][..c * positions];
        pixels.par_chunks_mut(c).enumerate().for_each(|(pos, row)| {
            row.iter_mut().enumerate().for_each(|(cc, v)| *v = image[cc * positions + pos]);
        });
        super::linear(&pixels, positions, pw, None, &mut blocks);
        out.par_chunks_exact_mut(positions * k * k).enumerate().for_each(|(oo, plane)| {
            let add = bias.map_or(0.0, |b| b[oo]);
            for (r, line) in plane.chunks_exact_mut(w * k).enumerate() {
                let (y, ky) = (r / k, r % k);
                for (col, v) in line.iter_mut().enumerate() {
                    let (xx, kx) = (col / k, col % k);
                    *v = blocks[(y * w + xx) * wide + (oo * k + ky) * k + kx] + add;
                }
            }
        });
    }
    out
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
    let mut scratch = super::Block([0f32; 4 * 256]);
    let scratch = &mut scratch.0;
    for ob in 0..o.div_ceil(OUT_BLOCK) {
        let bias0 = bias_rows[ob * OUT_BLOCK * COLS..].as_ptr();
        let bias1 = bias_rows[(ob * OUT_BLOCK + 16) * COLS..].as_ptr();
        // SAFETY: `bias_rows` holds whole 32-row blocks of 16 values (64-byte rows).
        unsafe { load([bias0, bias0, bias1, bias1], 64) };
        for ky in 0..k {
            for kx in 0..k {
                for cb in 0..c_pad / TILE_K {
                    let kk = (ky * k + kx) * c_pad + cb * TILE_K;
                    let a0 = pw.a.as_slice()[ob * OUT_BLOCK * kdim + kk..].as_ptr();
                    let a1 = pw.a.as_slice()[(ob * OUT_BLOCK + 16) * kdim + kk..].as_ptr();
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
        // each tile straight into the output when it is 16 whole rows (channels) of 16 whole
        // columns, else through the scratch
        let plane = g.ho * g.wo;
        let mut dst = [(std::ptr::null_mut(), 0usize, 0usize, 0usize); 4];
        for (t, half) in [(0, 0), (1, 0), (2, 16), (3, 16)] {
            let (y, x) = if t % 2 == 0 { (y0, x0) } else { (y1, x1) };
            let (first, cols) = (ob * OUT_BLOCK + half, (g.wo - x.min(g.wo)).min(COLS));
            let whole = first + 16 <= o && cols == COLS && !(t % 2 == 1 && pair[1] == pair[0]);
            let at = first * plane + y * g.wo + x;
            dst[t] = if whole {
                // SAFETY: the tile writes (first..first + 16, y, x..x + 16), this unit's alone.
                (unsafe { out.at(at, 15 * plane + COLS) }, plane * 4, 0, 0)
            } else {
                (scratch[t * 256..].as_mut_ptr(), 64, rows_to_copy(first, o, cols, t, pair), cols)
            };
        }
        // SAFETY: four 16 × 16 float32 tiles, into the 1024-value scratch or the output (above).
        unsafe { store(dst.map(|d| d.0), dst.map(|d| d.1)) };
        for (t, half) in [(0, 0), (1, 0), (2, 16), (3, 16)] {
            let (y, x) = if t % 2 == 0 { (y0, x0) } else { (y1, x1) };
            let (_, _, rows, cols) = dst[t];
            for r in 0..rows {
                let oo = ob * OUT_BLOCK + half + r;
                // SAFETY: output (oo, y, x..x + cols) belongs to this unit's chunk alone.
                let d = unsafe { out.region(oo * plane + y * g.wo + x, cols) };
                d.copy_from_slice(&scratch[t * 256 + r * 16..][..cols]);
            }
        }
    }
}

/// Rows of a scratch tile that are real output: channels below `o`, none for a repeated chunk
/// or one past the last column.
fn rows_to_copy(first: usize, o: usize, cols: usize, t: usize, pair: [usize; 2]) -> usize {
    if cols == 0 || (t % 2 == 1 && pair[1] == pair[0]) { 0 } else { o.saturating_sub(first).min(16) }
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
    fn strided_convolutions_are_the_bf16_convolution() {
        if !super::super::available() {
            eprintln!("NOT RUN: this CPU has no AMX-BF16 (the bf16 path keeps the float32 conv)");
            return;
        }
        // a patch embedding (k = stride, no padding) and a padded stride-2 3×3 on odd sizes
        for (n, c, h, w, o, k, p, stride, relu) in
            [(2, 3, 28, 42, 40, 14, 0, 14, false), (1, 35, 9, 7, 33, 3, 1, 2, true)]
        {
            let x: Vec<f32> = (0..n * c * h * w).map(|i| ((i * 37 % 101) as f32 - 50.0) / 37.0).collect();
            let wt: Vec<f32> = (0..o * c * k * k).map(|i| ((i * 53 % 97) as f32 - 48.0) / 41.0).collect();
            let bias: Vec<f32> = (0..o).map(|i| i as f32 / 7.0 - 1.0).collect();
            let packed = super::super::PackedWeight::new(&wt, o, c * k * k);
            let got = conv2d_strided(&x, (n, c, h, w), &packed, Some(&bias), (k, p, stride), relu);
            // the stride-1 reference, sampled at every stride-th output
            let full = reference(&x, &wt, &bias, (n, c, h, w, o, k, p), relu);
            let (hf, wf) = (h + 2 * p - k + 1, w + 2 * p - k + 1);
            let (ho, wo) = ((hf - 1) / stride + 1, (wf - 1) / stride + 1);
            assert_eq!(got.len(), n * o * ho * wo);
            let scale = full.iter().fold(1f32, |a, v| a.max(v.abs()));
            for (i, a) in got.iter().enumerate() {
                let (bo, y, xx) = (i / (ho * wo), i / wo % ho, i % wo);
                let b = full[(bo * hf + y * stride) * wf + xx * stride];
                assert!((a - b).abs() <= 1e-5 * scale, "{:?} at {i}: {a} vs {b}", (c, h, w, k, stride));
            }
        }
    }

    #[test]
    fn transposed_convolutions_are_the_bf16_transposed_convolution() {
        if !super::super::available() {
            eprintln!("NOT RUN: this CPU has no AMX-BF16 (the bf16 path keeps candle's transposed conv)");
            return;
        }
        use candle_core::{Device, Tensor};
        let r = |v: f32| f32::from_bits((super::super::bf16(v) as u32) << 16);
        for (n, c, h, w, o, k) in [(2, 5, 3, 4, 7, 4), (1, 40, 6, 5, 33, 2)] {
            let x: Vec<f32> = (0..n * c * h * w).map(|i| ((i * 37 % 101) as f32 - 50.0) / 37.0).collect();
            let wt: Vec<f32> = (0..c * o * k * k).map(|i| ((i * 53 % 97) as f32 - 48.0) / 41.0).collect();
            let bias: Vec<f32> = (0..o).map(|i| i as f32 / 7.0 - 1.0).collect();
            let packed = super::super::PackedWeight::from_kn(&wt, c, o * k * k);
            let got = conv_transpose_stride_k(&x, (n, c, h, w), &packed, (o, k), Some(&bias));
            // candle's transposed conv of the bf16-rounded operands, in float32
            let t = |v: &[f32], s: (usize, usize, usize, usize)| {
                Tensor::from_vec(v.iter().map(|&v| r(v)).collect::<Vec<_>>(), s, &Device::Cpu).unwrap()
            };
            let want = t(&x, (n, c, h, w))
                .conv_transpose2d(&t(&wt, (c, o, k, k)), 0, 0, k, 1)
                .unwrap()
                .broadcast_add(&Tensor::from_vec(bias.clone(), (1, o, 1, 1), &Device::Cpu).unwrap())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            assert_eq!(got.len(), want.len());
            let scale = want.iter().fold(1f32, |a, v| a.max(v.abs()));
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!((a - b).abs() <= 1e-5 * scale, "{:?} at {i}: {a} vs {b}", (c, h, w, o, k));
            }
        }
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
