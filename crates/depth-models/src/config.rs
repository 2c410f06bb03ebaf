//! Model configurations: the four official encoders (and any custom size), the DPT head, and
//! how position embeddings are resized.

use depth_core::CoreError;
use depth_core::config::Invalid;
use serde::{Deserialize, Serialize};
use serde_inline_default::serde_inline_default;

/// The official encoder sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoder {
    Vits,
    Vitb,
    Vitl,
    Vitg,
}

impl std::str::FromStr for Encoder {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, CoreError> {
        match s {
            "vits" => Ok(Self::Vits),
            "vitb" => Ok(Self::Vitb),
            "vitl" => Ok(Self::Vitl),
            "vitg" => Ok(Self::Vitg),
            _ => Err(CoreError::bad_input(
                "encoder",
                format!("unknown encoder '{s}': use vits, vitb, vitl or vitg"),
            )),
        }
    }
}

impl Encoder {
    /// The four sizes, smallest first.
    pub const ALL: [Encoder; 4] = [Self::Vits, Self::Vitb, Self::Vitl, Self::Vitg];

    pub fn name(self) -> &'static str {
        match self {
            Self::Vits => "vits",
            Self::Vitb => "vitb",
            Self::Vitl => "vitl",
            Self::Vitg => "vitg",
        }
    }

    /// The Hub repository of the official relative-depth checkpoint.
    pub fn hub_repo(self) -> (&'static str, &'static str) {
        match self {
            Self::Vits => ("depth-anything/Depth-Anything-V2-Small", "depth_anything_v2_vits.pth"),
            Self::Vitb => ("depth-anything/Depth-Anything-V2-Base", "depth_anything_v2_vitb.pth"),
            Self::Vitl => ("depth-anything/Depth-Anything-V2-Large", "depth_anything_v2_vitl.pth"),
            Self::Vitg => ("depth-anything/Depth-Anything-V2-Giant", "depth_anything_v2_vitg.pth"),
        }
    }
}

/// The feed-forward network of a ViT block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ffn {
    /// fc1 → exact GELU → fc2.
    Mlp,
    /// w12 → SiLU(x1)·x2 → w3, hidden = round_up_8(⌊hidden·2/3⌋) (ViT-G).
    SwiGlu,
}

/// How position embeddings are resized to the patch grid.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PosEmbedResize {
    /// Official DINOv2: bicubic with scale factor ((h + offset)/√N, (w + offset)/√N).
    ScaleFactor { offset: f64 },
    /// Hugging Face transformers: bicubic to the size (h, w).
    Size,
}

/// A DINOv2 ViT.
#[serde_inline_default]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VitConfig {
    pub embed_dim: usize,
    pub depth: usize,
    pub num_heads: usize,
    pub mlp_ratio: f64,
    pub ffn: Ffn,
    pub patch_size: usize,
    /// The pretraining image size: the position-embedding grid is img_size / patch_size.
    pub img_size: usize,
    pub layer_scale: bool,
    /// LayerScale's initial gamma for a freshly built model (1.0 in Depth Anything V2's DINOv2).
    #[serde_inline_default(1.0)]
    pub layer_scale_init: f64,
    pub ln_eps: f64,
    pub pos_embed_resize: PosEmbedResize,
}

impl VitConfig {
    fn official(embed_dim: usize, depth: usize, num_heads: usize, ffn: Ffn) -> Self {
        Self {
            embed_dim,
            depth,
            num_heads,
            mlp_ratio: 4.0,
            ffn,
            patch_size: 14,
            img_size: 518,
            layer_scale: true,
            layer_scale_init: 1.0,
            ln_eps: 1e-6,
            pos_embed_resize: PosEmbedResize::ScaleFactor { offset: 0.1 },
        }
    }

    pub fn for_encoder(e: Encoder) -> Self {
        match e {
            Encoder::Vits => Self::official(384, 12, 6, Ffn::Mlp),
            Encoder::Vitb => Self::official(768, 12, 12, Ffn::Mlp),
            Encoder::Vitl => Self::official(1024, 24, 16, Ffn::Mlp),
            Encoder::Vitg => Self::official(1536, 40, 24, Ffn::SwiGlu),
        }
    }

    /// A custom-size ViT with the official conventions (for small students and tests).
    pub fn custom(embed_dim: usize, depth: usize, num_heads: usize, ffn: Ffn) -> Self {
        Self::official(embed_dim, depth, num_heads, ffn)
    }

    /// The hidden width of the feed-forward network.
    pub fn ffn_hidden(&self) -> usize {
        let hidden = (self.embed_dim as f64 * self.mlp_ratio) as usize;
        match self.ffn {
            Ffn::Mlp => hidden,
            Ffn::SwiGlu => (hidden * 2 / 3).div_ceil(8) * 8,
        }
    }
}

/// The most parameters a configuration may describe (16 GB as float32; DA-V2 ViT-G has 1.3e9).
pub const MAX_PARAMETERS: usize = 4_000_000_000;

