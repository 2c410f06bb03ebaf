//! Colour maps for depth pictures: matplotlib's `Spectral_r` (what the official run.py uses) as
//! a 256-entry table, and grayscale.

/// ColorBrewer Spectral, 11 colours, the anchors of matplotlib's `Spectral`.
const SPECTRAL: [[u8; 3]; 11] = [
    [158, 1, 66],
    [213, 62, 79],
    [244, 109, 67],
    [253, 174, 97],
    [254, 224, 139],
    [255, 255, 191],
    [230, 245, 152],
    [171, 221, 164],
    [102, 194, 165],
    [50, 136, 189],
    [94, 79, 162],
];

/// Entry `k` of matplotlib's 256-colour `Spectral_r` LUT, as `(cmap(k)[:3] * 255).astype(uint8)`.
pub fn spectral_r(k: u8) -> [u8; 3] {
    // Spectral_r(k) = Spectral(1 − k/255): linear between the 11 evenly spaced anchors.
    let x = (1.0 - k as f64 / 255.0) * 10.0;
    let i = (x.floor() as usize).min(9);
    let t = x - i as f64;
    let (a, b) = (SPECTRAL[i], SPECTRAL[i + 1]);
    std::array::from_fn(|c| {
        let v = (a[c] as f64 / 255.0) * (1.0 - t) + (b[c] as f64 / 255.0) * t;
        (v * 255.0) as u8
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spectral_r_runs_from_violet_to_red() {
        assert_eq!(spectral_r(0), [94, 79, 162]);
        assert_eq!(spectral_r(255), [158, 1, 66]);
        // the middle is the pale yellow anchor
        let mid = spectral_r(128);
        assert!(mid.iter().all(|&c| c > 180), "{mid:?}");
    }
}
