//! The benchmark cases, their names, and how ours runs each one (in a child process of its own,
//! so that its peak RSS is its own). Every case times whole repetitions after warm-ups; a
//! repetition handles `items` images (or steps, scenes, products).

use crate::error::{Result, XtaskError};
use candle_core::{DType, Device, Tensor};
use depth_core::Precision;
use depth_data::{ImageItem, list_images};
use depth_models::{Encoder, ModelConfig};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// One thing measured.
#[derive(Clone, Debug, PartialEq)]
pub enum Case {
    /// A square f32 matmul of side n through `gemm` (the crate candle's matmul runs on): the
    /// machine's peak that the other cases are compared against.
    Sgemm { n: usize },
    /// Forward pass, random weights (speed does not depend on their values).
    Infer { encoder: Encoder, h: usize, w: usize, batch: usize },
    /// One step of the student: forward, L_ssi + 2·L_gm, backward, AdamW over the groups.
    Train { encoder: Encoder, size: usize, batch: usize },
    /// The training loader over the fixture photos: decode, resize, crop to 518, augment.
    Loader,
    /// Procedural scenes with exact depth at 518×518.
    Synth,
    /// `xtask pseudo-label`'s labeller over fixture photos with the official-layout weights.
    PseudoLabel { encoder: Encoder, size: usize },
}

impl Case {
    /// The cases a run without `--cases` measures: [`Case::cpu`] on the CPU, [`Case::gpu`] on CUDA.
    pub fn default_for(cuda: bool) -> Vec<Case> {
        if cuda { Case::gpu() } else { Case::cpu() }
    }

    /// Every case either set has (what `--cases` prefixes and `--list` see), in order.
    pub fn all() -> Vec<Case> {
        let mut v = Case::cpu();
        v.extend(Case::gpu().into_iter().filter(|c| !Case::cpu().contains(c)));
        v
    }

    /// The GPU targets' shapes (issue 31): ViT-S/B/L at 518², batch 1 and 16, and a bf16-sized
    /// training batch of the student; no fixture-reading case (the device has no fixtures).
    pub fn gpu() -> Vec<Case> {
        let mut v = vec![Case::Sgemm { n: 2048 }];
        for encoder in [Encoder::Vits, Encoder::Vitb, Encoder::Vitl] {
            for batch in [1, 16] {
                v.push(Case::Infer { encoder, h: 518, w: 518, batch });
            }
        }
        v.push(Case::Train { encoder: Encoder::Vits, size: 518, batch: 16 });
        v
    }

    /// The CPU cases, in the order they run.
    pub fn cpu() -> Vec<Case> {
        let mut v = vec![Case::Sgemm { n: 2048 }];
        for encoder in [Encoder::Vits, Encoder::Vitb] {
            for (h, w) in [(518, 518), (518, 784)] {
                for batch in [1, 4] {
                    v.push(Case::Infer { encoder, h, w, batch });
                }
            }
        }
        v.push(Case::Train { encoder: Encoder::Vits, size: 266, batch: 2 });
        v.push(Case::Train { encoder: Encoder::Vits, size: 518, batch: 1 });
        v.extend([Case::Loader, Case::Synth, Case::PseudoLabel { encoder: Encoder::Vits, size: 518 }]);
        v
    }

    pub fn name(&self) -> String {
        match self {
            Case::Sgemm { n } => format!("sgemm/{n}"),
            Case::Infer { encoder, h, w, batch } => format!("infer/{}/{h}x{w}/b{batch}", encoder.name()),
            Case::Train { encoder, size, batch } => format!("train/{}/{size}/b{batch}", encoder.name()),
            Case::Loader => "loader/photos_518".into(),
            Case::Synth => "synth/scene_518".into(),
            Case::PseudoLabel { encoder, size } => format!("pseudo-label/{}/{size}", encoder.name()),
        }
    }

    /// The cases of `all` that `patterns` name: a full name selects that case alone
    /// (`infer/vits/518x518/b1` is also a prefix of `…/b16`), anything else every case it prefixes.
    pub fn select(all: &[Case], patterns: &[String]) -> Vec<Case> {
        let exact = |p: &str| all.iter().any(|c| c.name() == p);
        let picks = |c: &Case, p: &str| if exact(p) { c.name() == p } else { c.name().starts_with(p) };
        all.iter().filter(|c| patterns.iter().any(|p| picks(c, p))).cloned().collect()
    }

