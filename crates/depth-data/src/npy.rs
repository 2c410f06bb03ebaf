//! float32 `.npy` arrays (NumPy format, C order; read here, written through npyz): the depth maps
//! of DIODE and of our synthetic datasets, and the members of Middlebury's `.npz`.

use crate::error::{DataError, Result};
use std::io::Write;
use std::path::Path;

/// The largest `.npy` header read (NumPy's own are ~128 bytes).
const MAX_HEADER: usize = 1 << 16;

/// Reads a float32 (or float64, converted) array and its shape.
pub fn read_f32(path: &Path) -> Result<(Vec<u64>, Vec<f32>)> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    parse_f32(&bytes).map_err(|reason| DataError::format(path, "npy", reason))
}

/// Parses `.npy` bytes (format versions 1–3) holding float32 or float64 in C order. The header
/// is read here, not by npyz: its Python-literal grammar (pest) backtracks exponentially on
/// nested brackets, so a 200-byte header hung it (found by fuzzing).
pub fn parse_f32(bytes: &[u8]) -> std::result::Result<(Vec<u64>, Vec<f32>), String> {
    if !bytes.starts_with(b"\x93NUMPY") || bytes.len() < 10 {
        return Err("not an .npy file (no \\x93NUMPY magic)".into());
    }
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => {
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
        }
        v => return Err(format!("format version {v} (1, 2 and 3 exist)")),
    };
    if len > MAX_HEADER || start + len > bytes.len() {
        return Err(format!("a header of {len} bytes in a file of {}", bytes.len()));
    }
    let header = std::str::from_utf8(&bytes[start..start + len]).map_err(|_| "the header is not text")?;
    let value = |key: &str| -> std::result::Result<&str, String> {
        let at = ["'", "\""]
            .iter()
            .find_map(|q| header.find(&format!("{q}{key}{q}")).map(|i| i + key.len() + 2))
            .ok_or_else(|| format!("the header has no '{key}'"))?;
        let rest = header[at..].trim_start();
        rest.strip_prefix(':').map(str::trim_start).ok_or_else(|| format!("'{key}' has no value"))
    };
    let descr = value("descr")?;
    let quote = descr.chars().next().filter(|c| *c == '\'' || *c == '"').ok_or("'descr' is not a string")?;
    let descr = &descr[1..descr[1..].find(quote).map(|i| i + 1).ok_or("'descr' is not closed")?];
    if !value("fortran_order")?.starts_with("False") {
        return Err("Fortran order is not supported; save with np.ascontiguousarray".into());
    }
    let shape = value("shape")?;
    let inner = shape.strip_prefix('(').and_then(|r| r.split_once(')')).ok_or("'shape' is not a tuple")?.0;
    let shape: Vec<u64> = inner
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.parse::<u64>().map_err(|_| format!("'shape' holds {d:?}")))
        .collect::<std::result::Result<_, _>>()?;
    let (size, little) = match descr {
        "<f4" => (4, true),
        ">f4" => (4, false),
        "<f8" => (8, true),
        ">f8" => (8, false),
        other => return Err(format!("dtype {other:?}; expected float32 data (or float64)")),
    };
    let data = &bytes[start + len..];
    // what the header claims must be in the file before anything is allocated for it
    let claimed = shape.iter().try_fold(size as u128, |acc, &d| acc.checked_mul(d as u128));
    if claimed != Some(data.len() as u128) {
        return Err(format!(
            "the header claims shape {shape:?} of {descr}, but the file holds {} data bytes",
            data.len()
        ));
    }
    let values = match (size, little) {
        (4, true) => {
            data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect()
        }
        (4, false) => {
            data.chunks_exact(4).map(|c| f32::from_be_bytes(c.try_into().expect("4 bytes"))).collect()
        }
        (_, true) => {
            data.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32).collect()
        }
        (_, false) => {
            data.chunks_exact(8).map(|c| f64::from_be_bytes(c.try_into().expect("8 bytes")) as f32).collect()
        }
    };
    Ok((shape, values))
}

/// Writes a float32 array of `shape` (C order).
pub fn write_f32(w: &mut dyn Write, shape: &[u64], data: &[f32]) -> std::io::Result<()> {
    use npyz::WriterBuilder;
    let mut writer = npyz::WriteOptions::<f32>::new().default_dtype().shape(shape).writer(w).begin_nd()?;
    writer.extend(data.iter().copied())?;
    writer.finish()
}
