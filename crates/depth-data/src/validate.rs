//! Dataset validation: loads every item and sorts what fails into the categories people act on
//! (unreadable or corrupt files, image/depth size mismatch, depth with no valid pixel, missing
//! split entries), with the valid fraction and depth range of the rest. `cargo xtask data
//! validate` writes the result as markdown and JSON.

use crate::dataset::Dataset;
use crate::error::DataError;
use depth_core::CoreError;
use rayon::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// The file cannot be read, or is not a valid image / depth file (corrupt, truncated).
    Corrupt,
    SizeMismatch,
    /// Every depth pixel is invalid (0, NaN, inf, or out of the format's range).
    NoValidDepth,
    MissingFile,
    Other,
}

impl Category {
    pub fn of(e: &DataError) -> Category {
        match e {
            DataError::Core(CoreError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Category::MissingFile
            }
            DataError::MissingEntry { .. } => Category::MissingFile,
            DataError::Core(
                CoreError::Io { .. } | CoreError::Format { .. } | CoreError::ImageDecode { .. },
            ) => Category::Corrupt,
            DataError::SizeMismatch { .. } => Category::SizeMismatch,
            DataError::NoValidDepth { .. } => Category::NoValidDepth,
            _ => Category::Other,
        }
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Failure {
    pub index: usize,
    pub id: String,
    pub category: Category,
    pub message: String,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Validation {
    pub dataset: String,
    pub items: usize,
    pub ok: usize,
    pub labeled: usize,
    pub failures: Vec<Failure>,
    /// Over loaded items with a target: smallest and mean fraction of valid pixels.
    pub min_valid_fraction: Option<f64>,
    pub mean_valid_fraction: Option<f64>,
    /// Over loaded items with a target: smallest and largest valid value.
    pub value_range: Option<(f32, f32)>,
}

/// Loads every item of `data` (in parallel), calling `progress` after each.
pub fn validate(data: &dyn Dataset, progress: impl Fn() + Sync) -> Validation {
    let results: Vec<_> = (0..data.len())
        .into_par_iter()
        .map(|i| {
            let r = data.load(i).and_then(|s| s.checked());
            progress();
            (i, r.map(|s| s.target.map(|t| (t.valid_fraction(), t.valid_range()))))
        })
        .collect();
    let mut v = Validation {
        dataset: data.name().into(),
        items: data.len(),
        ok: 0,
        labeled: 0,
        failures: Vec::new(),
        min_valid_fraction: None,
        mean_valid_fraction: None,
        value_range: None,
    };
    let mut sum = 0.0;
    for (index, r) in results {
        match r {
            Err(e) => v.failures.push(Failure {
                index,
                id: data.id(index),
                category: Category::of(&e),
                message: e.to_string(),
            }),
            Ok(stats) => {
                v.ok += 1;
                if let Some((frac, range)) = stats {
                    v.labeled += 1;
                    sum += frac;
                    v.min_valid_fraction = Some(v.min_valid_fraction.map_or(frac, |m: f64| m.min(frac)));
                    if let Some((lo, hi)) = range {
                        v.value_range =
                            Some(v.value_range.map_or((lo, hi), |(a, b): (f32, f32)| (a.min(lo), b.max(hi))));
                    }
                }
            }
        }
    }
    if v.labeled > 0 {
        v.mean_valid_fraction = Some(sum / v.labeled as f64);
    }
    v
}

impl Validation {
    pub fn count(&self, c: Category) -> usize {
        self.failures.iter().filter(|f| f.category == c).count()
    }

    /// A markdown section: a summary table, then every failure with its file and reason.
    pub fn to_markdown(&self) -> String {
        let mut s = format!(
            "## {}\n\n| items | ok | labeled | corrupt | size mismatch | no valid depth | missing | other | min valid | mean valid | range |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
            self.dataset
        );
        let pct = |x: Option<f64>| x.map_or("–".into(), |x| format!("{:.1}%", 100.0 * x));
        let range = self.value_range.map_or("–".into(), |(a, b)| format!("{a:.3} … {b:.3}"));
        s += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n\n",
            self.items,
            self.ok,
            self.labeled,
            self.count(Category::Corrupt),
            self.count(Category::SizeMismatch),
            self.count(Category::NoValidDepth),
            self.count(Category::MissingFile),
            self.count(Category::Other),
            pct(self.min_valid_fraction),
            pct(self.mean_valid_fraction),
            range
        );
        if !self.failures.is_empty() {
            s += "| # | item | problem | message |\n|---|---|---|---|\n";
            for f in &self.failures {
                s += &format!(
                    "| {} | `{}` | {:?} | {} |\n",
                    f.index,
                    f.id,
                    f.category,
                    f.message.replace('|', "\\|").replace('\n', " ")
                );
            }
            s += "\n";
        }
        s
    }
}