    pub fn parse(name: &str) -> Option<Case> {
        Case::all().into_iter().find(|c| c.name() == name)
    }

    /// The PyTorch implementations that do the same work (benches/torch_bench.py `--impl`).
    pub fn twins(&self) -> &'static [&'static str] {
        match self {
            Case::Sgemm { .. } => &["torch"],
            Case::Infer { .. } | Case::Train { .. } => &["official", "transformers"],
            Case::PseudoLabel { .. } => &["official"],
            Case::Loader | Case::Synth => &[],
        }
    }

    /// Repetitions and warm-ups when not given: fewer for the long cases.
    pub fn default_reps(&self) -> (usize, usize) {
        match self {
            Case::Sgemm { .. } | Case::Synth => (10, 2),
            Case::Infer { encoder: Encoder::Vits, batch: 1, .. } => (7, 1),
            Case::Infer { .. } | Case::Train { .. } => (3, 1),
            Case::Loader | Case::PseudoLabel { .. } => (2, 1),
        }
    }

    /// Whether the case runs depth-core's ops (and so the fused CUDA kernels when they are on).
    pub fn runs_kernels(&self) -> bool {
        matches!(self, Case::Infer { .. } | Case::Train { .. } | Case::PseudoLabel { .. })
    }

    /// Whether the case reads the fixtures (photos, official-layout weights).
    pub fn needs_fixtures(&self) -> bool {
        matches!(self, Case::Loader | Case::Synth | Case::PseudoLabel { .. })
    }

    pub fn unit(&self) -> &'static str {
        match self {
            Case::Sgemm { .. } => "products",
            Case::Infer { .. } | Case::Train { .. } | Case::Loader | Case::PseudoLabel { .. } => "images",
            Case::Synth => "scenes",
        }
    }
}

/// What one implementation measured for one case (the child's last stdout line, for ours and
/// for the PyTorch twins alike).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Measurement {
    pub times_s: Vec<f64>,
    /// Items per repetition.
    pub items: usize,
    /// FLOPs per repetition where they are counted (matmuls and convolutions).
    pub flops: Option<f64>,
    pub peak_rss_bytes: u64,
    #[serde(default)]
    pub versions: Option<serde_json::Value>,
}

/// The inputs a case reads from the fixtures (photos, official-layout weights).
pub struct Inputs {
    pub photos: PathBuf,
    pub weights: PathBuf,
    /// Photos per repetition of the pseudo-label case.
    pub images: usize,
}

impl Inputs {
    pub fn from_fixtures(images: usize) -> Result<Self> {
        let dir = depth_core::fixtures::fixtures_dir()?;
        Ok(Self { photos: dir.join("unlabeled"), weights: dir.join("weights/da2_vits_random.pth"), images })
    }

    /// The first `images` photos by relative path, as the labeller lists a folder (ours and
    /// the twin read the same files).
    pub fn photo_items(&self) -> Result<Vec<ImageItem>> {
        let mut items = list_images(&self.photos)?;
        items.truncate(self.images);
        Ok(items)
    }

    fn photo_paths(&self) -> Result<Vec<PathBuf>> {
        Ok(self.photo_items()?.into_iter().map(|i| i.path).collect())
    }
}

fn timed(reps: usize, warmup: usize, mut step: impl FnMut() -> Result<()>) -> Result<Vec<f64>> {
    for _ in 0..warmup {
        step()?;
    }
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            step()?;
            Ok(t.elapsed().as_secs_f64())
        })
        .collect()
}

fn peak_rss_bytes() -> u64 {
    // SAFETY: getrusage writes into the zeroed struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    usage.ru_maxrss.max(0) as u64 * 1024
}

