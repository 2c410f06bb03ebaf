//! The training transforms, each a pure function of the sample and a seeded RNG:
//! the official lower-bound resize (image: OpenCV-exact `INTER_CUBIC` on RGB/255 in float64;
//! target and mask: OpenCV `INTER_NEAREST`), random crop, horizontal flip, and the strong
//! perturbations Depth Anything V1 applies to unlabeled images (colour jitter, grey scale,
//! Gaussian blur, CutMix), then ImageNet normalisation of the batch (depth-core's, as inference).
//!
//! Every random choice comes from [`item_rng`]`(seed, epoch, position)`, so a sample is the
//! same whichever worker thread prepares it and after a resume.

use crate::error::Result;
use crate::sample::{Sample, TargetKind};
use candle_core::DType;
use depth_core::config::Invalid;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The RNG of one sample: a function of the run seed, the epoch and the sample's position.
pub fn item_rng(seed: u64, epoch: u64, position: u64) -> ChaCha8Rng {
    let s = crate::synth::item_seed(crate::synth::item_seed(seed, epoch), position);
    ChaCha8Rng::seed_from_u64(s)
}

/// torchvision's `ColorJitter` ranges: factors drawn from [1 − x, 1 + x] (hue: [−x, x] turns).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Jitter {
    pub p: f64,
    pub brightness: f32,
    pub contrast: f32,
    pub saturation: f32,
    pub hue: f32,
}

/// The augmentation recipe. The default is Depth Anything's: resize to ≥ 518 with /14 sides,
/// random 518 crop, flip; strong perturbations (V1's, from UniMatch) only where enabled.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Augment {
    pub input_size: usize,
    pub multiple: usize,
    /// Square random crop side; None keeps the resized image.
    pub crop: Option<usize>,
    pub hflip: f64,
    pub jitter: Jitter,
    pub grayscale: f64,
    /// Probability and sigma range (pixels) of a Gaussian blur.
    pub blur: f64,
    pub blur_sigma: (f32, f32),
    /// Probability of CutMix with the next sample of the batch, and the box area range.
    pub cutmix: f64,
    pub cutmix_area: (f64, f64),
}

impl Default for Augment {
    fn default() -> Self {
        Self {
            input_size: 518,
            multiple: 14,
            crop: Some(518),
            hflip: 0.5,
            jitter: Jitter { p: 0.8, brightness: 0.5, contrast: 0.5, saturation: 0.5, hue: 0.25 },
            grayscale: 0.2,
            blur: 0.5,
            blur_sigma: (0.1, 2.0),
            cutmix: 0.5,
            cutmix_area: (0.02, 0.4),
        }
    }
}

/// The largest input or crop side (the same bound as inference's `--input-size`).
pub const MAX_SIDE: usize = 8190;

impl Augment {
    /// Sizes within bounds, probabilities in [0, 1], ranges ordered.
    pub fn validate(&self) -> std::result::Result<(), Invalid> {
        let bad = |key: &str, reason: String| Err(Invalid::new(key, reason));
        let m = self.multiple;
        if !(1..=64).contains(&m) {
            return bad("multiple", format!("multiple {m} must be in 1..=64"));
        }
        for (key, side) in [("input_size", Some(self.input_size)), ("crop", self.crop)] {
            if let Some(side) = side.filter(|&s| s < m || s > MAX_SIDE) {
                return bad(
                    key,
                    format!("{key} {side} must be at least one {m}-pixel patch and at most {MAX_SIDE}"),
                );
            }
        }
        let probabilities = [
            ("hflip", self.hflip),
            ("jitter.p", self.jitter.p),
            ("grayscale", self.grayscale),
            ("blur", self.blur),
            ("cutmix", self.cutmix),
        ];
        if let Some((key, p)) = probabilities.into_iter().find(|(_, p)| !(0.0..=1.0).contains(p)) {
            return bad(key, format!("{key} {p} is a probability: in [0, 1]"));
        }
        let j = &self.jitter;
        if [j.brightness, j.contrast, j.saturation].iter().any(|x| !(0.0..=1.0).contains(x))
            || !(0.0..=0.5).contains(&j.hue)
        {
            return bad("jitter", "brightness, contrast and saturation in [0, 1], hue in [0, 0.5]".into());
        }
        let (lo, hi) = self.blur_sigma;
        if !(lo > 0.0 && lo <= hi && hi <= 64.0) {
            return bad("blur_sigma", format!("blur_sigma ({lo}, {hi}) must satisfy 0 < lo ≤ hi ≤ 64"));
        }
        let (lo, hi) = self.cutmix_area;
        if !(lo > 0.0 && lo <= hi && hi <= 1.0) {
            return bad("cutmix_area", format!("cutmix_area ({lo}, {hi}) must satisfy 0 < lo ≤ hi ≤ 1"));
        }
        Ok(())
    }
}

