//! 2-D convolution (PyTorch `Conv2d`, groups = 1) that is fast on the CPU and whose backward is
//! right for every size.
//! - Stride 1 on the CPU runs the tiled im2col + gemm kernel of `tiled.rs` (3–5× faster than
//!   candle's conv2d at the DPT head's sizes), bias included, with its own exact backward.
//! - Under bf16 autocast (`precision.rs`) input and weight go to bfloat16 for candle's conv2d
//!   (on the CPU, which has no bf16 conv: rounded to bf16, convolved in float32), the result
//!   back to float32 before the bias.
//! - For inference under bf16 autocast on a CPU with AMX, every conv runs on bf16 tiles
//!   (`amx/conv.rs`), bias and ReLU included.
//! - `conv_transpose_stride_k` (the DPT head's ×4 and ×2 resizes) is candle's transposed conv,
//!   or per-pixel products on bf16 tiles for inference under bf16 on an AMX CPU.
//! - Stride > 1 (and other devices) use candle's conv2d. Its backward rebuilds the input gradient
//!   with one `output_padding` for both dims, so when trailing input rows/columns go unread in
//!   one dim but not the other (a 3×3 stride-2 conv on 37×56, the patch grid of a 518×784
//!   input) it fails with a shape mismatch. The input is therefore padded explicitly and the
//!   unread trailing rows/columns cut off first, so every window fits exactly; same result.

mod tiled;

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;

/// Cross-correlation of (B, C, H, W) with (O, C, k, k) like PyTorch's `Conv2d` (groups = 1).
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    padding: usize,
    stride: usize,
) -> Result<Tensor> {
    conv(x, w, bias, padding, stride, false)
}

/// `conv2d(relu(x), …)` in one op on the CPU: the ReLU is applied while the kernel gathers its
/// input patches and in its backward, so the rectified tensor and its gradient never exist (the
/// DPT head rectifies before every 3×3 conv of its residual units).
pub fn conv2d_relu_input(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    padding: usize,
    stride: usize,
) -> Result<Tensor> {
    conv(x, w, bias, padding, stride, true)
}

fn conv(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    padding: usize,
    stride: usize,
    relu_input: bool,
) -> Result<Tensor> {
    if let Some(low) = crate::precision::lowered(x).filter(|_| !crate::precision::amx_inference(&[x, w])) {
        let y = if x.device().is_cpu() {
            // candle's CPU conv2d has no bf16 kernel: bf16 operands, float32 products (what its
            // CPU matmul does for bf16), the result rounded to bf16
            let round = |t: &Tensor| t.to_dtype(low)?.to_dtype(t.dtype());
            let f32 = crate::Precision::F32;
            round(&crate::autocast(f32, || conv(&round(x)?, &round(w)?, None, padding, stride, relu_input))?)?
        } else {
            let x = if relu_input { crate::relu::relu(x)? } else { x.clone() };
            candle_conv(&x.to_dtype(low)?, &w.to_dtype(low)?, padding, stride)?.to_dtype(x.dtype())?
        };
        return add_bias(y, bias);
    }
    let k = w.dim(2)?;
    if crate::precision::amx_inference(&[x, w]) && (stride > 1 || padding < k) {
        return amx_conv(x, w, bias, padding, stride, relu_input);
    }
    let tiled = x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) && padding < k;
    if stride == 1 && tiled {
        let b = match bias {
            Some(b) => b.contiguous()?,
            None => Tensor::zeros(w.dim(0)?, w.dtype(), w.device())?,
        };
        return x.contiguous()?.apply_op3(&w.contiguous()?, &b, tiled::TiledConv2d { padding, relu_input });
    }
    let x = &if relu_input { crate::relu::relu(x)? } else { x.clone() };
    add_bias(candle_conv(x, w, padding, stride)?, bias)
}

/// `y` (B, O, H, W) plus a per-channel bias (O), broadcast.
fn add_bias(y: Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    match bias {
        Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?),
        None => Ok(y),
    }
}

