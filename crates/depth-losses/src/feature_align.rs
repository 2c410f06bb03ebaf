//! Feature alignment (Depth Anything V1, used by V2 on pseudo-labelled images): 1 − cosine
//! similarity between student and frozen-encoder features per token, over the tokens whose
//! similarity is still below the margin α (those above it are already aligned and left free).

use crate::error::Result;
use candle_core::{D, Tensor};
use depth_core::CoreError;

/// `student`, `teacher`: (…, C) features; mean of 1 − cos over tokens with cos < `margin`
/// (0 when every token is above it). Cosine as PyTorch: x·y / max(‖x‖‖y‖, 1e-8).
pub fn feature_alignment_loss(student: &Tensor, teacher: &Tensor, margin: f64) -> Result<Tensor> {
    if student.dims() != teacher.dims() {
        return Err(CoreError::bad_input(
            "feature_alignment_loss",
            format!("student {:?} and teacher {:?} differ in shape", student.dims(), teacher.dims()),
        )
        .into());
    }
    let teacher = teacher.detach();
    let dot = (student * &teacher)?.sum(D::Minus1)?;
    let norms = (student.sqr()?.sum(D::Minus1)?.sqrt()? * teacher.sqr()?.sum(D::Minus1)?.sqrt()?)?;
    let cos = (dot / norms.clamp(1e-8, f64::INFINITY)?)?;
    let below = cos.lt(margin)?.to_dtype(cos.dtype())?;
    let n = below.sum_all()?.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
    if n == 0.0 {
        return Ok(Tensor::zeros((), student.dtype(), student.device())?);
    }
    Ok(((cos.affine(-1.0, 1.0)? * below)?.sum_all()? / n)?)
}
