//! safetensors loading: the whole file, and its metadata read from the header alone.
#![no_main]
use std::io::Write;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut file = tempfile::Builder::new().suffix(".safetensors").tempfile().unwrap();
    file.write_all(data).unwrap();
    let _ = depth_core::weights::safetensors_metadata(file.path());
    let _ = depth_core::weights::load_safetensors(file.path());
    let _ = depth_data::formats::pseudo::read_pseudo_label(file.path());
});
