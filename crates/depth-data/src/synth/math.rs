//! The small vector algebra the ray caster needs (f32, world y up; camera x right, y down, z forward).

use std::ops::{Add, Mul, Neg, Sub};

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct V3 {
    pub x: f32,
    pub y: f32,
    pub z: f32,
}

pub const fn v3(x: f32, y: f32, z: f32) -> V3 {
    V3 { x, y, z }
}

impl V3 {
    pub fn dot(self, o: V3) -> f32 {
        self.x * o.x + self.y * o.y + self.z * o.z
    }
    pub fn cross(self, o: V3) -> V3 {
        v3(self.y * o.z - self.z * o.y, self.z * o.x - self.x * o.z, self.x * o.y - self.y * o.x)
    }
    pub fn norm(self) -> f32 {
        self.dot(self).sqrt()
    }
    pub fn normalized(self) -> V3 {
        self * (1.0 / self.norm())
    }
    /// Component-wise product (colours).
    pub fn hadamard(self, o: V3) -> V3 {
        v3(self.x * o.x, self.y * o.y, self.z * o.z)
    }
}

impl Add for V3 {
    type Output = V3;
    fn add(self, o: V3) -> V3 {
        v3(self.x + o.x, self.y + o.y, self.z + o.z)
    }
}

impl Sub for V3 {
    type Output = V3;
    fn sub(self, o: V3) -> V3 {
        v3(self.x - o.x, self.y - o.y, self.z - o.z)
    }
}

impl Mul<f32> for V3 {
    type Output = V3;
    fn mul(self, s: f32) -> V3 {
        v3(self.x * s, self.y * s, self.z * s)
    }
}

impl Neg for V3 {
    type Output = V3;
    fn neg(self) -> V3 {
        v3(-self.x, -self.y, -self.z)
    }
}

/// A rotation as three orthonormal columns: local x, y, z expressed in world coordinates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Basis {
    pub x: V3,
    pub y: V3,
    pub z: V3,
}

impl Basis {
    pub const IDENTITY: Basis = Basis { x: v3(1.0, 0.0, 0.0), y: v3(0.0, 1.0, 0.0), z: v3(0.0, 0.0, 1.0) };

    /// Rotation about the world y axis by `yaw` radians.
    pub fn yaw(yaw: f32) -> Basis {
        let (s, c) = yaw.sin_cos();
        Basis { x: v3(c, 0.0, -s), y: v3(0.0, 1.0, 0.0), z: v3(s, 0.0, c) }
    }

    /// A camera basis (x right, y down, z forward) looking along `yaw` (about world up) and
    /// `pitch` (positive looks up), rolled by `roll` about the optical axis.
    pub fn camera(yaw: f32, pitch: f32, roll: f32) -> Basis {
        let (sy, cy) = yaw.sin_cos();
        let (sp, cp) = pitch.sin_cos();
        let forward = v3(sy * cp, sp, cy * cp);
        let right = v3(-cy, 0.0, sy); // forward × world up
        let down = forward.cross(right);
        let (sr, cr) = roll.sin_cos();
        Basis { x: right * cr + down * sr, y: down * cr - right * sr, z: forward }
    }

    /// Local → world.
    pub fn apply(&self, v: V3) -> V3 {
        self.x * v.x + self.y * v.y + self.z * v.z
    }

    /// World → local.
    pub fn inverse_apply(&self, v: V3) -> V3 {
        v3(self.x.dot(v), self.y.dot(v), self.z.dot(v))
    }
}
