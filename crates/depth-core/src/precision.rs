//! Why this file: mixed precision the way `torch.autocast(dtype=torch.bfloat16)` does it. Inside
//! [`autocast`], the ops that carry the FLOPs — linear layers, attention's two products and
//! convolutions — cast their float32 inputs and weights to bfloat16 and compute there; everything
//! else (LayerNorm and its statistics, softmax, GELU, residual adds, resampling, the losses) stays
//! float32, and so do the weights, their gradients and the optimiser state. Unlike autocast, the
//! products hand float32 back (the bf16 result widened, bias added in float32): candle has no
//! implicit type promotion, so every op after them sees the dtypes it sees without autocast.
//!
//! The setting is scoped to the calling thread, as autocast's is; a model's forward enters it
//! (depth-models keeps the precision with the model), and the backward follows the casts the
//! forward recorded whatever the thread.

use crate::error::{CoreError, Result};
use candle_core::{DType, Tensor};
use std::cell::Cell;
use std::fmt;
use std::str::FromStr;

/// The dtype the products compute in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Precision {
    /// Everything in float32.
    #[default]
    F32,
    /// Linear layers, attention and convolutions in bfloat16, the rest in float32.
    Bf16,
}

impl FromStr for Precision {
    type Err = CoreError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Self::F32),
            "bf16" | "bfloat16" => Ok(Self::Bf16),
            other => Err(CoreError::bad_input(
                "precision",
                format!("unknown precision '{other}': use f32 or bf16"),
            )),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
        })
    }
}

impl serde::Serialize for Precision {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Precision {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

thread_local! {
    static CURRENT: Cell<Precision> = const { Cell::new(Precision::F32) };
}

/// Runs `f` with the products in `precision` on this thread (restored after, also on a panic).
pub fn autocast<R>(precision: Precision, f: impl FnOnce() -> R) -> R {
    struct Restore(Precision);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(CURRENT.with(|c| c.replace(precision)));
    f()
}

/// The precision in force on this thread.
pub fn current() -> Precision {
    CURRENT.with(Cell::get)
}

/// The dtype a product of `x` computes in, when it is not `x`'s own: bfloat16 for a float32
/// input under bf16 autocast (float64 stays float64: it is asked for exactness).
pub(crate) fn lowered(x: &Tensor) -> Option<DType> {
    (current() == Precision::Bf16 && x.dtype() == DType::F32).then_some(DType::BF16)
}

/// bf16 autocast of inference (no operand needs a gradient) on a CPU with AMX: the products of
/// the linear layers, of attention and of the convolutions go to AMX tiles (`amx/`).
pub(crate) fn amx_inference(operands: &[&Tensor]) -> bool {
    lowered(operands[0]).is_some()
        && operands.iter().all(|t| t.device().is_cpu() && !t.track_op())
        && crate::amx::available()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn names_and_scope() {
        assert_eq!("bf16".parse::<Precision>().unwrap(), Precision::Bf16);
        assert_eq!(" F32 ".parse::<Precision>().unwrap(), Precision::F32);
        assert!("fp8".parse::<Precision>().unwrap_err().to_string().contains("use f32 or bf16"));
        assert_eq!(Precision::Bf16.to_string(), "bf16");
        let x = Tensor::zeros(2, DType::F32, &Device::Cpu).unwrap();
        assert_eq!(current(), Precision::F32);
        assert_eq!(lowered(&x), None);
        autocast(Precision::Bf16, || {
            assert_eq!(lowered(&x), Some(DType::BF16));
            assert_eq!(lowered(&x.to_dtype(DType::F64).unwrap()), None);
            autocast(Precision::F32, || assert_eq!(lowered(&x), None));
            assert_eq!(current(), Precision::Bf16);
        });
        let _ = std::panic::catch_unwind(|| autocast(Precision::Bf16, || panic!("inside")));
        assert_eq!(current(), Precision::F32, "restored after a panic");
    }
}
