//! Value ranges for the colour maps of depth-core (`Spectral_r`, the official demo's, `turbo`,
//! `inferno`, grayscale): per image or fixed, optionally reversed.

pub use depth_core::Colormap;

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