/// The DPT head.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DptConfig {
    pub features: usize,
    pub out_channels: [usize; 4],
    pub use_clstoken: bool,
    /// Channels between output_conv2's two convolutions (32 in the official head).
    pub head_hidden: usize,
}

/// Encoder, head and the encoder layers the head reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub vit: VitConfig,
    pub head: DptConfig,
    pub layers: [usize; 4],
    /// The metric head of the official `metric_depth/` (sigmoid × max_depth, metres) instead of
    /// the relative one (ReLU, affine-invariant disparity).
    #[serde(default)]
    pub max_depth: Option<f64>,
}

/// The safetensors metadata keys of a checkpoint written by [`crate::save_model`].
pub const META_FORMAT: &str = "format";
pub const META_CONFIG: &str = "depth_anything_v2.config";
/// The value of [`META_FORMAT`].
pub const CHECKPOINT_FORMAT: &str = "depth-anything-v2/1";

impl ModelConfig {
    /// The official Depth Anything V2 configuration of an encoder.
    pub fn official(e: Encoder) -> Self {
        let (features, out_channels, layers) = match e {
            Encoder::Vits => (64, [48, 96, 192, 384], [2, 5, 8, 11]),
            Encoder::Vitb => (128, [96, 192, 384, 768], [2, 5, 8, 11]),
            Encoder::Vitl => (256, [256, 512, 1024, 1024], [4, 11, 17, 23]),
            Encoder::Vitg => (384, [1536, 1536, 1536, 1536], [9, 19, 29, 39]),
        };
        Self {
            vit: VitConfig::for_encoder(e),
            head: DptConfig { features, out_channels, use_clstoken: false, head_hidden: 32 },
            layers,
            max_depth: None,
        }
    }

    /// A custom size with the official conventions: a ViT of `embed_dim` × `depth` blocks and
    /// `num_heads` heads (MLP FFN), a head of `features` channels, reading the blocks at the
    /// quarter points (`[d/4 − 1, d/2 − 1, 3d/4 − 1, d − 1]` as the official small models do),
    /// projecting them to `features · [1/2, 1, 2, 4]`-ish channels scaled as vits does.
    pub fn custom(embed_dim: usize, depth: usize, num_heads: usize, features: usize) -> Self {
        let q = |k: usize| (depth * k / 4).max(1) - 1;
        let layers = [q(1), q(2), q(3), depth - 1];
        let out_channels = [embed_dim / 8, embed_dim / 4, embed_dim / 2, embed_dim].map(|c| c.max(1));
        Self {
            vit: VitConfig::custom(embed_dim, depth, num_heads, Ffn::Mlp),
            head: DptConfig { features, out_channels, use_clstoken: false, head_hidden: 32.min(features) },
            layers,
            max_depth: None,
        }
    }

    /// The official encoder size this configuration has, if any (the official code can then
    /// load a checkpoint of it).
    pub fn official_encoder(&self) -> Option<Encoder> {
        self.official_class_encoder().filter(|&e| Self::official(e).head == self.head)
    }

    /// The encoder the official `DepthAnythingV2` class builds this configuration with, if any:
    /// an official ViT with its layers; the DPT's `features` and `out_channels` are the class's
    /// arguments, its 32-channel output conv and the patch-token readout are fixed.
    pub fn official_class_encoder(&self) -> Option<Encoder> {
        Encoder::ALL.into_iter().find(|&e| {
            let o = Self::official(e);
            o.vit == self.vit
                && o.layers == self.layers
                && self.head.use_clstoken == o.head.use_clstoken
                && self.head.head_hidden == o.head.head_hidden
        })
    }

    /// The number of parameters, from the sizes alone (no tensor is built): ViT-S has 24,785,089.
    pub fn parameter_count(&self) -> usize {
        let c = self.vit.embed_dim;
        let (oc, f, hh) = (self.head.out_channels, self.head.features, self.head.head_hidden);
        let conv = |i: usize, o: usize, k: usize, bias: bool| i * o * k * k + if bias { o } else { 0 };
        let mut head: usize = oc.iter().map(|&o| conv(c, o, 1, true)).sum();
        head += conv(oc[0], oc[0], 4, true) + conv(oc[1], oc[1], 2, true) + conv(oc[3], oc[3], 3, true);
        if self.head.use_clstoken {
            head += 4 * (2 * c * c + c);
        }
        head += oc.iter().map(|&o| conv(o, f, 3, false)).sum::<usize>();
        head += 4 * (4 * conv(f, f, 3, true) + conv(f, f, 1, true));
        head += conv(f, f / 2, 3, true) + conv(f / 2, hh, 3, true) + conv(hh, 1, 1, true);
        self.encoder_parameter_count() + head
    }

    /// The encoder's (`pretrained.*`) share of [`parameter_count`](Self::parameter_count).
    pub fn encoder_parameter_count(&self) -> usize {
        let v = &self.vit;
        let (c, h) = (v.embed_dim, v.ffn_hidden());
        let grid = v.img_size / v.patch_size;
        let ffn = match v.ffn {
            Ffn::Mlp => 2 * c * h + h + c,
            Ffn::SwiGlu => c * 2 * h + 2 * h + h * c + c,
        };
        let block = 4 * c + (3 * c * c + 3 * c) + (c * c + c) + if v.layer_scale { 2 * c } else { 0 } + ffn;
        3 * v.patch_size * v.patch_size * c + c + c + (grid * grid + 1) * c + c + v.depth * block + 2 * c
    }