/// Runs one case of ours in this process.
pub fn run_ours(
    case: &Case,
    reps: usize,
    warmup: usize,
    (device, precision): (&Device, Precision),
    inputs: &Inputs,
) -> Result<Measurement> {
    let (times_s, items, flops) = match case {
        Case::Sgemm { n } => {
            let a = Tensor::randn(0f32, 1.0, (*n, *n), device)?;
            let b = Tensor::randn(0f32, 1.0, (*n, *n), device)?;
            let times = timed(reps, warmup, || {
                a.matmul(&b)?.device().synchronize()?;
                Ok(())
            })?;
            (times, 1, Some(2.0 * (*n as f64).powi(3)))
        }
        Case::Infer { encoder, h, w, batch } => {
            let cfg = ModelConfig::official(*encoder);
            // Initialised in a VarMap, then as plain tensors, as loaded weights are: a forward
            // over variables would keep every intermediate alive for a backward.
            let vm = candle_nn::VarMap::new();
            depth_models::DepthAnythingV2::new(
                &cfg,
                candle_nn::VarBuilder::from_varmap(&vm, DType::F32, device),
            )?;
            let weights = vm
                .data()
                .lock()
                .expect("not poisoned")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_detached_tensor()))
                .collect();
            let model = depth_models::DepthAnythingV2::new(
                &cfg,
                candle_nn::VarBuilder::from_tensors(weights, DType::F32, device),
            )?
            .with_precision(precision);
            let x = Tensor::randn(0f32, 1.0, (*batch, 3, *h, *w), device)?;
            let times = timed(reps, warmup, || {
                model.forward(&x)?.device().synchronize()?;
                Ok(())
            })?;
            (times, *batch, Some(depth_models::forward_flops(&cfg, *batch, *h, *w) as f64))
        }
        Case::Train { encoder, size, batch } => {
            // a step's FLOPs: the forward's and twice them for the backward (model FLOP utilisation)
            let flops = 3.0
                * depth_models::forward_flops(&ModelConfig::official(*encoder), *batch, *size, *size) as f64;
            (train_step(*encoder, (*size, *batch), (reps, warmup), device, precision)?, *batch, Some(flops))
        }
        Case::Loader => {
            use depth_data::{Cursor, Dataset, Loader, LoaderConfig, Source};
            let folder = std::sync::Arc::new(depth_data::formats::folder::ImageFolder::new(
                "unlabeled",
                &inputs.photos,
            )?);
            let n = folder.len();
            let source = Source { dataset: folder, ratio: 1.0, strong: false, pseudo: false };
            let workers = rayon::current_num_threads();
            let cfg = LoaderConfig { batch_size: 1, workers, prefetch: 4, ..LoaderConfig::default() };
            let loader = Loader::new(vec![source], cfg)?;
            let times = timed(reps, warmup, || {
                for batch in loader.iter(Cursor::default()) {
                    batch?;
                }
                Ok(())
            })?;
            (times, n, None)
        }
        Case::Synth => {
            use depth_data::Dataset;
            use depth_data::synth::{PhotoBank, SceneConfig, SynthDataset};
            let bank = std::sync::Arc::new(PhotoBank::from_paths(&inputs.photo_paths()?)?);
            let data = SynthDataset { config: SceneConfig::default(), bank, seed: 0, count: usize::MAX };
            let mut i = 0;
            let per_rep = 4;
            let times = timed(reps, warmup, || {
                for _ in 0..per_rep {
                    i += 1;
                    data.load(i)?;
                }
                Ok(())
            })?;
            (times, per_rep, None)
        }
        Case::PseudoLabel { encoder, size } => {
            (pseudo_label(*encoder, *size, (reps, warmup), (device, precision), inputs)?, inputs.images, None)
        }
    };
    Ok(Measurement { times_s, items, flops, peak_rss_bytes: peak_rss_bytes(), versions: None })
}

