//! The one progress-bar style of the pipeline.

use indicatif::{ProgressBar, ProgressStyle};

pub fn bar(len: u64, phase: &str) -> ProgressBar {
    let style = ProgressStyle::with_template("{prefix:>8} [{bar:40}] {pos}/{len} {per_sec} eta {eta} {msg}")
        .expect("valid progress template")
        .progress_chars("=> ");
    ProgressBar::new(len).with_style(style).with_prefix(phase.to_string())
}
