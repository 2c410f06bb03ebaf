//! 2-D convolution whose backward is right for every size. candle's conv2d backward rebuilds the
//! input gradient with one `output_padding` for both dims, so with stride > 1 and trailing input
//! rows/columns that no window reads in one dim but not the other (a 3×3 stride-2 conv on 37×56,
//! the patch grid of a 518×784 input) backward fails with a shape mismatch. Here the input is padded explicitly and those unused
//! trailing rows/columns are cut off first, so every window fits exactly; the result is the same.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

/// Cross-correlation of (B, C, H, W) with (O, C, k, k) like PyTorch's `Conv2d` (groups = 1).
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    padding: usize,
    stride: usize,
) -> Result<Tensor> {
    let k = w.dim(2)?;
    let y = if stride == 1 {
        x.conv2d(w, padding, 1, 1, 1)?
    } else {
        let mut x = x.clone();
        for dim in [2, 3] {
            let len = x.dim(dim)? + 2 * padding;
            if len < k {
                candle_core::bail!("conv2d: input {:?} smaller than the kernel {k} after padding", x.dims());
            }
            let used = (len - k) / stride * stride + k;
            x = x.pad_with_zeros(dim, padding, padding)?.narrow(dim, 0, used)?;
        }
        x.conv2d(w, 0, stride, 1, 1)?
    };
    match bias {
        Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?),
        None => Ok(y),
    }
}

/// A `Conv2d` layer (keys `weight`, `bias`) using [`conv2d`].
#[derive(Clone, Debug)]
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    padding: usize,
    stride: usize,
}

impl Conv2d {
    /// Square kernel `k`; `bias = false` for `bias=False` layers.
    pub fn new(
        c_in: usize,
        c_out: usize,
        k: usize,
        padding: usize,
        stride: usize,
        bias: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let bound = 1.0 / ((c_in * k * k) as f64).sqrt();
        let init = candle_nn::Init::Uniform { lo: -bound, up: bound };
        let weight = vb.get_with_hints((c_out, c_in, k, k), "weight", init)?;
        let bias = bias.then(|| vb.get_with_hints(c_out, "bias", init)).transpose()?;
        Ok(Self { weight, bias, padding, stride })
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        conv2d(x, &self.weight, self.bias.as_ref(), self.padding, self.stride)
    }
}
