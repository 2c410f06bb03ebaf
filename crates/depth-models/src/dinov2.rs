//! DINOv2 ViT as in the official `dinov2/` code of Depth Anything V2. Module paths mirror the
//! checkpoint keys (`blocks.3.attn.qkv`, `ls1.gamma`, `mlp.w12`, …), so this file is also the key
//! map. Every op is differentiable (fused LayerNorm/softmax come from depth-core).

use crate::config::{Ffn, PosEmbedResize, VitConfig};
use candle_core::{D, Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};
use depth_core::Conv2d;
use depth_core::Linear;

/// LayerNorm over the last dim (differentiable, fused).
#[derive(Clone, Debug)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    /// Fresh: weight 1, bias 0 (PyTorch's `nn.LayerNorm`).
    pub fn new(dim: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get_with_hints(dim, "weight", Init::Const(1.0))?,
            bias: vb.get_with_hints(dim, "bias", Init::Const(0.0))?,
            eps,
        })
    }
}

/// DINOv2's `init_weights_vit_timm`: std 0.02, bias 0. PyTorch's `trunc_normal_` cuts at ±2
/// (absolute), i.e. 100 standard deviations here, so a plain normal is the same distribution.
const VIT_STD: f64 = 0.02;

fn linear(c_in: usize, c_out: usize, vb: VarBuilder) -> Result<Linear> {
    let w = vb.get_with_hints((c_out, c_in), "weight", Init::Randn { mean: 0.0, stdev: VIT_STD })?;
    let b = vb.get_with_hints(c_out, "bias", Init::Const(0.0))?;
    Ok(Linear::new(w, Some(b)))
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(depth_core::layer_norm(x, &self.weight, &self.bias, self.eps)?)
    }
}

#[derive(Clone, Debug)]
struct Attention {
    qkv: Linear,
    proj: Linear,
    num_heads: usize,
}

impl Attention {
    fn new(dim: usize, num_heads: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            qkv: linear(dim, 3 * dim, vb.pp("qkv"))?,
            proj: linear(dim, dim, vb.pp("proj"))?,
            num_heads,
        })
    }
}

impl Module for Attention {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, c) = x.dims3()?;
        let hd = c / self.num_heads;
        let qkv = self.qkv.forward(x)?.reshape((b, n, 3, self.num_heads, hd))?.permute((2, 0, 3, 1, 4))?;
        let (q, k, v) = (qkv.get(0)?, qkv.get(1)?, qkv.get(2)?);
        let out = depth_core::attention(&q, &k, &v, (hd as f64).powf(-0.5))?;
        let out = out.transpose(1, 2)?.reshape((b, n, c))?;
        self.proj.forward(&out)
    }
}

#[derive(Clone, Debug)]
enum FeedForward {
    Mlp { fc1: Linear, fc2: Linear },
    SwiGlu { w12: Linear, w3: Linear },
}

impl FeedForward {
    fn new(cfg: &VitConfig, vb: VarBuilder) -> Result<Self> {
        let (dim, hidden) = (cfg.embed_dim, cfg.ffn_hidden());
        Ok(match cfg.ffn {
            Ffn::Mlp => {
                Self::Mlp { fc1: linear(dim, hidden, vb.pp("fc1"))?, fc2: linear(hidden, dim, vb.pp("fc2"))? }
            }
            Ffn::SwiGlu => Self::SwiGlu {
                w12: linear(dim, 2 * hidden, vb.pp("w12"))?,
                w3: linear(hidden, dim, vb.pp("w3"))?,
            },
        })
    }
}

impl Module for FeedForward {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Mlp { fc1, fc2 } => fc2.forward(&depth_core::gelu_erf(&fc1.forward(x)?)?),
            Self::SwiGlu { w12, w3 } => {
                let x12 = w12.forward(x)?.chunk(2, D::Minus1)?;
                w3.forward(&(x12[0].silu()? * &x12[1])?)
            }
        }
    }
}

