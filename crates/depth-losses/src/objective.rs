//! The Depth Anything V2 objective: L_ssi + 2·L_gm, with trimming switched per sample
//! (synthetic ground truth: none; pseudo-labels: the 10% largest residuals dropped).

use crate::error::Result;
use crate::gradient::gm_from;
use crate::normalize::normalize_batch;
use crate::ssi::ssi_from;
use candle_core::Tensor;

/// Weights of the objective (defaults: the paper's).
#[derive(Clone, Debug, PartialEq)]
pub struct Objective {
    pub gm_weight: f64,
    pub trim_pseudo: f64,
    pub scales: usize,
}

impl Default for Objective {
    fn default() -> Self {
        Self { gm_weight: 2.0, trim_pseudo: 0.1, scales: 4 }
    }
}

impl Objective {
    /// `pseudo[b]`: whether sample b's target is a pseudo-label.
    pub fn loss(&self, pred: &Tensor, target: &Tensor, mask: &Tensor, pseudo: &[bool]) -> Result<Tensor> {
        let (ssi, gm) = self.terms(pred, target, mask, pseudo)?;
        Ok((ssi + (gm * self.gm_weight)?)?)
    }

    /// The two terms (L_ssi, L_gm) before weighting, for logging; `loss` = ssi + gm_weight · gm.
    pub fn terms(
        &self,
        pred: &Tensor,
        target: &Tensor,
        mask: &Tensor,
        pseudo: &[bool],
    ) -> Result<(Tensor, Tensor)> {
        let trim: Vec<f64> = pseudo.iter().map(|&p| if p { self.trim_pseudo } else { 0.0 }).collect();
        // one normalisation (a median selection per sample) serves both terms
        let norm = normalize_batch(pred, target, mask, "da2_objective")?;
        Ok((ssi_from(&norm, &trim, pred)?, gm_from(&norm, pred, target, self.scales)?))
    }
}

/// [`Objective::default`]`.loss(…)`.
pub fn da2_objective(pred: &Tensor, target: &Tensor, mask: &Tensor, pseudo: &[bool]) -> Result<Tensor> {
    Objective::default().loss(pred, target, mask, pseudo)
}
