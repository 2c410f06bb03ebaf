//! Pictures of depth: colour maps with per-image or fixed ranges, colour bars, side-by-side
//! panels with titles, PNG writing (atomic), and the 8×8-font drawing they use.

mod colormap;
pub mod draw;

pub use colormap::{Colormap, Range, Scale};

use crate::error::Result;
use depth_core::CoreError;
use draw::{BLACK, WHITE};
use image::{Rgb, RgbImage};
use std::path::Path;

/// Colour for pixels without a value (invalid ground truth, masked error): a neutral grey that
/// none of the colour maps contains.
pub const NO_VALUE: [u8; 3] = [170, 170, 170];

/// `values` (row-major, `width`×`height`) through `scale`; pixels that are not `valid` or not
/// finite get [`NO_VALUE`].
pub fn colorize(values: &[f32], valid: Option<&[bool]>, width: u32, height: u32, scale: &Scale) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        let i = (y * width + x) as usize;
        let v = values[i];
        Rgb(if valid.is_none_or(|m| m[i]) && v.is_finite() { scale.color(v as f64) } else { NO_VALUE })
    })
}

/// A colour bar: its scale, a title, and the labels at its two ends.
#[derive(Clone, Debug, PartialEq)]
pub struct Bar {
    pub scale: Scale,
    pub title: String,
    pub ends: (String, String),
}

impl Bar {
    /// Ends labelled with the scale's range.
    pub fn new(scale: Scale, title: impl Into<String>) -> Bar {
        let (lo, hi) = (draw::number(scale.lo), draw::number(scale.hi));
        Bar { ends: if scale.reversed { (hi, lo) } else { (lo, hi) }, scale, title: title.into() }
    }
}

/// A horizontal colour bar `width` wide with its end labels and title written under it.
pub fn colorbar(bar: &Bar, width: u32) -> RgbImage {
    let (scale, title) = (&bar.scale, bar.title.as_str());
    let (bar_h, th) = (12, draw::text_height(1));
    let mut img = RgbImage::from_pixel(width, bar_h + 4 + th, Rgb(WHITE));
    for x in 0..width {
        let t = x as f64 / (width.max(2) - 1) as f64;
        let c = scale.cmap.at(if scale.reversed { 1.0 - t } else { t });
        draw::rect(&mut img, x as i64, 0, 1, bar_h, c);
    }
    draw::frame(&mut img, 0, 0, width, bar_h, BLACK);
    let y = (bar_h + 3) as i64;
    let (left, right) = (bar.ends.0.as_str(), bar.ends.1.as_str());
    draw::text(&mut img, 0, y, left, 1, BLACK);
    draw::text(&mut img, width as i64 - draw::text_width(right, 1) as i64, y, right, 1, BLACK);
    let free = width.saturating_sub(draw::text_width(left, 1) + draw::text_width(right, 1) + 16);
    let title: String = title.chars().take((free / 8) as usize).collect();
    let tx = (width as i64 - draw::text_width(&title, 1) as i64) / 2;
    draw::text(&mut img, tx, y, &title, 1, BLACK);
    img
}

/// One picture of a side-by-side figure: a title above, optionally a colour bar below.
pub struct Panel {
    pub title: String,
    pub image: RgbImage,
    pub bar: Option<Bar>,
}

/// Panels left to right on white, 8 px apart, each titled, bars under those that have one, and
/// `footer` lines of text at the bottom.
pub fn side_by_side(panels: &[Panel], footer: &[String]) -> RgbImage {
    let (gap, th) = (8u32, draw::text_height(1));
    let img_h = panels.iter().map(|p| p.image.height()).max().unwrap_or(0);
    let bars: Vec<Option<RgbImage>> =
        panels.iter().map(|p| p.bar.as_ref().map(|b| colorbar(b, p.image.width()))).collect();
    let bar_h = bars.iter().flatten().map(|b| b.height() + gap / 2).max().unwrap_or(0);
    let width = panels.iter().map(|p| p.image.width() + gap).sum::<u32>() + gap;
    let height = gap + th + 4 + img_h + gap / 2 + bar_h + footer.len() as u32 * (th + 4) + gap;
    let mut out = RgbImage::from_pixel(width, height, Rgb(WHITE));
    let mut x = gap as i64;
    let top = (gap + th + 4) as i64;
    for (p, bar) in panels.iter().zip(&bars) {
        let w = p.image.width();
        let title: String = p.title.chars().take((w / 8) as usize).collect();
        draw::text(&mut out, x, gap as i64, &title, 1, BLACK);
        image::imageops::replace(&mut out, &p.image, x, top);
        if let Some(b) = bar {
            image::imageops::replace(&mut out, b, x, top + (img_h + gap / 2) as i64);
        }
        x += (w + gap) as i64;
    }
    let mut y = top + (img_h + gap / 2 + bar_h) as i64;
    for line in footer {
        draw::text(&mut out, gap as i64, y, line, 1, BLACK);
        y += (th + 4) as i64;
    }
    out
}

