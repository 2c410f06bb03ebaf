//! PCA and the feature views: a planted 3-D structure is recovered (directions, variances,
//! colours), the foreground threshold finds the planted object, norms and cosine maps are exact.

use depth_eval::features::{PatchGrid, cosine_to, norms, pca_rgb};
use depth_eval::pca::Pca;

/// A small deterministic generator (SplitMix64 → uniform in [−1, 1)).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}

/// Three orthonormal directions in `d` dimensions (Gram–Schmidt on random vectors).
fn basis(d: usize, rng: &mut Rng) -> Vec<Vec<f64>> {
    let mut out: Vec<Vec<f64>> = Vec::new();
    while out.len() < 3 {
        let mut v: Vec<f64> = (0..d).map(|_| rng.next()).collect();
        for b in &out {
            let dot: f64 = v.iter().zip(b).map(|(x, y)| x * y).sum();
            v.iter_mut().zip(b).for_each(|(x, y)| *x -= dot * y);
        }
        let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        out.push(v.iter().map(|x| x / n).collect());
    }
    out
}

/// n rows: offset + Σ_k z_k·a_k + noise (z_k of standard deviation std_k); returns rows, z, a.
fn planted(
    n: usize,
    d: usize,
    stds: [f64; 3],
    noise: f64,
    seed: u64,
) -> (Vec<f32>, Vec<[f64; 3]>, Vec<Vec<f64>>) {
    let mut rng = Rng(seed);
    let a = basis(d, &mut rng);
    let offset: Vec<f64> = (0..d).map(|_| 5.0 * rng.next()).collect();
    // latent coordinates, centred and made exactly uncorrelated in the sample (Gram–Schmidt on
    // the columns), then scaled to the wanted standard deviations
    let mut cols: Vec<Vec<f64>> = (0..3).map(|_| (0..n).map(|_| rng.next()).collect()).collect();
    for k in 0..3 {
        let m = cols[k].iter().sum::<f64>() / n as f64;
        cols[k].iter_mut().for_each(|v| *v -= m);
        for j in 0..k {
            let (done, rest) = cols.split_at_mut(k);
            let dot: f64 = rest[0].iter().zip(&done[j]).map(|(x, y)| x * y).sum();
            let nn: f64 = done[j].iter().map(|y| y * y).sum();
            rest[0].iter_mut().zip(&done[j]).for_each(|(x, y)| *x -= dot / nn * y);
        }
        let sd = (cols[k].iter().map(|v| v * v).sum::<f64>() / (n as f64 - 1.0)).sqrt();
        cols[k].iter_mut().for_each(|v| *v *= stds[k] / sd);
    }
    let zs: Vec<[f64; 3]> = (0..n).map(|i| [cols[0][i], cols[1][i], cols[2][i]]).collect();
    let mut rows = Vec::with_capacity(n * d);
    for z in &zs {
        for j in 0..d {
            let v = offset[j] + (0..3).map(|k| z[k] * a[k][j]).sum::<f64>() + noise * rng.next();
            rows.push(v as f32);
        }
    }
    (rows, zs, a)
}

fn corr(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let sxx: f64 = x.iter().map(|a| (a - mx).powi(2)).sum();
    let syy: f64 = y.iter().map(|b| (b - my).powi(2)).sum();
    sxy / (sxx * syy).sqrt()
}

#[test]
fn pca_recovers_a_planted_three_dimensional_structure() {
    let (n, d) = (800, 48);
    let (rows, zs, a) = planted(n, d, [3.0, 2.0, 1.0], 0.01, 7);
    let pca = Pca::fit(&rows, d, 3).unwrap();
    for k in 0..3 {
        let cos: f64 = pca.components[k].iter().zip(&a[k]).map(|(x, y)| x * y).sum();
        assert!(cos.abs() > 0.99999, "component {k}: |cos| = {}", cos.abs());
        let want = [3.0f64, 2.0, 1.0][k].powi(2);
        assert!((pca.variances[k] / want - 1.0).abs() < 1e-3, "variance {k}: {} vs {want}", pca.variances[k]);
        let proj: Vec<f64> = rows.chunks(d).map(|r| pca.project(r)[k]).collect();
        let z: Vec<f64> = zs.iter().map(|z| z[k]).collect();
        let r = corr(&proj, &z).abs();
        assert!(r > 0.9999, "projection {k}: {r}");
    }
    assert!(pca.variances[0] > pca.variances[1] && pca.variances[1] > pca.variances[2]);
    assert!(pca.explained_ratio().iter().sum::<f64>() > 0.99);
    // the sign convention makes the result independent of row order
    let mut reversed: Vec<f32> = Vec::new();
    rows.chunks(d).rev().for_each(|r| reversed.extend_from_slice(r));
    let again = Pca::fit(&reversed, d, 3).unwrap();
    for (p, q) in pca.components.iter().zip(&again.components) {
        let dot: f64 = p.iter().zip(q).map(|(x, y)| x * y).sum();
        assert!(dot > 0.999_999, "{dot}");
    }
    assert!(Pca::fit(&rows[..d], d, 3).is_err(), "one row is not enough");
    assert!(Pca::fit(&rows, d, d + 1).is_err());
}

