//! depth-eval: how depth predictions are scored — the nine metrics of the official
//! `metric_depth/util/metric.py`, the relative-depth protocol (least-squares scale and shift of
//! disparity to 1/gt), median and depth-space alignment, dataset caps and crops, and the
//! official aggregation (mean of per-image metrics). Plain f64 arithmetic on slices: it must not
//! depend on models, training or data loading.

mod aggregate;
mod align;
mod metrics;
mod protocol;

pub use aggregate::Aggregate;
pub use align::{Alignment, align};
pub use metrics::Metrics;
pub use protocol::{Crop, EvalSettings};
