//! Image decoding exactly as the models read it (JPEG through libjpeg-turbo, the rest through
//! the `image` crate, EXIF orientation): any bytes give an image or an error.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = depth_core::image_io::decode_image(data);
});
