//! Procedural synthetic scenes: the stand-in for Hypersim at any scale. Seeded rooms and outdoor
//! scenes built from boxes, spheres, cylinders, planes and terrain, textured with crops of real
//! photos and noise, lit by a few Lambertian lights, ray cast for exact planar depth.
//!
//! On disk (`write_dataset`, read back by [`SynthFolder`]):
//! ```text
//! DIR/index.json        {"format": "depth-synth/1", "seed", "config", "items": [{"id", "seed", "kind",
//!                        "rgb", "depth", "intrinsics": {"fx","fy","cx","cy"}}]}
//! DIR/rgb/NNNNNN.png    8-bit RGB
//! DIR/depth/NNNNNN.npy  float32 (H, W) planar depth in metres; 0 where the ray sees the sky (invalid)
//! ```

pub mod math;
pub mod noise;
pub mod render;
pub mod scene;
pub mod shapes;
pub mod texture;

pub use scene::{Scene, SceneConfig, SceneKind};
pub use texture::PhotoBank;

use crate::dataset::Dataset;
use crate::error::Result;
use crate::sample::{Intrinsics, Sample, Target};
use depth_core::CoreError;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const FORMAT: &str = "depth-synth/1";

/// The seed of item `index` of a dataset seeded with `seed` (SplitMix64 of both).
pub fn item_seed(seed: u64, index: u64) -> u64 {
    let mut z = seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(0x632B_E59B_D9B4_E019);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Scenes generated on the fly: item `i` is always the scene of `item_seed(seed, i)`.
pub struct SynthDataset {
    pub config: SceneConfig,
    pub bank: Arc<PhotoBank>,
    pub seed: u64,
    pub count: usize,
}

/// Procedural scenes as a config names them (training sources, held-out benchmarks): the seed
/// and count, and optionally the texture photos and the scene size.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SynthSpec {
    pub seed: u64,
    pub count: usize,
    /// Photos cropped for textures (default: the fixtures' unlabeled photos).
    #[serde(default)]
    pub textures: Option<PathBuf>,
    /// Scene width and height in pixels (default 518).
    #[serde(default)]
    pub width: Option<u32>,
    #[serde(default)]
    pub height: Option<u32>,
    /// Fraction of outdoor scenes, whose sky has no depth (default 0.5; 0 = rooms only, every
    /// pixel valid).
    #[serde(default)]
    pub outdoor_fraction: Option<f64>,
    /// Fraction of surfaces textured with photo crops, the rest procedural (default 0.6). 0
    /// reads no photo at all: scenes that share no pixel with any image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub photo_fraction: Option<f64>,
}

impl SynthSpec {
    /// Sizes within bounds: at most 2³² scenes of at most 8192² pixels, outdoor share in [0, 1].
    pub fn validate(&self) -> std::result::Result<(), depth_core::config::Invalid> {
        let bad = |key: &str, reason: String| Err(depth_core::config::Invalid::new(key, reason));
        if self.count == 0 || self.count > 1 << 32 {
            return bad("count", format!("count {} must be in 1..=2^32", self.count));
        }
        for (key, side) in [("width", self.width), ("height", self.height)] {
            if let Some(v) = side.filter(|&v| !(14..=8192).contains(&v)) {
                return bad(key, format!("{key} {v} must be in 14..=8192"));
            }
        }
        for (key, f) in [("outdoor_fraction", self.outdoor_fraction), ("photo_fraction", self.photo_fraction)]
        {
            if let Some(f) = f.filter(|f| !(0.0..=1.0).contains(f)) {
                return bad(key, format!("{key} {f} must be in [0, 1]"));
            }
        }
        Ok(())
    }

    /// Resolves `textures` against a config's folder.
    pub fn resolve(&mut self, base: &Path) -> depth_core::Result<()> {
        self.textures = self.textures.as_deref().map(|t| depth_core::config::expand(t, base)).transpose()?;
        Ok(())
    }

