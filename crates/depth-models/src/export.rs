//! Why this file: a model trained or loaded here is shipped in the formats other tools load:
//! a transformers folder (`DepthAnythingForDepthEstimation`), the official `.pth` state dict,
//! an ONNX graph (`onnx.rs`). Each export is read back by the same [`WeightsSource`] that reads
//! any other weights (the round trip is tested); what a format cannot hold is refused or, where
//! it is an inherent loss of the format, stated in docs/export.md.

use crate::config::{Encoder, ModelConfig};
use crate::error::Result;
use crate::hf;
use crate::source::WeightsSource;
use candle_core::DType;
use depth_core::CoreError;
use depth_core::weights::{Metadata, TensorMap, save_pth, save_safetensors};
use std::path::{Path, PathBuf};

/// What `cargo xtask export --to` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// A folder: `config.json` + `model.safetensors` for `from_pretrained`.
    Transformers,
    /// A `torch.save` state dict for the official `DepthAnythingV2(...).load_state_dict`.
    Official,
    /// An ONNX graph: preprocessed image → depth at its resolution.
    Onnx,
}

impl ExportFormat {
    /// The name `--to` takes (and the export check's script).
    pub fn name(self) -> &'static str {
        match self {
            Self::Transformers => "transformers",
            Self::Official => "official",
            Self::Onnx => "onnx",
        }
    }
}

impl std::str::FromStr for ExportFormat {
    type Err = CoreError;
    fn from_str(s: &str) -> std::result::Result<Self, CoreError> {
        match s {
            "transformers" | "hf" => Ok(Self::Transformers),
            "official" | "pth" => Ok(Self::Official),
            "onnx" => Ok(Self::Onnx),
            other => Err(CoreError::bad_input(
                "export format",
                format!("'{other}': one of transformers, official, onnx"),
            )),
        }
    }
}

/// Options of an export.
#[derive(Clone, Copy, Debug, Default)]
pub struct ExportOptions {
    /// ONNX: float16 weights and activations (float32 input and output).
    pub fp16: bool,
    /// ONNX: the weights in `<out>.data` beside the graph (always so over protobuf's 2 GB).
    pub external_data: bool,
    /// A metric model's largest depth, for a checkpoint that does not carry it (as `infer
    /// --max-depth`).
    pub max_depth: Option<f64>,
}

/// Exports `source` as `format` to `out` (a folder for transformers, a file otherwise); returns
/// the path to load it from.
pub fn export(
    source: &WeightsSource,
    format: ExportFormat,
    out: &Path,
    opts: ExportOptions,
) -> Result<PathBuf> {
    let (mut cfg, tensors) = source.load()?;
    if opts.max_depth.is_some() {
        cfg.max_depth = opts.max_depth;
    }
    let tensors: TensorMap =
        tensors.into_iter().map(|(k, v)| Ok((k, v.to_dtype(DType::F32)?))).collect::<Result<_>>()?;
    match format {
        ExportFormat::Transformers => {
            depth_core::atomic::prepare_output_dir(out)?;
            let json = serde_json::to_vec_pretty(&hf::config_json(&cfg)?).expect("a config serialises");
            let hf_tensors = hf::to_hf(&tensors)?;
            // transformers refuses safetensors whose metadata lacks format = pt
            let meta: Metadata = [("format".to_string(), "pt".to_string())].into();
            save_safetensors(&hf_tensors, &meta, &out.join("model.safetensors"))?;
            depth_core::atomic::write_atomic(&out.join("config.json"), |w| w.write_all(&json))?;
            Ok(out.to_path_buf())
        }
        ExportFormat::Official => {
            official_class_encoder(&cfg)?;
            if !out.extension().is_some_and(|e| e == "pth" || e == "pt") {
                let reason =
                    format!("{}: name it *.pth (torch.save's zip; readers go by the name)", out.display());
                return Err(CoreError::bad_input("export to official", reason).into());
            }
            depth_core::atomic::check_writable(out.parent().unwrap_or(Path::new(".")))?;
            save_pth(&tensors, out)?;
            Ok(out.to_path_buf())
        }
        ExportFormat::Onnx => {
            if out.extension().is_none_or(|e| e != "onnx") {
                let reason = format!("{}: name it *.onnx (readers go by the name)", out.display());
                return Err(CoreError::bad_input("export to onnx", reason).into());
            }
            depth_core::atomic::check_writable(out.parent().unwrap_or(Path::new(".")))?;
            crate::onnx::write(&cfg, &tensors, opts.fp16, opts.external_data, out)?;
            Ok(out.to_path_buf())
        }
    }
}

/// The encoder of a model the official class builds, or why none: the export to official refuses
/// the others.
fn official_class_encoder(cfg: &ModelConfig) -> Result<Encoder> {
    cfg.official_class_encoder().ok_or_else(|| {
        let v = &cfg.vit;
        let reason = format!(
            "a ViT of width {}, depth {}, {} heads, layers {:?} with an output conv of {} channels is \
             none of the official encoders (vits, vitb, vitl, vitg with their layers, and 32 channels), \
             which are all the official class builds: export it to transformers or onnx instead",
            v.embed_dim, v.depth, v.num_heads, cfg.layers, cfg.head.head_hidden
        );
        CoreError::bad_input("export to official", reason).into()
    })
}
