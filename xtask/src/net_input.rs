//! The model and network-input options of every command that runs a model (infer,
//! features, serve, eval, pseudo-label): one definition, one check.

use crate::error::Result;
use clap::builder::RangedU64ValueParser;
use depth_core::Precision;
use depth_models::{
    DEFAULT_MAX_TOKENS, DepthAnythingV2, DepthEstimator, Encoder, WeightsSource, load_checked,
};

/// `--weights` and `--encoder`.
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct ModelArgs {
    /// Encoder size: which official checkpoint to fetch when --weights is not given (default
    /// vits); with --weights, the size the checkpoint must have (it is read from the checkpoint).
    #[arg(long)]
    pub(crate) encoder: Option<Encoder>,
    /// Checkpoint: a .pth/.pt/.bin/.ckpt/safetensors file, an HF folder, a Hub id
    /// (owner/name[:file]) or an encoder name. Default: the official checkpoint of --encoder.
    #[arg(long)]
    pub(crate) weights: Option<String>,
    /// Metric depth in metres, at most this: the metric head of the official metric_depth/ code
    /// (its --max-depth), for a metric checkpoint whose name does not say so. The official
    /// depth_anything_v2_metric_{hypersim,vkitti}_* files are read as metric (20 m, 80 m) without it.
    #[arg(long, value_parser = positive_metres, allow_hyphen_values = true)]
    pub(crate) max_depth: Option<f64>,
}

fn positive_metres(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(m) if m > 0.0 && m.is_finite() => Ok(m),
        _ => Err(format!("'{s}' is no positive number of metres")),
    }
}

impl ModelArgs {
    /// Where the weights come from.
    pub(crate) fn source(&self) -> Result<WeightsSource> {
        match &self.weights {
            Some(w) => Ok(w.parse()?),
            None => Ok(self.encoder.unwrap_or(Encoder::Vits).into()),
        }
    }

    /// The model, loaded strictly (of the size `--encoder` names, when given).
    pub(crate) fn load(&self, device: &candle_core::Device) -> Result<(WeightsSource, DepthAnythingV2)> {
        let source = self.source()?;
        let model = load_checked(&source, self.encoder, self.max_depth, device)?;
        Ok((source, model))
    }
}

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
    /// f32, or bf16: the linear layers, attention and convolutions in bfloat16 (as
    /// torch.autocast), the rest in float32. Fast on GPUs and on CPUs with AMX (bf16 tiles);
    /// on other CPUs it is emulated (slower).
    #[arg(long, default_value_t = Precision::F32)]
    pub(crate) precision: Precision,
}

/// Parses a count that must be at least one (a batch size, a number of scenes).
pub(crate) fn positive() -> RangedU64ValueParser<usize> {
    RangedU64ValueParser::<usize>::new().range(1..)
}

impl Default for NetInput {
    fn default() -> Self {
        Self { input_size: 518, max_tokens: DEFAULT_MAX_TOKENS, precision: Precision::F32 }
    }
}

impl NetInput {
    /// The estimator of `model` with these options.
    pub(crate) fn estimator(&self, model: DepthAnythingV2, device: candle_core::Device) -> DepthEstimator {
        DepthEstimator::new(model, device)
            .with_input_size(self.input_size)
            .with_max_tokens(self.max_tokens)
            .with_precision(self.precision)
    }
}
