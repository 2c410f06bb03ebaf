//! The numbers derived from the measurements (median, spread, throughput, GFLOP/s, share of the
//! sgemm peak, ours/theirs ratios), `results.json` and the markdown table.

use super::cases::Measurement;
use serde::Serialize;

/// One implementation's result for one case: measured, skipped (with the reason) or failed.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// `ours`, or the twin's `--impl` (official, transformers, torch).
    pub implementation: String,
    #[serde(flatten)]
    pub stats: Option<Stats>,
    /// Why there is no measurement (no torch, no official checkout, an error).
    pub note: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Stats {
    pub reps: usize,
    pub median_s: f64,
    pub min_s: f64,
    pub max_s: f64,
    /// Items (images, steps, scenes) per second at the median.
    pub per_s: f64,
    pub gflop_per_s: Option<f64>,
    /// GFLOP/s divided by the run's sgemm peak.
    pub peak_share: Option<f64>,
    pub peak_rss_bytes: u64,
    pub raw: Measurement,
}

impl Stats {
    pub fn new(m: Measurement) -> Option<Self> {
        let mut t = m.times_s.clone();
        if t.is_empty() || t.iter().any(|v| !v.is_finite()) {
            return None;
        }
        t.sort_by(f64::total_cmp);
        let median_s =
            if t.len() % 2 == 1 { t[t.len() / 2] } else { (t[t.len() / 2 - 1] + t[t.len() / 2]) / 2.0 };
        Some(Self {
            reps: t.len(),
            median_s,
            min_s: t[0],
            max_s: t[t.len() - 1],
            per_s: m.items as f64 / median_s,
            gflop_per_s: m.flops.map(|f| f / median_s / 1e9),
            peak_share: None,
            peak_rss_bytes: m.peak_rss_bytes,
            raw: m,
        })
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct CaseResult {
    pub case: String,
    pub unit: String,
    pub rows: Vec<Row>,
}

impl CaseResult {
    fn ours(&self) -> Option<&Stats> {
        self.rows.iter().find(|r| r.implementation == "ours").and_then(|r| r.stats.as_ref())
    }

    /// ours' median time ÷ the twin's (below 1: ours is faster).
    pub fn ratio(&self, twin: &Row) -> Option<f64> {
        Some(self.ours()?.median_s / twin.stats.as_ref()?.median_s)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub threads: usize,
    pub device: String,
    pub rustc: String,
    pub xtask: String,
    pub date: String,
}

impl Machine {
    /// One line: date, CPU, cores, threads, device, compiler, version.
    pub fn summary(&self) -> String {
        let m = self;
        format!(
            "{} — {}, {} cores, {} threads, device {}; {}; xtask {}",
            m.date, m.cpu, m.cores, m.threads, m.device, m.rustc, m.xtask
        )
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Results {
    pub machine: Machine,
    /// The sgemm GFLOP/s the shares are relative to, and whose it is.
    pub peak_gflop_per_s: Option<(f64, String)>,
    pub cases: Vec<CaseResult>,
}

impl Results {
    /// The best sgemm of the run (ours or PyTorch's) as the peak, and every share against it.
    pub fn fill_peak(&mut self) {
        let best = self
            .cases
            .iter()
            .filter(|c| c.case.starts_with("sgemm/"))
            .flat_map(|c| c.rows.iter())
            .filter_map(|r| Some((r.stats.as_ref()?.gflop_per_s?, r.implementation.clone())))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        self.peak_gflop_per_s = best.clone();
        if let Some((peak, _)) = best {
            for s in self.cases.iter_mut().flat_map(|c| c.rows.iter_mut()).filter_map(|r| r.stats.as_mut()) {
                s.peak_share = s.gflop_per_s.map(|g| g / peak);
            }
        }
    }

    pub fn markdown(&self) -> String {
        let mut s = format!("# `cargo xtask bench`\n\n{}.\n", self.machine.summary());
        if let Some(v) = self.twin_versions() {
            s += &format!("PyTorch twins: {v}.\n");
        }
        match &self.peak_gflop_per_s {
            Some((g, who)) => s += &format!("sgemm peak of this run: {g:.1} GFLOP/s ({who}).\n"),
            None => s += "No sgemm case ran: no share of the peak.\n",
        }
        s += "\nTimes are per repetition (median, min–max over the repetitions, after warm-ups); \
              ratio = ours ÷ theirs (below 1: ours is faster). On CUDA \"ours\" runs the fused kernels \
              and \"ours, composed\" candle's composed ops (its ratio below 1: the kernels are faster).\n\n";
        s += "| case | impl | median | min–max | per s | GFLOP/s | of peak | peak RSS | ours ÷ this |\n";
        s += "|---|---|---|---|---|---|---|---|---|\n";
        for c in &self.cases {
            for r in &c.rows {
                match &r.stats {
                    Some(st) => {
                        s += &format!(
                            "| {} | {} | {} | {}–{} | {:.2} {} | {} | {} | {:.0} MB | {} |\n",
                            c.case,
                            r.implementation,
                            secs(st.median_s),
                            secs(st.min_s),
                            secs(st.max_s),
                            st.per_s,
                            c.unit,
                            st.gflop_per_s.map_or("—".into(), |g| format!("{g:.1}")),
                            st.peak_share.map_or("—".into(), |p| format!("{:.0}%", 100.0 * p)),
                            st.peak_rss_bytes as f64 / 1e6,
                            match (r.implementation.as_str(), c.ratio(r)) {
                                ("ours", _) | (_, None) => "—".into(),
                                (_, Some(x)) => format!("**{x:.2}**"),
                            }
                        )
                    }
                    None => {
                        let note = r.note.as_deref().unwrap_or("no measurement");
                        s += &format!("| {} | {} | {note} | | | | | | |\n", c.case, r.implementation)
                    }
                }
            }
        }
        s
    }

    fn twin_versions(&self) -> Option<String> {
        let v = self
            .cases
            .iter()
            .flat_map(|c| c.rows.iter())
            .filter_map(|r| r.stats.as_ref()?.raw.versions.as_ref())
            .next()?;
        Some(
            v.as_object()?
                .iter()
                .map(|(k, v)| format!("{k} {}", v.as_str().unwrap_or("—")))
                .collect::<Vec<_>>()
                .join(", "),
        )
    }
}

fn secs(s: f64) -> String {
    if s >= 1.0 { format!("{s:.2} s") } else { format!("{:.1} ms", s * 1e3) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(times: &[f64], items: usize, flops: Option<f64>) -> Measurement {
        Measurement { times_s: times.to_vec(), items, flops, peak_rss_bytes: 1 << 20, versions: None }
    }

    #[test]
    fn median_spread_throughput_and_ratio() {
        let s = Stats::new(measured(&[0.4, 0.1, 0.3, 0.2], 2, Some(1e9))).unwrap();
        assert_eq!((s.reps, s.median_s, s.min_s, s.max_s), (4, 0.25, 0.1, 0.4));
        assert_eq!(s.per_s, 8.0);
        assert_eq!(s.gflop_per_s, Some(4.0));
        assert!(Stats::new(measured(&[], 1, None)).is_none());
        assert!(Stats::new(measured(&[f64::NAN], 1, None)).is_none());

        let row = |imp: &str, t: &[f64]| Row {
            implementation: imp.into(),
            stats: Stats::new(measured(t, 1, Some(2e9))),
            note: None,
        };
        let mut r = Results {
            machine: Machine {
                cpu: "x".into(),
                cores: 2,
                threads: 2,
                device: "cpu".into(),
                rustc: "r".into(),
                xtask: "0".into(),
                date: "d".into(),
            },
            peak_gflop_per_s: None,
            cases: vec![
                CaseResult {
                    case: "sgemm/8".into(),
                    unit: "products".into(),
                    rows: vec![row("ours", &[1.0]), row("torch", &[0.5])],
                },
                CaseResult {
                    case: "infer/x".into(),
                    unit: "images".into(),
                    rows: vec![row("ours", &[2.0]), row("official", &[4.0])],
                },
            ],
        };
        r.fill_peak();
        assert_eq!(r.peak_gflop_per_s, Some((4.0, "torch".into())));
        assert_eq!(r.cases[1].rows[0].stats.as_ref().unwrap().peak_share, Some(0.25));
        assert_eq!(r.cases[1].ratio(&r.cases[1].rows[1]), Some(0.5));
        let md = r.markdown();
        assert!(md.contains("| infer/x | official | 4.00 s | 4.00 s–4.00 s | 0.25 images |"), "{md}");
        assert!(md.contains("**0.50**"), "{md}");
    }
}
