//! Seeded lattice value noise and its fractal sum: the procedural textures and the terrain.

/// A hash of a lattice point and a seed to [0, 1).
fn lattice(seed: u32, x: i32, y: i32) -> f32 {
    let mut h = seed ^ (x as u32).wrapping_mul(0x8da6_b343) ^ (y as u32).wrapping_mul(0xd816_3841);
    h = (h ^ (h >> 13)).wrapping_mul(0x5bd1_e995);
    h ^= h >> 15;
    (h >> 8) as f32 / (1u32 << 24) as f32
}

fn smooth(t: f32) -> f32 {
    t * t * (3.0 - 2.0 * t)
}

/// Value noise in [0, 1), continuous, with unit lattice spacing, and its gradient.
pub fn value_grad(seed: u32, x: f32, y: f32) -> (f32, f32, f32) {
    let (fx, fy) = (x.floor(), y.floor());
    let (ix, iy) = (fx as i32, fy as i32);
    let (rx, ry) = (x - fx, y - fy);
    let (tx, ty) = (smooth(rx), smooth(ry));
    let (dtx, dty) = (6.0 * rx * (1.0 - rx), 6.0 * ry * (1.0 - ry));
    let (l00, l10) = (lattice(seed, ix, iy), lattice(seed, ix + 1, iy));
    let (l01, l11) = (lattice(seed, ix, iy + 1), lattice(seed, ix + 1, iy + 1));
    let a = l00 + (l10 - l00) * tx;
    let b = l01 + (l11 - l01) * tx;
    let v = a + (b - a) * ty;
    let gx = ((l10 - l00) * (1.0 - ty) + (l11 - l01) * ty) * dtx;
    (v, gx, (b - a) * dty)
}

pub fn value(seed: u32, x: f32, y: f32) -> f32 {
    value_grad(seed, x, y).0
}

/// Fractal sum of `octaves` value-noise layers (each twice the frequency, half the amplitude),
/// in [0, 1), and its gradient.
pub fn fbm_grad(seed: u32, x: f32, y: f32, octaves: u32) -> (f32, f32, f32) {
    let (mut sum, mut gx, mut gy, mut amp, mut freq, mut total) = (0.0, 0.0, 0.0, 1.0, 1.0, 0.0);
    for o in 0..octaves {
        let (v, dx, dy) = value_grad(seed.wrapping_add(o * 7919), x * freq, y * freq);
        sum += amp * v;
        gx += amp * freq * dx;
        gy += amp * freq * dy;
        total += amp;
        amp *= 0.5;
        freq *= 2.0;
    }
    (sum / total, gx / total, gy / total)
}

pub fn fbm(seed: u32, x: f32, y: f32, octaves: u32) -> f32 {
    let (mut sum, mut amp, mut freq, mut total) = (0.0, 1.0, 1.0, 0.0);
    for o in 0..octaves {
        sum += amp * value(seed.wrapping_add(o * 7919), x * freq, y * freq);
        total += amp;
        amp *= 0.5;
        freq *= 2.0;
    }
    sum / total
}

/// An upper bound of |∂fbm/∂x| and |∂fbm/∂y| (smoothstep's slope is at most 1.5 per octave).
pub fn fbm_slope_bound(octaves: u32) -> f32 {
    let (mut sum, mut amp, mut freq, mut total) = (0.0, 1.0, 1.0, 0.0);
    for _ in 0..octaves {
        sum += amp * freq * 1.5;
        total += amp;
        amp *= 0.5;
        freq *= 2.0;
    }
    sum / total
}
