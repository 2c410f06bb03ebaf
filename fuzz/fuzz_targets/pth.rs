//! The `.pth` reader: the input is the pickle of a torch.save archive (beside one 64-byte
//! storage entry, so the tensors it describes can be read), or, when it starts with "PK", the
//! whole file.
#![no_main]
use std::io::Write;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut file = tempfile::Builder::new().suffix(".pth").tempfile().unwrap();
    if data.starts_with(b"PK") {
        file.write_all(data).unwrap();
    } else {
        let mut z = zip::ZipWriter::new(file.as_file_mut());
        let opts =
            zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        z.start_file("archive/data.pkl", opts).unwrap();
        z.write_all(data).unwrap();
        z.start_file("archive/data/0", opts).unwrap();
        z.write_all(&[0u8; 64]).unwrap();
        z.finish().unwrap();
    }
    let _ = depth_core::weights::load_pth(file.path());
});
