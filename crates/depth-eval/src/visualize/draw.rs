//! Drawing on RGB images: rectangles, lines and text in the 8×8 bitmap font of `font8x8`
//! (ASCII; other characters draw as '?').

use image::{Rgb, RgbImage};

pub const WHITE: [u8; 3] = [255, 255, 255];
pub const BLACK: [u8; 3] = [0, 0, 0];

/// Text height in pixels at `scale`.
pub fn text_height(scale: u32) -> u32 {
    8 * scale
}

pub fn text_width(s: &str, scale: u32) -> u32 {
    s.chars().count() as u32 * 8 * scale
}

fn put(img: &mut RgbImage, x: i64, y: i64, c: [u8; 3]) {
    if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, Rgb(c));
    }
}

/// Draws `s` with its top-left corner at (x, y); pixels outside the image are dropped.
pub fn text(img: &mut RgbImage, x: i64, y: i64, s: &str, scale: u32, c: [u8; 3]) {
    let s64 = scale as i64;
    for (n, ch) in s.chars().enumerate() {
        let glyph = font8x8::legacy::BASIC_LEGACY[if ch.is_ascii() { ch as usize } else { '?' as usize }];
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits & (1 << col) != 0 {
                    for dy in 0..s64 {
                        for dx in 0..s64 {
                            let px = x + (n as i64 * 8 + col) * s64 + dx;
                            put(img, px, y + row as i64 * s64 + dy, c);
                        }
                    }
                }
            }
        }
    }
}

/// Fills the rectangle [x, x+w) × [y, y+h), clipped to the image.
pub fn rect(img: &mut RgbImage, x: i64, y: i64, w: u32, h: u32, c: [u8; 3]) {
    for yy in y..y + h as i64 {
        for xx in x..x + w as i64 {
            put(img, xx, yy, c);
        }
    }
}

/// The outline of a rectangle, one pixel wide.
pub fn frame(img: &mut RgbImage, x: i64, y: i64, w: u32, h: u32, c: [u8; 3]) {
    rect(img, x, y, w, 1, c);
    rect(img, x, y + h as i64 - 1, w, 1, c);
    rect(img, x, y, 1, h, c);
    rect(img, x + w as i64 - 1, y, 1, h, c);
}

/// A straight line from (x0, y0) to (x1, y1), `width` pixels thick (square brush).
pub fn line(img: &mut RgbImage, (x0, y0): (f64, f64), (x1, y1): (f64, f64), width: u32, c: [u8; 3]) {
    let steps = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as usize).max(1);
    let half = width as i64 / 2;
    for i in 0..=steps {
        let t = i as f64 / steps as f64;
        let (x, y) = ((x0 + (x1 - x0) * t).round() as i64, (y0 + (y1 - y0) * t).round() as i64);
        rect(img, x - half, y - half, width, width, c);
    }
}

/// A compact number for labels: 3 significant digits, scientific outside 1e-3…1e5.
pub fn number(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    if !(1e-3..1e5).contains(&a) {
        return format!("{v:.2e}");
    }
    let decimals = (2 - a.log10().floor() as i32).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_sets_the_glyph_pixels() {
        let mut img = RgbImage::from_pixel(40, 10, Rgb(WHITE));
        text(&mut img, 0, 0, "I", 1, BLACK);
        let dark = img.pixels().filter(|p| p.0 == BLACK).count();
        let want: u32 = font8x8::legacy::BASIC_LEGACY['I' as usize].iter().map(|b| b.count_ones()).sum();
        assert_eq!(dark as u32, want);
        assert!(want > 0);
        // scale 2 quadruples the pixels; off-image text is clipped, not a panic
        let mut big = RgbImage::from_pixel(40, 20, Rgb(WHITE));
        text(&mut big, 0, 0, "I", 2, BLACK);
        assert_eq!(big.pixels().filter(|p| p.0 == BLACK).count() as u32, 4 * want);
        text(&mut big, 35, 15, "clipped", 2, BLACK);
        text(&mut big, -100, -100, "gone", 1, BLACK);
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(number(0.123456), "0.123");
        assert_eq!(number(12.5), "12.5");
        assert_eq!(number(80.0), "80");
        assert_eq!(number(1234.0), "1234");
        assert_eq!(number(0.0001234), "1.23e-4");
        assert_eq!(number(-2.5), "-2.5");
    }
}
