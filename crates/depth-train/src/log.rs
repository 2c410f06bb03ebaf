//! What a run records: its log (one JSON object per optimiser step and per validation),
//! TensorBoard scalars and validation pictures, and the loss curve (through depth-eval's plot);
//! where they go is the run folder's ([`RunDir`]). A resumed run first drops the records after its checkpoint, so the log
//! reads as one uninterrupted run.

use crate::error::Result;
use crate::run_dir::RunDir;
use crate::tensorboard::{EventWriter, now};
use depth_core::CoreError;
use depth_eval::plot::{LinePlot, Series};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// One line of `log.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Record {
    Train(StepRecord),
    Val(ValRecord),
}

impl Record {
    pub fn step(&self) -> u64 {
        match self {
            Record::Train(r) => r.step,
            Record::Val(r) => r.step,
        }
    }
}

/// An optimiser step (`step` counts from 1). A skipped step (non-finite loss or gradient)
/// changed nothing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub step: u64,
    /// Non-finite values (a skipped step's) are written as null and read back as NaN.
    #[serde(with = "nan_as_null")]
    pub loss: f64,
    /// The loss terms before weighting (ssi, gm, feature_align; or silog).
    #[serde(with = "nan_as_null::map")]
    pub terms: BTreeMap<String, f64>,
    /// Learning rate per group at this step.
    pub lr: BTreeMap<String, f64>,
    #[serde(with = "nan_as_null")]
    pub grad_norm: f64,
    pub images_per_s: f64,
    pub skipped: bool,
}

/// JSON has no NaN or infinity: such values are written as null and read back as NaN.
mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() { s.serialize_f64(*v) } else { s.serialize_none() }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }

    pub mod map {
        use serde::{Deserialize, Deserializer, Serializer};
        use std::collections::BTreeMap;

        pub fn serialize<S: Serializer>(m: &BTreeMap<String, f64>, s: S) -> Result<S::Ok, S::Error> {
            s.collect_map(m.iter().map(|(k, v)| (k, v.is_finite().then_some(*v))))
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, f64>, D::Error> {
            let m = BTreeMap::<String, Option<f64>>::deserialize(d)?;
            Ok(m.into_iter().map(|(k, v)| (k, v.unwrap_or(f64::NAN))).collect())
        }
    }
}

/// A validation: metric name → mean per benchmark.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ValRecord {
    pub step: u64,
    pub benchmarks: BTreeMap<String, BTreeMap<String, f64>>,
    /// The mean of the selection metric over the benchmarks.
    pub score: Option<f64>,
}

pub struct RunLog {
    run: RunDir,
    jsonl: std::fs::File,
    tb: Option<EventWriter>,
    records: Vec<Record>,
}

/// The records of a run's `log.jsonl` (a torn last line from a kill is left out).
pub fn read_log(run: &RunDir) -> Result<Vec<Record>> {
    let path = run.log();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CoreError::io(&path, e).into()),
    };
    Ok(text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
}

impl RunLog {
    /// Opens the run's log; `resumed_at`: keep only records up to that step (the checkpoint).
    pub fn open(run: &RunDir, resumed_at: Option<u64>, tensorboard: bool) -> Result<Self> {
        let path = run.log();
        let records: Vec<Record> = match resumed_at {
            Some(step) => read_log(run)?.into_iter().filter(|r| r.step() <= step).collect(),
            None => Vec::new(),
        };
        let mut text = Vec::new();
        for r in &records {
            serde_json::to_writer(&mut text, r).expect("a record serialises");
            text.push(b'\n');
        }
        depth_core::atomic::write_atomic(&path, |w| w.write_all(&text))?;
        let jsonl =
            std::fs::OpenOptions::new().append(true).open(&path).map_err(|e| CoreError::write(&path, e))?;
        let tb = tensorboard.then(|| EventWriter::create(run.root(), resumed_at)).transpose()?;
        Ok(Self { run: run.clone(), jsonl, tb, records })
    }

    pub fn records(&self) -> &[Record] {
        &self.records
    }

    fn append(&mut self, r: Record) -> Result<()> {
        let mut line = serde_json::to_vec(&r).expect("a record serialises");
        line.push(b'\n');
        self.jsonl.write_all(&line).map_err(|e| CoreError::write(self.run.log(), e))?;
        self.records.push(r);
        Ok(())
    }

    pub fn step(&mut self, r: StepRecord) -> Result<()> {
        if let Some(tb) = &mut self.tb {
            let t = now();
            tb.scalar("train/loss", r.loss, r.step, t)?;
            for (k, v) in &r.terms {
                tb.scalar(&format!("train/{k}"), *v, r.step, t)?;
            }
            for (k, v) in &r.lr {
                tb.scalar(&format!("lr/{k}"), *v, r.step, t)?;
            }
            tb.scalar("train/grad_norm", r.grad_norm, r.step, t)?;
            tb.scalar("train/images_per_s", r.images_per_s, r.step, t)?;
            tb.flush()?;
        }
        self.append(Record::Train(r))
    }

    /// A validation's numbers and its pictures (tag → image).
    pub fn validation(&mut self, r: ValRecord, pictures: &[(String, image::RgbImage)]) -> Result<()> {
        if let Some(tb) = &mut self.tb {
            let t = now();
            for (bench, metrics) in &r.benchmarks {
                for (m, v) in metrics {
                    tb.scalar(&format!("val/{bench}/{m}"), *v, r.step, t)?;
                }
            }
            for (tag, img) in pictures {
                tb.image(tag, img, r.step, t)?;
            }
            tb.flush()?;
        }
        self.append(Record::Val(r))
    }

    /// Redraws `loss.png`: the training loss (and its running mean) over steps, log scale,
    /// with the validation score when there is one.
    pub fn plot(&self) -> Result<()> {
        let train: Vec<(f64, f64)> = self
            .records
            .iter()
            .filter_map(|r| match r {
                Record::Train(s) if !s.skipped && s.loss.is_finite() => Some((s.step as f64, s.loss)),
                _ => None,
            })
            .collect();
        if train.is_empty() {
            return Ok(());
        }
        let window = (train.len() / 20).max(1);
        let smooth: Vec<(f64, f64)> = train
            .iter()
            .enumerate()
            .map(|(i, &(x, _))| {
                let lo = i.saturating_sub(window - 1);
                (x, train[lo..=i].iter().map(|p| p.1).sum::<f64>() / (i - lo + 1) as f64)
            })
            .collect();
        let mut series = vec![Series::new("loss", train), Series::new(format!("mean of {window}"), smooth)];
        let val: Vec<(f64, f64)> = self
            .records
            .iter()
            .filter_map(|r| match r {
                Record::Val(v) => v.score.map(|s| (v.step as f64, s)),
                _ => None,
            })
            .collect();
        if !val.is_empty() {
            series.push(Series::new("validation", val));
        }
        let plot = LinePlot {
            title: "training loss".into(),
            x_label: "step".into(),
            y_label: "loss".into(),
            series,
            log_y: true,
        };
        depth_eval::visualize::save_png(&plot.render(900, 500), &self.run.loss_plot())?;
        Ok(())
    }

    pub fn event_file(&self) -> Option<&Path> {
        self.tb.as_ref().map(|t| t.path())
    }
}
