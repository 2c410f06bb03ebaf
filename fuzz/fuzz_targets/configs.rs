//! The config loaders (data, eval, train): any TOML text gives a config or an error naming
//! the file.
#![no_main]
use depth_core::config::ConfigFile;
use std::io::Write;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else { return };
    let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    file.write_all(body).unwrap();
    let p = file.path();
    match pick % 3 {
        0 => drop(depth_data::DataConfig::load(p, &[])),
        1 => drop(depth_eval::EvalConfig::load(p, &[])),
        _ => drop(depth_train::TrainConfig::load(p, &[])),
    }
});
