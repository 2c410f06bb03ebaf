//! DA-2K style pairwise relative-depth evaluation: an annotations file maps each image path to
//! point pairs ([row, col] each) with the closer point named; a prediction gets a pair right when
//! it puts that point closer (larger disparity, or smaller depth). Accuracy is the share of pairs
//! right, overall and per scene (the image's folder, e.g. `indoor`).

use crate::error::Result;
use crate::predict::Prediction;
use depth_core::CoreError;
use depth_data::TargetKind;
use std::collections::BTreeMap;
use std::path::Path;

/// One annotated pair; points are (row, column) in image pixels.
#[derive(Clone, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct PairAnnotation {
    pub point1: [f64; 2],
    pub point2: [f64; 2],
    /// "point1" or "point2".
    pub closer_point: String,
}

/// A DA-2K annotations file: image path → its pairs, sorted by path (so runs are deterministic).
pub type Annotations = BTreeMap<String, Vec<PairAnnotation>>;

/// Reads and checks a DA-2K `annotations.json`.
pub fn read_annotations(path: &Path) -> Result<Annotations> {
    let text = depth_core::read::text(path)?;
    let ann: Annotations = serde_json::from_str(&text).map_err(|e| CoreError::Config {
        path: path.into(),
        reason: format!("not a DA-2K annotations file ({{image: [{{point1, point2, closer_point}}]}}): {e}"),
    })?;
    for (img, pairs) in &ann {
        if let Some(p) = pairs.iter().find(|p| p.closer_point != "point1" && p.closer_point != "point2") {
            return Err(CoreError::Config {
                path: path.into(),
                reason: format!(
                    "{img}: closer_point is '{}', expected \"point1\" or \"point2\"",
                    p.closer_point
                ),
            }
            .into());
        }
    }
    Ok(ann)
}

/// Whether `pred` orders each pair as annotated (a tie is wrong).
pub fn judge(pred: &Prediction, pairs: &[PairAnnotation]) -> Result<Vec<bool>> {
    let at = |p: [f64; 2]| -> Result<f32> {
        let (r, c) = (p[0].round(), p[1].round());
        if r < 0.0 || c < 0.0 || r >= pred.height as f64 || c >= pred.width as f64 {
            return Err(CoreError::bad_input(
                "pair annotation",
                format!(
                    "point [{}, {}] is outside the {}×{} prediction",
                    p[0], p[1], pred.width, pred.height
                ),
            )
            .into());
        }
        Ok(pred.values[r as usize * pred.width as usize + c as usize])
    };
    pairs
        .iter()
        .map(|p| {
            let (a, b) = (at(p.point1)?, at(p.point2)?);
            let (closer, other) = if p.closer_point == "point1" { (a, b) } else { (b, a) };
            Ok(match pred.kind {
                TargetKind::Disparity => closer > other,
                TargetKind::Depth => closer < other,
            })
        })
        .collect()
}

/// The scene of an image path: its folder's name ("" at the top level).
pub fn scene_of(image: &str) -> String {
    Path::new(image)
        .parent()
        .and_then(|p| p.file_name())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Counts of pairs right, overall and per scene.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct PairCounts {
    pub pairs: usize,
    pub correct: usize,
    pub per_scene: BTreeMap<String, (usize, usize)>,
}

impl PairCounts {
    pub fn add(&mut self, image: &str, right: &[bool]) {
        let n = right.iter().filter(|r| **r).count();
        self.pairs += right.len();
        self.correct += n;
        let e = self.per_scene.entry(scene_of(image)).or_default();
        e.0 += right.len();
        e.1 += n;
    }

    pub fn accuracy(&self) -> Option<f64> {
        (self.pairs > 0).then(|| self.correct as f64 / self.pairs as f64)
    }
}