/// One transformer block: x + ls1(attn(norm1 x)), then x + ls2(mlp(norm2 x)).
#[derive(Clone, Debug)]
pub struct Block {
    norm1: LayerNorm,
    attn: Attention,
    ls1: Option<Tensor>,
    norm2: LayerNorm,
    mlp: FeedForward,
    ls2: Option<Tensor>,
}

impl Block {
    pub fn new(cfg: &VitConfig, vb: VarBuilder) -> Result<Self> {
        let dim = cfg.embed_dim;
        let init = Init::Const(cfg.layer_scale_init);
        let ls =
            |name: &str| cfg.layer_scale.then(|| vb.pp(name).get_with_hints(dim, "gamma", init)).transpose();
        Ok(Self {
            norm1: LayerNorm::new(dim, cfg.ln_eps, vb.pp("norm1"))?,
            attn: Attention::new(dim, cfg.num_heads, vb.pp("attn"))?,
            ls1: ls("ls1")?,
            norm2: LayerNorm::new(dim, cfg.ln_eps, vb.pp("norm2"))?,
            mlp: FeedForward::new(cfg, vb.pp("mlp"))?,
            ls2: ls("ls2")?,
        })
    }
}

fn scale(x: Tensor, gamma: &Option<Tensor>) -> Result<Tensor> {
    match gamma {
        Some(g) => x.broadcast_mul(g),
        None => Ok(x),
    }
}

impl Module for Block {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = (x + scale(self.attn.forward(&self.norm1.forward(x)?)?, &self.ls1)?)?;
        &x + scale(self.mlp.forward(&self.norm2.forward(&x)?)?, &self.ls2)?
    }
}

/// The DINOv2 vision transformer (no register tokens, as Depth Anything V2 uses it).
#[derive(Clone, Debug)]
pub struct DinoVisionTransformer {
    cfg: VitConfig,
    cls_token: Tensor,
    pos_embed: Tensor,
    /// Kept for parity with the checkpoint (used by masked pretraining, not by inference).
    #[allow(dead_code)]
    mask_token: Tensor,
    patch_embed: Conv2d,
    blocks: Vec<Block>,
    norm: LayerNorm,
}

/// One intermediate layer's output after the final norm.
#[derive(Clone, Debug)]
pub struct LayerOutput {
    /// (B, h·w, C)
    pub patch_tokens: Tensor,
    /// (B, C)
    pub class_token: Tensor,
}

impl DinoVisionTransformer {
    /// Fresh tensors as the official `init_weights`: position embeddings N(0, 0.02), class token
    /// N(0, 1e-6), mask token 0, linears as `VIT_STD` (0.02), patch embedding PyTorch's default conv.
    pub fn new(cfg: &VitConfig, vb: VarBuilder) -> Result<Self> {
        let (dim, p) = (cfg.embed_dim, cfg.patch_size);
        let grid = cfg.img_size / p;
        let normal = |stdev| Init::Randn { mean: 0.0, stdev };
        Ok(Self {
            cls_token: vb.get_with_hints((1, 1, dim), "cls_token", normal(1e-6))?,
            pos_embed: vb.get_with_hints((1, grid * grid + 1, dim), "pos_embed", normal(VIT_STD))?,
            mask_token: vb.get_with_hints((1, dim), "mask_token", Init::Const(0.0))?,
            patch_embed: Conv2d::new(3, dim, p, 0, p, true, vb.pp("patch_embed").pp("proj"))?,
            blocks: (0..cfg.depth).map(|i| Block::new(cfg, vb.pp("blocks").pp(i))).collect::<Result<_>>()?,
            norm: LayerNorm::new(dim, cfg.ln_eps, vb.pp("norm"))?,
            cfg: cfg.clone(),
        })
    }

    pub fn config(&self) -> &VitConfig {
        &self.cfg
    }

