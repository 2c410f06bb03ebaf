//! float32 `.npy` arrays (NumPy format, C order): the one
//! reader and writer of the workspace — raw depth from `infer`, DIODE's and our synthetic
//! datasets' depth, the members of Middlebury's `.npz`, predictions read by `eval`.

use crate::error::{CoreError, Result};
use std::io::Write;
use std::path::Path;

/// The largest `.npy` header read (NumPy's own are ~128 bytes).
const MAX_HEADER: usize = 1 << 16;

/// Reads a float32 (or float64, converted) array and its shape.
pub fn read_f32(path: &Path) -> Result<(Vec<u64>, Vec<f32>)> {
    let bytes = crate::read::bytes(path, crate::read::ARRAY_LIMIT)?;
    parse_f32(&bytes).map_err(|reason| CoreError::Format { path: path.into(), format: "npy", reason })
}

/// Parses `.npy` bytes (format versions 1–3) holding float32 or float64 in C order. The header
/// is parsed here, not by npyz: its Python-literal grammar (pest) backtracks exponentially on
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

/// Writes a float32 array of `shape` (C order) as NumPy 1.14+ does: format 1.0, `<f4`, the
/// header padded so the data starts at a multiple of 64 bytes.
pub fn write_f32(w: &mut dyn Write, shape: &[u64], data: &[f32]) -> std::io::Result<()> {
    let dims: Vec<String> = shape.iter().map(u64::to_string).collect();
    let tuple = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {tuple}, }}");
    // magic (6) + version (2) + length (2) + header + '\n' is a multiple of 64
    header.push_str(&" ".repeat((64 - (10 + header.len() + 1) % 64) % 64));
    header.push('\n');
    let len = u16::try_from(header.len()).map_err(|_| std::io::Error::other("an .npy header over 64 KiB"))?;
    w.write_all(b"\x93NUMPY\x01\x00")?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(header.as_bytes())?;
    // in pieces, so that writing a large array never copies it whole
    let mut bytes = Vec::with_capacity(4 << 14);
    for chunk in data.chunks(1 << 14) {
        bytes.clear();
        bytes.extend(chunk.iter().flat_map(|v| v.to_le_bytes()));
        w.write_all(&bytes)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_arrays_are_aligned_as_numpy_writes_them_and_read_back() {
        for shape in [vec![2u64, 3], vec![6], vec![1, 2, 3]] {
            let data = [0.0f32, 1.0, -2.5, 3.0, f32::MAX, 5.5];
            let mut out = Vec::new();
            write_f32(&mut out, &shape, &data).unwrap();
            let hlen = u16::from_le_bytes([out[8], out[9]]) as usize;
            assert_eq!((10 + hlen) % 64, 0);
            assert_eq!(parse_f32(&out).unwrap(), (shape, data.to_vec()));
        }
        let mut out = Vec::new();
        write_f32(&mut out, &[2, 3], &[0.0; 6]).unwrap();
        assert!(std::str::from_utf8(&out[10..74]).unwrap().contains("'shape': (2, 3)"));
    }
}