fn train_step(
    encoder: Encoder,
    (n, b): (usize, usize),
    (reps, warmup): (usize, usize),
    dev: &Device,
    precision: Precision,
) -> Result<Vec<f64>> {
    use depth_models::{WeightsInit, build_trainable, parameters};
    use depth_train::{AdamW, Grads, OptimConfig, groups_for};
    let t = build_trainable(&ModelConfig::official(encoder), &WeightsInit::Scratch, 0, dev)?;
    let model = t.model.with_precision(precision);
    let params = parameters(&t.varmap)?;
    let mut optim = AdamW::new(groups_for(&params, &OptimConfig::default()))?;
    let trained = optim.params();
    let x = Tensor::randn(0f32, 1.0, (b, 3, n, n), dev)?;
    let target = (Tensor::rand(0f32, 1.0, (b, n, n), dev)? + 0.1)?;
    let mask = Tensor::ones((b, n, n), DType::F32, dev)?;
    let objective = depth_losses::Objective::default();
    timed(reps, warmup, || {
        let loss = objective.loss(&model.forward(&x)?, &target, &mask, &vec![false; b])?;
        optim.step(&Grads::from_store(&loss.backward()?, &trained))?;
        Ok(())
    })
}

fn pseudo_label(
    encoder: Encoder,
    size: usize,
    (reps, warmup): (usize, usize),
    (device, precision): (&Device, Precision),
    inputs: &Inputs,
) -> Result<Vec<f64>> {
    use depth_train::pseudo_label::{Labeller, Shard};
    let dir = tempfile_dir()?;
    let items = inputs.photo_items()?;
    let model = depth_models::load_model(&inputs.weights.as_path().into(), device)?;
    let labeller = Labeller {
        estimator: depth_models::DepthEstimator::new(model, device.clone())
            .with_input_size(size)
            .with_precision(precision),
        teacher: depth_data::formats::pseudo::TeacherId {
            name: encoder.name().into(),
            sha256: String::new(),
            input_size: size,
            precision,
        },
        batch: 4,
    };
    let mut run = 0;
    let result = timed(reps, warmup, || {
        run += 1;
        let store = dir.join(format!("store{run}"));
        let s = labeller.run(&items, Shard::ALL, &store, &depth_core::Silent)?;
        if !s.failed.is_empty() || s.labelled != items.len() {
            return Err(XtaskError::Bench { reason: format!("pseudo-label: {:?}", s.failed) });
        }
        Ok(())
    });
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// A fresh private folder under the system temp dir for one child process.
fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("depth-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|source| depth_core::CoreError::write(&dir, source))?;
    Ok(dir)
}

/// The list file of the photos the pseudo-label twin reads (written next to the results).
pub fn write_photo_list(inputs: &Inputs, path: &Path) -> Result<()> {
    let text: String = inputs.photo_paths()?.iter().map(|p| format!("{}\n", p.display())).collect();
    std::fs::write(path, text).map_err(|source| depth_core::CoreError::write(path, source).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gpu_set_has_the_targets_shapes_and_the_cpu_set_stays() {
        let gpu: Vec<String> = Case::default_for(true).iter().map(Case::name).collect();
        for e in ["vits", "vitb", "vitl"] {
            for b in [1, 16] {
                assert!(gpu.contains(&format!("infer/{e}/518x518/b{b}")), "{e} b{b} missing from {gpu:?}");
            }
        }
        assert!(gpu.contains(&"train/vits/518/b16".to_string()));
        // the device has no fixtures: no case that reads them
        assert!(Case::default_for(true).iter().all(|c| !c.needs_fixtures()));
        // the CPU's default set is the CPU set, without the large GPU shapes
        let cpu = Case::default_for(false);
        assert_eq!(cpu, Case::cpu());
        assert!(cpu.iter().all(|c| !c.name().contains("vitl") && !c.name().ends_with("/b16")));
        // a full name selects that case alone, a prefix every case it starts
        let names = |p: &[&str]| {
            let p: Vec<String> = p.iter().map(|s| s.to_string()).collect();
            Case::select(&Case::all(), &p).iter().map(Case::name).collect::<Vec<_>>()
        };
        assert_eq!(names(&["infer/vits/518x518/b1"]), ["infer/vits/518x518/b1"]);
        assert_eq!(names(&["infer/vitl/518x518/b1"]), ["infer/vitl/518x518/b1"]);
        assert_eq!(names(&["infer/vitl"]), ["infer/vitl/518x518/b1", "infer/vitl/518x518/b16"]);
        // every case of either set is found by its name
        for c in Case::cpu().into_iter().chain(Case::gpu()) {
            assert_eq!(Case::parse(&c.name()), Some(c));
        }
    }
}
