//! Aligning a relative prediction to metric ground truth before scoring.

/// How a prediction is brought to the ground truth's scale.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Alignment {
    /// Already metric depth.
    None,
    /// The relative-depth protocol: least-squares scale and shift of a *disparity* prediction to
    /// 1/gt over valid pixels, then depth = 1/max(aligned, 1/max_depth).
    DisparityAffine { max_depth: f64 },
    /// Depth scaled by median(gt)/median(pred) (lower medians).
    Median,
    /// Least-squares scale and shift in depth space.
    DepthAffine,
}

/// Least squares: (s, t) minimising Σ (s·x + t − y)².
fn affine_fit(x: &[f64], y: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let (sx, sy) = (x.iter().sum::<f64>(), y.iter().sum::<f64>());
    let sxx = x.iter().map(|v| v * v).sum::<f64>();
    let sxy = x.iter().zip(y).map(|(a, b)| a * b).sum::<f64>();
    let det = sxx * n - sx * sx;
    // a constant prediction: only its mean can be fitted (the determinant may round to a tiny
    // non-zero value and give a meaningless scale)
    if det == 0.0 || x.iter().all(|&v| v == x[0]) {
        return (0.0, sy / n);
    }
    ((n * sxy - sx * sy) / det, (sxx * sy - sx * sxy) / det)
}

fn lower_median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[(v.len() - 1) / 2]
}

/// The aligned depth (all pixels) and the fitted (scale, shift); `None` without valid pixels.
pub fn align(pred: &[f64], gt: &[f64], valid: &[bool], how: Alignment) -> Option<(Vec<f64>, (f64, f64))> {
    let valid = &crate::metrics::usable(gt, valid)[..];
    let pick = |src: &[f64], f: &dyn Fn(f64) -> f64| -> Vec<f64> {
        src.iter().zip(valid).filter(|(_, v)| **v).map(|(&x, _)| f(x)).collect()
    };
    if !valid.iter().any(|&v| v) {
        return None;
    }
    Some(match how {
        Alignment::None => (pred.to_vec(), (1.0, 0.0)),
        Alignment::DisparityAffine { max_depth } => {
            let (s, t) = affine_fit(&pick(pred, &|x| x), &pick(gt, &|g| 1.0 / g));
            (pred.iter().map(|&p| 1.0 / (s * p + t).max(1.0 / max_depth)).collect(), (s, t))
        }
        Alignment::Median => {
            let s = lower_median(pick(gt, &|g| g)) / lower_median(pick(pred, &|x| x));
            (pred.iter().map(|&p| s * p).collect(), (s, 0.0))
        }
        Alignment::DepthAffine => {
            let (s, t) = affine_fit(&pick(pred, &|x| x), &pick(gt, &|g| g));
            (pred.iter().map(|&p| s * p + t).collect(), (s, t))
        }
    })
}
