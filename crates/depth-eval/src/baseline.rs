//! Baselines every learned model must beat under the relative protocol: a constant disparity
//! (the fit can only choose one depth) and the position prior disparity = row / H ("the bottom
//! of the picture is near"), which is what a model learns first from ground-level scenes.

use crate::error::Result;
use crate::predict::{Prediction, Predictor};
use depth_data::{Sample, TargetKind};

/// Disparity 1 everywhere.
pub struct Constant;

impl Predictor for Constant {
    fn name(&self) -> &str {
        "constant"
    }

    fn predict(&mut self, sample: &Sample) -> Result<Prediction> {
        let (w, h) = sample.image.dimensions();
        Ok(Prediction {
            width: w,
            height: h,
            kind: TargetKind::Disparity,
            values: vec![1.0; (w * h) as usize],
        })
    }
}

/// Disparity = row / H: 0 on the top row, growing linearly towards the bottom.
pub struct PositionPrior;

impl Predictor for PositionPrior {
    fn name(&self) -> &str {
        "position prior"
    }

    fn predict(&mut self, sample: &Sample) -> Result<Prediction> {
        let (w, h) = sample.image.dimensions();
        let values = (0..h).flat_map(|y| std::iter::repeat_n(y as f32 / h as f32, w as usize)).collect();
        Ok(Prediction { width: w, height: h, kind: TargetKind::Disparity, values })
    }
}
