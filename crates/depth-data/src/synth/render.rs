//! Ray casting a scene: planar depth from the ray through each pixel centre (exact up to f32
//! rounding; the terrain is bisected to 1e-6 relative), colour with Lambertian shading and 2×2
//! supersampling where the visible surface changes between neighbouring pixels.
//!
//! Pixel centres follow OpenCV's convention: pixel (x, y) is the point (x, y) of the image plane,
//! so the ray of pixel (x, y) has camera direction ((x − cx)/fx, (y − cy)/fy, 1).

use super::math::{V3, v3};
use super::scene::{Light, Scene};
use super::shapes::Hit;
use crate::sample::Target;
use image::RgbImage;
use rayon::prelude::*;

/// What one ray sees.
#[derive(Clone, Copy)]
struct Sample {
    depth: f32,
    /// Index of the object hit, or u32::MAX for the sky.
    object: u32,
    colour: V3,
}

impl Scene {
    /// The world direction (camera z = 1) of image point (u, v).
    fn ray(&self, u: f32, v: f32) -> V3 {
        let k = &self.camera.intrinsics;
        let d = v3((u - k.cx as f32) / k.fx as f32, (v - k.cy as f32) / k.fy as f32, 1.0);
        self.camera.basis.apply(d)
    }

    /// The first hit: object index and hit, or None for the sky.
    fn first_hit(&self, d: V3) -> Option<(usize, Hit)> {
        let mut best = None;
        let mut tmax = f32::INFINITY;
        for (i, obj) in self.objects.iter().enumerate() {
            if let Some(h) = obj.shape.intersect(self.camera.position, d, 1e-4, tmax) {
                tmax = h.t;
                best = Some((i, h));
            }
        }
        best
    }

    /// Depth and object only (colour left black).
    fn trace_depth(&self, u: f32, v: f32) -> Sample {
        match self.first_hit(self.ray(u, v)) {
            Some((i, h)) => Sample { depth: h.t, object: i as u32, colour: V3::default() },
            None => Sample { depth: 0.0, object: u32::MAX, colour: V3::default() },
        }
    }

    fn trace(&self, u: f32, v: f32) -> Sample {
        let (o, d) = (self.camera.position, self.ray(u, v));
        let Some((i, hit)) = self.first_hit(d) else {
            let sky = self.sky.expect("rays in a closed scene always hit");
            let up = (d.y / d.norm()).clamp(0.0, 1.0);
            return Sample {
                depth: 0.0,
                object: u32::MAX,
                colour: sky.horizon + (sky.zenith - sky.horizon) * up,
            };
        };
        let obj = &self.objects[i];
        let albedo = self.textures[obj.texture].sample(hit.uv.0, hit.uv.1);
        let p = o + d * hit.t;
        let mut light = self.ambient;
        for l in &self.lights {
            light = light
                + match *l {
                    Light::Point { position, colour, range } => {
                        let to = position - p;
                        let dist2 = to.dot(to);
                        let cos = hit.normal.dot(to) / dist2.sqrt();
                        colour * (cos.max(0.0) / (1.0 + dist2 / (range * range)) * 2.0)
                    }
                    Light::Sun { direction, colour } => colour * hit.normal.dot(-direction).max(0.0),
                };
        }
        Sample { depth: hit.t, object: i as u32, colour: albedo.hadamard(light) }
    }

    /// How informative the view is (see `scene::GOOD_VIEW`), from a 7×7 grid of rays.
    pub(super) fn view_score(&self) -> f32 {
        let (w, h) = (self.camera.width as f32, self.camera.height as f32);
        let mut depths = Vec::new();
        let (mut objects, mut sky) = (Vec::new(), 0);
        for i in 0..49 {
            let s = self.trace_depth((i % 7) as f32 * (w - 1.0) / 6.0, (i / 7) as f32 * (h - 1.0) / 6.0);
            if s.object == u32::MAX {
                sky += 1;
            } else {
                depths.push(s.depth);
            }
            if !objects.contains(&s.object) {
                objects.push(s.object);
            }
        }
        depths.sort_by(f32::total_cmp);
        let median = depths.get(depths.len() / 2).copied().unwrap_or(0.0);
        objects.len().min(5) as f32 + median.min(3.0) - 4.0 * sky as f32 / 49.0
    }

    /// Renders the image and its exact planar depth (sky: invalid).
    pub fn render(&self) -> (RgbImage, Target) {
        let (w, h) = (self.camera.width as usize, self.camera.height as usize);
        let centre: Vec<Sample> = (0..h)
            .into_par_iter()
            .flat_map_iter(|y| (0..w).map(move |x| (x, y)))
            .map(|(x, y)| self.trace(x as f32, y as f32))
            .collect();
        let colours: Vec<V3> = (0..w * h)
            .into_par_iter()
            .map(|i| {
                let (x, y) = (i % w, i / w);
                let id = centre[i].object;
                let edge = (x > 0 && centre[i - 1].object != id)
                    || (x + 1 < w && centre[i + 1].object != id)
                    || (y > 0 && centre[i - w].object != id)
                    || (y + 1 < h && centre[i + w].object != id);
                if !edge {
                    return centre[i].colour;
                }
                let offsets = [(-0.25, -0.25), (0.25, -0.25), (-0.25, 0.25), (0.25, 0.25)];
                let sum = offsets.iter().fold(v3(0.0, 0.0, 0.0), |acc, (dx, dy)| {
                    acc + self.trace(x as f32 + dx, y as f32 + dy).colour
                });
                sum * 0.25
            })
            .collect();
        let mut img = RgbImage::new(w as u32, h as u32);
        for (px, c) in img.pixels_mut().zip(&colours) {
            let q = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
            *px = image::Rgb([q(c.x), q(c.y), q(c.z)]);
        }
        let depth = Target::depth(w as u32, h as u32, centre.iter().map(|s| s.depth).collect());
        (img, depth)
    }
}