/// A sample ready for batching: RGB in [0, 1] (CHW, float32; the batch is normalised), plus target.
#[derive(Clone, Debug, PartialEq)]
pub struct Prepared {
    pub id: String,
    pub width: usize,
    pub height: usize,
    pub image: Vec<f32>,
    pub target: Option<(TargetKind, Vec<f32>, Vec<bool>)>,
}

impl Prepared {
    fn plane(&self) -> usize {
        self.width * self.height
    }
}

/// OpenCV `INTER_NEAREST`: destination pixel x reads source floor(x · src / dst).
pub fn nearest_index(dst: usize, src: usize) -> Vec<usize> {
    let scale = src as f64 / dst as f64;
    (0..dst).map(|x| ((x as f64 * scale).floor() as usize).min(src - 1)).collect()
}

/// The official `Resize(lower_bound, multiple_of=14)`: the image as inference resizes it
/// (`depth_core::net_input`: OpenCV cubic on float64 RGB/255), target and validity by nearest.
pub fn resize(sample: &Sample, input_size: usize, multiple: usize) -> Result<Prepared> {
    let (w, h) = (sample.image.width() as usize, sample.image.height() as usize);
    let x = depth_core::net_input::resize_lower_bound(&sample.image, input_size, multiple)?;
    let (_, _, nh, nw) = x.dims4()?;
    let image = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let target = sample.target.as_ref().map(|t| {
        let (rows, cols) = (nearest_index(nh, h), nearest_index(nw, w));
        let mut values = Vec::with_capacity(nh * nw);
        let mut valid = Vec::with_capacity(nh * nw);
        for &r in &rows {
            for &c in &cols {
                values.push(t.values[r * w + c]);
                valid.push(t.valid[r * w + c]);
            }
        }
        (t.kind, values, valid)
    });
    Ok(Prepared { id: sample.id.clone(), width: nw, height: nh, image, target })
}

/// A `size`×`size` window at a uniformly random offset (the whole image when it is smaller).
pub fn random_crop(p: &Prepared, size: usize, rng: &mut impl Rng) -> Prepared {
    let (ch, cw) = (size.min(p.height), size.min(p.width));
    let y0 = rng.random_range(0..=p.height - ch);
    let x0 = rng.random_range(0..=p.width - cw);
    crop(p, x0, y0, cw, ch)
}

pub fn crop(p: &Prepared, x0: usize, y0: usize, cw: usize, ch: usize) -> Prepared {
    let window = |v: &[f32], planes: usize| -> Vec<f32> {
        let mut out = Vec::with_capacity(planes * cw * ch);
        for c in 0..planes {
            for y in y0..y0 + ch {
                let row = c * p.plane() + y * p.width;
                out.extend_from_slice(&v[row + x0..row + x0 + cw]);
            }
        }
        out
    };
    let target = p.target.as_ref().map(|(k, values, valid)| {
        let mut m = Vec::with_capacity(cw * ch);
        for y in y0..y0 + ch {
            m.extend_from_slice(&valid[y * p.width + x0..y * p.width + x0 + cw]);
        }
        (*k, window(values, 1), m)
    });
    Prepared { id: p.id.clone(), width: cw, height: ch, image: window(&p.image, 3), target }
}

