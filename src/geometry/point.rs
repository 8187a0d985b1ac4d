//! Points of the Poincare disk: validation, polar form, hyperbolic distance and Mobius translations.

use std::f64::consts::LN_2;

use geo_types::Coord;

use super::error::GeometryError;

/// A validated point of the open Poincare unit disk (curvature -1).
///
/// Invariants: both coordinates are finite and the Euclidean norm `r` satisfies
/// `0 <= r < 1`. Negative zero is normalised to positive zero so that equal
/// points have equal bit patterns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiskPoint(Coord<f64>);

impl DiskPoint {
    /// The centre of the disk.
    pub const ORIGIN: DiskPoint = DiskPoint(Coord { x: 0.0, y: 0.0 });

    /// Builds a point from cartesian coordinates, rejecting non-finite values and
    /// points on or outside the unit circle.
    pub fn new(x: f64, y: f64) -> Result<Self, GeometryError> {
        if !x.is_finite() || !y.is_finite() {
            return Err(GeometryError::NonFinite { x, y });
        }
        let r = x.hypot(y);
        if r >= 1.0 {
            return Err(GeometryError::OutsideDisk { r });
        }
        // `+ 0.0` turns -0.0 into 0.0 and leaves every other value unchanged.
        Ok(DiskPoint(Coord {
            x: x + 0.0,
            y: y + 0.0,
        }))
    }

    /// Builds a point from its Euclidean radius `r` (`0 <= r < 1`) and its angle in
    /// degrees (any finite value; it is taken modulo 360).
    pub fn from_polar(r: f64, theta_degrees: f64) -> Result<Self, GeometryError> {
        if !r.is_finite() || !theta_degrees.is_finite() {
            return Err(GeometryError::NonFinite {
                x: r,
                y: theta_degrees,
            });
        }
        if !(0.0..1.0).contains(&r) {
            return Err(GeometryError::OutsideDisk { r });
        }
        let (sin, cos) = normalize_degrees(theta_degrees).to_radians().sin_cos();
        DiskPoint::new(r * cos, r * sin)
    }

    /// The point at hyperbolic distance `rho >= 0` from the origin in direction
    /// `angle` (radians). Fails only if `rho` is so large that `tanh(rho / 2)`
    /// rounds to 1.
    pub fn from_hyperbolic_polar(rho: f64, angle_radians: f64) -> Result<Self, GeometryError> {
        if !rho.is_finite() || !angle_radians.is_finite() {
            return Err(GeometryError::NonFinite {
                x: rho,
                y: angle_radians,
            });
        }
        if rho < 0.0 {
            return Err(GeometryError::OutsideDisk { r: rho });
        }
        let r = (rho / 2.0).tanh();
        let (sin, cos) = angle_radians.sin_cos();
        DiskPoint::new(r * cos, r * sin)
    }

    /// The point moved radially, if needed, so that its hyperbolic radius is at
    /// most `max_hyperbolic_radius` (e.g. [`crate::geometry::MAX_HYPERBOLIC_RADIUS`]
    /// for explicitly requested coordinates). Its angle is kept.
    pub fn clamped_to(self, max_hyperbolic_radius: f64) -> DiskPoint {
        let max_r = (max_hyperbolic_radius.max(0.0) / 2.0).tanh();
        let r = self.r();
        if r <= max_r {
            return self;
        }
        let scale = max_r / r;
        DiskPoint::new(self.0.x * scale, self.0.y * scale).unwrap_or(self)
    }

    /// The point as a `geo_types` coordinate.
    pub fn coord(self) -> Coord<f64> {
        self.0
    }

    /// Cartesian x.
    pub fn x(self) -> f64 {
        self.0.x
    }

    /// Cartesian y.
    pub fn y(self) -> f64 {
        self.0.y
    }

    /// Euclidean norm `|z|`, in `[0, 1)`.
    pub fn r(self) -> f64 {
        self.0.x.hypot(self.0.y)
    }

