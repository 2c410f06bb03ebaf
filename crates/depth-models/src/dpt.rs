//! The DPT head of Depth Anything V2 (`depth_anything_v2/dpt.py` + `util/blocks.py`): project
//! four token maps, resize them to strides 4/8/16/32 of the patch grid, fuse coarse to fine with
//! residual conv units and bilinear (align_corners) upsampling, then two output convs.
//! Module paths mirror the checkpoint keys under `depth_head.`.

use crate::config::DptConfig;
use crate::dinov2::LayerOutput;
use candle_core::{Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};
use depth_core::Conv2d;
use depth_core::Linear;

/// A biased k×k conv, stride 1, "same" padding.
fn conv(c_in: usize, c_out: usize, k: usize, vb: VarBuilder) -> Result<Conv2d> {
    Conv2d::new(c_in, c_out, k, k / 2, 1, true, vb)
}

/// PyTorch's default init of Linear/Conv/ConvTranspose (kaiming_uniform with a = √5): weight
/// and bias uniform in ±1/√fan_in.
fn torch_default(fan_in: usize) -> Init {
    let bound = 1.0 / (fan_in as f64).sqrt();
    Init::Uniform { lo: -bound, up: bound }
}

fn linear(c_in: usize, c_out: usize, vb: VarBuilder) -> Result<Linear> {
    let init = torch_default(c_in);
    Ok(Linear::new(
        vb.get_with_hints((c_out, c_in), "weight", init)?,
        Some(vb.get_with_hints(c_out, "bias", init)?),
    ))
}

/// A k×k transposed conv with stride k (weight (in, out, k, k); PyTorch's fan_in is out·k²).
#[derive(Clone, Debug)]
struct UpConv {
    weight: Tensor,
    bias: Tensor,
}

fn conv_transpose(c: usize, k: usize, vb: VarBuilder) -> Result<UpConv> {
    let init = torch_default(c * k * k);
    let weight = vb.get_with_hints((c, c, k, k), "weight", init)?;
    Ok(UpConv { weight, bias: vb.get_with_hints(c, "bias", init)? })
}

fn upsample(x: &Tensor, size: (usize, usize)) -> Result<Tensor> {
    Ok(depth_core::bilinear_align_corners(x, size)?)
}

/// `resize_layers[i]`: ×4 and ×2 transposed convs, identity, and a stride-2 conv.
#[derive(Clone, Debug)]
enum Resize {
    Up(UpConv),
    Identity,
    Down(Conv2d),
}

impl Module for Resize {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Up(c) => depth_core::conv_transpose_stride_k(x, &c.weight, Some(&c.bias)),
            Self::Identity => Ok(x.clone()),
            Self::Down(c) => c.forward(x),
        }
    }
}

/// relu → conv1 → relu → conv2, plus the input.
#[derive(Clone, Debug)]
struct ResidualConvUnit {
    conv1: Conv2d,
    conv2: Conv2d,
}

impl ResidualConvUnit {
    fn new(f: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self { conv1: conv(f, f, 3, vb.pp("conv1"))?, conv2: conv(f, f, 3, vb.pp("conv2"))? })
    }
}

impl Module for ResidualConvUnit {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let out = self.conv2.forward_relu_input(&self.conv1.forward_relu_input(x)?)?;
        out + x
    }
}

/// `refinenetN`: optionally add the skip (through resConfUnit1), resConfUnit2, upsample, 1×1 conv.
#[derive(Clone, Debug)]
struct FeatureFusionBlock {
    res_conf_unit1: ResidualConvUnit,
    res_conf_unit2: ResidualConvUnit,
    out_conv: Conv2d,
}

impl FeatureFusionBlock {
    fn new(f: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            res_conf_unit1: ResidualConvUnit::new(f, vb.pp("resConfUnit1"))?,
            res_conf_unit2: ResidualConvUnit::new(f, vb.pp("resConfUnit2"))?,
            out_conv: conv(f, f, 1, vb.pp("out_conv"))?,
        })
    }

    /// `size = None` upsamples ×2 (PyTorch's `scale_factor=2`).
    fn forward(&self, x: &Tensor, skip: Option<&Tensor>, size: Option<(usize, usize)>) -> Result<Tensor> {
        let x = match skip {
            Some(s) => (x + self.res_conf_unit1.forward(s)?)?,
            None => x.clone(),
        };
        let x = self.res_conf_unit2.forward(&x)?;
        let (_, _, h, w) = x.dims4()?;
        self.out_conv.forward(&upsample(&x, size.unwrap_or((2 * h, 2 * w)))?)
    }
}

