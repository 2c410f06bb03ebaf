//! Why this file: the official code loads `torch.load(path)` into `load_state_dict(...,
//! strict=True)`, so an export for it must be what `torch.save(model.state_dict(), path)`
//! writes: a zip archive (`<name>/data.pkl`, `<name>/data/<i>` raw little-endian storages,
//! `<name>/version`, `<name>/byteorder`), the pickle (protocol 2) an `OrderedDict` of
//! `torch._utils._rebuild_tensor_v2(storage, 0, size, stride, False, OrderedDict())`, each
//! storage a persistent id `("storage", torch.FloatStorage, "<i>", "cpu", numel)`. Those are
//! only names `torch.load(weights_only=True)` allows. Storages are stored uncompressed and
//! 64-byte aligned, as torch writes them (its `mmap=True` load needs it).

use super::files::TensorMap;
use crate::error::{CoreError, Result};
use candle_core::DType;
use std::io::Write;
use std::path::Path;

/// Writes `tensors` as a `torch.save` state dict, atomically. The archive's folder is the file's
/// stem, as torch names it.
pub fn save_pth(tensors: &TensorMap, path: &Path) -> Result<()> {
    let stem = path.file_stem().and_then(|s| s.to_str()).filter(|s| s.is_ascii() && !s.is_empty());
    let root = stem.unwrap_or("archive").replace(|c: char| !c.is_ascii_alphanumeric() && c != '_', "_");
    let mut storages = Vec::with_capacity(tensors.len());
    let mut p = Pickle::default();
    p.raw(&[0x80, 2]);
    p.global("collections", "OrderedDict");
    p.raw(b")R(");
    for (i, (key, t)) in tensors.iter().enumerate() {
        let storage = match t.dtype() {
            DType::F32 => "FloatStorage",
            DType::F16 => "HalfStorage",
            DType::BF16 => "BFloat16Storage",
            DType::F64 => "DoubleStorage",
            DType::I64 => "LongStorage",
            other => {
                let reason = format!("{key} is {other:?}, which a torch state dict here does not take");
                return Err(CoreError::bad_input("export to .pth", reason));
            }
        };
        let dims = t.dims();
        p.unicode(key);
        p.global("torch._utils", "_rebuild_tensor_v2");
        p.raw(b"(");
        // the storage, as a persistent id
        p.raw(b"(");
        p.unicode("storage");
        p.global("torch", storage);
        p.unicode(&i.to_string());
        p.unicode("cpu");
        p.int(t.elem_count())?;
        p.raw(b"tQ");
        p.int(0)?;
        p.tuple(dims)?;
        let mut strides = vec![1usize; dims.len()];
        for d in (0..dims.len().saturating_sub(1)).rev() {
            strides[d] = strides[d + 1] * dims[d + 1];
        }
        p.tuple(&strides)?;
        p.raw(&[0x89]); // requires_grad = False
        p.global("collections", "OrderedDict");
        p.raw(b")R");
        p.raw(b"tR");
        storages.push(t);
    }
    p.raw(b"u.");
    crate::atomic::write_atomic_seekable(path, |file| {
        let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
        let stored = || {
            zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored)
                .last_modified_time(zip::DateTime::default())
        };
        let io = std::io::Error::other;
        zip.start_file(format!("{root}/data.pkl"), stored()).map_err(io)?;
        zip.write_all(&p.0)?;
        zip.start_file(format!("{root}/byteorder"), stored()).map_err(io)?;
        zip.write_all(b"little")?;
        for (i, t) in storages.iter().enumerate() {
            zip.start_file(format!("{root}/data/{i}"), stored().with_alignment(64)).map_err(io)?;
            zip.write_all(&le_bytes(t).map_err(std::io::Error::other)?)?;
        }
        zip.start_file(format!("{root}/version"), stored()).map_err(io)?;
        zip.write_all(b"3\n")?;
        zip.finish().map_err(io)?.flush()
    })
}

/// A tensor's values as little-endian bytes, row-major.
fn le_bytes(t: &candle_core::Tensor) -> candle_core::Result<Vec<u8>> {
    let t = t.flatten_all()?.to_device(&candle_core::Device::Cpu)?;
    Ok(match t.dtype() {
        DType::F32 => t.to_vec1::<f32>()?.iter().flat_map(|v| v.to_le_bytes()).collect(),
        DType::F16 => t.to_vec1::<half::f16>()?.iter().flat_map(|v| v.to_le_bytes()).collect(),
        DType::BF16 => t.to_vec1::<half::bf16>()?.iter().flat_map(|v| v.to_le_bytes()).collect(),
        DType::F64 => t.to_vec1::<f64>()?.iter().flat_map(|v| v.to_le_bytes()).collect(),
        _ => t.to_vec1::<i64>()?.iter().flat_map(|v| v.to_le_bytes()).collect(),
    })
}

/// A protocol-2 pickle being written.
#[derive(Default)]
struct Pickle(Vec<u8>);

impl Pickle {
    fn raw(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }

    /// GLOBAL module.name
    fn global(&mut self, module: &str, name: &str) {
        self.raw(format!("c{module}\n{name}\n").as_bytes());
    }

    /// BINUNICODE
    fn unicode(&mut self, s: &str) {
        self.raw(b"X");
        self.raw(&(s.len() as u32).to_le_bytes());
        self.raw(s.as_bytes());
    }

    /// BININT (a size or an index: below 2³¹ in any model this writes)
    fn int(&mut self, v: usize) -> Result<()> {
        let v = i32::try_from(v).map_err(|_| {
            CoreError::bad_input("export to .pth", format!("{v} does not fit a 32-bit pickle int"))
        })?;
        self.raw(b"J");
        self.raw(&v.to_le_bytes());
        Ok(())
    }

    fn tuple(&mut self, values: &[usize]) -> Result<()> {
        self.raw(b"(");
        for &v in values {
            self.int(v)?;
        }
        self.raw(b"t");
        Ok(())
    }
}