    /// Checks that the sizes fit together (heads divide the width, layers exist, …).
    pub fn validate(&self) -> Result<(), Invalid> {
        let v = &self.vit;
        // Bounds first, so nothing below overflows and a config file that claims absurd sizes
        // (a 1e9-wide or 1e6-deep ViT) is refused before a byte is allocated.
        let sizes = [
            ("embed_dim", v.embed_dim, 1 << 16),
            ("depth", v.depth, 1 << 10),
            ("num_heads", v.num_heads, 1 << 10),
            ("patch_size", v.patch_size, 1 << 8),
            ("img_size", v.img_size, 1 << 14),
            ("features", self.head.features, 1 << 16),
            ("head_hidden", self.head.head_hidden, 1 << 16),
        ];
        let channels = self.head.out_channels.iter().map(|&o| ("out_channels", o, 1 << 16));
        if let Some((name, value, max)) = sizes.into_iter().chain(channels).find(|&(_, x, max)| x > max) {
            return Err(Invalid::new(
                name,
                format!("{name} {value} is larger than {max}, the most this tool builds"),
            ));
        }
        if !(v.mlp_ratio.is_finite() && v.mlp_ratio > 0.0 && v.mlp_ratio <= 64.0) {
            return Err(Invalid::new("mlp_ratio", format!("mlp_ratio {} must be in (0, 64]", v.mlp_ratio)));
        }
        if !(v.ln_eps.is_finite() && v.ln_eps >= 0.0) {
            return Err(Invalid::new(
                "ln_eps",
                format!("layer_norm eps {} must be finite and ≥ 0", v.ln_eps),
            ));
        }
        if v.embed_dim == 0 || v.num_heads == 0 || !v.embed_dim.is_multiple_of(v.num_heads) {
            return Err(Invalid::new(
                "num_heads",
                format!("embed_dim {} is not a multiple of num_heads {}", v.embed_dim, v.num_heads),
            ));
        }
        if v.depth == 0 || self.layers.iter().any(|&l| l >= v.depth) {
            return Err(Invalid::new(
                "layers",
                format!("layers {:?} must be blocks of the {} the ViT has", self.layers, v.depth),
            ));
        }
        if v.patch_size == 0 || !v.img_size.is_multiple_of(v.patch_size) {
            return Err(Invalid::new(
                "img_size",
                format!("img_size {} is not a multiple of patch_size {}", v.img_size, v.patch_size),
            ));
        }
        let h = &self.head;
        if h.features < 2 || h.out_channels.contains(&0) || h.head_hidden == 0 {
            return Err(Invalid::new(
                "features",
                format!(
                    "head sizes must be positive (features {} ≥ 2, out_channels {:?}, head_hidden {})",
                    h.features, h.out_channels, h.head_hidden
                ),
            ));
        }
        if let Some(m) = self.max_depth
            && !(m > 0.0 && m.is_finite())
        {
            return Err(Invalid::new("max_depth", format!("max_depth {m} must be positive")));
        }
        let n = self.parameter_count();
        if n > MAX_PARAMETERS {
            return Err(Invalid::new(
                "embed_dim",
                format!(
                    "{n} parameters ({:.1} GB as float32), more than the limit of {MAX_PARAMETERS} (ViT-G has 1.3e9)",
                    n as f64 * 4e-9
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swiglu_hidden_is_the_official_rounding() {
        assert_eq!(VitConfig::custom(64, 4, 4, Ffn::SwiGlu).ffn_hidden(), 176);
        assert_eq!(VitConfig::for_encoder(Encoder::Vitg).ffn_hidden(), 4096);
        assert_eq!(VitConfig::for_encoder(Encoder::Vits).ffn_hidden(), 1536);
    }

    #[test]
    fn custom_sizes_validate_and_official_ones_are_recognised() {
        let c = ModelConfig::custom(96, 6, 3, 32);
        assert_eq!(c.layers, [0, 2, 3, 5]);
        assert_eq!(c.head.out_channels, [12, 24, 48, 96]);
        c.validate().unwrap();
        assert_eq!(c.official_encoder(), None);
        assert!(ModelConfig::custom(96, 6, 5, 32).validate().unwrap_err().to_string().contains("num_heads"));
        for e in Encoder::ALL {
            assert_eq!(ModelConfig::official(e).official_encoder(), Some(e));
            ModelConfig::official(e).validate().unwrap();
        }
        assert_eq!(ModelConfig::official(Encoder::Vits).parameter_count(), 24_785_089);
        // vits read at the same quarter points as custom(384, 12, 6, 64)
        assert_eq!(ModelConfig::custom(384, 12, 6, 64).layers, ModelConfig::official(Encoder::Vits).layers);
    }
}
