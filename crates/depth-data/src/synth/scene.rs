//! Scenes and their seeded construction: rooms with furniture, outdoor terrain with buildings,
//! poles and boulders under a sky, seen by a random pinhole camera.

use super::math::{Basis, V3, v3};
use super::shapes::{Shape, Terrain};
use super::texture::{PhotoBank, Texture};
use crate::sample::Intrinsics;
use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::f32::consts::PI;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SceneKind {
    Indoor,
    Outdoor,
}

#[derive(Clone, Debug)]
pub struct Object {
    pub shape: Shape,
    pub texture: usize,
}

#[derive(Clone, Copy, Debug)]
pub enum Light {
    /// A point light at `position`; irradiance falls off as 1 / (1 + d²/range²).
    Point { position: V3, colour: V3, range: f32 },
    /// A light at infinity shining along `direction`.
    Sun { direction: V3, colour: V3 },
}

#[derive(Clone, Copy, Debug)]
pub struct Sky {
    pub horizon: V3,
    pub zenith: V3,
}

#[derive(Clone, Debug)]
pub struct Camera {
    pub position: V3,
    pub basis: Basis,
    pub intrinsics: Intrinsics,
    pub width: u32,
    pub height: u32,
}

#[derive(Clone, Debug)]
pub struct Scene {
    pub kind: SceneKind,
    pub camera: Camera,
    pub objects: Vec<Object>,
    pub textures: Vec<Texture>,
    pub lights: Vec<Light>,
    pub ambient: V3,
    /// Rays that hit nothing see the sky and get invalid depth; None in closed rooms.
    pub sky: Option<Sky>,
}

/// How scenes are drawn.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SceneConfig {
    pub width: u32,
    pub height: u32,
    /// Fraction of outdoor scenes (the rest are rooms).
    pub outdoor_fraction: f64,
    /// Horizontal field of view range in degrees.
    pub fov_deg: (f32, f32),
    /// Fraction of surfaces textured with photo crops (the rest with procedural noise).
    pub photo_fraction: f64,
}

impl Default for SceneConfig {
    fn default() -> Self {
        Self { width: 518, height: 518, outdoor_fraction: 0.5, fov_deg: (50.0, 90.0), photo_fraction: 0.6 }
    }
}

const PITCH_INDOOR: (f32, f32) = (-30.0, 15.0);
const PITCH_OUTDOOR: (f32, f32) = (-20.0, 8.0);
const VIEW_TRIES: usize = 8;
/// A view scores the number of distinct surfaces a 7×7 probe sees (at most 5) plus its median
/// depth (at most 3 m) minus 4 × its sky fraction; 5 is good enough.
const GOOD_VIEW: f32 = 5.0;

struct Builder<'a> {
    /// Geometry, camera and lights.
    rng: ChaCha8Rng,
    /// Surfaces only, so that the photo bank never changes the geometry.
    tex_rng: ChaCha8Rng,
    bank: &'a PhotoBank,
    cfg: &'a SceneConfig,
    textures: Vec<Texture>,
}

