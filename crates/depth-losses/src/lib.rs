//! depth-losses: the training objective of Depth Anything V2 as differentiable functions of
//! candle tensors — the scale-and-shift-invariant loss (with per-sample trimming for
//! pseudo-labels), multi-scale gradient matching, their 1:2 combination, the feature-alignment
//! loss and SiLog. Pure functions of (prediction, target, mask); no models, data or optimisers,
//! and nothing here may depend on a crate other than depth-core.

mod error;
mod feature_align;
mod gradient;
mod normalize;
mod objective;
mod order;
mod silog;
mod ssi;

pub use error::{LossError, Result};
pub use feature_align::feature_alignment_loss;
pub use gradient::gradient_matching_loss;
pub use normalize::{Normalized, Valid, normalize};
pub use objective::{Objective, da2_objective};
pub use silog::silog_loss;
pub use ssi::ssi_loss;
