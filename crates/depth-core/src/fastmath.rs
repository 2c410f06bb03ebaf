//! Vectorisable float32 `exp` and the row softmax built on it. The hot loops are compiled three
//! times: for the baseline target, with AVX2+FMA and with AVX-512, chosen at run time, so the
//! binary stays portable.

/// exp(x) for float32, relative error ≈ 1 ulp on [−87, 88] (Cephes' polynomial on a range
/// reduction by ln 2); inputs are clamped to that range, so it never returns inf or 0.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const ROUND: f32 = 12_582_912.0; // 1.5·2²³: adding and subtracting it rounds to an integer
    let x = x.clamp(-87.3, 88.3);
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    // the integer n sits in t's low mantissa bits: no float→int cast (Rust's `as` saturates,
    // which keeps the loop from vectorising)
    let n_int = t.to_bits() as i32 - ROUND.to_bits() as i32;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    y * f32::from_bits(((n_int + 127) << 23) as u32)
}

/// [`exp_f32`] with fused multiply-adds: fewer instructions, as accurate (rounding differs, so
/// not the same bits). Only for code compiled with FMA (elsewhere `mul_add` is a libm call).
#[inline(always)]
fn exp_f32_fma(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.3);
    let t = x.mul_add(std::f32::consts::LOG2_E, ROUND);
    let n = t - ROUND;
    let n_int = t.to_bits() as i32 - ROUND.to_bits() as i32;
    let r = n.mul_add(2.121_944_4e-4, n.mul_add(-0.693_359_4, x));
    let mut p = 1.987_569_1e-4_f32;
    for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5] {
        p = p.mul_add(r, c);
    }
    let y = (p * r).mul_add(r, r) + 1.0;
    y * f32::from_bits(((n_int + 127) << 23) as u32)
}

/// erf for float32 as PyTorch's vectorised CPU kernels compute it (Abramowitz & Stegun 7.1.26,
/// absolute error ≤ 1.5e-7 in exact arithmetic, ≤ 3.5e-7 evaluated in float32).
#[inline(always)]
pub fn erf_f32(x: f32) -> f32 {
    let t = 1.0 / (0.327_591_1 * x.abs() + 1.0);
    let r = (((1.061_405_4 * t - 1.453_152) * t + 1.421_413_8) * t - 0.284_496_74) * t + 0.254_829_6;
    (1.0 - r * t * exp_f32(-x * x)).copysign(x)
}

const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

#[inline(always)]
fn gelu_body(y: &mut [f32], x: &[f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y = x * 0.5 * (1.0 + erf_f32(x * std::f32::consts::FRAC_1_SQRT_2));
    }
}

#[inline(always)]
fn gelu_grad_body(dx: &mut [f32], x: &[f32], dy: &[f32]) {
    for ((dx, &x), &g) in dx.iter_mut().zip(x).zip(dy) {
        let cdf = 0.5 * (1.0 + erf_f32(x * std::f32::consts::FRAC_1_SQRT_2));
        *dx = g * (cdf + x * FRAC_1_SQRT_2PI * exp_f32(-0.5 * x * x));
    }
}

/// Σ row, over 8 lanes (vectorises; float32 accumulation like PyTorch's CPU reductions).
#[inline(always)]
fn sum8(row: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0f32; 8];
    let mut chunks = row.chunks_exact(8);
    for c in &mut chunks {
        for i in 0..8 {
            acc[i] += f(c[i]);
        }
    }
    chunks.remainder().iter().fold(acc.iter().sum::<f32>(), |s, &v| s + f(v))
}

/// LayerNorm of consecutive rows of length `g.len()`: mean, then the variance of the centred
/// values (two passes, as stable as PyTorch's), then the affine map.
#[inline(always)]
fn layer_norm_body(y: &mut [f32], x: &[f32], g: &[f32], b: &[f32], eps: f32) {
    let d = g.len();
    for (yr, xr) in y.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
        let mean = sum8(xr, |v| v) / d as f32;
        let var = sum8(xr, |v| (v - mean) * (v - mean)) / d as f32;
        let rstd = 1.0 / (var + eps).sqrt();
        for i in 0..d {
            yr[i] = (xr[i] - mean) * rstd * g[i] + b[i];
        }
    }
}

/// The largest value of `row` (NaNs skipped; −∞ for an empty row), over 16 lanes. A maximum is
/// exact in any order, so every softmax gets the same value whatever the lane count.
#[inline(always)]
fn row_max(row: &[f32]) -> f32 {
    let mut m = [f32::NEG_INFINITY; 16];
    let mut chunks = row.chunks_exact(16);
    for c in &mut chunks {
        for i in 0..16 {
            m[i] = if c[i] > m[i] { c[i] } else { m[i] };
        }
    }
    chunks.remainder().iter().chain(&m).fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a })
}

