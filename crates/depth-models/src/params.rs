//! The model's parameters as an optimiser sees them: which part of the model each belongs to
//! (the encoder, `pretrained.*`, or the decoder, `depth_head.*`) and whether weight decay
//! applies to it. Norms, biases, the position embedding, the class and mask tokens and
//! LayerScale's gamma take none (DINOv2's and timm's rule). This file is the only place that
//! reads these facts from parameter names.

use candle_core::Var;
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

/// A part of Depth Anything V2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    /// The DINOv2 ViT (`pretrained.*`).
    Encoder,
    /// The DPT head (`depth_head.*`).
    Decoder,
}

/// What the optimiser needs to know about a parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ParamKind {
    pub part: Part,
    /// Whether weight decay applies.
    pub decay: bool,
}

impl ParamKind {
    /// The kind of an official-layout parameter; None for a name outside the model.
    pub fn of(name: &str) -> Option<ParamKind> {
        let (part, rest) = match name.split_once('.')? {
            ("pretrained", rest) => (Part::Encoder, rest),
            ("depth_head", rest) => (Part::Decoder, rest),
            _ => return None,
        };
        let leaf = rest.rsplit('.').next().unwrap_or(rest);
        let token = matches!(rest, "pos_embed" | "cls_token" | "mask_token" | "register_tokens");
        let norm = rest.split('.').any(|m| m.starts_with("norm"));
        let decay = !(token || norm || leaf == "bias" || leaf == "gamma");
        Some(ParamKind { part, decay })
    }
}

/// A named trainable parameter.
#[derive(Clone, Debug)]
pub struct Param {
    pub name: String,
    pub var: Var,
    pub kind: ParamKind,
}

/// The parameters in `varmap` sorted by name, each with its kind; a name outside the model is
/// an error (the VarMap holds something else than a Depth Anything V2).
pub fn parameters(varmap: &VarMap) -> crate::Result<Vec<Param>> {
    let bad = |reason: String| depth_core::CoreError::bad_input("model parameters", reason);
    let data = varmap.data().lock().map_err(|_| bad("the VarMap lock is poisoned".into()))?;
    let mut params = data
        .iter()
        .map(|(name, var)| match ParamKind::of(name) {
            Some(kind) => Ok(Param { name: name.clone(), var: var.clone(), kind }),
            None => Err(bad(format!("'{name}' is neither under pretrained. nor under depth_head."))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    params.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_the_official_names() {
        let k = |n: &str| ParamKind::of(n).unwrap();
        let (enc, dec) = (Part::Encoder, Part::Decoder);
        assert_eq!(k("pretrained.blocks.3.attn.qkv.weight"), ParamKind { part: enc, decay: true });
        assert_eq!(k("pretrained.blocks.3.mlp.fc1.weight"), ParamKind { part: enc, decay: true });
        assert_eq!(k("pretrained.patch_embed.proj.weight"), ParamKind { part: enc, decay: true });
        for n in [
            "pretrained.blocks.3.attn.qkv.bias",
            "pretrained.blocks.0.norm1.weight",
            "pretrained.norm.weight",
            "pretrained.blocks.0.ls1.gamma",
            "pretrained.pos_embed",
            "pretrained.cls_token",
            "pretrained.mask_token",
        ] {
            assert_eq!(k(n), ParamKind { part: enc, decay: false }, "{n}");
        }
        assert_eq!(k("depth_head.scratch.refinenet1.out_conv.weight"), ParamKind { part: dec, decay: true });
        assert_eq!(k("depth_head.projects.0.bias"), ParamKind { part: dec, decay: false });
        assert_eq!(ParamKind::of("head.weight"), None);
        assert_eq!(ParamKind::of("pretrained"), None);
    }
}
