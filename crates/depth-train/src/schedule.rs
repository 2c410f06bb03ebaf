//! The learning-rate schedule: optional linear warmup, then the official poly decay.
//!
//! The official loop (`metric_depth/train.py`) steps with the base rate, and after step `i`
//! (0-based) sets `lr = base · (1 − i/total)^0.9` for the next one. So step 0 and step 1 both use
//! the base rate and step s ≥ 1 uses `(1 − (s − 1)/total)^0.9`; [`Schedule::factor`] gives exactly
//! that. Warmup (not in the official loop, off by default) multiplies the first `warmup` steps
//! by (s + 1)/warmup.

use depth_core::config::Invalid;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Schedule {
    /// Optimiser steps in the run.
    pub steps: u64,
    /// Linear warmup steps (0: none, as the official loop).
    pub warmup: u64,
    /// The poly exponent (0.9 in the official loop).
    pub power: f64,
}

impl Default for Schedule {
    fn default() -> Self {
        Self { steps: 1000, warmup: 0, power: 0.9 }
    }
}

impl Schedule {
    /// The factor on the base learning rate of optimiser step `step` (0-based).
    pub fn factor(&self, step: u64) -> f64 {
        let done = step.saturating_sub(1) as f64 / self.steps.max(1) as f64;
        let poly = (1.0 - done).max(0.0).powf(self.power);
        let warm = if step < self.warmup { (step + 1) as f64 / self.warmup as f64 } else { 1.0 };
        poly * warm
    }

    pub fn validate(&self) -> Result<(), Invalid> {
        if self.steps == 0 {
            return Err(Invalid::new("steps", "schedule.steps must be at least 1"));
        }
        if self.power.is_nan() || self.power < 0.0 {
            return Err(Invalid::new("power", format!("schedule.power {} must be ≥ 0", self.power)));
        }
        if self.warmup > self.steps {
            return Err(Invalid::new(
                "warmup",
                format!("schedule.warmup {} exceeds steps {}", self.warmup, self.steps),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poly_follows_the_official_loop() {
        let s = Schedule { steps: 10, warmup: 0, power: 0.9 };
        // official: lr used at step 0 is the base; after step i it becomes (1 - i/10)^0.9
        let mut lr = 1.0;
        for step in 0..10u64 {
            assert!((s.factor(step) - lr).abs() < 1e-15, "step {step}: {} vs {lr}", s.factor(step));
            lr = (1.0 - step as f64 / 10.0).powf(0.9);
        }
        assert!(s.factor(1000) >= 0.0);
    }

    #[test]
    fn warmup_ramps_linearly_then_joins_the_decay() {
        let s = Schedule { steps: 100, warmup: 4, power: 0.9 };
        assert_eq!(s.factor(0), 0.25);
        assert!((s.factor(1) - 0.5).abs() < 1e-12);
        assert!((s.factor(3) - 1.0 * (1.0 - 2.0 / 100.0f64).powf(0.9)).abs() < 1e-12);
        assert_eq!(s.factor(4), (1.0 - 3.0 / 100.0f64).powf(0.9));
        assert!(Schedule { steps: 0, ..s.clone() }.validate().is_err());
        assert!(Schedule { warmup: 200, ..s }.validate().is_err());
    }
}
