//! A VarBuilder backend over a tensor map that records every problem instead of stopping at the
//! first: building a model through it, then `finish`, yields one error listing all missing,
//! unexpected and mis-shaped tensors — never a silent partial load. With a VarMap attached, the
//! loaded tensors become trainable variables.
//!
//! Partial loading (a pretrained encoder under a new head) names the tensors to create fresh:
//! those are initialised from the model's init hint (as PyTorch would build the module) with a
//! generator seeded by (seed, tensor name), so a build is the same on every run and in any
//! order; file tensors under those names are listed as ignored, not used.

use crate::error::{CoreError, Result};
use crate::weights::TensorMap;
use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::init::NormalOrUniform;
use candle_nn::{Init, VarBuilder, VarMap, var_builder::SimpleBackend};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Report {
    used: BTreeSet<String>,
    fresh: BTreeSet<String>,
    missing: Vec<(String, Shape)>,
    misshaped: Vec<(String, Shape, Shape)>,
}

/// Which tensors are created fresh, and the seed of their generators.
struct Fresh {
    seed: u64,
    which: Box<dyn Fn(&str) -> bool + Send + Sync>,
}

struct Inner {
    source: String,
    tensors: TensorMap,
    varmap: Option<VarMap>,
    fresh: Option<Fresh>,
    report: Mutex<Report>,
}

/// What a build took: tensors loaded from the source, created fresh, and source tensors left
/// out on purpose (under fresh names).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadSummary {
    pub source: String,
    pub loaded: usize,
    pub fresh: Vec<String>,
    pub ignored: Vec<String>,
}

/// Tensors from one named source (a file path or hub id), loaded strictly.
#[derive(Clone)]
pub struct StrictWeights(Arc<Inner>);

impl StrictWeights {
    pub fn new(source: impl Into<String>, tensors: TensorMap) -> Self {
        Self::with_varmap(source, tensors, None)
    }

    /// As `new`, but every tensor the model takes is registered in `varmap` as a `Var`.
    pub fn trainable(source: impl Into<String>, tensors: TensorMap, varmap: &VarMap) -> Self {
        Self::with_varmap(source, tensors, Some(varmap.clone()))
    }

    fn with_varmap(source: impl Into<String>, tensors: TensorMap, varmap: Option<VarMap>) -> Self {
        let inner = Inner { source: source.into(), tensors, varmap, fresh: None, report: Mutex::default() };
        Self(Arc::new(inner))
    }

    /// Tensors whose name satisfies `which` are initialised fresh from the model's init hints
    /// (seeded by `seed` and the name) instead of read; source tensors under such names are
    /// ignored. Call before building.
    pub fn with_fresh(self, seed: u64, which: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        let mut inner = Arc::try_unwrap(self.0).unwrap_or_else(|_| panic!("with_fresh after sharing"));
        inner.fresh = Some(Fresh { seed, which: Box::new(which) });
        Self(Arc::new(inner))
    }

    fn is_fresh(&self, name: &str) -> bool {
        self.0.fresh.as_ref().is_some_and(|f| (f.which)(name))
    }

    /// What the last build took (call after [`build`](Self::build)).
    pub fn summary(&self) -> LoadSummary {
        let r = self.0.report.lock().expect("weight report lock");
        let mut ignored: Vec<String> = self.0.tensors.keys().filter(|k| self.is_fresh(k)).cloned().collect();
        ignored.sort();
        LoadSummary {
            source: self.0.source.clone(),
            loaded: r.used.len(),
            fresh: r.fresh.iter().cloned().collect(),
            ignored,
        }
    }

    /// Builds a model with `f` and checks that it took exactly the tensors the source has.
    pub fn build<M>(
        &self,
        dtype: DType,
        device: &Device,
        f: impl FnOnce(VarBuilder) -> candle_core::Result<M>,
    ) -> Result<M> {
        let vb = VarBuilder::from_backend(Box::new(self.clone()), dtype, device.clone());
        let model = f(vb)?;
        self.finish()?;
        Ok(model)
    }