/// The DPT head: token maps → relative depth at (14·h, 14·w) before the final ReLU of the model.
#[derive(Clone, Debug)]
pub struct DptHead {
    projects: Vec<Conv2d>,
    resize_layers: Vec<Resize>,
    readout_projects: Option<Vec<Linear>>,
    layer_rn: Vec<Conv2d>,
    refinenets: Vec<FeatureFusionBlock>,
    output_conv1: Conv2d,
    output_conv2a: Conv2d,
    output_conv2b: Conv2d,
}

impl DptHead {
    pub fn new(in_channels: usize, cfg: &DptConfig, vb: VarBuilder) -> Result<Self> {
        let oc = cfg.out_channels;
        let f = cfg.features;
        let vp = vb.pp("projects");
        let projects = (0..4).map(|i| conv(in_channels, oc[i], 1, vp.pp(i))).collect::<Result<_>>()?;
        let vr = vb.pp("resize_layers");
        let up = |i: usize, k: usize| conv_transpose(oc[i], k, vr.pp(i)).map(Resize::Up);
        let down = Conv2d::new(oc[3], oc[3], 3, 1, 2, true, vr.pp(3))?;
        let resize_layers = vec![up(0, 4)?, up(1, 2)?, Resize::Identity, Resize::Down(down)];
        let readout_projects = cfg
            .use_clstoken
            .then(|| {
                let v = vb.pp("readout_projects");
                (0..4)
                    .map(|i| linear(2 * in_channels, in_channels, v.pp(i).pp(0)))
                    .collect::<Result<Vec<_>>>()
            })
            .transpose()?;
        let s = vb.pp("scratch");
        let layer_rn = (0..4)
            .map(|i| Conv2d::new(oc[i], f, 3, 1, 1, false, s.pp(format!("layer{}_rn", i + 1))))
            .collect::<Result<_>>()?;
        let refinenets = (0..4)
            .map(|i| FeatureFusionBlock::new(f, s.pp(format!("refinenet{}", i + 1))))
            .collect::<Result<_>>()?;
        let o2 = s.pp("output_conv2");
        Ok(Self {
            projects,
            resize_layers,
            readout_projects,
            layer_rn,
            refinenets,
            output_conv1: conv(f, f / 2, 3, s.pp("output_conv1"))?,
            output_conv2a: conv(f / 2, cfg.head_hidden, 3, o2.pp(0))?,
            output_conv2b: conv(cfg.head_hidden, 1, 1, o2.pp(2))?,
        })
    }

    /// `features`: the four encoder layers; `(ph, pw)`: the patch grid. Returns (B, 1, 14·ph, 14·pw)
    /// before the final activation (the model applies ReLU, or the metric sigmoid).
    pub fn forward(&self, features: &[LayerOutput], ph: usize, pw: usize, patch: usize) -> Result<Tensor> {
        let mut maps = Vec::with_capacity(4);
        for (i, feat) in features.iter().enumerate() {
            let mut x = feat.patch_tokens.clone();
            if let Some(readout) = &self.readout_projects {
                let cls = feat.class_token.unsqueeze(1)?.broadcast_as(x.shape())?;
                x = depth_core::gelu_erf(&readout[i].forward(&Tensor::cat(&[&x, &cls], 2)?)?)?;
            }
            let (b, _, c) = x.dims3()?;
            let x = x.transpose(1, 2)?.reshape((b, c, ph, pw))?;
            maps.push(
                self.layer_rn[i].forward(&self.resize_layers[i].forward(&self.projects[i].forward(&x)?)?)?,
            );
        }
        let size = |t: &Tensor| -> Result<(usize, usize)> { Ok((t.dim(2)?, t.dim(3)?)) };
        let [r1, r2, r3, r4] = &self.refinenets[..] else { unreachable!("four refinenets") };
        let path4 = r4.forward(&maps[3], None, Some(size(&maps[2])?))?;
        let path3 = r3.forward(&path4, Some(&maps[2]), Some(size(&maps[1])?))?;
        let path2 = r2.forward(&path3, Some(&maps[1]), Some(size(&maps[0])?))?;
        let path1 = r1.forward(&path2, Some(&maps[0]), None)?;
        let out = upsample(&self.output_conv1.forward(&path1)?, (ph * patch, pw * patch))?;
        self.output_conv2b.forward_relu_input(&self.output_conv2a.forward(&out)?)
    }
}