impl Builder<'_> {
    fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        self.rng.random_range(lo..hi)
    }

    /// A new texture (photo crop or noise) covering `size` metres; returns its index.
    fn texture(&mut self, size: f32) -> usize {
        let rng = &mut self.tex_rng;
        let photo = rng.random_bool(self.cfg.photo_fraction.clamp(0.0, 1.0));
        let tex = match photo.then(|| self.bank.crop(rng, size)).flatten() {
            Some(t) => t,
            None => {
                let mut colour = || {
                    v3(rng.random_range(0.1..0.95), rng.random_range(0.1..0.95), rng.random_range(0.1..0.95))
                };
                let (a, b) = (colour(), colour());
                let cells = rng.random_range(2.0..12.0);
                Texture::noise(rng.random(), a, b, cells, size)
            }
        };
        self.textures.push(tex);
        self.textures.len() - 1
    }

    fn object(&mut self, shape: Shape, texture_size: f32) -> Object {
        Object { shape, texture: self.texture(texture_size) }
    }

    fn camera(&mut self, position: V3, pitch: (f32, f32)) -> Camera {
        let (w, h) = (self.cfg.width, self.cfg.height);
        let fov = self.uniform(self.cfg.fov_deg.0, self.cfg.fov_deg.1).to_radians();
        let fx = w as f32 / 2.0 / (fov / 2.0).tan();
        let fy = fx * self.uniform(0.98, 1.02);
        let cx = (w as f32 - 1.0) / 2.0 + self.uniform(-0.02, 0.02) * w as f32;
        let cy = (h as f32 - 1.0) / 2.0 + self.uniform(-0.02, 0.02) * h as f32;
        let basis = self.orientation(pitch);
        let intrinsics = Intrinsics { fx: fx as f64, fy: fy as f64, cx: cx as f64, cy: cy as f64 };
        Camera { position, basis, intrinsics, width: w, height: h }
    }

    /// A random view direction with pitch in `pitch` degrees and roll within ±5°.
    fn orientation(&mut self, pitch: (f32, f32)) -> Basis {
        Basis::camera(
            self.uniform(-PI, PI),
            self.uniform(pitch.0, pitch.1).to_radians(),
            self.uniform(-5.0, 5.0).to_radians(),
        )
    }

    fn indoor(&mut self) -> Scene {
        let (rw, rd, rh) = (self.uniform(3.0, 8.0), self.uniform(3.0, 8.0), self.uniform(2.4, 3.5));
        let room = Shape::Cuboid {
            centre: v3(0.0, rh / 2.0, 0.0),
            axes: Basis::IDENTITY,
            half: v3(rw / 2.0, rh / 2.0, rd / 2.0),
        };
        let size = self.uniform(1.0, 4.0);
        let mut objects = vec![self.object(room, size)];
        let eye = v3(
            self.uniform(-rw / 2.0 + 0.4, rw / 2.0 - 0.4),
            self.uniform(1.0, 1.8),
            self.uniform(-rd / 2.0 + 0.4, rd / 2.0 - 0.4),
        );
        let count = self.rng.random_range(3..=10);
        for _ in 0..count * 4 {
            if objects.len() > count {
                break;
            }
            let (x, z) = (self.uniform(-rw / 2.0, rw / 2.0), self.uniform(-rd / 2.0, rd / 2.0));
            let shape = match self.rng.random_range(0..3) {
                0 => {
                    let half = v3(self.uniform(0.15, 0.8), self.uniform(0.1, 0.9), self.uniform(0.15, 0.8));
                    Shape::Cuboid { centre: v3(x, half.y, z), axes: Basis::yaw(self.uniform(-PI, PI)), half }
                }
                1 => {
                    let r = self.uniform(0.1, 0.5);
                    Shape::Sphere { centre: v3(x, r + self.uniform(0.0, 1.2), z), radius: r }
                }
                _ => Shape::Cylinder {
                    base: v3(x, 0.0, z),
                    radius: self.uniform(0.05, 0.4),
                    height: self.uniform(0.3, rh - 0.1),
                },
            };
            if !shape.contains(eye, 0.3) {
                let size = self.uniform(0.3, 1.5);
                objects.push(self.object(shape, size));
            }
        }
        let lights = (0..self.rng.random_range(1..=3))
            .map(|_| Light::Point {
                position: v3(
                    self.uniform(-rw / 2.0, rw / 2.0) * 0.8,
                    rh - 0.2,
                    self.uniform(-rd / 2.0, rd / 2.0) * 0.8,
                ),
                colour: v3(1.0, self.uniform(0.85, 1.0), self.uniform(0.7, 1.0)) * self.uniform(0.5, 0.9),
                range: self.uniform(2.0, 5.0),
            })
            .collect();
        let ambient = v3(1.0, 1.0, 1.0) * self.uniform(0.15, 0.35);
        let camera = self.camera(eye, PITCH_INDOOR);
        Scene {
            kind: SceneKind::Indoor,
            camera,
            objects,
            textures: std::mem::take(&mut self.textures),
            lights,
            ambient,
            sky: None,
        }
    }

    fn outdoor(&mut self) -> Scene {
        let terrain = Terrain {
            seed: self.rng.random(),
            base: 0.0,
            amplitude: self.uniform(0.5, 6.0),
            frequency: self.uniform(0.01, 0.06),
            extent: 300.0,
        };
        let ground = |x: f32, z: f32| terrain.height(x, z);
        let eye_xz = (self.uniform(-20.0, 20.0), self.uniform(-20.0, 20.0));
        let eye = v3(eye_xz.0, ground(eye_xz.0, eye_xz.1) + self.uniform(1.5, 8.0), eye_xz.1);
        let size = self.uniform(2.0, 10.0);
        let mut objects = vec![self.object(Shape::Terrain(terrain.clone()), size)];
        let count = self.rng.random_range(4..=16);
        for _ in 0..count * 4 {
            if objects.len() > count {
                break;
            }
            let (dist, angle) = (self.uniform(4.0, 80.0), self.uniform(-PI, PI));
            let (x, z) = (eye.x + dist * angle.sin(), eye.z + dist * angle.cos());
            let y = ground(x, z);
            let shape = match self.rng.random_range(0..3) {
                0 => {
                    let half = v3(self.uniform(1.5, 8.0), self.uniform(2.0, 15.0), self.uniform(1.5, 8.0));
                    let sink = self.uniform(0.5, 2.0);
                    Shape::Cuboid {
                        centre: v3(x, y + half.y - sink, z),
                        axes: Basis::yaw(self.uniform(-PI, PI)),
                        half,
                    }
                }
                1 => {
                    let r = self.uniform(0.5, 4.0);
                    Shape::Sphere { centre: v3(x, y + r * self.uniform(0.2, 0.9), z), radius: r }
                }
                _ => Shape::Cylinder {
                    base: v3(x, y - 1.0, z),
                    radius: self.uniform(0.1, 1.0),
                    height: self.uniform(3.0, 12.0),
                },
            };
            if !shape.contains(eye, 1.0) {
                let size = self.uniform(1.0, 6.0);
                objects.push(self.object(shape, size));
            }
        }
        let elevation = self.uniform(20.0, 70.0).to_radians();
        let azimuth = self.uniform(-PI, PI);
        let lights = vec![Light::Sun {
            direction: -v3(elevation.cos() * azimuth.sin(), elevation.sin(), elevation.cos() * azimuth.cos()),
            colour: v3(1.0, self.uniform(0.9, 1.0), self.uniform(0.75, 0.95)) * self.uniform(0.6, 0.9),
        }];
        let ambient = v3(0.9, 0.95, 1.0) * self.uniform(0.2, 0.4);
        let sky = Sky {
            horizon: v3(self.uniform(0.7, 0.95), self.uniform(0.75, 0.95), 0.95),
            zenith: v3(0.2, self.uniform(0.35, 0.55), self.uniform(0.7, 0.95)),
        };
        // the terrain last: rays that hit an object first march the terrain only up to it
        objects.rotate_left(1);
        let camera = self.camera(eye, PITCH_OUTDOOR);
        Scene {
            kind: SceneKind::Outdoor,
            camera,
            objects,
            textures: std::mem::take(&mut self.textures),
            lights,
            ambient,
            sky: Some(sky),
        }
    }
}

impl Scene {
    /// The scene for `seed`: the same seed, config and photo bank always give the same scene.
    pub fn random(seed: u64, cfg: &SceneConfig, bank: &PhotoBank) -> Scene {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let tex_rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7E57_u64.rotate_left(40));
        let outdoor = rng.random_bool(cfg.outdoor_fraction.clamp(0.0, 1.0));
        let mut b = Builder { rng, tex_rng, bank, cfg, textures: Vec::new() };
        let mut scene = if outdoor { b.outdoor() } else { b.indoor() };
        // Re-aim a camera that stares at a nearby surface or mostly at the sky.
        let pitch = if outdoor { PITCH_OUTDOOR } else { PITCH_INDOOR };
        let mut best = (scene.view_score(), scene.camera.basis);
        for _ in 0..VIEW_TRIES {
            if best.0 >= GOOD_VIEW {
                break;
            }
            scene.camera.basis = b.orientation(pitch);
            let score = scene.view_score();
            if score > best.0 {
                best = (score, scene.camera.basis);
            }
        }
        scene.camera.basis = best.1;
        scene
    }
}
