//! A VarBuilder backend over a tensor map that records every problem instead of stopping at the
//! first: building a model through it, then `finish`, yields one error listing all missing,
//! unexpected and mis-shaped tensors — never a silent partial load. With a VarMap attached, the
//! loaded tensors become trainable variables.

use crate::error::{CoreError, Result};
use crate::weights::TensorMap;
use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::{Init, VarBuilder, VarMap, var_builder::SimpleBackend};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Report {
    used: BTreeSet<String>,
    missing: Vec<(String, Shape)>,
    misshaped: Vec<(String, Shape, Shape)>,
}

struct Inner {
    source: String,
    tensors: TensorMap,
    varmap: Option<VarMap>,
    report: Mutex<Report>,
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
        let inner = Inner { source: source.into(), tensors, varmap, report: Mutex::default() };
        Self(Arc::new(inner))
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
            self.0.tensors.keys().filter(|k| !r.used.contains(*k)).cloned().collect();
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
    fn get(&self, s: Shape, name: &str, _h: Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let mut r = self.0.report.lock().expect("weight report lock");
        let tensor = match self.0.tensors.get(name) {
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
        r.used.insert(name.to_string());
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
}
