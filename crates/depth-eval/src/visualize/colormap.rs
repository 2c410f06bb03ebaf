//! Colour maps and value ranges: matplotlib's `Spectral_r` (the official demo's), `turbo`,
//! `inferno` and grayscale, applied the way the official run.py does — scale to 0…255, truncate
//! to a byte, look the byte up.

use super::lut;

/// A 256-entry colour map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Colormap {
    SpectralR,
    Turbo,
    Inferno,
    Gray,
}

impl Colormap {
    pub const ALL: [Colormap; 4] = [Self::SpectralR, Self::Turbo, Self::Inferno, Self::Gray];

    pub fn name(self) -> &'static str {
        match self {
            Self::SpectralR => "spectral_r",
            Self::Turbo => "turbo",
            Self::Inferno => "inferno",
            Self::Gray => "gray",
        }
    }

    /// Entry `k`, as matplotlib's `(cmap(k)[:3] * 255).astype(uint8)`.
    pub fn lut(self, k: u8) -> [u8; 3] {
        match self {
            Self::SpectralR => lut::SPECTRAL_R[k as usize],
            Self::Turbo => lut::TURBO[k as usize],
            Self::Inferno => lut::INFERNO[k as usize],
            Self::Gray => [k; 3],
        }
    }

    /// The colour of `t` in [0, 1] (clamped; NaN gives entry 0): byte ⌊255·t⌋.
    pub fn at(self, t: f64) -> [u8; 3] {
        self.lut((t * 255.0).clamp(0.0, 255.0) as u8)
    }
}

impl std::str::FromStr for Colormap {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|c| c.name() == s.to_ascii_lowercase()).ok_or_else(|| {
            format!("unknown colour map '{s}'; one of {}", Self::ALL.map(|c| c.name()).join(", "))
        })
    }
}

/// How values map to [0, 1].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Range {
    /// min…max of the image's valid finite values (the official demo).
    PerImage,
    /// A fixed lo…hi, for comparing images (values outside are clamped).
    Fixed(f64, f64),
}

/// A colour map with a resolved range; `reversed` maps hi → 0 (used for depth so near is warm,
/// as in the official disparity pictures).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scale {
    pub cmap: Colormap,
    pub lo: f64,
    pub hi: f64,
    pub reversed: bool,
}

impl Scale {
    /// Resolves `range` over `values` where `valid` (all when `None`) and finite.
    pub fn new(cmap: Colormap, range: Range, values: &[f32], valid: Option<&[bool]>) -> Scale {
        let (lo, hi) = match range {
            Range::Fixed(lo, hi) => (lo, hi),
            Range::PerImage => {
                let ok = |i: usize| valid.is_none_or(|m| m[i]) && values[i].is_finite();
                let (lo, hi) = (0..values.len())
                    .filter(|&i| ok(i))
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), i| {
                        (a.min(values[i] as f64), b.max(values[i] as f64))
                    });
                if lo <= hi { (lo, hi) } else { (0.0, 1.0) }
            }
        };
        Scale { cmap, lo, hi, reversed: false }
    }

    pub fn reversed(mut self) -> Scale {
        self.reversed = !self.reversed;
        self
    }

    /// Where `v` falls in [0, 1] (a flat range maps everything to 0, as the demo's 1e-8 guard).
    pub fn position(&self, v: f64) -> f64 {
        let span = self.hi - self.lo;
        let t = if span > 0.0 { (v - self.lo) / span } else { 0.0 };
        if self.reversed { 1.0 - t } else { t }
    }

    pub fn color(&self, v: f64) -> [u8; 3] {
        self.cmap.at(self.position(v))
    }
}
