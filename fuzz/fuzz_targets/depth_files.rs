//! The depth-data readers of depth files: the first byte picks PFM, NPY, 16-bit PNG or Sintel
//! .dpt, the rest is the file.
#![no_main]
use std::io::Write;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else { return };
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(body).unwrap();
    let p = file.path();
    match pick % 4 {
        0 => drop(depth_data::formats::middlebury::read_pfm(p)),
        1 => drop(depth_core::npy::read_f32(p)),
        2 => drop(depth_data::formats::png16::read_png16_depth(p, 1000.0, &[])),
        _ => drop(depth_data::formats::sintel::read_dpt(p)),
    }
});
