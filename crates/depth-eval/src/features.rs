//! Looking at ViT patch features (DINOv2 paper style): the first three principal components as
//! RGB, optionally only on the foreground (first component above a threshold, then a second PCA
//! on the foreground patches), the per-patch feature norm, and the cosine similarity of every
//! patch to a selected one. Maps are at patch-grid resolution, row-major.

use crate::error::Result;
use crate::pca::Pca;
use depth_core::CoreError;
use image::{Rgb, RgbImage};

/// One image's patch tokens: `rows`×`cols` patches of `dim` features, row-major.
#[derive(Clone, Debug)]
pub struct PatchGrid {
    pub rows: usize,
    pub cols: usize,
    pub dim: usize,
    pub tokens: Vec<f32>,
}

impl PatchGrid {
    pub fn new(rows: usize, cols: usize, dim: usize, tokens: Vec<f32>) -> Result<Self> {
        if tokens.len() != rows * cols * dim {
            return Err(CoreError::bad_input(
                "patch grid",
                format!("{} values for {rows}×{cols} patches of {dim}", tokens.len()),
            )
            .into());
        }
        Ok(Self { rows, cols, dim, tokens })
    }

    pub fn patch(&self, i: usize) -> &[f32] {
        &self.tokens[i * self.dim..(i + 1) * self.dim]
    }

    pub fn len(&self) -> usize {
        self.rows * self.cols
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The PCA-to-RGB pictures of several images, fitted jointly so that colours mean the same in
/// all of them, and the fitted PCA (of the foreground when `fg_threshold` is set).
pub struct PcaPictures {
    pub images: Vec<RgbImage>,
    pub pca: Pca,
    /// Share of patches counted as foreground (1 without a threshold).
    pub foreground: f64,
}

fn min_max(v: impl Iterator<Item = f64>) -> (f64, f64) {
    v.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)))
}

fn unit(v: f64, (lo, hi): (f64, f64)) -> f64 {
    if hi > lo { (v - lo) / (hi - lo) } else { 0.0 }
}

/// First three components → R, G, B (each min–max scaled over all patches). With
/// `fg_threshold = Some(t)`: a patch is foreground when its min–max scaled first component is
/// above `t`; the three components are then refitted on the foreground and the background is black.
pub fn pca_rgb(grids: &[PatchGrid], fg_threshold: Option<f64>) -> Result<PcaPictures> {
    let dim = grids.first().map_or(0, |g| g.dim);
    if grids.iter().any(|g| g.dim != dim) {
        return Err(CoreError::bad_input("patch grids", "all images need the same feature size").into());
    }
    let all: Vec<f32> = grids.iter().flat_map(|g| g.tokens.iter().copied()).collect();
    let mut pca = Pca::fit(&all, dim, 3.min(dim))?;
    let mut fg: Vec<bool> = vec![true; all.len() / dim.max(1)];
    if let Some(t) = fg_threshold {
        let first: Vec<f64> = all.chunks(dim).map(|r| pca.project(r)[0]).collect();
        let range = min_max(first.iter().copied());
        fg = first.iter().map(|&v| unit(v, range) > t).collect();
        let kept: Vec<f32> =
            all.chunks(dim).zip(&fg).filter(|(_, k)| **k).flat_map(|(r, _)| r.iter().copied()).collect();
        pca = Pca::fit(&kept, dim, 3.min(dim)).map_err(|_| {
            CoreError::bad_input(
                "foreground threshold",
                format!("{t} leaves fewer than 2 foreground patches"),
            )
        })?;
    }
    let proj: Vec<Vec<f64>> = all.chunks(dim).map(|r| pca.project(r)).collect();
    let ranges: Vec<(f64, f64)> = (0..pca.components.len())
        .map(|c| min_max(proj.iter().zip(&fg).filter(|(_, k)| **k).map(|(p, _)| p[c])))
        .collect();
    let mut start = 0;
    let images = grids
        .iter()
        .map(|g| {
            let img = RgbImage::from_fn(g.cols as u32, g.rows as u32, |x, y| {
                let i = start + y as usize * g.cols + x as usize;
                if !fg[i] {
                    return Rgb([0, 0, 0]);
                }
                Rgb(std::array::from_fn(|c| {
                    ranges.get(c).map_or(0, |&r| (unit(proj[i][c], r) * 255.0).round() as u8)
                }))
            });
            start += g.len();
            img
        })
        .collect();
    let foreground = fg.iter().filter(|k| **k).count() as f64 / fg.len().max(1) as f64;
    Ok(PcaPictures { images, pca, foreground })
}

/// The L2 norm of every patch token.
pub fn norms(g: &PatchGrid) -> Vec<f32> {
    (0..g.len()).map(|i| g.patch(i).iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt() as f32).collect()
}

/// Cosine similarity of every patch to patch (row, col).
pub fn cosine_to(g: &PatchGrid, row: usize, col: usize) -> Result<Vec<f32>> {
    if row >= g.rows || col >= g.cols {
        return Err(CoreError::bad_input(
            "selected patch",
            format!("({row}, {col}) is outside the {}×{} patch grid", g.rows, g.cols),
        )
        .into());
    }
    let n = norms(g);
    let sel = g.patch(row * g.cols + col);
    let ns = n[row * g.cols + col] as f64;
    Ok((0..g.len())
        .map(|i| {
            let dot: f64 = g.patch(i).iter().zip(sel).map(|(a, b)| *a as f64 * *b as f64).sum();
            let den = n[i] as f64 * ns;
            if den > 0.0 { (dot / den) as f32 } else { 0.0 }
        })
        .collect())
}

/// The patch tokens of `layers` (after the final norm) for one preprocessed image (1, 3, H, W).
pub fn extract(
    encoder: &depth_models::DinoVisionTransformer,
    x: &candle_core::Tensor,
    layers: &[usize],
) -> Result<Vec<PatchGrid>> {
    let (_, _, h, w) = x.dims4()?;
    let p = encoder.config().patch_size;
    let (rows, cols) = (h / p, w / p);
    encoder
        .get_intermediate_layers(x, layers)?
        .iter()
        .map(|o| {
            let t = o.patch_tokens.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            PatchGrid::new(rows, cols, t.len() / (rows * cols).max(1), t)
        })
        .collect()
}