/// Mirrors the image and target left–right.
pub fn hflip(p: &mut Prepared) {
    let w = p.width;
    p.image.chunks_mut(w).for_each(|row| row.reverse());
    if let Some((_, values, valid)) = &mut p.target {
        values.chunks_mut(w).for_each(|row| row.reverse());
        valid.chunks_mut(w).for_each(|row| row.reverse());
    }
}

fn luma(r: f32, g: f32, b: f32) -> f32 {
    0.299 * r + 0.587 * g + 0.114 * b
}

/// Applies `f` to every RGB pixel.
fn per_pixel(p: &mut Prepared, f: impl Fn([f32; 3]) -> [f32; 3]) {
    let n = p.plane();
    let (r, rest) = p.image.split_at_mut(n);
    let (g, b) = rest.split_at_mut(n);
    for i in 0..n {
        let [x, y, z] = f([r[i], g[i], b[i]]);
        (r[i], g[i], b[i]) = (x, y, z);
    }
}

fn rgb_to_hsv([r, g, b]: [f32; 3]) -> [f32; 3] {
    let (max, min) = (r.max(g).max(b), r.min(g).min(b));
    let d = max - min;
    let h = if d == 0.0 {
        0.0
    } else if max == r {
        ((g - b) / d).rem_euclid(6.0) / 6.0
    } else if max == g {
        ((b - r) / d + 2.0) / 6.0
    } else {
        ((r - g) / d + 4.0) / 6.0
    };
    [h, if max == 0.0 { 0.0 } else { d / max }, max]
}