#[test]
fn pca_colours_follow_the_planted_components() {
    let (rows_n, cols_n, d) = (12, 16, 24);
    let (tokens, zs, _) = planted(rows_n * cols_n, d, [3.0, 2.0, 1.0], 0.01, 11);
    let grid = PatchGrid::new(rows_n, cols_n, d, tokens).unwrap();
    let pics = pca_rgb(&[grid.clone(), grid], None).unwrap();
    assert_eq!(pics.images.len(), 2);
    assert_eq!(pics.images[0].dimensions(), (16, 12));
    assert_eq!(pics.foreground, 1.0);
    for c in 0..3 {
        let chan: Vec<f64> = pics.images[0].pixels().map(|p| p.0[c] as f64).collect();
        let z: Vec<f64> = zs.iter().map(|z| z[c]).collect();
        assert!(corr(&chan, &z).abs() > 0.99, "channel {c}");
        // each channel spans the full byte range
        assert_eq!(chan.iter().cloned().fold(f64::INFINITY, f64::min), 0.0);
        assert_eq!(chan.iter().cloned().fold(0.0, f64::max), 255.0);
    }
}

#[test]
fn the_foreground_threshold_finds_the_planted_object() {
    // background patches near 0; an object in rows 3..7, columns 4..12 at +offset with its own
    // internal variation
    let (rows_n, cols_n, d) = (10, 16, 20);
    let mut rng = Rng(3);
    let inside = |r: usize, c: usize| (3..7).contains(&r) && (4..12).contains(&c);
    let mut tokens = Vec::new();
    for r in 0..rows_n {
        for c in 0..cols_n {
            for j in 0..d {
                let base = if inside(r, c) {
                    4.0 + (j as f64 * 0.3 + r as f64 * 0.2 + c as f64 * 0.1).sin()
                } else {
                    0.0
                };
                tokens.push((base + 0.05 * rng.next()) as f32);
            }
        }
    }
    let grid = PatchGrid::new(rows_n, cols_n, d, tokens).unwrap();
    let pics = pca_rgb(&[grid], Some(0.5)).unwrap();
    assert!((pics.foreground - 32.0 / 160.0).abs() < 1e-12, "{}", pics.foreground);
    for (x, y, p) in pics.images[0].enumerate_pixels() {
        if !inside(y as usize, x as usize) {
            assert_eq!(p.0, [0, 0, 0], "background ({x}, {y})");
        }
    }
    let lit = pics.images[0].pixels().filter(|p| p.0 != [0, 0, 0]).count();
    assert!(lit >= 30, "{lit}");
    // a threshold nothing passes is an error that says so
    let err =
        pca_rgb(&[PatchGrid::new(1, 2, 2, vec![0.0, 0.0, 1.0, 1.0]).unwrap()], Some(1.0)).err().unwrap();
    assert!(err.to_string().contains("foreground"), "{err}");
}

#[test]
fn norms_and_cosine_similarity() {
    // patch i is 3·e_(i mod 2) (+ e_2 for i ≥ 4)
    let d = 3;
    let tokens: Vec<f32> = (0..6)
        .flat_map(|i| {
            let mut v = [0.0f32; 3];
            v[i % 2] = 3.0;
            if i >= 4 {
                v[2] = 4.0;
            }
            v
        })
        .collect();
    let g = PatchGrid::new(2, 3, d, tokens).unwrap();
    assert_eq!(norms(&g), vec![3.0, 3.0, 3.0, 3.0, 5.0, 5.0]);
    let cos = cosine_to(&g, 0, 0).unwrap();
    assert_eq!(&cos[..4], &[1.0, 0.0, 1.0, 0.0]);
    assert!((cos[4] - 0.6).abs() < 1e-7 && cos[5].abs() < 1e-7);
    assert!(cosine_to(&g, 2, 0).is_err());
    assert!(PatchGrid::new(2, 3, d, vec![0.0; 5]).is_err());
}
