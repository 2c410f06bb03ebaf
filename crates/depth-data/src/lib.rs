//! depth-data: everything between files on disk and a batch of tensors.
//!
//! It owns the dataset readers (one module per format under `formats/`, each returning image +
//! depth in metres + valid mask + intrinsics), the procedural synthetic scenes with exact depth
//! (`synth/`), the deterministic training transforms, the multi-threaded loader and the dataset
//! manifest. It builds on depth-core (image reading, OpenCV-exact resize) and must not depend on
//! models, losses, training or evaluation.

pub mod config;
pub mod dataset;
pub mod error;
pub mod formats;
pub mod loader;
pub mod manifest;
pub mod sample;
pub mod synth;
pub mod transforms;
pub mod validate;

pub use dataset::Dataset;
pub use error::{DataError, Result};
pub use formats::folder::ImageFolder;
pub use formats::pseudo::{PseudoLabeled, PseudoMeta, TeacherId, read_pseudo_label, write_pseudo_label};
pub use formats::{PairItem, Pairs, read_split};
pub use loader::{Batch, Cursor, Loader, LoaderConfig, OnError, Source};
pub use sample::{Intrinsics, Sample, Target, TargetKind};
