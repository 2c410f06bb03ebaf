//! Small plots as PNG-ready images: line plots (loss curves, optionally log-y) and grouped bar
//! charts (metrics per benchmark and model). Axes get "nice" ticks (1, 2, 5 × 10^k); text is the
//! 8×8 bitmap font of `visualize::draw`.

use crate::visualize::draw::{self, BLACK, WHITE};
use image::{Rgb, RgbImage};

/// matplotlib's `tab10` colours, used in order.
pub const PALETTE: [[u8; 3]; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

const GRID: [u8; 3] = [225, 225, 225];

/// A named list of (x, y) points (line plots) or of one value per category (bar charts, x unused).
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

impl Series {
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self { name: name.into(), points }
    }
}

/// Ticks covering [lo, hi] at a 1/2/5·10^k step, about `n` of them.
pub fn nice_ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if !lo.is_finite() || !hi.is_finite() || hi <= lo {
        return vec![lo];
    }
    let raw = (hi - lo) / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    // the smallest round step that gives at most n + 1 intervals
    let span = hi - lo;
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= n as f64 + 1.0)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

/// The data → pixel map of a plot area.
#[derive(Clone, Copy, Debug)]
struct Axes {
    left: f64,
    top: f64,
    width: f64,
    height: f64,
    x: (f64, f64),
    y: (f64, f64),
}

impl Axes {
    fn px(&self, x: f64) -> f64 {
        self.left + (x - self.x.0) / (self.x.1 - self.x.0) * self.width
    }
    fn py(&self, y: f64) -> f64 {
        self.top + self.height - (y - self.y.0) / (self.y.1 - self.y.0) * self.height
    }
}

fn padded(lo: f64, hi: f64) -> (f64, f64) {
    if hi > lo {
        let pad = 0.05 * (hi - lo);
        (lo - pad, hi + pad)
    } else {
        (lo - 0.5 * lo.abs().max(1.0), hi + 0.5 * hi.abs().max(1.0))
    }
}

/// Frame, title, axis labels and y ticks (labelled through `label`); returns the image.
fn canvas(w: u32, h: u32, title: &str, x_label: &str, y_label: &str) -> RgbImage {
    let mut img = RgbImage::from_pixel(w, h, Rgb(WHITE));
    draw::text(&mut img, (w as i64 - draw::text_width(title, 1) as i64) / 2, 6, title, 1, BLACK);
    draw::text(
        &mut img,
        (w as i64 - draw::text_width(x_label, 1) as i64) / 2,
        h as i64 - 12,
        x_label,
        1,
        BLACK,
    );
    draw::text(&mut img, 4, 20, y_label, 1, BLACK);
    img
}

fn y_axis(img: &mut RgbImage, ax: &Axes, ticks: &[(f64, String)]) {
    for (v, label) in ticks {
        let y = ax.py(*v);
        draw::line(img, (ax.left, y), (ax.left + ax.width, y), 1, GRID);
        let tx = ax.left as i64 - 4 - draw::text_width(label, 1) as i64;
        draw::text(img, tx, y as i64 - 4, label, 1, BLACK);
    }
    draw::frame(img, ax.left as i64, ax.top as i64, ax.width as u32 + 1, ax.height as u32 + 1, BLACK);
}

fn legend(img: &mut RgbImage, ax: &Axes, names: &[&str]) {
    let w = names.iter().map(|n| draw::text_width(n, 1)).max().unwrap_or(0) + 24;
    let x = (ax.left + ax.width) as i64 - w as i64 - 6;
    for (i, n) in names.iter().enumerate() {
        let y = ax.top as i64 + 6 + i as i64 * 12;
        draw::rect(img, x - 2, y - 2, w + 4, 12, WHITE);
        draw::rect(img, x, y + 2, 14, 4, PALETTE[i % PALETTE.len()]);
        draw::text(img, x + 20, y, n, 1, BLACK);
    }
}

/// Curves over a shared x axis (steps), e.g. training and validation loss.
#[derive(Clone, Debug, Default)]
pub struct LinePlot {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// Plot log10(y) (non-positive values are left out), ticks at powers of ten.
    pub log_y: bool,
}

