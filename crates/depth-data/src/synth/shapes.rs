//! Ray–shape intersection for the primitives scenes are built from. Rays are `o + t·d` with the
//! camera-frame z of `d` equal to 1, so `t` of the first hit *is* the planar depth.

use super::math::{Basis, V3, v3};
use super::noise;

/// The first intersection along a ray: parameter, unit normal facing the ray, surface (u, v) in metres.
#[derive(Clone, Copy, Debug)]
pub struct Hit {
    pub t: f32,
    pub normal: V3,
    pub uv: (f32, f32),
}

/// A height field `y = base + amplitude · fbm(x·frequency, z·frequency)` out to `extent` metres.
#[derive(Clone, Debug)]
pub struct Terrain {
    pub seed: u32,
    pub base: f32,
    pub amplitude: f32,
    pub frequency: f32,
    pub extent: f32,
}

impl Terrain {
    const OCTAVES: u32 = 3;

    pub fn height(&self, x: f32, z: f32) -> f32 {
        self.base
            + self.amplitude * noise::fbm(self.seed, x * self.frequency, z * self.frequency, Self::OCTAVES)
    }

    fn normal(&self, x: f32, z: f32) -> V3 {
        let (_, gx, gz) = noise::fbm_grad(self.seed, x * self.frequency, z * self.frequency, Self::OCTAVES);
        let k = self.amplitude * self.frequency;
        v3(-k * gx, 1.0, -k * gz).normalized()
    }

    /// Marches with 1.5× the step the height field's Lipschitz bound guarantees (never below 1 %
    /// of the distance), then refines the first sign change to the surface. A ridge thinner
    /// than one step can be missed; a returned depth is always on the surface (1e-6 relative).
    fn intersect(&self, o: V3, d: V3, tmax: f32) -> Option<Hit> {
        let horizontal = (d.x * d.x + d.z * d.z).sqrt();
        let slope = self.amplitude
            * self.frequency
            * noise::fbm_slope_bound(Self::OCTAVES)
            * std::f32::consts::SQRT_2;
        let rate = d.y.abs() + slope * horizontal; // |d/dt (y − h)| ≤ rate
        let top = self.base + self.amplitude;
        let above = |t: f32| {
            let p = o + d * t;
            p.y - self.height(p.x, p.z)
        };
        let tlimit = tmax.min(self.extent / horizontal.max(1e-6));
        let (mut t, mut gap) = (0.0f32, above(0.0));
        if gap <= 0.0 {
            return None;
        }
        for _ in 0..1024 {
            if o.y + d.y * t > top && d.y >= 0.0 {
                return None;
            }
            let step = (1.5 * gap / rate).max(1e-2 * t.max(1.0));
            let next = t + step;
            if next > tlimit {
                return None;
            }
            let g = above(next);
            if g <= 0.0 {
                let t = refine(&above, (t, gap), (next, g));
                let p = o + d * t;
                return Some(Hit { t, normal: self.normal(p.x, p.z), uv: (p.x, p.z) });
            }
            (t, gap) = (next, g);
        }
        None
    }
}

/// The root of `f` in the bracket `a` (f > 0) … `b` (f ≤ 0) by the Illinois variant of regula
/// falsi, to 1e-6 relative; returns a parameter where f ≤ 0 (on or just under the surface).
fn refine(f: &impl Fn(f32) -> f32, a: (f32, f32), b: (f32, f32)) -> f32 {
    let ((mut ta, mut fa), (mut tb, mut fb)) = (a, b);
    let mut side = 0;
    for _ in 0..60 {
        if tb - ta <= 1e-6 * tb {
            break;
        }
        let t = (ta * fb - tb * fa) / (fb - fa);
        let t = if t > ta && t < tb { t } else { 0.5 * (ta + tb) };
        let ft = f(t);
        if ft > 0.0 {
            (ta, fa) = (t, ft);
            if side == 1 {
                fb *= 0.5;
            }
            side = 1;
        } else {
            (tb, fb) = (t, ft);
            if side == -1 {
                fa *= 0.5;
            }
            side = -1;
        }
    }
    tb
}

#[derive(Clone, Debug)]
pub enum Shape {
    /// A rectangle (or an infinite plane when `half` is None) spanned by the orthonormal `u`, `v`.
    Plane {
        origin: V3,
        u: V3,
        v: V3,
        half: Option<(f32, f32)>,
    },
    /// An oriented box; seen from inside, its inner faces (a room).
    Cuboid {
        centre: V3,
        axes: Basis,
        half: V3,
    },
    Sphere {
        centre: V3,
        radius: f32,
    },
    /// An upright capped cylinder standing on `base`.
    Cylinder {
        base: V3,
        radius: f32,
        height: f32,
    },
    Terrain(Terrain),
}

fn facing(n: V3, d: V3) -> V3 {
    if n.dot(d) > 0.0 { -n } else { n }
}

