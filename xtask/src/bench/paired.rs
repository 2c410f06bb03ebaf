//! Why this file: on a shared 2-core machine the noise between two runs is larger than the
//! steps an optimisation makes. `--paired N` measures each case's ours and each twin
//! alternately (ours, twin, ours, twin, …), N pairs of fresh processes doing the same work, and
//! reports the median of the per-pair time ratios (ours / twin) with a 95% bootstrap interval:
//! slow phases of the machine hit both members of a pair alike and cancel in the ratio. A
//! verdict follows from the interval alone: faster, slower, or no difference.

use super::cases::{Case, Measurement};
use depth_eval::compare::{RESAMPLES, bootstrap, median};
use serde::Serialize;

/// The pairs of one case against one twin.
#[derive(Clone, Debug, Serialize)]
pub struct Paired {
    pub case: String,
    pub twin: String,
    /// (ours, twin) median seconds of each pair, in the order measured.
    pub pairs: Vec<(f64, f64)>,
    /// Median of ours / twin over the pairs, and its 95% bootstrap interval.
    pub ratio: f64,
    pub lo: f64,
    pub hi: f64,
    /// Why pairs are missing (a run that failed), if any.
    pub note: Option<String>,
}

impl Paired {
    /// Runs `pairs` pairs through `measure(implementation)` ("ours" or the twin's name).
    pub fn measure(
        case: &Case,
        twin: &str,
        pairs: usize,
        mut measure: impl FnMut(&str) -> crate::error::Result<Measurement>,
        mut tick: impl FnMut(),
    ) -> Self {
        let mut got = Vec::new();
        let mut note = None;
        for _ in 0..pairs {
            let pair = measure("ours").and_then(|a| Ok((a, measure(twin)?)));
            tick();
            match pair {
                Ok((a, b)) => got.push((median(&a.times_s), median(&b.times_s))),
                Err(e) => {
                    note = Some(format!("a pair failed: {e}"));
                    break;
                }
            }
        }
        let ratios: Vec<f64> = got.iter().map(|(a, b)| a / b).collect();
        let (ratio, lo, hi) =
            bootstrap(&ratios, median, RESAMPLES, 0x9A1D).unwrap_or((f64::NAN, f64::NAN, f64::NAN));
        Self { case: case.name(), twin: twin.into(), pairs: got, ratio, lo, hi, note }
    }

    pub fn verdict(&self) -> &'static str {
        if self.hi < 1.0 {
            "ours faster"
        } else if self.lo > 1.0 {
            "ours slower"
        } else if self.lo <= 1.0 {
            "no difference"
        } else {
            "not measured"
        }
    }
}

/// The markdown table of paired results.
pub fn markdown(results: &[Paired], machine: &str) -> String {
    let mut md = format!(
        "# Paired bench ({machine})\n\nEach pair: ours, then the twin, each a fresh process of the same work; \
         the ratio is ours / twin (below 1: ours faster), the median over the pairs with a 95% bootstrap interval.\n\n\
         | case | twin | pairs | ours median s | twin median s | ratio | 95% interval | verdict |\n\
         |---|---|---|---|---|---|---|---|\n"
    );
    for r in results {
        let col =
            |i: usize| median(&r.pairs.iter().map(|p| if i == 0 { p.0 } else { p.1 }).collect::<Vec<_>>());
        let (a, b) = if r.pairs.is_empty() { (f64::NAN, f64::NAN) } else { (col(0), col(1)) };
        md += &format!(
            "| {} | {} | {} | {a:.3} | {b:.3} | {:.3} | [{:.3}, {:.3}] | {}{} |\n",
            r.case,
            r.twin,
            r.pairs.len(),
            r.ratio,
            r.lo,
            r.hi,
            r.verdict(),
            r.note.as_deref().map(|n| format!(" ({n})")).unwrap_or_default()
        );
    }
    md
}