fn hsv_to_rgb([h, s, v]: [f32; 3]) -> [f32; 3] {
    let h6 = h.rem_euclid(1.0) * 6.0;
    let (i, f) = (h6.floor(), h6 - h6.floor());
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    match i as u32 % 6 {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

/// torchvision `ColorJitter`: brightness, contrast, saturation and hue in a random order, each
/// with a factor drawn uniformly, values clamped to [0, 1].
pub fn color_jitter(p: &mut Prepared, j: &Jitter, rng: &mut impl Rng) {
    let mut order = [0, 1, 2, 3];
    for i in (1..4).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    let factor = |rng: &mut dyn rand::RngCore, x: f32| {
        if x > 0.0 { rng.random_range(1.0 - x..=1.0 + x).max(0.0) } else { 1.0 }
    };
    for op in order {
        match op {
            0 => {
                let f = factor(rng, j.brightness);
                per_pixel(p, |c| c.map(|v| (v * f).clamp(0.0, 1.0)));
            }
            1 => {
                let f = factor(rng, j.contrast);
                let n = p.plane();
                let mean = (0..n).map(|i| luma(p.image[i], p.image[n + i], p.image[2 * n + i])).sum::<f32>()
                    / n as f32;
                per_pixel(p, |c| c.map(|v| (mean + f * (v - mean)).clamp(0.0, 1.0)));
            }
            2 => {
                let f = factor(rng, j.saturation);
                per_pixel(p, |[r, g, b]| {
                    let l = luma(r, g, b);
                    [r, g, b].map(|v| (l + f * (v - l)).clamp(0.0, 1.0))
                });
            }
            _ => {
                if j.hue > 0.0 {
                    let shift = rng.random_range(-j.hue..=j.hue);
                    per_pixel(p, |c| {
                        let [h, s, v] = rgb_to_hsv(c);
                        hsv_to_rgb([h + shift, s, v])
                    });
                }
            }
        }
    }
}

pub fn grayscale(p: &mut Prepared) {
    per_pixel(p, |[r, g, b]| [luma(r, g, b); 3]);
}

/// Separable Gaussian blur with radius ⌈3σ⌉ and mirrored borders.
pub fn gaussian_blur(p: &mut Prepared, sigma: f32) {
    let radius = (3.0 * sigma).ceil() as isize;
    let kernel: Vec<f32> =
        (-radius..=radius).map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp()).collect();
    let total: f32 = kernel.iter().sum();
    let kernel: Vec<f32> = kernel.iter().map(|k| k / total).collect();
    let (w, h) = (p.width as isize, p.height as isize);
    let reflect = |i: isize, n: isize| -> usize {
        let period = 2 * (n - 1).max(1);
        let m = i.rem_euclid(period);
        (if m >= n { period - m } else { m }) as usize
    };
    for plane in p.image.chunks_mut((w * h) as usize) {
        let mut tmp = vec![0f32; plane.len()];
        for y in 0..h {
            for x in 0..w {
                tmp[(y * w + x) as usize] = (-radius..=radius)
                    .zip(&kernel)
                    .map(|(k, c)| c * plane[(y * w) as usize + reflect(x + k, w)])
                    .sum();
            }
        }
        for y in 0..h {
            for x in 0..w {
                plane[(y * w + x) as usize] = (-radius..=radius)
                    .zip(&kernel)
                    .map(|(k, c)| c * tmp[reflect(y + k, h) * w as usize + x as usize])
                    .sum();
            }
        }
    }
}

/// CutMix: pastes a random box of `other` (image and target) into `p`. The box covers a
/// fraction of the area in `area` with aspect ratio in [0.3, 1/0.3], as in UniMatch. Returns
/// the box (x0, y0, w, h), or None when the sizes differ.
pub fn cutmix(
    p: &mut Prepared,
    other: &Prepared,
    area: (f64, f64),
    rng: &mut impl Rng,
) -> Option<(usize, usize, usize, usize)> {
    if (p.width, p.height) != (other.width, other.height) {
        return None;
    }
    let (w, h) = (p.width, p.height);
    let (bw, bh) = loop {
        let a = rng.random_range(area.0..=area.1) * (w * h) as f64;
        let ratio = rng.random_range(0.3..=1.0 / 0.3);
        let (bw, bh) = ((a * ratio).sqrt() as usize, (a / ratio).sqrt() as usize);
        if bw >= 1 && bh >= 1 && bw <= w && bh <= h {
            break (bw, bh);
        }
    };
    let (x0, y0) = (rng.random_range(0..=w - bw), rng.random_range(0..=h - bh));
    let n = w * h;
    for y in y0..y0 + bh {
        let row = y * w + x0..y * w + x0 + bw;
        for c in 0..3 {
            let r = c * n + row.start..c * n + row.end;
            p.image[r.clone()].copy_from_slice(&other.image[r]);
        }
        if let (Some((_, v, m)), Some((_, ov, om))) = (&mut p.target, &other.target) {
            v[row.clone()].copy_from_slice(&ov[row.clone()]);
            m[row.clone()].copy_from_slice(&om[row]);
        }
    }
    Some((x0, y0, bw, bh))
}

/// Resize, crop and flip (every sample), then the strong perturbations when `strong` is set.
/// CutMix pairs samples, so it happens at batch time ([`cutmix`]); the batch is normalised last
/// (`depth_core::net_input::normalize`, in float32).
pub fn prepare(sample: &Sample, aug: &Augment, strong: bool, rng: &mut impl Rng) -> Result<Prepared> {
    let mut p = resize(sample, aug.input_size, aug.multiple)?;
    if let Some(size) = aug.crop {
        p = random_crop(&p, size, rng);
    }
    if rng.random_bool(aug.hflip) {
        hflip(&mut p);
    }
    if strong {
        if rng.random_bool(aug.jitter.p) {
            color_jitter(&mut p, &aug.jitter, rng);
        }
        if rng.random_bool(aug.grayscale) {
            grayscale(&mut p);
        }
        if rng.random_bool(aug.blur) {
            let sigma = rng.random_range(aug.blur_sigma.0..=aug.blur_sigma.1);
            gaussian_blur(&mut p, sigma);
        }
    }
    Ok(p)
}
