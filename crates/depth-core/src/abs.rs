//! |x| with PyTorch's gradient: sign(x), so 0 at 0. candle's `abs` gives 1 at 0, which changes
//! the gradient of every loss built on |d − median| (the median pixel sits exactly at 0).

use candle_core::{Result, Tensor};

/// |x| whose gradient is sign(x) (0 at 0).
pub fn abs(x: &Tensor) -> Result<Tensor> {
    // sign has no gradient in candle, so d/dx (x · sign x) = sign x
    x * x.sign()?
}
