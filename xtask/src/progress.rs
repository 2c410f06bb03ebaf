//! The one progress bar of the pipeline: indicatif's, behind depth-core's `Progress` trait, so
//! the libraries' long loops (training, labelling, evaluation) and the commands' own show the
//! same bar.

use depth_core::Progress;
use indicatif::{ProgressBar, ProgressStyle};

pub struct Bar(ProgressBar);

impl Bar {
    /// A bar of the phase `phase`, drawn on stderr; its length comes with `start`.
    pub fn new(phase: &str) -> Self {
        let style =
            ProgressStyle::with_template("{prefix:>8} [{bar:40}] {pos}/{len} {per_sec} eta {eta} {msg}")
                .expect("valid progress template")
                .progress_chars("=> ");
        Self(ProgressBar::new(0).with_style(style).with_prefix(phase.to_string()))
    }

    /// A bar that draws nothing (the ranks other than 0).
    pub fn hidden() -> Self {
        Self(ProgressBar::hidden())
    }

    /// Sets the length once it is known only at the end (a video without a frame count).
    pub fn set_length(&self, len: u64) {
        self.0.set_length(len);
    }

    /// For the callbacks that report how many are done rather than one more.
    pub fn set_position(&self, done: u64) {
        self.0.set_position(done);
    }
}

impl Progress for Bar {
    fn start(&self, total: u64, done: u64) {
        self.0.set_length(total);
        self.0.set_position(done);
    }

    fn advance(&self, n: u64) {
        self.0.inc(n);
    }

    fn message(&self, text: &str) {
        self.0.set_message(text.to_string());
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.0.finish();
    }
}