    /// Position embeddings for an (h, w)-pixel input, resized as the configuration says. The
    /// stored ones are used unchanged only when the input is square and the patch count matches.
    fn pos_embed_for(&self, h: usize, w: usize) -> Result<Tensor> {
        let p = self.cfg.patch_size;
        let (gh, gw) = (h / p, w / p);
        let n = self.pos_embed.dim(1)? - 1;
        let grid = (n as f64).sqrt() as usize;
        if gh * gw == n && h == w {
            return Ok(self.pos_embed.clone());
        }
        let dim = self.cfg.embed_dim;
        let cls = self.pos_embed.narrow(1, 0, 1)?;
        let patch = self.pos_embed.narrow(1, 1, n)?.reshape((1, grid, grid, dim))?.permute((0, 3, 1, 2))?;
        let resized = match self.cfg.pos_embed_resize {
            PosEmbedResize::ScaleFactor { offset } => {
                let s = |g: usize| (g as f64 + offset) / (n as f64).sqrt();
                depth_core::bicubic_scale(&patch, (s(gh), s(gw)))
            }
            PosEmbedResize::Size => depth_core::bicubic(&patch, (gh, gw)),
        }?;
        if resized.dims()[2..] != [gh, gw] {
            candle_core::bail!(
                "position embeddings resized to {:?}, expected ({gh}, {gw})",
                &resized.dims()[2..]
            );
        }
        let patch = resized.permute((0, 2, 3, 1))?.reshape((1, gh * gw, dim))?;
        Tensor::cat(&[&cls, &patch], 1)
    }

    /// Patch embedding, class token and position embeddings: (B, 1 + h·w, C).
    pub fn prepare_tokens(&self, x: &Tensor) -> Result<Tensor> {
        let (b, _, h, w) = x.dims4()?;
        let p = self.cfg.patch_size;
        if h % p != 0 || w % p != 0 {
            candle_core::bail!("input {h}×{w} is not a multiple of the patch size {p}");
        }
        let tokens = self.patch_embed.forward(x)?.flatten_from(2)?.transpose(1, 2)?;
        let cls = self.cls_token.broadcast_as((b, 1, self.cfg.embed_dim))?;
        let tokens = Tensor::cat(&[&cls, &tokens], 1)?;
        tokens.broadcast_add(&self.pos_embed_for(h, w)?)
    }

    /// `get_intermediate_layers(x, layers, return_class_token=True)` with the final norm applied.
    /// Blocks after the last requested layer are not run (their outputs would be discarded).
    pub fn get_intermediate_layers(&self, x: &Tensor, layers: &[usize]) -> Result<Vec<LayerOutput>> {
        let last = self.last_layer(layers)?;
        let mut x = self.prepare_tokens(x)?;
        let mut taken = Vec::with_capacity(layers.len());
        for (i, blk) in self.blocks.iter().enumerate().take(last + 1) {
            x = blk.forward(&x)?;
            if layers.contains(&i) {
                taken.push((i, x.clone()));
            }
        }
        self.normed(&taken, layers)
    }

    /// The deepest of `layers`, checked against the block count.
    pub(crate) fn last_layer(&self, layers: &[usize]) -> Result<usize> {
        let last = *layers.iter().max().unwrap_or(&0);
        if last >= self.blocks.len() {
            candle_core::bail!("layer {last} requested from a ViT with {} blocks", self.blocks.len());
        }
        Ok(last)
    }

    pub(crate) fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    /// The final norm of each requested layer's block output, split into patch and class tokens.
    pub(crate) fn normed(&self, taken: &[(usize, Tensor)], layers: &[usize]) -> Result<Vec<LayerOutput>> {
        layers
            .iter()
            .map(|l| {
                let out = self.norm.forward(&taken.iter().find(|(i, _)| i == l).expect("layer taken").1)?;
                let n = out.dim(1)?;
                Ok(LayerOutput { patch_tokens: out.narrow(1, 1, n - 1)?, class_token: out.get_on_dim(1, 0)? })
            })
            .collect()
    }
}