/// `img` scaled down (Triangle filter) so that it is at most `max_width` wide.
pub fn fit_width(img: &RgbImage, max_width: u32) -> RgbImage {
    if img.width() <= max_width {
        return img.clone();
    }
    let h = ((img.height() as u64 * max_width as u64) / img.width() as u64).max(1) as u32;
    image::imageops::resize(img, max_width, h, image::imageops::FilterType::Triangle)
}

/// Writes an 8-bit RGB PNG atomically.
pub fn save_png(img: &RgbImage, path: &Path) -> Result<()> {
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, image::ImageFormat::Png)
        .map_err(|e| CoreError::io(path, std::io::Error::other(e)))?;
    Ok(depth_core::atomic::write_atomic(path, |w| w.write_all(buf.get_ref()))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_invalid_pixels() {
        let v = [1.0f32, 2.0, 3.0, f32::NAN, 100.0];
        let valid = [true, true, true, true, false];
        let s = Scale::new(Colormap::Gray, Range::PerImage, &v, Some(&valid));
        assert_eq!((s.lo, s.hi), (1.0, 3.0));
        let img = colorize(&v, Some(&valid), 5, 1, &s);
        let px: Vec<[u8; 3]> = img.pixels().map(|p| p.0).collect();
        assert_eq!(px, vec![[0; 3], [127; 3], [255; 3], NO_VALUE, NO_VALUE]);
        let fixed = Scale::new(Colormap::Gray, Range::Fixed(0.0, 10.0), &v, None);
        assert_eq!(fixed.color(5.0), [127; 3]);
        assert_eq!(fixed.color(50.0), [255; 3]);
        assert_eq!(fixed.reversed().color(10.0), [0; 3]);
        // a flat image does not divide by zero
        let flat = Scale::new(Colormap::Gray, Range::PerImage, &[2.0, 2.0], None);
        assert_eq!(flat.color(2.0), [0; 3]);
    }

    #[test]
    fn a_figure_holds_its_panels_and_bars() {
        let a = RgbImage::from_pixel(60, 40, Rgb([10, 200, 10]));
        let s = Scale::new(Colormap::Turbo, Range::Fixed(0.0, 5.0), &[], None);
        let panels = [
            Panel { title: "image".into(), image: a.clone(), bar: None },
            Panel { title: "depth".into(), image: a.clone(), bar: Some(Bar::new(s, "m")) },
        ];
        let fig = side_by_side(&panels, &["footer".into()]);
        assert_eq!(fig.width(), 8 + 68 + 68);
        // both pictures are pasted unchanged; the bar runs from turbo(0) to turbo(255)
        assert_eq!(Bar::new(s, "m").ends, ("0".to_string(), "5".to_string()));
        assert_eq!(Bar::new(s.reversed(), "m").ends, ("5".to_string(), "0".to_string()));
        let green = fig.pixels().filter(|p| p.0 == [10, 200, 10]).count();
        assert_eq!(green, 2 * 60 * 40);
        let bar_y = 8 + 8 + 4 + 40 + 4 + 5;
        assert_eq!(fig.get_pixel(8 + 68 + 1, bar_y).0, Colormap::Turbo.at(1.0 / 59.0));
        assert_eq!(fig.get_pixel(8 + 68 + 58, bar_y).0, Colormap::Turbo.at(58.0 / 59.0));
        assert_ne!(Colormap::Turbo.at(1.0 / 59.0), Colormap::Turbo.at(58.0 / 59.0));
    }
}
