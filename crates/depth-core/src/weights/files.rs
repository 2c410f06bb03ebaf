//! Reading and writing weight files.

use crate::error::{CoreError, Result};
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// Tensors by checkpoint key.
pub type TensorMap = HashMap<String, Tensor>;

/// Reads an official PyTorch checkpoint (`torch.save` of a state dict, optionally wrapped under
/// `model` or `state_dict`; a DistributedDataParallel `module.` prefix is removed).
pub fn load_pth(path: &Path) -> Result<TensorMap> {
    let bad = |reason: String| CoreError::BadWeightFile { path: path.into(), format: "PyTorch .pth", reason };
    if !path.is_file() {
        return Err(CoreError::Io {
            path: path.into(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        });
    }
    let mut tensors = Vec::new();
    for key in [None, Some("model"), Some("state_dict")] {
        tensors = candle_core::pickle::read_all_with_key(path, key).map_err(|e| bad(e.to_string()))?;
        if !tensors.is_empty() {
            break;
        }
    }
    if tensors.is_empty() {
        return Err(bad("no tensors found (expected a state dict)".into()));
    }
    Ok(tensors
        .into_iter()
        .map(|(k, v)| (k.strip_prefix("module.").map(str::to_string).unwrap_or(k), v))
        .collect())
}

/// Reads a safetensors file onto the CPU.
pub fn load_safetensors(path: &Path) -> Result<TensorMap> {
    let bytes = std::fs::read(path).map_err(|source| CoreError::Io { path: path.into(), source })?;
    candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).map_err(|e| CoreError::BadWeightFile {
        path: path.into(),
        format: "safetensors",
        reason: e.to_string(),
    })
}

/// Reads `.pth`/`.pt`/`.bin` as PyTorch pickles and anything else as safetensors.
pub fn load_weights(path: &Path) -> Result<TensorMap> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("pth" | "pt" | "bin" | "ckpt") => load_pth(path),
        _ => load_safetensors(path),
    }
}

/// Writes tensors as safetensors, atomically.
pub fn save_safetensors(tensors: &TensorMap, path: &Path) -> Result<()> {
    let bytes = safetensors::serialize(tensors.iter().map(|(k, v)| (k.as_str(), v)), None).map_err(|e| {
        CoreError::BadWeightFile { path: path.into(), format: "safetensors", reason: e.to_string() }
    })?;
    crate::atomic::write_atomic(path, |w| w.write_all(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safetensors_round_trip_and_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.safetensors");
        let t = Tensor::arange(0f32, 6.0, &Device::Cpu).unwrap().reshape((2, 3)).unwrap();
        let m: TensorMap = [("a.weight".to_string(), t.clone())].into();
        save_safetensors(&m, &p).unwrap();
        let back = load_weights(&p).unwrap();
        assert_eq!(back["a.weight"].to_vec2::<f32>().unwrap(), t.to_vec2::<f32>().unwrap());

        let junk = dir.path().join("junk.pth");
        std::fs::write(&junk, b"not a checkpoint").unwrap();
        let err = load_weights(&junk).unwrap_err().to_string();
        assert!(err.contains("junk.pth"), "{err}");
        let err = load_weights(&dir.path().join("missing.pth")).unwrap_err().to_string();
        assert!(err.contains("missing.pth"), "{err}");
    }
}
