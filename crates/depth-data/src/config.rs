//! `configs/data.toml`: the datasets a run may use — where each lives, which reader opens it,
//! its licence, how many items to expect, its manifest, and how to get it (Hub repository or
//! manual steps). Relative paths are relative to the config file; `${DEPTH_FIXTURES}` expands
//! to the shared fixtures folder.

use crate::dataset::Dataset;
use crate::error::{DataError, Result};
use crate::formats::{self, folder::ImageFolder, nyu::NyuLabeled, pseudo::PseudoLabeled};
use crate::synth::SynthSpec;
use depth_core::CoreError;
use depth_core::config::{ConfigFile, Invalid, check_unique, expand};
use serde_inline_default::serde_inline_default;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Which reader opens a dataset (see `formats/`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// `test_annotations.json` lists (the shared NYU / KITTI frames); `split` names the JSON.
    Annotations,
    /// NYU-Depth-V2 in the BTS layout with a split file.
    NyuBts,
    /// `nyu_depth_v2_labeled.mat` (root is the file).
    NyuMat,
    /// KITTI depth benchmark: split file, images under `root`, depth under `depth_root`.
    KittiDepth,
    /// One KITTI raw drive folder, depth projected from the velodyne scans (camera 2).
    KittiRaw,
    Vkitti2,
    Hypersim,
    Diode,
    Eth3d,
    /// MPI Sintel training folder; `pass` is "clean" or "final".
    Sintel,
    Middlebury,
    /// The shared Motorcycle frame (`motorcycle_left.png` + `motorcycle_disp.npz`).
    MiddleburyNpz,
    Redwood,
    /// Unlabeled images.
    Folder,
    /// Images under `root` with pseudo-labels in `store`.
    Pseudo,
    /// A dataset written by `cargo xtask data synth`.
    Synth,
}

/// Files of a Hugging Face Hub repository that make up (part of) a dataset.
#[serde_inline_default]
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubSource {
    pub repo: String,
    pub files: Vec<String>,
    #[serde(default)]
    pub revision: Option<String>,
    /// "dataset" or "model".
    #[serde_inline_default("dataset".into())]
    pub repo_type: String,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    pub name: String,
    pub kind: Kind,
    pub root: PathBuf,
    #[serde(default)]
    pub split: Option<PathBuf>,
    #[serde(default)]
    pub depth_root: Option<PathBuf>,
    #[serde(default)]
    pub store: Option<PathBuf>,
    #[serde(default)]
    pub pass: Option<String>,
    pub licence: String,
    /// Items the reader should find; `data validate` reports a difference.
    #[serde(default)]
    pub expected: Option<usize>,
    /// Manifest JSON (sizes and SHA-256 of every file under `root`).
    #[serde(default)]
    pub manifest: Option<PathBuf>,
    #[serde(default)]
    pub hub: Option<HubSource>,
    /// Steps for datasets that cannot be fetched automatically.
    #[serde(default)]
    pub manual: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    #[serde(default, rename = "dataset")]
    pub datasets: Vec<DatasetSpec>,
}

impl ConfigFile for DataConfig {
    fn resolve(&mut self, base: &Path) -> depth_core::Result<()> {
        for d in &mut self.datasets {
            let resolve = |p: &Path| expand(p, base);
            d.root = resolve(&d.root)?;
            d.depth_root = d.depth_root.as_deref().map(resolve).transpose()?;
            d.store = d.store.as_deref().map(resolve).transpose()?;
            d.manifest = d.manifest.as_deref().map(resolve).transpose()?;
        }
        Ok(())
    }

    fn validate(&self) -> std::result::Result<(), Invalid> {
        check_unique(self.datasets.iter().map(|d| d.name.as_str()), "dataset")
    }
}

impl DataConfig {
    pub fn get(&self, name: &str) -> Result<&DatasetSpec> {
        self.datasets.iter().find(|d| d.name == name).ok_or_else(|| {
            CoreError::bad_input(
                "dataset",
                format!(
                    "no dataset '{name}' in the config; known: {}",
                    self.datasets.iter().map(|d| d.name.as_str()).collect::<Vec<_>>().join(", ")
                ),
            )
            .into()
        })
    }
}

impl DataConfig {
    /// The image folder of dataset `name`, which must be of kind `folder` or `pseudo` (the
    /// images a teacher labels).
    pub fn image_root(&self, name: &str) -> Result<&Path> {
        let spec = self.get(name)?;
        if !matches!(spec.kind, Kind::Folder | Kind::Pseudo) {
            let reason = format!(
                "dataset '{name}' is of kind {:?}: only image folders (kind folder or pseudo) are labelled",
                spec.kind
            );
            return Err(CoreError::bad_input("dataset", reason).into());
        }
        Ok(&spec.root)
    }
}

/// A dataset as training and evaluation configs name it: one of the data config's, or
/// procedural scenes generated on the fly. In TOML it is exactly one of `dataset = "name"` and
/// `synth = { … }`, which the config types that hold one check when they are read
/// ([`DatasetRef::from_keys`]).
#[derive(Clone, Debug, PartialEq)]
pub enum DatasetRef {
    Named(String),
    Synth(SynthSpec),
}

