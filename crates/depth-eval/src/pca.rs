//! Principal component analysis of feature rows (patch tokens): mean, covariance, symmetric
//! eigendecomposition (nalgebra), the top-k directions. Each direction's sign is fixed so its
//! largest-magnitude entry is positive, so results do not flip between runs or machines.

use crate::error::Result;
use depth_core::CoreError;
use nalgebra::{DMatrix, SymmetricEigen};

#[derive(Clone, Debug)]
pub struct Pca {
    pub mean: Vec<f64>,
    /// k unit vectors of length d, by decreasing variance.
    pub components: Vec<Vec<f64>>,
    /// Variance along each component (covariance eigenvalue, divisor n − 1).
    pub variances: Vec<f64>,
    /// Sum of all eigenvalues (total variance).
    pub total_variance: f64,
}

impl Pca {
    /// Fits `k` components to `n` rows of `d` features (row-major).
    pub fn fit(rows: &[f32], d: usize, k: usize) -> Result<Pca> {
        let n = rows.len().checked_div(d).unwrap_or(0);
        if n < 2 || rows.len() != n * d || k == 0 || k > d {
            return Err(CoreError::bad_input(
                "PCA",
                format!("need ≥ 2 rows of {d} features and 1 ≤ k ≤ d; got {} values, k = {k}", rows.len()),
            )
            .into());
        }
        let mut mean = vec![0.0f64; d];
        for r in rows.chunks(d) {
            mean.iter_mut().zip(r).for_each(|(m, &v)| *m += v as f64);
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let centred = DMatrix::from_fn(n, d, |i, j| rows[i * d + j] as f64 - mean[j]);
        let cov = centred.tr_mul(&centred) / (n as f64 - 1.0);
        let eig = SymmetricEigen::new(cov);
        let mut order: Vec<usize> = (0..d).collect();
        order.sort_by(|&a, &b| eig.eigenvalues[b].total_cmp(&eig.eigenvalues[a]));
        let components = order[..k]
            .iter()
            .map(|&c| {
                let v: Vec<f64> = eig.eigenvectors.column(c).iter().copied().collect();
                let big = v.iter().copied().fold(0.0f64, |a, x| if x.abs() > a.abs() { x } else { a });
                if big < 0.0 { v.iter().map(|x| -x).collect() } else { v }
            })
            .collect();
        Ok(Pca {
            mean,
            components,
            variances: order[..k].iter().map(|&c| eig.eigenvalues[c].max(0.0)).collect(),
            total_variance: eig.eigenvalues.iter().map(|v| v.max(0.0)).sum(),
        })
    }

    /// Coordinates of one row along the components.
    pub fn project(&self, row: &[f32]) -> Vec<f64> {
        self.components
            .iter()
            .map(|c| c.iter().zip(row).zip(&self.mean).map(|((a, &x), m)| a * (x as f64 - m)).sum())
            .collect()
    }

    /// Share of the total variance each component explains.
    pub fn explained_ratio(&self) -> Vec<f64> {
        self.variances
            .iter()
            .map(|v| if self.total_variance > 0.0 { v / self.total_variance } else { 0.0 })
            .collect()
    }
}
