//! Colour maps: matplotlib's `Spectral_r` (the official demo's), `turbo`, `inferno` and
//! grayscale, applied the way the official run.py does — scale to 0…255, truncate to a byte,
//! look the byte up.

mod lut;

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
    type Err = crate::CoreError;
    fn from_str(s: &str) -> Result<Self, crate::CoreError> {
        Self::ALL.into_iter().find(|c| c.name() == s.to_ascii_lowercase()).ok_or_else(|| {
            let known = Self::ALL.map(|c| c.name()).join(", ");
            crate::CoreError::bad_input("colour map", format!("'{s}' is unknown; one of {known}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_match_matplotlib_at_their_ends_and_middle() {
        assert_eq!(Colormap::SpectralR.lut(0), [94, 79, 162]);
        assert_eq!(Colormap::SpectralR.lut(128), [254, 254, 189]);
        assert_eq!(Colormap::SpectralR.lut(255), [158, 1, 66]);
        assert_eq!(Colormap::Inferno.lut(0), [0, 0, 3]);
        assert_eq!(Colormap::Inferno.lut(255), [252, 254, 164]);
        assert_eq!(Colormap::Turbo.lut(0), [48, 18, 59]);
        assert_eq!(Colormap::Turbo.lut(255), [122, 4, 2]);
        assert_eq!(Colormap::Gray.lut(77), [77; 3]);
        assert_eq!(Colormap::Turbo.at(1.5), Colormap::Turbo.lut(255));
        assert_eq!("Turbo".parse::<Colormap>().unwrap(), Colormap::Turbo);
        assert!("jet".parse::<Colormap>().unwrap_err().to_string().contains("spectral_r"));
    }
}
