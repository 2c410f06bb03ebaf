//! Benchmark settings: depth caps and evaluation crops, and the valid mask they give.

/// An evaluation crop, as fractions of the image or fixed pixel bounds.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Crop {
    None,
    /// NYU Depth v2 (Eigen): rows 45..471, columns 41..601 of the 480×640 frame.
    NyuEigen,
    /// KITTI, Garg et al.: rows 0.40810811·h..0.99189189·h, columns 0.03594771·w..0.96405229·w.
    KittiGarg,
    /// KITTI, Eigen et al.: rows 0.3324324·h..0.91351351·h, columns 0.0359477·w..0.96405229·w.
    KittiEigen,
}

impl Crop {
    /// (row range, column range) for an h×w image.
    pub fn bounds(self, h: usize, w: usize) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        let f = |a: f64, n: usize| (a * n as f64) as usize;
        match self {
            Self::None => (0..h, 0..w),
            Self::NyuEigen => (45.min(h)..471.min(h), 41.min(w)..601.min(w)),
            Self::KittiGarg => {
                (f(0.408_108_11, h)..f(0.991_891_89, h), f(0.035_947_71, w)..f(0.964_052_29, w))
            }
            Self::KittiEigen => {
                (f(0.332_432_4, h)..f(0.913_513_51, h), f(0.035_947_7, w)..f(0.964_052_29, w))
            }
        }
    }
}

/// The settings of one benchmark.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct EvalSettings {
    pub min_depth: f64,
    pub max_depth: f64,
    pub crop: Crop,
}

impl EvalSettings {
    pub const NYU: Self = Self { min_depth: 1e-3, max_depth: 10.0, crop: Crop::NyuEigen };
    pub const KITTI: Self = Self { min_depth: 1e-3, max_depth: 80.0, crop: Crop::KittiGarg };

    /// Valid pixels of an h×w ground truth: finite, min ≤ gt ≤ max, inside the crop.
    pub fn valid_mask(&self, gt: &[f64], h: usize, w: usize) -> Vec<bool> {
        let (rows, cols) = self.crop.bounds(h, w);
        (0..h * w)
            .map(|i| {
                let g = gt[i];
                rows.contains(&(i / w))
                    && cols.contains(&(i % w))
                    && g.is_finite()
                    && g >= self.min_depth
                    && g <= self.max_depth
            })
            .collect()
    }
}
