//! The one interface the loader sees: a fixed-length list of items that can be loaded by index.

use crate::error::Result;
use crate::sample::Sample;

/// A dataset: `len` items, each loadable on its own from any thread.
pub trait Dataset: Send + Sync {
    /// A short name used in reports and batch sources ("nyu", "synth", ...).
    fn name(&self) -> &str;
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The sizes of the consecutive runs of items stored together (tar shards), in index
    /// order, or None for a dataset read at random. The loader streams such a dataset whole
    /// runs at a time, each rank its own runs, through a shuffle buffer.
    fn groups(&self) -> Option<Vec<usize>> {
        None
    }
    /// The item's id (usually its image path) without loading it.
    fn id(&self, index: usize) -> String;
    /// Loads item `index`; errors name the file.
    fn load(&self, index: usize) -> Result<Sample>;
}
