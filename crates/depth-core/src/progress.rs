//! Why this file: the long loops live in the libraries (training, labelling, evaluation), and
//! the command line shows their progress (indicatif). The libraries report through this small
//! trait and never draw; a caller that wants nothing passes [`Silent`].

/// What a long loop reports. Every method defaults to doing nothing.
pub trait Progress: Sync {
    /// The loop has `total` units of work, `done` of them already (a resumed run).
    fn start(&self, _total: u64, _done: u64) {}
    /// `n` more units are done.
    fn advance(&self, _n: u64) {}
    /// A short line on the current state (the loss, the benchmark being scored).
    fn message(&self, _text: &str) {}
}

/// Reports nothing.
pub struct Silent;

impl Progress for Silent {}