    /// Whether the scenes are textured with crops of photos (and which folder's).
    pub fn photos(&self) -> Result<Option<PathBuf>> {
        if self.photo_fraction == Some(0.0) {
            return Ok(None);
        }
        Ok(Some(match &self.textures {
            Some(t) => t.clone(),
            None => depth_core::fixtures::fixtures_dir()?.join("unlabeled"),
        }))
    }

    pub fn open(&self) -> Result<SynthDataset> {
        let mut config = SceneConfig::default();
        config.width = self.width.unwrap_or(config.width);
        config.height = self.height.unwrap_or(config.height);
        config.outdoor_fraction = self.outdoor_fraction.unwrap_or(config.outdoor_fraction);
        config.photo_fraction = self.photo_fraction.unwrap_or(config.photo_fraction);
        let bank = match self.photos()? {
            Some(folder) => PhotoBank::from_dir(&folder)?,
            None => PhotoBank::default(),
        };
        Ok(SynthDataset { config, bank: Arc::new(bank), seed: self.seed, count: self.count })
    }
}

impl SynthDataset {
    pub fn scene(&self, index: usize) -> Scene {
        Scene::random(item_seed(self.seed, index as u64), &self.config, &self.bank)
    }
}

impl Dataset for SynthDataset {
    fn name(&self) -> &str {
        "synth"
    }
    fn len(&self) -> usize {
        self.count
    }
    fn id(&self, index: usize) -> String {
        format!("synth:{}:{index}", self.seed)
    }
    fn load(&self, index: usize) -> Result<Sample> {
        let scene = self.scene(index);
        let (image, target) = scene.render();
        Ok(Sample {
            id: self.id(index),
            image,
            target: Some(target),
            intrinsics: Some(scene.camera.intrinsics),
        })
    }
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexItem {
    pub id: String,
    pub seed: u64,
    pub kind: SceneKind,
    pub rgb: String,
    pub depth: String,
    pub intrinsics: Intrinsics,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Index {
    pub format: String,
    pub seed: u64,
    pub config: SceneConfig,
    pub items: Vec<IndexItem>,
}

/// What a run into a folder is making, written first as `partial.json` so that a rerun can
/// tell its own unfinished work from anything else.
#[derive(serde::Serialize)]
struct Plan<'a> {
    format: &'a str,
    seed: u64,
    count: usize,
    config: &'a SceneConfig,
}

/// Renders `count` scenes into `dir` (format in the module doc), calling `progress` after each.
/// Files are written atomically; the index last, so an interrupted run leaves no index. Rerun
/// with the same arguments, an interrupted run keeps its finished scenes (rendering is
/// deterministic) and finishes; a finished one is left as it is. A folder holding anything else
/// (another set, stray files) is refused, never mixed into.
pub fn write_dataset(dir: &Path, data: &SynthDataset, mut progress: impl FnMut(usize)) -> Result<Index> {
    let plan = serde_json::to_string_pretty(&Plan {
        format: FORMAT,
        seed: data.seed,
        count: data.count,
        config: &data.config,
    })
    .expect("plan serialises");
    let (partial, index_path) = (dir.join("partial.json"), dir.join("index.json"));
    let refuse = |what: String| {
        Err(CoreError::Config {
            path: dir.into(),
            reason: format!("{what}; write into an empty or new folder, or delete this one"),
        }
        .into())
    };
    if index_path.exists() {
        let done = SynthFolder::open(dir)?;
        let same = done.index.seed == data.seed
            && done.index.items.len() == data.count
            && serde_json::to_value(&done.index.config).ok() == serde_json::to_value(&data.config).ok();
        if same {
            progress(data.count);
            return Ok(done.index);
        }
        return refuse(format!(
            "it holds a finished synthetic set of {} scenes (seed {}) made with other arguments",
            done.index.items.len(),
            done.index.seed
        ));
    }
    match std::fs::read_to_string(&partial) {
        Ok(text) if text == plan => {}
        Ok(_) => return refuse("it holds an unfinished synthetic set made with other arguments".into()),
        Err(_) => {
            let stray = ["rgb", "depth"]
                .iter()
                .any(|sub| std::fs::read_dir(dir.join(sub)).is_ok_and(|mut d| d.next().is_some()));
            if stray {
                return refuse(
                    "its rgb/ or depth/ already hold files that no run of this command claims".into(),
                );
            }
        }
    }
    for sub in ["rgb", "depth"] {
        std::fs::create_dir_all(dir.join(sub)).map_err(|e| CoreError::write(dir.join(sub), e))?;
    }
    depth_core::atomic::write_atomic(&partial, |w| w.write_all(plan.as_bytes()))?;
    let mut items = Vec::with_capacity(data.count);
    for i in 0..data.count {
        let scene = data.scene(i);
        let id = format!("{i:06}");
        let (rgb, dpath) = (format!("rgb/{id}.png"), format!("depth/{id}.npy"));
        // each file is written atomically, so one that exists is complete
        if !(dir.join(&rgb).is_file() && dir.join(&dpath).is_file()) {
            let (image, depth) = scene.render();
            depth_core::atomic::write_atomic(&dir.join(&rgb), |w| {
                let mut buf = Vec::new();
                image
                    .write_to(&mut std::io::Cursor::new(&mut buf), image::ImageFormat::Png)
                    .map_err(std::io::Error::other)?;
                w.write_all(&buf)
            })?;
            depth_core::atomic::write_atomic(&dir.join(&dpath), |w| {
                depth_core::npy::write_f32(w, &[depth.height as u64, depth.width as u64], &depth.values)
            })?;
        }
        items.push(IndexItem {
            id,
            seed: item_seed(data.seed, i as u64),
            kind: scene.kind,
            rgb,
            depth: dpath,
            intrinsics: scene.camera.intrinsics,
        });
        progress(i + 1);
    }
    let index = Index { format: FORMAT.into(), seed: data.seed, config: data.config.clone(), items };
    let json = serde_json::to_string_pretty(&index).expect("index serialises");
    depth_core::atomic::write_atomic(&index_path, |w| w.write_all(json.as_bytes()))?;
    std::fs::remove_file(&partial).map_err(|e| CoreError::write(&partial, e))?;
    Ok(index)
}

/// A synthetic dataset written by [`write_dataset`].
pub struct SynthFolder {
    pub root: PathBuf,
    pub index: Index,
}

impl SynthFolder {
    pub fn open(root: &Path) -> Result<Self> {
        let path = root.join("index.json");
        let text = depth_core::read::text(&path)?;
        let index: Index =
            serde_json::from_str(&text).map_err(|e| CoreError::format(&path, "synth index", e))?;
        if index.format != FORMAT {
            return Err(CoreError::format(
                &path,
                "synth index",
                format!("format '{}', expected '{FORMAT}'", index.format),
            )
            .into());
        }
        Ok(Self { root: root.into(), index })
    }
}

impl Dataset for SynthFolder {
    fn name(&self) -> &str {
        "synth"
    }
    fn len(&self) -> usize {
        self.index.items.len()
    }
    fn id(&self, index: usize) -> String {
        self.root.join(&self.index.items[index].rgb).display().to_string()
    }
    fn load(&self, index: usize) -> Result<Sample> {
        let item = &self.index.items[index];
        let image = crate::sample::read_rgb(&self.root.join(&item.rgb))?;
        let dpath = self.root.join(&item.depth);
        let (shape, values) = depth_core::npy::read_f32(&dpath)?;
        let [h, w] = shape[..] else {
            return Err(CoreError::format(&dpath, "npy", format!("shape {shape:?}, expected (H, W)")).into());
        };
        let target = Target::depth(w as u32, h as u32, values);
        Sample { id: self.id(index), image, target: Some(target), intrinsics: Some(item.intrinsics) }
            .checked()
    }
}
