//! A dataset's result as the official code reports it: the mean of per-image metrics, with the
//! per-image values kept for reports.

use crate::Metrics;

#[derive(Clone, Debug, Default)]
pub struct Aggregate {
    pub per_image: Vec<(String, Metrics)>,
}

impl Aggregate {
    pub fn push(&mut self, name: impl Into<String>, m: Metrics) {
        self.per_image.push((name.into(), m));
    }

    /// The mean of every metric over images; `None` when empty.
    pub fn mean(&self) -> Option<Metrics> {
        if self.per_image.is_empty() {
            return None;
        }
        let mut sum = [0.0; 9];
        for (_, m) in &self.per_image {
            sum.iter_mut().zip(m.values()).for_each(|(s, v)| *s += v);
        }
        Some(Metrics::from_values(sum.map(|s| s / self.per_image.len() as f64)))
    }
}
