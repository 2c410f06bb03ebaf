//! The network-input options of every command that runs a model (infer, features, eval,
//! pseudo-label): one definition, one check.

use clap::builder::RangedU64ValueParser;
use depth_models::{DEFAULT_MAX_TOKENS, DepthAnythingV2, DepthEstimator};

#[derive(Clone, Debug, clap::Args)]
pub(crate) struct NetInput {
    /// Shorter side of the network input (the official 518; 14…8190, sides rounded to multiples
    /// of 14 as the official resize does).
    #[arg(long, default_value_t = 518, value_parser = RangedU64ValueParser::<usize>::new().range(14..=8190))]
    pub(crate) input_size: usize,
    /// Most patch tokens one input may have (518×784 has 2,072). An image whose resized input
    /// has more — an extreme aspect ratio, a huge input size — is refused, naming the file,
    /// instead of running for hours; raise it to allow.
    #[arg(long, default_value_t = DEFAULT_MAX_TOKENS, value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub(crate) max_tokens: usize,
}

/// Parses a count that must be at least one (a batch size, a number of scenes).
pub(crate) fn positive() -> RangedU64ValueParser<usize> {
    RangedU64ValueParser::<usize>::new().range(1..)
}

impl Default for NetInput {
    fn default() -> Self {
        Self { input_size: 518, max_tokens: DEFAULT_MAX_TOKENS }
    }
}

impl NetInput {
    /// The estimator of `model` with these options.
    pub(crate) fn estimator(&self, model: DepthAnythingV2, device: candle_core::Device) -> DepthEstimator {
        DepthEstimator::new(model, device).with_input_size(self.input_size).with_max_tokens(self.max_tokens)
    }
}
