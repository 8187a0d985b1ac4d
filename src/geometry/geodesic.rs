//! Geodesics of the Poincare disk for drawing: the circle (orthogonal to the unit circle) or the
//! diameter through two points, and the Euclidean radius of the tier rings.

use std::f64::consts::LN_2;

use super::point::DiskPoint;

/// Below this `|u x v|` the two points are taken as collinear with the origin and the geodesic as
/// a straight segment (the radius of the true circle would exceed ~1e9).
const COLLINEAR_EPSILON: f64 = 1e-9;

/// The geodesic through two points of the disk, as a drawing primitive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Geodesic {
    /// The points lie on a diameter (or coincide): the geodesic is the straight segment.
    Segment,
    /// The geodesic is an arc of the circle with this Euclidean centre `(x, y)` and radius, which
    /// meets the unit circle at right angles (`|centre|^2 = radius^2 + 1`). The arc between the
    /// two points is the one inside the disk, always shorter than a half circle.
    Arc { center: (f64, f64), radius: f64 },
}

/// The geodesic through `u` and `v`.
///
/// A circle orthogonal to the unit circle with centre `c` satisfies `|c|^2 = R^2 + 1`; it passes
/// through `u` when `|c - u|^2 = R^2`, that is `2 c.u = |u|^2 + 1`. The same for `v` gives a 2x2
/// linear system whose determinant `2 (u x v)` vanishes exactly when `u`, `v` and the origin are
/// collinear: then the geodesic is a diameter.
pub fn geodesic(u: DiskPoint, v: DiskPoint) -> Geodesic {
    let (ux, uy, vx, vy) = (u.x(), u.y(), v.x(), v.y());
    let cross = ux * vy - uy * vx;
    if cross.abs() < COLLINEAR_EPSILON {
        return Geodesic::Segment;
    }
    let bu = (ux * ux + uy * uy + 1.0) / 2.0;
    let bv = (vx * vx + vy * vy + 1.0) / 2.0;
    // Cramer's rule on [ux uy; vx vy] c = [bu; bv].
    let cx = (bu * vy - uy * bv) / cross;
    let cy = (ux * bv - bu * vx) / cross;
    let radius = (cx * cx + cy * cy - 1.0).max(0.0).sqrt();
    Geodesic::Arc {
        center: (cx, cy),
        radius,
    }
}

/// The Euclidean radius of the circle of hyperbolic radius `tier * ln 2` around the origin (the
/// inner edge of `tier`): `tanh(tier ln 2 / 2) = (2^tier - 1) / (2^tier + 1)`.
pub fn tier_ring_radius(tier: u32) -> f64 {
    (f64::from(tier) * LN_2 / 2.0).tanh()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(r: f64, deg: f64) -> DiskPoint {
        DiskPoint::from_polar(r, deg).expect("point in the disk")
    }

    fn check_arc(u: DiskPoint, v: DiskPoint) {
        let Geodesic::Arc {
            center: (cx, cy),
            radius,
        } = geodesic(u, v)
        else {
            panic!("expected an arc for {u:?} {v:?}");
        };
        // orthogonal to the unit circle
        assert!(
            (cx * cx + cy * cy - radius * radius - 1.0).abs() < 1e-9 * (1.0 + radius * radius),
            "not orthogonal: c=({cx},{cy}) R={radius}"
        );
        // through both points
        for w in [u, v] {
            let d = (w.x() - cx).hypot(w.y() - cy);
            assert!(
                (d - radius).abs() < 1e-9 * (1.0 + radius),
                "{d} vs {radius}"
            );
        }
        // the hyperbolic midpoint of u and v lies on the circle too
        let a = crate::geometry::mobius_translate_inverse(u, v).expect("translate");
        let half = DiskPoint::from_hyperbolic_polar(a.hyperbolic_radius() / 2.0, a.theta_radians())
            .expect("half");
        let m = crate::geometry::mobius_translate(u, half).expect("translate back");
        let d = (m.x() - cx).hypot(m.y() - cy);
        assert!(
            (d - radius).abs() < 1e-9 * (1.0 + radius),
            "midpoint off the arc"
        );
    }

    #[test]
    fn arcs_are_orthogonal_and_pass_through_both_points() {
        check_arc(p(0.4, 120.0), p(0.6, 150.0));
        check_arc(p(0.1, 0.0), p(0.9, 90.0));
        check_arc(p(0.99, 10.0), p(0.999, 200.0));
        check_arc(p(0.5, 45.0), p(0.5, 46.0));
    }

    #[test]
    fn points_on_a_diameter_give_a_segment() {
        assert_eq!(geodesic(DiskPoint::ORIGIN, p(0.5, 33.0)), Geodesic::Segment);
        assert_eq!(geodesic(p(0.3, 70.0), p(0.8, 250.0)), Geodesic::Segment);
        assert_eq!(geodesic(p(0.3, 70.0), p(0.3, 70.0)), Geodesic::Segment);
    }

    #[test]
    fn tier_rings_sit_at_multiples_of_ln2() {
        assert_eq!(tier_ring_radius(0), 0.0);
        assert!((tier_ring_radius(1) - 1.0 / 3.0).abs() < 1e-15);
        assert!((tier_ring_radius(2) - 3.0 / 5.0).abs() < 1e-15);
        for k in 1..12 {
            let q = DiskPoint::from_polar(tier_ring_radius(k) * (1.0 + 1e-12), 0.0).expect("in");
            assert_eq!(q.tier(), k, "just outside ring {k} is tier {k}");
        }
    }
}