impl LinePlot {
    pub fn render(&self, width: u32, height: u32) -> RgbImage {
        let mut img = canvas(width, height, &self.title, &self.x_label, &self.y_label);
        let ty = |y: f64| if self.log_y { (y > 0.0).then(|| y.log10()) } else { Some(y) };
        let pts: Vec<Vec<(f64, f64)>> = self
            .series
            .iter()
            .map(|s| {
                s.points
                    .iter()
                    .filter_map(|&(x, y)| Some((x, ty(y)?)))
                    .filter(|(x, y)| x.is_finite() && y.is_finite())
                    .collect()
            })
            .collect();
        let all = pts.iter().flatten();
        let (x0, x1) =
            all.clone().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.0), b.max(p.0)));
        let (y0, y1) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.1), b.max(p.1)));
        if x0 > x1 {
            draw::text(&mut img, 70, height as i64 / 2, "no data", 1, BLACK);
            return img;
        }
        let ax = Axes {
            left: 64.0,
            top: 24.0,
            width: width as f64 - 76.0,
            height: height as f64 - 60.0,
            x: if x1 > x0 { (x0, x1) } else { padded(x0, x1) },
            y: padded(y0, y1),
        };
        let yt: Vec<(f64, String)> = if self.log_y {
            (ax.y.0.ceil() as i64..=ax.y.1.floor() as i64)
                .map(|k| (k as f64, draw::number(10f64.powi(k as i32))))
                .collect()
        } else {
            nice_ticks(ax.y.0, ax.y.1, 5).into_iter().map(|v| (v, draw::number(v))).collect()
        };
        y_axis(&mut img, &ax, &yt);
        for v in nice_ticks(ax.x.0, ax.x.1, 6) {
            let label = draw::number(v);
            let x = ax.px(v) as i64;
            draw::rect(&mut img, x, (ax.top + ax.height) as i64, 1, 4, BLACK);
            draw::text(
                &mut img,
                x - draw::text_width(&label, 1) as i64 / 2,
                (ax.top + ax.height) as i64 + 6,
                &label,
                1,
                BLACK,
            );
        }
        for (i, p) in pts.iter().enumerate() {
            let c = PALETTE[i % PALETTE.len()];
            for w in p.windows(2) {
                draw::line(&mut img, (ax.px(w[0].0), ax.py(w[0].1)), (ax.px(w[1].0), ax.py(w[1].1)), 2, c);
            }
            if p.len() == 1 {
                draw::rect(&mut img, ax.px(p[0].0) as i64 - 2, ax.py(p[0].1) as i64 - 2, 5, 5, c);
            }
        }
        legend(&mut img, &ax, &self.series.iter().map(|s| s.name.as_str()).collect::<Vec<_>>());
        img
    }
}

/// Grouped bars: one group per category, one bar per series (value = `points[k].1`).
#[derive(Clone, Debug, Default)]
pub struct BarChart {
    pub title: String,
    pub y_label: String,
    pub categories: Vec<String>,
    pub series: Vec<Series>,
}

/// Left margin and right padding of the bar chart's plot area, in pixels.
const BAR_LEFT: f64 = 64.0;
const BAR_PAD: f64 = 12.0;

/// How many characters of a category label fit under a group `group` pixels wide.
fn label_chars(group: f64) -> usize {
    (group / draw::text_width("m", 1) as f64 - 1.0).max(1.0) as usize
}

impl BarChart {
    /// The smallest width, at least `min`, at which no category label is cut.
    pub fn fitting_width(&self, min: u32) -> u32 {
        let longest = self.categories.iter().map(|c| c.chars().count()).max().unwrap_or(0);
        let group = ((longest + 1) * draw::text_width("m", 1) as usize) as f64;
        min.max((BAR_LEFT + BAR_PAD + group * self.categories.len() as f64).ceil() as u32)
    }

