//! The nine metrics, exactly as the official `eval_depth`: over valid pixels,
//! thresh = max(gt/pred, pred/gt); d_k = share of thresh < 1.25^k; abs_rel = mean |pred − gt|/gt;
//! sq_rel = mean (pred − gt)²/gt; rmse; rmse_log; log10 = mean |log10 pred − log10 gt|;
//! silog = sqrt(mean dl² − 0.5 mean(dl)²) with dl = ln pred − ln gt.

/// One image's (or a dataset's mean) metrics.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Metrics {
    pub d1: f64,
    pub d2: f64,
    pub d3: f64,
    pub abs_rel: f64,
    pub sq_rel: f64,
    pub rmse: f64,
    pub rmse_log: f64,
    pub log10: f64,
    pub silog: f64,
}

impl Metrics {
    pub const NAMES: [&'static str; 9] =
        ["d1", "d2", "d3", "abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog"];

    /// The metrics of `pred` against `gt` where `valid` (a non-finite or non-positive target
    /// counts as invalid); `None` when no pixel is valid.
    pub fn compute(pred: &[f64], gt: &[f64], valid: &[bool]) -> Option<Self> {
        let valid = usable(gt, valid);
        let pairs: Vec<(f64, f64)> =
            pred.iter().zip(gt).zip(&valid).filter(|(_, v)| **v).map(|((&p, &g), _)| (p, g)).collect();
        if pairs.is_empty() {
            return None;
        }
        let n = pairs.len() as f64;
        let mean = |f: &dyn Fn(f64, f64) -> f64| pairs.iter().map(|&(p, g)| f(p, g)).sum::<f64>() / n;
        let share = |k: i32| mean(&|p, g| f64::from(u8::from((g / p).max(p / g) < 1.25f64.powi(k))));
        let dl_mean = mean(&|p, g| p.ln() - g.ln());
        let dl_sq = mean(&|p, g| (p.ln() - g.ln()).powi(2));
        Some(Self {
            d1: share(1),
            d2: share(2),
            d3: share(3),
            abs_rel: mean(&|p, g| (p - g).abs() / g),
            sq_rel: mean(&|p, g| (p - g).powi(2) / g),
            rmse: mean(&|p, g| (p - g).powi(2)).sqrt(),
            rmse_log: dl_sq.sqrt(),
            log10: mean(&|p, g| (p.log10() - g.log10()).abs()),
            silog: (dl_sq - 0.5 * dl_mean.powi(2)).sqrt(),
        })
    }

    /// In the order of [`Metrics::NAMES`].
    pub fn values(&self) -> [f64; 9] {
        [
            self.d1,
            self.d2,
            self.d3,
            self.abs_rel,
            self.sq_rel,
            self.rmse,
            self.rmse_log,
            self.log10,
            self.silog,
        ]
    }

    pub fn from_values(v: [f64; 9]) -> Self {
        let [d1, d2, d3, abs_rel, sq_rel, rmse, rmse_log, log10, silog] = v;
        Self { d1, d2, d3, abs_rel, sq_rel, rmse, rmse_log, log10, silog }
    }
}

/// `valid` without the targets that have no depth (NaN, ±inf, ≤ 0).
pub(crate) fn usable(gt: &[f64], valid: &[bool]) -> Vec<bool> {
    gt.iter().zip(valid).map(|(&g, &v)| v && g.is_finite() && g > 0.0).collect()
}