impl Shape {
    /// The first hit with `tmin < t < tmax`.
    pub fn intersect(&self, o: V3, d: V3, tmin: f32, tmax: f32) -> Option<Hit> {
        let hit = match self {
            Shape::Plane { origin, u, v, half } => {
                let n = u.cross(*v);
                let denom = n.dot(d);
                if denom.abs() < 1e-12 {
                    return None;
                }
                let t = (*origin - o).dot(n) / denom;
                let q = o + d * t - *origin;
                let (a, b) = (q.dot(*u), q.dot(*v));
                if let Some((hu, hv)) = half
                    && (a.abs() > *hu || b.abs() > *hv)
                {
                    return None;
                }
                Hit { t, normal: facing(n, d), uv: (a, b) }
            }
            Shape::Cuboid { centre, axes, half } => {
                let (lo, ld) = (axes.inverse_apply(o - *centre), axes.inverse_apply(d));
                let (mut tn, mut tf, mut an, mut af) = (f32::NEG_INFINITY, f32::INFINITY, 0, 0);
                for (k, (oc, dc, h)) in
                    [(lo.x, ld.x, half.x), (lo.y, ld.y, half.y), (lo.z, ld.z, half.z)].into_iter().enumerate()
                {
                    if dc.abs() < 1e-12 {
                        if oc.abs() > h {
                            return None;
                        }
                        continue;
                    }
                    let (t0, t1) = ((-h - oc) / dc, (h - oc) / dc);
                    let (t0, t1) = if t0 < t1 { (t0, t1) } else { (t1, t0) };
                    if t0 > tn {
                        (tn, an) = (t0, k);
                    }
                    if t1 < tf {
                        (tf, af) = (t1, k);
                    }
                }
                if tn > tf {
                    return None;
                }
                let (t, axis) = if tn > tmin { (tn, an) } else { (tf, af) };
                let p = lo + ld * t;
                let (n, uv) = match axis {
                    0 => (axes.x, (p.z, p.y)),
                    1 => (axes.y, (p.x, p.z)),
                    _ => (axes.z, (p.x, p.y)),
                };
                Hit { t, normal: facing(n, d), uv }
            }
            Shape::Sphere { centre, radius } => {
                let oc = o - *centre;
                // in f64: b² − ac cancels badly in f32 when the sphere is small and far
                let (a, b) = (d.dot(d) as f64, oc.dot(d) as f64);
                let c = oc.dot(oc) as f64 - (*radius as f64).powi(2);
                let disc = b * b - a * c;
                if disc < 0.0 {
                    return None;
                }
                let s = disc.sqrt();
                let t = if (-b - s) / a > tmin as f64 { (-b - s) / a } else { (-b + s) / a } as f32;
                let n = (oc + d * t) * (1.0 / radius);
                let uv = (n.z.atan2(n.x) * radius, n.y.clamp(-1.0, 1.0).acos() * radius);
                Hit { t, normal: facing(n, d), uv }
            }
            Shape::Cylinder { base, radius, height } => {
                let oc = o - *base;
                let mut best: Option<Hit> = None;
                let (ox, oz, dx, dz) = (oc.x as f64, oc.z as f64, d.x as f64, d.z as f64);
                let (a, b, c) =
                    (dx * dx + dz * dz, ox * dx + oz * dz, ox * ox + oz * oz - (*radius as f64).powi(2));
                let disc = b * b - a * c;
                if a > 1e-12 && disc >= 0.0 {
                    for t in [(-b - disc.sqrt()) / a, (-b + disc.sqrt()) / a].map(|t| t as f32) {
                        let y = oc.y + d.y * t;
                        if t > tmin && t < tmax && (0.0..=*height).contains(&y) {
                            let n = v3(oc.x + d.x * t, 0.0, oc.z + d.z * t) * (1.0 / radius);
                            best = Some(Hit { t, normal: facing(n, d), uv: (n.z.atan2(n.x) * radius, y) });
                            break;
                        }
                    }
                }
                if d.y.abs() > 1e-12 {
                    for cap in [0.0, *height] {
                        let t = (cap - oc.y) / d.y;
                        let (x, z) = (oc.x + d.x * t, oc.z + d.z * t);
                        if t > tmin
                            && t < tmax
                            && x * x + z * z <= radius * radius
                            && best.is_none_or(|h| t < h.t)
                        {
                            best = Some(Hit { t, normal: facing(v3(0.0, 1.0, 0.0), d), uv: (x, z) });
                        }
                    }
                }
                return best;
            }
            Shape::Terrain(terrain) => return terrain.intersect(o, d, tmax).filter(|h| h.t > tmin),
        };
        (hit.t > tmin && hit.t < tmax).then_some(hit)
    }

    /// Whether a point lies inside the solid (planes and terrain have no inside; a point under
    /// the terrain counts as inside).
    pub fn contains(&self, p: V3, margin: f32) -> bool {
        match self {
            Shape::Plane { .. } => false,
            Shape::Cuboid { centre, axes, half } => {
                let l = axes.inverse_apply(p - *centre);
                l.x.abs() < half.x + margin && l.y.abs() < half.y + margin && l.z.abs() < half.z + margin
            }
            Shape::Sphere { centre, radius } => (p - *centre).norm() < radius + margin,
            Shape::Cylinder { base, radius, height } => {
                let q = p - *base;
                (q.x * q.x + q.z * q.z).sqrt() < radius + margin && q.y > -margin && q.y < height + margin
            }
            Shape::Terrain(t) => p.y < t.height(p.x, p.z) + margin,
        }
    }
}