impl DatasetRef {
    /// The reference the two keys of a config entry make; `entry` names the entry in the error.
    pub fn from_keys(
        entry: &str,
        dataset: Option<String>,
        synth: Option<SynthSpec>,
    ) -> std::result::Result<Self, Invalid> {
        match (dataset, synth) {
            (Some(name), None) => Ok(Self::Named(name)),
            (None, Some(spec)) => {
                spec.validate().map_err(|e| e.under(&format!("{entry}.synth")))?;
                Ok(Self::Synth(spec))
            }
            _ => Err(Invalid::new(entry, format!("{entry} needs exactly one of `dataset` and `synth`"))),
        }
    }

    /// The two keys it is written as.
    pub fn into_keys(self) -> (Option<String>, Option<SynthSpec>) {
        match self {
            Self::Named(name) => (Some(name), None),
            Self::Synth(spec) => (None, Some(spec)),
        }
    }

    /// Resolves the scenes' texture folder against a config's folder.
    pub fn resolve(&mut self, base: &Path) -> depth_core::Result<()> {
        match self {
            Self::Named(_) => Ok(()),
            Self::Synth(spec) => spec.resolve(base),
        }
    }

    /// Opens it; a named dataset is looked up in `data`.
    pub fn open(&self, data: &DataConfig) -> Result<Arc<dyn Dataset>> {
        match self {
            Self::Named(name) => data.get(name)?.open(),
            Self::Synth(spec) => Ok(Arc::new(spec.open()?)),
        }
    }

    /// The data config's dataset it names, if any.
    pub fn name(&self) -> Option<&str> {
        match self {
            Self::Named(name) => Some(name),
            Self::Synth(_) => None,
        }
    }
}

impl DatasetSpec {
    fn need<'a, T>(&self, field: &'static str, v: &'a Option<T>) -> Result<&'a T> {
        v.as_ref().ok_or_else(|| {
            CoreError::bad_input(
                "dataset config",
                format!("dataset '{}' of kind {:?} needs `{field}`", self.name, self.kind),
            )
            .into()
        })
    }

    fn split_path(&self) -> Result<PathBuf> {
        Ok(self.root.join(self.need("split", &self.split)?))
    }

    /// Opens the dataset with its reader.
    pub fn open(&self) -> Result<Arc<dyn Dataset>> {
        if !self.root.exists() {
            let how = match (&self.hub, &self.manual) {
                (Some(h), _) => format!("run `cargo xtask data download {}` (Hub: {})", self.name, h.repo),
                (None, Some(steps)) => format!("download it by hand:\n{steps}"),
                (None, None) => "check `root` in the config".into(),
            };
            return Err(DataError::Absent {
                path: self.root.clone(),
                reason: format!("dataset '{}' is not there; {how}", self.name),
            });
        }
        let root = self.root.as_path();
        Ok(match self.kind {
            Kind::Annotations => {
                Arc::new(formats::annotations::read_annotations(&self.split_path()?, &self.name)?)
            }
            Kind::NyuBts => Arc::new(formats::nyu::nyu_bts_split(&self.split_path()?, root)?),
            Kind::NyuMat => Arc::new(NyuLabeled::open(root)?),
            Kind::KittiDepth => Arc::new(formats::kitti::kitti_depth_split(
                &self.split_path()?,
                root,
                self.need("depth_root", &self.depth_root)?,
            )?),
            Kind::KittiRaw => Arc::new(formats::kitti::kitti_raw(root, 2)?),
            Kind::Vkitti2 => Arc::new(formats::vkitti2::vkitti2(root)?),
            Kind::Hypersim => Arc::new(formats::hypersim::hypersim(root)?),
            Kind::Diode => Arc::new(formats::diode::diode(root)?),
            Kind::Eth3d => Arc::new(formats::eth3d::eth3d(root)?),
            Kind::Sintel => Arc::new(formats::sintel::sintel(root, self.pass.as_deref().unwrap_or("final"))?),
            Kind::Middlebury => Arc::new(formats::middlebury::middlebury(root)?),
            Kind::MiddleburyNpz => Arc::new(formats::middlebury::motorcycle_fixture(root)),
            Kind::Redwood => Arc::new(formats::redwood::redwood(root)?),
            Kind::Folder => Arc::new(ImageFolder::new(self.name.clone(), root)?),
            Kind::Pseudo => {
                let store = self.need("store", &self.store)?;
                // a store of tar shards carries its images; one of files pairs them with `root`
                if formats::shards::done_shards(store)?.is_empty() {
                    Arc::new(PseudoLabeled::new(self.name.clone(), root, store)?)
                } else {
                    Arc::new(formats::shards::ShardedPseudo::open(self.name.clone(), store)?)
                }
            }
            Kind::Synth => Arc::new(crate::synth::SynthFolder::open(root)?),
        })
    }
}