    fn finish(&self) -> Result<()> {
        let r = self.0.report.lock().expect("weight report lock");
        let mut unexpected: Vec<_> =
            self.0.tensors.keys().filter(|k| !r.used.contains(*k) && !self.is_fresh(k)).cloned().collect();
        unexpected.sort();
        if r.missing.is_empty() && r.misshaped.is_empty() && unexpected.is_empty() {
            return Ok(());
        }
        let mut report = String::new();
        let mut section = |title: &str, lines: Vec<String>| {
            if !lines.is_empty() {
                report += &format!("  {title} ({}):\n", lines.len());
                for l in lines.iter().take(20) {
                    report += &format!("    {l}\n");
                }
                if lines.len() > 20 {
                    report += &format!("    … and {} more\n", lines.len() - 20);
                }
            }
        };
        section(
            "missing from the file",
            r.missing.iter().map(|(k, s)| format!("{k}: model expects {s:?}")).collect(),
        );
        section(
            "wrong shape",
            r.misshaped
                .iter()
                .map(|(k, want, got)| format!("{k}: model expects {want:?}, file has {got:?}"))
                .collect(),
        );
        section(
            "in the file but not used by the model",
            unexpected.iter().map(|k| format!("{k}: {:?}", self.0.tensors[k].shape())).collect(),
        );
        Err(CoreError::WeightMismatch { source_name: self.0.source.clone(), report })
    }
}

