//! depth-data: everything between files on disk and a batch of tensors.
//!
//! It owns the dataset readers (one module per format under `formats/`, each returning image +
//! depth in metres + valid mask + intrinsics), the procedural synthetic scenes with exact depth
//! (`synth/`), the deterministic training transforms, the multi-threaded loader and the dataset
//! manifest. It builds on depth-core (image reading, OpenCV-exact resize) and must not depend on
//! models, losses, training or evaluation.

//!
//! Its surface: the readers (`formats`), the synthetic scenes (`synth`), the transforms, the
//! manifests and the validation report are modules used by their path; everything else is
//! re-exported here from private modules.

mod config;
mod dataset;
mod error;
pub mod formats;
mod image_list;
mod loader;
pub mod manifest;
mod order;
mod sample;
pub mod synth;
pub mod transforms;
pub mod validate;

pub use config::{DataConfig, DatasetRef, DatasetSpec, HubSource, Kind};
pub use dataset::Dataset;
pub use error::{DataError, Result};
pub use image_list::{ImageItem, list_images};
pub use loader::{Batch, BatchIter, Cursor, Loader, LoaderConfig, OnError, PastedBox, Source};
pub use sample::{Intrinsics, Sample, Target, TargetKind, read_rgb};