    /// Polar angle in degrees, normalised to `[0, 360)`; 0 for the origin.
    pub fn theta_degrees(self) -> f64 {
        normalize_degrees(self.0.y.atan2(self.0.x).to_degrees())
    }

    /// Polar angle in radians, normalised to `[0, 2 pi)`; 0 for the origin.
    pub fn theta_radians(self) -> f64 {
        normalize_radians(self.0.y.atan2(self.0.x))
    }

    /// Hyperbolic distance from the origin, `2 artanh r`.
    pub fn hyperbolic_radius(self) -> f64 {
        2.0 * self.r().atanh()
    }

    /// The tier `floor(hyperbolic_radius / ln 2)`.
    pub fn tier(self) -> u32 {
        tier_of(self.hyperbolic_radius())
    }

    /// Hyperbolic distance to `other`.
    ///
    /// Mathematically equal to `2 artanh(|u - v| / |1 - conj(u) v|)`, but computed
    /// as `2 asinh(|u - v| / sqrt((1 - |u|^2)(1 - |v|^2)))`, which stays well
    /// conditioned both for nearby points and near the boundary, where the
    /// artanh argument approaches 1 and loses all its significant digits.
    /// The result is exactly symmetric.
    pub fn distance(self, other: DiskPoint) -> f64 {
        let diff = (self.0.x - other.0.x).hypot(self.0.y - other.0.y);
        let denom = (self.one_minus_norm_sqr() * other.one_minus_norm_sqr()).sqrt();
        2.0 * (diff / denom).asinh()
    }

    /// `1 - |z|^2`, computed as `(1 - r)(1 + r)` to keep relative precision near the boundary.
    pub(super) fn one_minus_norm_sqr(self) -> f64 {
        let r = self.r();
        (1.0 - r) * (1.0 + r)
    }
}

impl TryFrom<Coord<f64>> for DiskPoint {
    type Error = GeometryError;

    fn try_from(c: Coord<f64>) -> Result<Self, Self::Error> {
        DiskPoint::new(c.x, c.y)
    }
}

impl From<DiskPoint> for Coord<f64> {
    fn from(p: DiskPoint) -> Self {
        p.0
    }
}

/// Hyperbolic distance between two points; see [`DiskPoint::distance`].
pub fn hyperbolic_distance(u: DiskPoint, v: DiskPoint) -> f64 {
    u.distance(v)
}

/// The tier of a hyperbolic radius: `floor(rho / ln 2)` (0 for negative or NaN input).
pub fn tier_of(hyperbolic_radius: f64) -> u32 {
    // `as` saturates: NaN and negatives give 0, huge values u32::MAX.
    (hyperbolic_radius / LN_2).floor() as u32
}

/// The Mobius translation `T_a(z) = (z + a) / (1 + conj(a) z)`: an isometry of the
/// disk mapping the origin to `a`. Fails only if rounding pushes the result onto
/// the unit circle (possible only for inputs within about 1e-16 of it).
pub fn mobius_translate(a: DiskPoint, z: DiskPoint) -> Result<DiskPoint, GeometryError> {
    mobius(a.0, z.0)
}

/// The inverse translation `T_a^-1(z) = T_{-a}(z) = (z - a) / (1 - conj(a) z)`,
/// mapping `a` to the origin.
pub fn mobius_translate_inverse(a: DiskPoint, z: DiskPoint) -> Result<DiskPoint, GeometryError> {
    mobius(
        Coord {
            x: -a.0.x,
            y: -a.0.y,
        },
        z.0,
    )
}

