//! float32 `.npy` arrays (NumPy format, C order) through npyz: the depth maps of DIODE and of our
//! synthetic datasets.

use crate::error::{DataError, Result};
use std::io::Write;
use std::path::Path;

/// Reads a float32 (or float64, converted) array and its shape.
pub fn read_f32(path: &Path) -> Result<(Vec<u64>, Vec<f32>)> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let npy = npyz::NpyFile::new(&bytes[..]).map_err(|e| DataError::format(path, "npy", e))?;
    let shape = npy.shape().to_vec();
    if npy.order() != npyz::Order::C {
        return Err(DataError::format(
            path,
            "npy",
            "Fortran order is not supported; save with np.ascontiguousarray",
        ));
    }
    let data = match npy.dtype() {
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Float && t.size_field() == 8 => {
            npy.into_vec::<f64>().map(|v| v.into_iter().map(|x| x as f32).collect())
        }
        _ => npy.into_vec::<f32>(),
    }
    .map_err(|e| DataError::format(path, "npy", format!("expected float32 data: {e}")))?;
    Ok((shape, data))
}

/// Writes a float32 array of `shape` (C order).
pub fn write_f32(w: &mut dyn Write, shape: &[u64], data: &[f32]) -> std::io::Result<()> {
    use npyz::WriterBuilder;
    let mut writer = npyz::WriteOptions::<f32>::new().default_dtype().shape(shape).writer(w).begin_nd()?;
    writer.extend(data.iter().copied())?;
    writer.finish()
}
