//! Why this file: `data.loader.batch_size` is the optimiser's batch — the images one AdamW step
//! averages over — whatever runs it: the paper's 192 is 192 on one GPU or on eight. It is split
//! as ranks × per-rank batch × accumulation steps (DeepSpeed's rule): `optim.per_rank_batch` and
//! `optim.accumulate` may each be left out and are then derived; given, they must agree.

use depth_core::config::Invalid;

/// How one optimiser step's batch is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchPlan {
    /// The optimiser's batch (all ranks, all accumulation steps).
    pub batch: usize,
    pub ranks: usize,
    /// Images in one rank's forward pass (the loader's batch).
    pub per_rank: usize,
    /// Forward/backward passes per rank per optimiser step.
    pub accumulate: usize,
}

impl BatchPlan {
    /// Splits `batch` over `ranks`; `per_rank` and `accumulate` as the config gives them. Left
    /// out both, accumulation is 1 (the largest per-rank batch); the error names the keys.
    pub fn new(
        batch: usize,
        ranks: usize,
        per_rank: Option<usize>,
        accumulate: Option<usize>,
    ) -> Result<Self, Invalid> {
        let rule = "data.loader.batch_size (the optimiser's batch) = ranks × optim.per_rank_batch × optim.accumulate";
        let refuse = |what: String| Invalid::new("data.loader.batch_size", format!("{what}; {rule}"));
        if batch == 0 || ranks == 0 || per_rank == Some(0) || accumulate == Some(0) {
            return Err(refuse(format!(
                "batch {batch}, {ranks} ranks, per-rank batch {per_rank:?} and accumulate {accumulate:?} \
                 must all be at least 1"
            )));
        }
        let split = |part: usize, what: &str| {
            if batch.is_multiple_of(part) {
                Ok(batch / part)
            } else {
                Err(refuse(format!("batch {batch} does not divide into {what} = {part}")))
            }
        };
        let (per_rank, accumulate) = match (per_rank, accumulate) {
            (Some(p), Some(a)) => {
                if ranks * p * a != batch {
                    return Err(refuse(format!(
                        "batch {batch} ≠ {ranks} ranks × {p} × {a} = {}",
                        ranks * p * a
                    )));
                }
                (p, a)
            }
            (Some(p), None) => (p, split(ranks * p, &format!("{ranks} ranks × per-rank batch {p}"))?),
            (None, Some(a)) => (split(ranks * a, &format!("{ranks} ranks × accumulate {a}"))?, a),
            (None, None) => (split(ranks, &format!("{ranks} ranks"))?, 1),
        };
        Ok(Self { batch, ranks, per_rank, accumulate })
    }
}

impl std::fmt::Display for BatchPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "batch {} = {} rank{} × {} per rank × accumulate {}",
            self.batch,
            self.ranks,
            if self.ranks == 1 { "" } else { "s" },
            self.per_rank,
            self.accumulate
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(
        batch: usize,
        ranks: usize,
        p: Option<usize>,
        a: Option<usize>,
    ) -> Result<(usize, usize), String> {
        BatchPlan::new(batch, ranks, p, a).map(|b| (b.per_rank, b.accumulate)).map_err(|e| e.reason)
    }

    #[test]
    fn what_is_left_out_is_derived() {
        assert_eq!(plan(192, 8, None, None), Ok((24, 1)));
        assert_eq!(plan(192, 8, Some(8), None), Ok((8, 3)));
        assert_eq!(plan(192, 8, None, Some(4)), Ok((6, 4)));
        assert_eq!(plan(192, 8, Some(12), Some(2)), Ok((12, 2)));
        assert_eq!(plan(4, 1, None, None), Ok((4, 1)));
        assert_eq!(plan(4, 2, None, None), Ok((2, 1)));
        assert_eq!(
            BatchPlan::new(192, 8, Some(8), None).unwrap().to_string(),
            "batch 192 = 8 ranks × 8 per rank × accumulate 3"
        );
    }

    #[test]
    fn what_disagrees_is_refused_with_the_rule() {
        let e = plan(192, 8, Some(12), Some(4)).unwrap_err();
        assert!(e.contains("192 ≠ 8 ranks × 12 × 4 = 384") && e.contains("optim.per_rank_batch"), "{e}");
        let e = plan(192, 5, None, None).unwrap_err();
        assert!(e.contains("does not divide into 5 ranks"), "{e}");
        let e = plan(192, 8, Some(5), None).unwrap_err();
        assert!(e.contains("8 ranks × per-rank batch 5"), "{e}");
        assert!(plan(192, 8, None, Some(5)).is_err());
        assert!(plan(8, 1, Some(0), None).is_err() && plan(0, 1, None, None).is_err());
    }
}