fn mobius(a: Coord<f64>, z: Coord<f64>) -> Result<DiskPoint, GeometryError> {
    // numerator p = z + a; denominator q = 1 + conj(a) z
    let p = Coord {
        x: z.x + a.x,
        y: z.y + a.y,
    };
    let q = Coord {
        x: 1.0 + (a.x * z.x + a.y * z.y),
        y: a.x * z.y - a.y * z.x,
    };
    let q_norm_sqr = q.x * q.x + q.y * q.y;
    // p / q = p conj(q) / |q|^2
    DiskPoint::new(
        (p.x * q.x + p.y * q.y) / q_norm_sqr,
        (p.y * q.x - p.x * q.y) / q_norm_sqr,
    )
}

/// Normalises an angle in degrees to `[0, 360)`.
pub(crate) fn normalize_degrees(deg: f64) -> f64 {
    let d = deg.rem_euclid(360.0);
    // rem_euclid of a tiny negative number rounds up to exactly 360.
    if d >= 360.0 { 0.0 } else { d + 0.0 }
}

/// Normalises an angle in radians to `[0, 2 pi)`.
pub(crate) fn normalize_radians(rad: f64) -> f64 {
    let tau = std::f64::consts::TAU;
    let a = rad.rem_euclid(tau);
    if a >= tau { 0.0 } else { a + 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_example_round_trips() {
        let p = DiskPoint::from_polar(0.4, 120.0).unwrap();
        assert!((p.r() - 0.4).abs() < 1e-15, "r = {}", p.r());
        assert!(
            (p.theta_degrees() - 120.0).abs() < 1e-12,
            "theta = {}",
            p.theta_degrees()
        );
        assert!((p.x() + 0.2).abs() < 1e-15);
        assert!((p.y() - 0.4 * (3f64.sqrt() / 2.0)).abs() < 1e-15);
        // hyperbolic radius 2 artanh 0.4 = ln(1.4/0.6) = 0.8473; tier floor(0.8473/0.6931) = 1
        assert!((p.hyperbolic_radius() - (1.4f64 / 0.6).ln()).abs() < 1e-14);
        assert_eq!(p.tier(), 1);
    }

    #[test]
    fn rejects_invalid_points() {
        assert!(matches!(
            DiskPoint::new(f64::NAN, 0.0),
            Err(GeometryError::NonFinite { .. })
        ));
        assert!(matches!(
            DiskPoint::new(0.0, f64::INFINITY),
            Err(GeometryError::NonFinite { .. })
        ));
        assert!(matches!(
            DiskPoint::new(1.0, 0.0),
            Err(GeometryError::OutsideDisk { .. })
        ));
        assert!(matches!(
            DiskPoint::new(0.8, 0.8),
            Err(GeometryError::OutsideDisk { .. })
        ));
        assert!(DiskPoint::from_polar(-0.1, 0.0).is_err());
        assert!(DiskPoint::from_polar(1.0, 0.0).is_err());
        assert!(DiskPoint::from_polar(0.5, f64::NAN).is_err());
        assert!(DiskPoint::from_hyperbolic_polar(-1.0, 0.0).is_err());
        assert!(DiskPoint::from_hyperbolic_polar(100.0, 0.0).is_err());
        assert_eq!(
            DiskPoint::new(2.0, 0.0).unwrap_err().reason(),
            "InvalidPoint"
        );
    }

    #[test]
    fn theta_is_normalised() {
        assert_eq!(DiskPoint::ORIGIN.theta_degrees(), 0.0);
        let p = DiskPoint::from_polar(0.5, -90.0).unwrap();
        assert!((p.theta_degrees() - 270.0).abs() < 1e-12);
        let q = DiskPoint::from_polar(0.5, 720.0 + 45.0).unwrap();
        assert!((q.theta_degrees() - 45.0).abs() < 1e-12);
        assert_eq!(normalize_degrees(-1e-300), 0.0);
        assert_eq!(normalize_degrees(-0.0).to_bits(), 0.0f64.to_bits());
        assert_eq!(normalize_radians(-1e-300), 0.0);
    }

    #[test]
    fn negative_zero_is_normalised() {
        let p = DiskPoint::new(-0.0, -0.0).unwrap();
        assert_eq!(p.x().to_bits(), 0.0f64.to_bits());
        assert_eq!(p, DiskPoint::ORIGIN);
    }

    #[test]
    fn distance_from_origin_is_hyperbolic_radius() {
        for r in [0.0, 0.1, 0.5, 0.9, 0.999, 0.999_999] {
            let p = DiskPoint::from_polar(r, 33.0).unwrap();
            let d = p.distance(DiskPoint::ORIGIN);
            assert!(
                (d - p.hyperbolic_radius()).abs() < 1e-9 * (1.0 + d),
                "r={r}"
            );
        }
    }

    #[test]
    fn distance_matches_artanh_formula_away_from_boundary() {
        let u = DiskPoint::new(0.3, -0.2).unwrap();
        let v = DiskPoint::new(-0.1, 0.5).unwrap();
        // |u - v| / |1 - conj(u) v|
        let num = (u.x() - v.x()).hypot(u.y() - v.y());
        let re = 1.0 - (u.x() * v.x() + u.y() * v.y());
        let im = -(u.x() * v.y() - u.y() * v.x());
        let expected = 2.0 * (num / re.hypot(im)).atanh();
        assert!((u.distance(v) - expected).abs() < 1e-13);
    }

    #[test]
    fn distance_stays_accurate_near_the_boundary() {
        // two points at hyperbolic radius 12 on opposite sides: distance 24
        let u = DiskPoint::from_hyperbolic_polar(12.0, 0.0).unwrap();
        let v = DiskPoint::from_hyperbolic_polar(12.0, std::f64::consts::PI).unwrap();
        assert!((u.distance(v) - 24.0).abs() < 1e-9, "{}", u.distance(v));
        // two nearby points near the boundary: distance ~ angle * sinh(12)
        let w = DiskPoint::from_hyperbolic_polar(12.0, 1e-9).unwrap();
        let expected = 2.0 * (12f64.sinh() * (0.5e-9f64).sin()).asinh();
        assert!((u.distance(w) - expected).abs() < 1e-6, "{}", u.distance(w));
    }

    #[test]
    fn mobius_maps_origin_to_anchor_and_back() {
        let a = DiskPoint::from_polar(0.7, 200.0).unwrap();
        let t = mobius_translate(a, DiskPoint::ORIGIN).unwrap();
        assert!((t.x() - a.x()).abs() < 1e-15 && (t.y() - a.y()).abs() < 1e-15);
        let back = mobius_translate_inverse(a, a).unwrap();
        assert!(back.r() < 1e-15);
    }

    #[test]
    fn mobius_is_an_isometry() {
        let a = DiskPoint::new(0.5, 0.3).unwrap();
        let u = DiskPoint::new(-0.2, 0.1).unwrap();
        let v = DiskPoint::new(0.6, -0.6).unwrap();
        let d0 = u.distance(v);
        let d1 = mobius_translate(a, u)
            .unwrap()
            .distance(mobius_translate(a, v).unwrap());
        assert!((d0 - d1).abs() < 1e-12);
    }

    #[test]
    fn clamping_pulls_points_inside_the_limit() {
        let far = DiskPoint::new(0.999_999_999, 0.0).unwrap();
        let c = far.clamped_to(12.0);
        assert!((c.hyperbolic_radius() - 12.0).abs() < 1e-9);
        assert_eq!(c.theta_degrees(), 0.0);
        let near = DiskPoint::from_polar(0.4, 120.0).unwrap();
        assert_eq!(near.clamped_to(12.0), near);
        assert_eq!(far.clamped_to(-1.0), DiskPoint::ORIGIN);
    }

    #[test]
    fn tier_of_values() {
        assert_eq!(tier_of(0.0), 0);
        assert_eq!(tier_of(LN_2 * 0.999), 0);
        assert_eq!(tier_of(LN_2 * 3.5), 3);
        assert_eq!(tier_of(f64::NAN), 0);
        assert_eq!(tier_of(-1.0), 0);
    }
}
