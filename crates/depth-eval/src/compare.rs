//! Why this file: a report that says one model is better than another must say how sure it is.
//! Two models scored on the same images are compared by the paired difference of a per-image
//! metric, with a percentile bootstrap interval over the images (resampled with replacement,
//! a fixed seed, so a report is reproducible), and a verdict that follows from the interval
//! alone: "better" or "worse" when it excludes zero, "no difference" when it holds it.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Resamples of the images in a report's bootstrap.
pub const RESAMPLES: usize = 10_000;

/// The mean of `a − b` over paired images, and its 95% bootstrap interval.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct PairedDifference {
    pub images: usize,
    pub mean: f64,
    pub lo: f64,
    pub hi: f64,
}

/// What a paired difference of a lower-is-better metric (AbsRel) says of A against B.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Verdict {
    Better,
    Worse,
    NoDifference,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Better => "better",
            Self::Worse => "worse",
            Self::NoDifference => "no difference",
        })
    }
}

/// The paired difference of `a` and `b` (the same images in the same order) with a 95%
/// percentile bootstrap interval from `resamples` resamples drawn with `seed`; None without
/// images or when the lengths differ.
pub fn paired_bootstrap(a: &[f64], b: &[f64], resamples: usize, seed: u64) -> Option<PairedDifference> {
    if b.len() != a.len() {
        return None;
    }
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (mean, lo, hi) = bootstrap(&d, mean, resamples, seed)?;
    Some(PairedDifference { images: d.len(), mean, lo, hi })
}

/// `statistic` of `values` with its 95% percentile bootstrap interval from `resamples`
/// resamples (with replacement) drawn with `seed`: (value, lo, hi); None without values.
pub fn bootstrap(
    values: &[f64],
    statistic: impl Fn(&[f64]) -> f64,
    resamples: usize,
    seed: u64,
) -> Option<(f64, f64, f64)> {
    let n = values.len();
    if n == 0 || resamples == 0 {
        return None;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut sample = vec![0.0; n];
    let mut stats: Vec<f64> = (0..resamples)
        .map(|_| {
            sample.iter_mut().for_each(|s| *s = values[rng.random_range(0..n)]);
            statistic(&sample)
        })
        .collect();
    stats.sort_by(f64::total_cmp);
    Some((statistic(values), quantile(&stats, 0.025), quantile(&stats, 0.975)))
}

/// The median (the mean of the two middle values of an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// The `q` quantile of sorted values, linearly interpolated between the two nearest ranks
/// (NumPy's default).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let at = q * (sorted.len() - 1) as f64;
    let (i, frac) = (at.floor() as usize, at.fract());
    match sorted.get(i + 1) {
        Some(next) => sorted[i] + frac * (next - sorted[i]),
        None => sorted[i],
    }
}

impl PairedDifference {
    /// For a lower-is-better metric: A is better when the whole interval is below zero.
    pub fn verdict(&self) -> Verdict {
        if self.hi < 0.0 {
            Verdict::Better
        } else if self.lo > 0.0 {
            Verdict::Worse
        } else {
            Verdict::NoDifference
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_constant_difference_has_a_point_interval() {
        let a = [0.3, 0.5, 0.2];
        let b = [0.4, 0.6, 0.3];
        let p = paired_bootstrap(&a, &b, 1000, 1).unwrap();
        assert!(
            (p.mean + 0.1).abs() < 1e-12 && (p.lo + 0.1).abs() < 1e-12 && (p.hi + 0.1).abs() < 1e-12,
            "{p:?}"
        );
        assert_eq!(p.verdict(), Verdict::Better);
        assert_eq!(paired_bootstrap(&b, &a, 1000, 1).unwrap().verdict(), Verdict::Worse);
    }

    #[test]
    fn the_median_of_ratios_has_an_interval_inside_its_values() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        let ratios = [0.9, 1.1, 1.0, 0.95, 1.05, 1.0, 0.98, 1.02];
        let (m, lo, hi) = bootstrap(&ratios, median, 2000, 7).unwrap();
        assert_eq!(m, 1.0);
        assert!(0.9 <= lo && lo <= m && m <= hi && hi <= 1.1, "{lo} {m} {hi}");
        assert_eq!(bootstrap(&[1.5; 5], median, 100, 1).unwrap(), (1.5, 1.5, 1.5));
        assert!(bootstrap(&[], median, 100, 1).is_none());
    }

    #[test]
    fn two_images_give_the_exact_bootstrap_distribution() {
        // differences 0 and 1: a resample's mean is 0, 0.5 or 1 with probabilities 1/4, 1/2,
        // 1/4, so the 2.5% and 97.5% quantiles are 0 and 1, and zero is inside
        let p = paired_bootstrap(&[0.0, 1.0], &[0.0, 0.0], RESAMPLES, 7).unwrap();
        assert_eq!((p.mean, p.lo, p.hi), (0.5, 0.0, 1.0));
        assert_eq!(p.verdict(), Verdict::NoDifference);
    }

    #[test]
    fn the_interval_matches_the_normal_approximation_on_many_images() {
        // ±1 alternating over 400 images: mean 0, standard error 1/20, so about ±1.96/20
        let a: Vec<f64> = (0..400).map(|i| if i % 2 == 0 { 1.0 } else { -1.0 }).collect();
        let p = paired_bootstrap(&a, &vec![0.0; 400], RESAMPLES, 3).unwrap();
        assert!(p.mean.abs() < 1e-12);
        assert!((p.lo + 0.098).abs() < 0.008 && (p.hi - 0.098).abs() < 0.008, "{p:?}");
        assert_eq!(p.verdict(), Verdict::NoDifference);
        // the same draws for the same seed
        assert_eq!(paired_bootstrap(&a, &vec![0.0; 400], RESAMPLES, 3).unwrap(), p);
        assert!(
            paired_bootstrap(&[], &[], 10, 0).is_none() && paired_bootstrap(&[1.0], &[], 10, 0).is_none()
        );
    }
}