/// In place: row ← softmax(scale · row). The exponentials are one element-wise pass (as wide
/// as the CPU's vectors), the sum the 8-lane order of [`sum8`]: the same bits on every build.
#[inline(always)]
fn softmax_row_body(row: &mut [f32], scale: f32) {
    let shift = row_max(row) * scale;
    row.iter_mut().for_each(|v| *v = exp_f32(*v * scale - shift));
    let inv = 1.0 / sum8(row, |v| v);
    row.iter_mut().for_each(|v| *v *= inv);
}

/// row ← exp(scale · row − max), then out ← bfloat16 bits of row / Σ row: the softmax of
/// scale · row for a bf16 product, in three passes of 16 lanes (maximum; exponentials and
/// their sum; the rounded quotients), the exponentials with fused multiply-adds.
///
/// # Safety
/// The CPU has AVX-512F and FMA.
#[target_feature(enable = "avx512f,avx2,fma")]
pub unsafe fn softmax_row_bf16(row: &mut [f32], scale: f32, out: &mut [u16]) {
    let shift = row_max(row) * scale;
    let mut acc = [0f32; 16];
    let mut chunks = row.chunks_exact_mut(16);
    for c in &mut chunks {
        for i in 0..16 {
            c[i] = exp_f32_fma(c[i].mul_add(scale, -shift));
            acc[i] += c[i];
        }
    }
    let mut sum = acc.iter().sum::<f32>();
    for v in chunks.into_remainder() {
        *v = exp_f32_fma(v.mul_add(scale, -shift));
        sum += *v;
    }
    let inv = 1.0 / sum;
    out.iter_mut().zip(row.iter()).for_each(|(o, &v)| *o = bf16_bits(v * inv) as u16);
}

/// float32 → bfloat16 bits (in the low half), round to nearest even, a NaN stays a quiet NaN:
/// `half::bf16::from_f32` in a form the compiler vectorises.
#[inline(always)]
pub fn bf16_bits(v: f32) -> u32 {
    let b = v.to_bits();
    if b & 0x7fff_ffff > 0x7f80_0000 { (b >> 16) | 0x40 } else { (b + 0x7fff + ((b >> 16) & 1)) >> 16 }
}

fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    return is_x86_feature_detected!("avx512f") && has_avx2();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    return is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// A public function that runs `$body` compiled for AVX-512 or AVX2+FMA when the CPU has them,
/// else for the baseline target. Rust never fuses a multiply and an add by itself, so the three
/// builds round alike: they differ in speed, not in bits.
macro_rules! dispatched {
    ($(#[$doc:meta])* $name:ident($($arg:ident: $ty:ty),*) => $body:ident) => {
        $(#[$doc])*
        pub fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                fn avx512($($arg: $ty),*) {
                    $body($($arg),*)
                }
                if has_avx512() {
                    // SAFETY: the features were detected at run time.
                    return unsafe { avx512($($arg),*) };
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) {
                    $body($($arg),*)
                }
                if has_avx2() {
                    // SAFETY: the features were detected at run time.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

dispatched!(
    /// In place: row ← softmax(scale · row) (scale ≥ 0).
    softmax_row_f32(row: &mut [f32], scale: f32) => softmax_row_body
);
dispatched!(
    /// LayerNorm over rows of length `g.len()`: y ← (x − mean)/√(var + eps) · g + b.
    layer_norm_f32(y: &mut [f32], x: &[f32], g: &[f32], b: &[f32], eps: f32) => layer_norm_body
);
dispatched!(
    /// y ← GELU(x) = x·Φ(x) with the erf above.
    gelu_f32(y: &mut [f32], x: &[f32]) => gelu_body
);
dispatched!(
    /// dx ← dy · GELU'(x) = dy · (Φ(x) + x·φ(x)).
    gelu_grad_f32(dx: &mut [f32], x: &[f32], dy: &[f32]) => gelu_grad_body
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate_to_a_few_ulp() {
        let mut worst = 0f64;
        for i in -87_000..88_000 {
            let x = i as f32 * 1e-3 + 1e-4;
            let exact = (x as f64).exp();
            worst = worst.max(((exp_f32(x) as f64) - exact).abs() / exact);
        }
        assert!(worst < 3e-7, "worst relative error {worst:e}");
        assert!(exp_f32(-1000.0) > 0.0 && exp_f32(1000.0).is_finite());
    }

    #[test]
    fn bf16_bits_are_halfs_rounding() {
        let specials =
            [0.0, -0.0, 1.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, -f32::NAN, f32::MAX, 1e-40];
        let sweep = (0..200_000u32).map(|i| f32::from_bits(i.wrapping_mul(2_654_435_761)));
        for v in specials.into_iter().chain(sweep) {
            assert_eq!(bf16_bits(v), half::bf16::from_f32(v).to_bits() as u32, "{v:e} ({:#x})", v.to_bits());
        }
    }

    fn has_avx512_fma() -> bool {
        #[cfg(target_arch = "x86_64")]
        return is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma");
        #[cfg(not(target_arch = "x86_64"))]
        false
    }

    #[test]
    fn fused_exp_is_accurate_to_a_few_ulp() {
        if !has_avx512_fma() {
            eprintln!("NOT RUN: no AVX-512/FMA (the fused exp runs only on AMX CPUs)");
            return;
        }
        #[target_feature(enable = "avx512f,avx2,fma")]
        fn worst() -> f64 {
            (-87_000..88_000)
                .map(|i| i as f32 * 1e-3 + 1e-4)
                .map(|x| ((exp_f32_fma(x) as f64) - (x as f64).exp()).abs() / (x as f64).exp())
                .fold(0f64, f64::max)
        }
        // SAFETY: the features were detected above.
        let worst = unsafe { worst() };
        assert!(worst < 3e-7, "worst relative error {worst:e}");
    }

    #[test]
    fn bf16_softmax_is_the_rounded_softmax() {
        if !has_avx512_fma() {
            eprintln!("NOT RUN: no AVX-512/FMA (the bf16 softmax runs only on AMX CPUs)");
            return;
        }
        for n in 0..=70 {
            let row: Vec<f32> = (0..n).map(|i| ((i * 7919) % 23) as f32 * 0.7 - 5.0).collect();
            let (mut work, mut got) = (row.clone(), vec![0u16; n]);
            // SAFETY: the features were detected above.
            unsafe { softmax_row_bf16(&mut work, 0.3, &mut got) };
            let max = row.iter().fold(f64::MIN, |a, &b| a.max(b as f64 * 0.3));
            let e: Vec<f64> = row.iter().map(|&v| (v as f64 * 0.3 - max).exp()).collect();
            let z: f64 = e.iter().sum();
            for (g, e) in got.iter().zip(&e) {
                // within the rounding to bfloat16 (half its 2⁻⁷ relative step) plus float32's
                let g = f32::from_bits((*g as u32) << 16) as f64;
                assert!((g - e / z).abs() <= (e / z) * (2f64.powi(-8) + 1e-6), "n = {n}: {g} vs {}", e / z);
            }
        }
    }

    #[test]
    fn erf_is_pytorchs_approximation() {
        let worst = (-400..400)
            .map(|i| i as f64 * 0.01)
            .map(|x| (erf_f32(x as f32) as f64 - candle_core::cpu::erf::erf_f64(x)).abs())
            .fold(0f64, f64::max);
        // the approximation is within 1.5e-7; float32 rounding in 1 − r·t·e^(−x²) adds ≈ 2e-7
        assert!(worst < 5e-7, "worst absolute error {worst:e}");
    }

    #[test]
    fn softmax_row_matches_f64() {
        let row: Vec<f32> = (0..37).map(|i| ((i * 7919) % 23) as f32 * 0.7 - 5.0).collect();
        let mut ours = row.clone();
        softmax_row_f32(&mut ours, 0.125);
        let max = row.iter().fold(f64::MIN, |a, &b| a.max(b as f64 * 0.125));
        let e: Vec<f64> = row.iter().map(|&v| (v as f64 * 0.125 - max).exp()).collect();
        let s: f64 = e.iter().sum();
        for (o, e) in ours.iter().zip(&e) {
            assert!((*o as f64 - e / s).abs() < 1e-7);
        }
    }

    /// The builds this CPU runs (AVX-512 or AVX2) against the baseline builds of the same loops,
    /// bit for bit, for every length up to 40 (the 8-wide sums leave every remainder) and slices
    /// starting off any alignment.
    #[test]
    fn dispatched_loops_match_the_baseline_at_every_length_and_offset() {
        let data: Vec<f32> = (0..64).map(|i| ((i * 37) % 19) as f32 * 0.3 - 2.0).collect();
        let close = |a: &[f32], b: &[f32], what: &str| {
            for (x, y) in a.iter().zip(b) {
                assert_eq!(x.to_bits(), y.to_bits(), "{what}: {x} vs {y}");
            }
        };
        for off in 0..4 {
            for n in 0..=40 {
                let x = &data[off..off + n];
                let dy = &data[(off + 7)..(off + 7 + n)];
                let (mut a, mut b) = (vec![0f32; n], vec![0f32; n]);
                gelu_f32(&mut a, x);
                gelu_body(&mut b, x);
                close(&a, &b, &format!("gelu n={n} off={off}"));
                gelu_grad_f32(&mut a, x, dy);
                gelu_grad_body(&mut b, x, dy);
                close(&a, &b, &format!("gelu grad n={n} off={off}"));
                let (mut a, mut b) = (x.to_vec(), x.to_vec());
                softmax_row_f32(&mut a, 0.5);
                softmax_row_body(&mut b, 0.5);
                close(&a, &b, &format!("softmax n={n} off={off}"));
                if n > 0 {
                    let (g, bias) = (&data[..n], &data[1..n + 1]);
                    let (mut a, mut b) = (vec![0f32; n], vec![0f32; n]);
                    layer_norm_f32(&mut a, x, g, bias, 1e-6);
                    layer_norm_body(&mut b, x, g, bias, 1e-6);
                    close(&a, &b, &format!("layer norm n={n} off={off}"));
                }
            }
        }
    }
}