impl SimpleBackend for StrictWeights {
    fn get(
        &self,
        s: Shape,
        name: &str,
        hint: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut r = self.0.report.lock().expect("weight report lock");
        let tensor = match self.0.tensors.get(name) {
            _ if self.is_fresh(name) => {
                let seed = self.0.fresh.as_ref().map_or(0, |f| f.seed);
                r.fresh.insert(name.to_string());
                fresh_tensor(&hint, &s, seed, name)?.to_dtype(dtype)?.to_device(dev)?
            }
            None => {
                r.missing.push((name.to_string(), s.clone()));
                return Tensor::zeros(s, dtype, dev);
            }
            Some(t) if t.shape() != &s => {
                r.misshaped.push((name.to_string(), s.clone(), t.shape().clone()));
                r.used.insert(name.to_string());
                return Tensor::zeros(s, dtype, dev);
            }
            Some(t) => t.to_dtype(dtype)?.to_device(dev)?,
        };
        if !r.fresh.contains(name) {
            r.used.insert(name.to_string());
        }
        match &self.0.varmap {
            None => Ok(tensor),
            Some(vm) => {
                let var = Var::from_tensor(&tensor)?;
                vm.data().lock().expect("varmap lock").insert(name.to_string(), var.clone());
                Ok(var.as_tensor().clone())
            }
        }
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        match self.0.tensors.get(name) {
            Some(t) => {
                self.0.report.lock().expect("weight report lock").used.insert(name.to_string());
                t.to_dtype(dtype)?.to_device(dev)
            }
            None => candle_core::bail!("{}: no tensor '{name}'", self.0.source),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.0.tensors.contains_key(name)
    }
}

/// A stable 64-bit seed of (seed, name): FNV-1a of the name, mixed with the seed (SplitMix64).
fn name_seed(seed: u64, name: &str) -> u64 {
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    let mut z = seed ^ h.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A float32 CPU tensor drawn as the init hint says, from the generator of (seed, name).
fn fresh_tensor(hint: &Init, shape: &Shape, seed: u64, name: &str) -> candle_core::Result<Tensor> {
    let n = shape.elem_count();
    let mut rng = ChaCha8Rng::seed_from_u64(name_seed(seed, name));
    let normal = |rng: &mut ChaCha8Rng, mean: f64, std: f64| -> Vec<f32> {
        (0..n).map(|_| (mean + std * rng.sample::<f64, _>(rand_distr::StandardNormal)) as f32).collect()
    };
    let uniform = |rng: &mut ChaCha8Rng, lo: f64, up: f64| -> Vec<f32> {
        (0..n).map(|_| rng.random_range(lo..up) as f32).collect()
    };
    let values = match *hint {
        Init::Const(v) => vec![v as f32; n],
        Init::Randn { mean, stdev } => normal(&mut rng, mean, stdev),
        Init::Uniform { lo, up } if lo < up => uniform(&mut rng, lo, up),
        Init::Uniform { lo, .. } => vec![lo as f32; n],
        Init::Kaiming { dist, fan, non_linearity } => {
            let std = non_linearity.gain() / (fan.for_shape(shape).max(1) as f64).sqrt();
            match dist {
                NormalOrUniform::Uniform => uniform(&mut rng, -(3f64.sqrt()) * std, 3f64.sqrt() * std),
                NormalOrUniform::Normal => normal(&mut rng, 0.0, std),
            }
        }
    };
    Tensor::from_vec(values, shape, &Device::Cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: &[usize]) -> Tensor {
        Tensor::ones(shape, DType::F32, &Device::Cpu).unwrap()
    }

    fn model(vb: VarBuilder) -> candle_core::Result<(Tensor, Tensor)> {
        Ok((vb.get((2, 3), "a.weight")?, vb.get(3, "a.bias")?))
    }

    #[test]
    fn exact_match_loads() {
        let m: TensorMap = [("a.weight".into(), t(&[2, 3])), ("a.bias".into(), t(&[3]))].into();
        let (w, _) = StrictWeights::new("mem", m).build(DType::F64, &Device::Cpu, model).unwrap();
        assert_eq!(w.dtype(), DType::F64);
    }

    #[test]
    fn every_problem_is_reported_with_key_and_shapes() {
        let m: TensorMap = [("a.weight".into(), t(&[3, 2])), ("extra".into(), t(&[1]))].into();
        let err = StrictWeights::new("ckpt.pth", m).build(DType::F32, &Device::Cpu, model).unwrap_err();
        let msg = err.to_string();
        for needle in ["ckpt.pth", "a.bias", "[3]", "a.weight", "[2, 3]", "[3, 2]", "extra"] {
            assert!(msg.contains(needle), "'{needle}' not in: {msg}");
        }
    }

    #[test]
    fn trainable_registers_vars() {
        let m: TensorMap = [("a.weight".into(), t(&[2, 3])), ("a.bias".into(), t(&[3]))].into();
        let vm = VarMap::new();
        let (w, _) = StrictWeights::trainable("mem", m, &vm).build(DType::F32, &Device::Cpu, model).unwrap();
        assert_eq!(vm.all_vars().len(), 2);
        let grads = w.sum_all().unwrap().backward().unwrap();
        assert!(grads.get(&w).is_some());
    }

    fn hinted(vb: VarBuilder) -> candle_core::Result<(Tensor, Tensor)> {
        let w = vb.get_with_hints((200, 50), "a.weight", Init::Randn { mean: 0.0, stdev: 0.02 })?;
        let b = vb.get_with_hints(50, "a.bias", Init::Uniform { lo: -0.5, up: 0.5 })?;
        Ok((w, b))
    }

    #[test]
    fn fresh_tensors_follow_their_hints_and_are_seeded_by_name() {
        let m: TensorMap = [("a.weight".into(), t(&[200, 50])), ("a.bias".into(), t(&[50]))].into();
        let build = |seed| {
            let vm = VarMap::new();
            let sw =
                StrictWeights::trainable("ckpt", m.clone(), &vm).with_fresh(seed, |k| k.ends_with("weight"));
            let (w, b) = sw.build(DType::F32, &Device::Cpu, hinted).unwrap();
            (w.flatten_all().unwrap().to_vec1::<f32>().unwrap(), b.to_vec1::<f32>().unwrap(), sw.summary())
        };
        let (w, b, summary) = build(7);
        assert_eq!(b, vec![1.0; 50], "the bias is loaded");
        let mean = w.iter().map(|&v| v as f64).sum::<f64>() / w.len() as f64;
        let std = (w.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / w.len() as f64).sqrt();
        assert!(mean.abs() < 1e-3 && (std - 0.02).abs() < 1e-3, "mean {mean} std {std}");
        assert_eq!(summary.loaded, 1);
        assert_eq!(summary.fresh, vec!["a.weight".to_string()]);
        assert_eq!(summary.ignored, vec!["a.weight".to_string()]);
        assert_eq!(build(7).0, w, "same seed, same tensor");
        assert_ne!(build(8).0, w, "another seed, another tensor");
    }
}