/// bf16 autocast for inference on an AMX CPU: the convolution on bf16 tiles, the weight packed
/// once (as autocast runs `Conv2d` in bfloat16): stride 1 straight from the input, other
/// strides (the patch embedding, the head's stride-2 conv) as patches times the weight.
fn amx_conv(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    padding: usize,
    stride: usize,
    relu: bool,
) -> Result<Tensor> {
    let (n, c, h, wd) = x.dims4()?;
    let (o, c2, k, k2) = w.dims4()?;
    let bad_bias = bias.is_some_and(|b| b.dims() != [o]);
    if c != c2 || k != k2 || h + 2 * padding < k || wd + 2 * padding < k || stride == 0 || bad_bias {
        candle_core::bail!(
            "conv2d: input {:?}, kernel {:?}, bias {:?}, padding {padding} not supported",
            x.dims(),
            w.dims(),
            bias.map(Tensor::dims)
        );
    }
    let bias = bias.map(|b| crate::amx::with_values(b, <[f32]>::to_vec)).transpose()?;
    let (ho, wo) = ((h + 2 * padding - k) / stride + 1, (wd + 2 * padding - k) / stride + 1);
    let out = if stride == 1 {
        let packed = crate::amx::packed(w.id(), || {
            crate::amx::with_values(w, |wv| crate::amx::PackedConv::new(wv, o, c, k))
        })?;
        crate::amx::with_values(x, |xv| {
            crate::amx::conv2d(xv, (n, h, wd), &packed, bias.as_deref(), padding, relu)
        })?
    } else {
        let packed = crate::amx::packed(w.id(), || {
            crate::amx::with_values(w, |wv| crate::amx::PackedWeight::new(wv, o, c * k * k))
        })?;
        crate::amx::with_values(x, |xv| {
            crate::amx::conv2d_strided(
                xv,
                (n, c, h, wd),
                &packed,
                bias.as_deref(),
                (k, padding, stride),
                relu,
            )
        })?
    };
    Tensor::from_vec(out, (n, o, ho, wo), x.device())
}

/// PyTorch's `ConvTranspose2d` with stride = kernel size k and no padding (the DPT head's ×4 and
/// ×2 resizes): x (B, C, H, W), w (C, O, k, k) → (B, O, H·k, W·k), plus the bias. candle's
/// transposed conv; for inference under bf16 autocast on an AMX CPU, per-pixel products on
/// bf16 tiles (autocast runs it in bfloat16 too).
pub fn conv_transpose_stride_k(x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let (n, c, h, wd) = x.dims4()?;
    let (c2, o, k, k2) = w.dims4()?;
    if c != c2 || k != k2 || bias.is_some_and(|b| b.dims() != [o]) {
        candle_core::bail!(
            "conv_transpose: input {:?}, kernel {:?}, bias {:?}",
            x.dims(),
            w.dims(),
            bias.map(Tensor::dims)
        );
    }
    if crate::precision::amx_inference(&[x, w]) {
        let packed = crate::amx::packed(w.id(), || {
            crate::amx::with_values(w, |wv| crate::amx::PackedWeight::from_kn(wv, c, o * k * k))
        })?;
        let bias = bias.map(|b| crate::amx::with_values(b, <[f32]>::to_vec)).transpose()?;
        let out = crate::amx::with_values(x, |xv| {
            crate::amx::conv_transpose_stride_k(xv, (n, c, h, wd), &packed, (o, k), bias.as_deref())
        })?;
        return Tensor::from_vec(out, (n, o, h * k, wd * k), x.device());
    }
    add_bias(x.conv_transpose2d(w, 0, 0, k, 1)?, bias)
}

/// candle's conv2d, with the stride > 1 input cut so that every window fits exactly.
fn candle_conv(x: &Tensor, w: &Tensor, padding: usize, stride: usize) -> Result<Tensor> {
    if stride == 1 {
        return x.conv2d(w, padding, 1, 1, 1);
    }
    let k = w.dim(2)?;
    let mut x = x.clone();
    for dim in [2, 3] {
        let len = x.dim(dim)? + 2 * padding;
        if len < k {
            candle_core::bail!("conv2d: input {:?} smaller than the kernel {k} after padding", x.dims());
        }
        let used = (len - k) / stride * stride + k;
        x = x.pad_with_zeros(dim, padding, padding)?.narrow(dim, 0, used)?;
    }
    x.conv2d(w, 0, stride, 1, 1)
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

impl Conv2d {
    /// The layer applied to relu(x), fused (see [`conv2d_relu_input`]).
    pub fn forward_relu_input(&self, x: &Tensor) -> Result<Tensor> {
        conv2d_relu_input(x, &self.weight, self.bias.as_ref(), self.padding, self.stride)
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        conv2d(x, &self.weight, self.bias.as_ref(), self.padding, self.stride)
    }
}
