//! depth-data: everything between files on disk and a batch of tensors.
//!
//! It owns the dataset readers (one module per format under `formats/`, each returning image +
//! depth in metres + valid mask + intrinsics), the procedural synthetic scenes with exact depth
//! (`synth/`), the deterministic training transforms, the multi-threaded loader and the dataset
//! manifest. It builds on depth-core (image reading, OpenCV-exact resize) and must not depend on
//! models, losses, training or evaluation.

pub mod dataset;
pub mod error;
pub mod formats;
pub mod sample;

pub use dataset::Dataset;
pub use error::{DataError, Result};
pub use sample::{Intrinsics, Sample, Target, TargetKind};
