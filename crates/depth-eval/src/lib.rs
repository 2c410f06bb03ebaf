//! depth-eval: how depth predictions are scored and looked at.
//!
//! It owns the nine metrics of the official `metric_depth/util/metric.py`, the relative-depth
//! protocol (least-squares scale and shift of disparity to 1/gt) and the other alignments, the
//! benchmark caps and crops, the aggregation (mean of per-image metrics), the benchmark runner,
//! the evaluation job (`evaluate`: every benchmark of a config for every predictor) and its
//! reports (`configs/eval.toml`, model or precomputed predictions, DA-2K pairwise
//! accuracy), the constant and position-prior baselines, depth pictures (colour maps, colour bars, side-by-side panels, PNG16, PLY), small
//! plots, and the PCA views of ViT patch features. It reads datasets through depth-data and runs
//! models through depth-models' inference API; it must not depend on losses or training, and
//! the metric code stays plain f64 arithmetic on slices.

//!
//! Its surface: the baselines, the paired comparisons (`compare`), PLY export, feature views, DA-2K pairs, PCA, plots and pictures
//! are modules used by their path; everything else is re-exported here from private modules.

mod aggregate;
mod align;
pub mod baseline;
mod benchmark;
pub mod compare;
mod error;
mod evaluate;
pub mod export;
pub mod features;
mod metrics;
pub mod pairwise;
pub mod pca;
pub mod plot;
mod predict;
mod protocol;
mod report;
mod runner;
pub mod visualize;

pub use aggregate::Aggregate;
pub use align::{Alignment, align};
pub use benchmark::{BenchmarkSpec, EvalConfig, Mode, PairwiseSpec};
pub use error::{EvalError, Result};
pub use evaluate::{Evaluation, evaluate};
pub use metrics::Metrics;
pub use predict::{ModelPredictor, PredDir, Prediction, Predictor, folders, safe_name, stem};
pub use protocol::{Crop, EvalSettings};
pub use report::{Report, Unavailable};
pub use runner::{
    BenchmarkResult, Failure, ItemResult, ModelResult, PairwiseResult, Runner, Scored, item_count, picture,
    picture_path, score,
};
