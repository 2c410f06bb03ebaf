//! Reading and writing weight files.

use super::pth::load_pth;
use crate::error::{CoreError, Result};
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// Tensors by checkpoint key.
pub type TensorMap = HashMap<String, Tensor>;

/// Reads a safetensors file onto the CPU.
pub fn load_safetensors(path: &Path) -> Result<TensorMap> {
    let bytes = crate::read::bytes(path, u64::MAX)?;
    candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).map_err(|e| CoreError::Format {
        path: path.into(),
        format: "safetensors weights",
        reason: e.to_string(),
    })
}

/// Reads `.pth`/`.pt`/`.bin` as PyTorch pickles and anything else as safetensors. NaN or
/// infinite weights load (a checkpoint may be inspected), with a warning naming them.
pub fn load_weights(path: &Path) -> Result<TensorMap> {
    let tensors = match path.extension().and_then(|e| e.to_str()) {
        Some("pth" | "pt" | "bin" | "ckpt") => load_pth(path)?,
        _ => load_safetensors(path)?,
    };
    let bad = non_finite(&tensors)?;
    if let Some((key, n)) = bad.first() {
        let total: usize = bad.iter().map(|b| b.1).sum();
        tracing::warn!(
            "{}: {total} NaN or infinite weights in {} tensors (first: {key}, {n}); the outputs they reach will be NaN",
            path.display(),
            bad.len()
        );
    }
    Ok(tensors)
}

/// The tensors holding NaN or ±inf, with their count of such values, sorted by key.
pub fn non_finite(tensors: &TensorMap) -> Result<Vec<(String, usize)>> {
    let mut out = Vec::new();
    for (k, t) in tensors {
        if !t.dtype().is_float() {
            continue;
        }
        let v = t.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let n = v.iter().filter(|x| !x.is_finite()).count();
        if n > 0 {
            out.push((k.clone(), n));
        }
    }
    out.sort();
    Ok(out)
}

/// Writes tensors as safetensors with string metadata (may be empty), atomically.
pub fn save_safetensors(tensors: &TensorMap, metadata: &Metadata, path: &Path) -> Result<()> {
    let meta = (!metadata.is_empty()).then(|| metadata.clone());
    let bytes = safetensors::serialize(tensors.iter().map(|(k, v)| (k.as_str(), v)), meta).map_err(|e| {
        CoreError::Format { path: path.into(), format: "safetensors weights", reason: e.to_string() }
    })?;
    let bytes = canonical_safetensors(bytes);
    crate::atomic::write_atomic(path, |w| w.write_all(&bytes))
}

/// The same safetensors file with its JSON header's keys in sorted order. The safetensors crate
/// writes the metadata in `HashMap` order, which changes from process to process, so a resumed
/// run's checkpoint or label would differ in its header bytes from an uninterrupted run's. Every
/// writer of safetensors files passes its bytes through this.
pub fn canonical_safetensors(bytes: Vec<u8>) -> Vec<u8> {
    use serde_json::Value;
    use std::collections::BTreeMap;
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let mut header: BTreeMap<String, Value> =
        serde_json::from_slice(&bytes[8..8 + n]).expect("safetensors wrote a JSON header");
    if let Some(Value::Object(meta)) = header.get_mut("__metadata__") {
        let sorted: BTreeMap<String, Value> = std::mem::take(meta).into_iter().collect();
        *meta = sorted.into_iter().collect();
    }
    let mut text = serde_json::to_string(&header).expect("a JSON header serialises");
    while !text.len().is_multiple_of(8) {
        text.push(' ');
    }
    let mut out = Vec::with_capacity(8 + text.len() + bytes.len() - 8 - n);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&bytes[8 + n..]);
    out
}

/// String metadata of a safetensors file (`__metadata__`).
pub type Metadata = HashMap<String, String>;

/// The largest safetensors header read (the format's own limit is 100 MB).
const MAX_HEADER: u64 = 100_000_000;

/// The metadata of a safetensors file, read from its header alone (empty when it has none).
/// The header's claimed length is checked against the file's size before anything is read.
pub fn safetensors_metadata(path: &Path) -> Result<Metadata> {
    use std::io::Read;
    let io = |source| CoreError::Io { path: path.into(), source };
    let bad = |reason: String| CoreError::Format { path: path.into(), format: "safetensors weights", reason };
    let mut f = crate::read::open(path)?;
    let size = f.metadata().map_err(io)?.len();
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(|_| bad(format!("{size} bytes: too short for a header")))?;
    let n = u64::from_le_bytes(len);
    if n > MAX_HEADER || n > size - 8 {
        return Err(bad(format!("header claims {n} bytes but the file has {size}")));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).map_err(io)?;
    let json: serde_json::Value = serde_json::from_slice(&header).map_err(|e| bad(format!("header: {e}")))?;
    let Some(meta) = json.get("__metadata__") else { return Ok(Metadata::new()) };
    serde_json::from_value(meta.clone()).map_err(|e| bad(format!("__metadata__: {e}")))
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
        let meta: Metadata = [("config".to_string(), "{}".to_string())].into();
        save_safetensors(&m, &meta, &p).unwrap();
        // the header is canonical: the same tensors and metadata give the same bytes
        let many: Metadata = (0..20).map(|i| (format!("k{i}"), format!("v{i}"))).collect();
        let q = dir.path().join("q.safetensors");
        save_safetensors(&m, &many, &q).unwrap();
        let first = std::fs::read(&q).unwrap();
        let reordered: Metadata = (0..20).rev().map(|i| (format!("k{i}"), format!("v{i}"))).collect();
        save_safetensors(&m, &reordered, &q).unwrap();
        assert_eq!(std::fs::read(&q).unwrap(), first);
        assert_eq!(safetensors_metadata(&q).unwrap(), many);
        assert_eq!(
            load_weights(&q).unwrap()["a.weight"].to_vec2::<f32>().unwrap(),
            t.to_vec2::<f32>().unwrap()
        );
        let back = load_weights(&p).unwrap();
        assert_eq!(safetensors_metadata(&p).unwrap(), meta);
        assert_eq!(back["a.weight"].to_vec2::<f32>().unwrap(), t.to_vec2::<f32>().unwrap());

        // non-finite weights load, and are found
        let nan = Tensor::new(&[1f32, f32::NAN, f32::INFINITY], &Device::Cpu).unwrap();
        let with_nan: TensorMap = [("a.weight".to_string(), t.clone()), ("b.bias".to_string(), nan)].into();
        let np = dir.path().join("nan.safetensors");
        save_safetensors(&with_nan, &Metadata::new(), &np).unwrap();
        assert_eq!(non_finite(&load_weights(&np).unwrap()).unwrap(), [("b.bias".to_string(), 2)]);
        let junk = dir.path().join("junk.pth");
        std::fs::write(&junk, b"not a checkpoint").unwrap();
        let err = load_weights(&junk).unwrap_err().to_string();
        assert!(err.contains("junk.pth"), "{err}");
        let err = load_weights(&dir.path().join("missing.pth")).unwrap_err().to_string();
        assert!(err.contains("missing.pth"), "{err}");
        // a header that claims more than the file holds is refused before any allocation
        let lying = dir.path().join("lying.safetensors");
        std::fs::write(&lying, [u64::MAX.to_le_bytes().as_slice(), b"{}"].concat()).unwrap();
        let err = safetensors_metadata(&lying).unwrap_err().to_string();
        assert!(err.contains("lying.safetensors") && err.contains("header claims"), "{err}");
    }
}