    pub fn render(&self, width: u32, height: u32) -> RgbImage {
        let mut img = canvas(width, height, &self.title, "", &self.y_label);
        let vals = self.series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).filter(|v| v.is_finite());
        let (lo, hi) = vals.fold((0.0f64, 0.0f64), |(a, b), v| (a.min(v), b.max(v)));
        let hi = if hi > lo { hi } else { lo + 1.0 };
        let ax = Axes {
            left: BAR_LEFT,
            top: 24.0,
            width: width as f64 - BAR_LEFT - BAR_PAD,
            height: height as f64 - 60.0,
            x: (0.0, self.categories.len().max(1) as f64),
            y: (lo, hi + 0.1 * (hi - lo)),
        };
        let yt: Vec<(f64, String)> =
            nice_ticks(ax.y.0, ax.y.1, 5).into_iter().map(|v| (v, draw::number(v))).collect();
        y_axis(&mut img, &ax, &yt);
        let n = self.series.len().max(1) as f64;
        let group = ax.width / ax.x.1;
        let bar = group * 0.8 / n;
        for (c, name) in self.categories.iter().enumerate() {
            let gx = ax.left + c as f64 * group;
            let label: String = name.chars().take(label_chars(group)).collect();
            let lx = (gx + group / 2.0) as i64 - draw::text_width(&label, 1) as i64 / 2;
            draw::text(&mut img, lx, (ax.top + ax.height) as i64 + 6, &label, 1, BLACK);
            for (s, series) in self.series.iter().enumerate() {
                let Some(&(_, v)) = series.points.get(c) else { continue };
                if !v.is_finite() {
                    continue;
                }
                let x = gx + group * 0.1 + s as f64 * bar;
                let (y_top, y_base) = (ax.py(v.max(0.0)), ax.py(v.min(0.0)));
                let colour = PALETTE[s % PALETTE.len()];
                draw::rect(
                    &mut img,
                    x.round() as i64,
                    y_top.round() as i64,
                    (bar - 1.0).max(1.0) as u32,
                    (y_base - y_top).round().max(1.0) as u32,
                    colour,
                );
            }
        }
        legend(&mut img, &ax, &self.series.iter().map(|s| s.name.as_str()).collect::<Vec<_>>());
        img
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_numbers() {
        assert_eq!(nice_ticks(0.0, 1.0, 5), vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]);
        assert_eq!(nice_ticks(3.0, 97.0, 4), vec![20.0, 40.0, 60.0, 80.0]);
        assert_eq!(nice_ticks(1.0, 1.0, 5), vec![1.0]);
    }

    #[test]
    fn a_line_passes_through_its_points() {
        let plot = LinePlot {
            title: "loss".into(),
            x_label: "step".into(),
            y_label: "L".into(),
            series: vec![Series::new("train", vec![(0.0, 0.0), (10.0, 10.0)])],
            log_y: false,
        };
        let img = plot.render(400, 300);
        // the area is 324×240 from (64, 24); y is padded by 5 % each side; (5, 5) is the centre
        let (cx, cy) = (64.0 + 324.0 * 0.5, 24.0 + 240.0 * 0.5);
        assert_eq!(img.get_pixel(cx as u32, cy as u32).0, PALETTE[0]);
        // far from the diagonal there is no curve colour
        assert_ne!(img.get_pixel(cx as u32, (cy - 60.0) as u32).0, PALETTE[0]);
        let log = LinePlot {
            log_y: true,
            series: vec![Series::new("a", vec![(0.0, 1.0), (1.0, 100.0), (2.0, -1.0)])],
            ..plot
        };
        let _ = log.render(300, 200);
        let empty = LinePlot::default().render(200, 100);
        assert_eq!(empty.dimensions(), (200, 100));
    }

    #[test]
    fn bar_heights_follow_values() {
        let chart = BarChart {
            title: "abs_rel".into(),
            y_label: String::new(),
            categories: vec!["nyu".into(), "kitti".into()],
            series: vec![Series::new("m", vec![(0.0, 1.0), (1.0, 2.0)])],
        };
        let img = chart.render(300, 200);
        let height_at = |x: u32| (0..200).filter(|&y| img.get_pixel(x, y).0 == PALETTE[0]).count() as f64;
        let group = 236.0 / 2.0;
        let (a, b) = (height_at((64.0 + group * 0.5) as u32), height_at((64.0 + group * 1.5) as u32));
        assert!(a > 10.0 && (b / a - 2.0).abs() < 0.05, "{a} {b}");
    }

    #[test]
    fn the_fitting_width_leaves_every_label_whole() {
        let names = ["nyu", "kitti_frames", "middlebury_frames", "synth_heldout", "redwood_frames"];
        let chart = BarChart { categories: names.map(String::from).into(), ..Default::default() };
        assert_eq!(chart.fitting_width(2000), 2000);
        let w = chart.fitting_width(100);
        let group = (w as f64 - BAR_LEFT - BAR_PAD) / names.len() as f64;
        assert!(label_chars(group) >= "middlebury_frames".len(), "{w}");
        // one pixel narrower and the longest label is cut
        let narrower = (w as f64 - 1.0 - BAR_LEFT - BAR_PAD) / names.len() as f64;
        assert!(label_chars(narrower) < "middlebury_frames".len(), "{w}");
        // the last label ("redwood_frames", 14 × 8 px) is drawn whole: ink right of its centre
        let img = chart.render(w, 200);
        let centre = (BAR_LEFT + group * 4.5) as u32;
        let ink = |x0: u32, x1: u32| (x0..x1).any(|x| (166..182).any(|y| img.get_pixel(x, y).0 == BLACK));
        assert!(ink(centre + 40, centre + 56) && !ink(centre + 57, w));
    }
}
