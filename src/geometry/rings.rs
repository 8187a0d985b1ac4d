//! The ring-and-slot lattice around an anchor: ring step sizes, slot counts and slot angles.
//!
//! Around every anchor the engine places nodes on concentric hyperbolic circles
//! ("rings"). Ring `k` has radius `tau_k = RING0_TAU + k * MIN_SEPARATION`
//! measured from the anchor, so two nodes on different rings are at least
//! `MIN_SEPARATION` apart by the triangle inequality. Each ring is cut into
//! `n_k` equally spaced slots, where `n_k = floor(2 pi / Delta_k)` and
//! `sinh(MIN_SEPARATION / 2) = sinh(tau_k) sin(Delta_k / 2)`; two points at
//! distance `tau` from the anchor separated by the angle `Delta` there are
//! exactly `d` apart with `sinh(d / 2) = sinh(tau) sin(Delta / 2)`, so slots of
//! the same ring are also at least `MIN_SEPARATION` apart.

use std::f64::consts::TAU;

/// Minimum hyperbolic distance between two nodes placed around the same anchor.
pub const MIN_SEPARATION: f64 = 0.5;

/// Hyperbolic radius (measured from the anchor) of ring 0.
pub const RING0_TAU: f64 = 1.0;

/// Largest hyperbolic radius (measured from the origin) of a placed point, and of
/// an anchor. At 12 the Euclidean radius is `tanh 6 = 1 - 1.2e-5`, so f64 still
/// resolves points to about 1e-11 in hyperbolic terms.
pub const MAX_HYPERBOLIC_RADIUS: f64 = 12.0;

/// The last ring: `tau = 12`. Beyond it a slot's anchor-relative angle and
/// radius can no longer be resolved to 1e-9 in f64 (both errors grow like
/// `1e-16 * e^tau`), so rings stop there. Around the origin rings 0..=22 hold
/// about 5 million slots; around an anchor at the radius limit (whose outer
/// rings are mostly beyond `MAX_HYPERBOLIC_RADIUS`) a few tens of thousands.
pub const MAX_RING: u32 = 22;

/// One slot of the lattice around an anchor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slot {
    /// Ring number, `0..=MAX_RING`.
    pub ring: u32,
    /// Slot number within the ring, `0..ring_capacity(ring)`; slot `j` sits at
    /// angle `2 pi j / ring_capacity(ring)` as seen from the anchor.
    pub index: u64,
}

/// Hyperbolic distance from the anchor of ring `ring`.
pub fn ring_tau(ring: u32) -> f64 {
    RING0_TAU + f64::from(ring) * MIN_SEPARATION
}

/// The angular increment `Delta` at the anchor that keeps two points of ring
/// `ring` exactly `MIN_SEPARATION` apart (`pi` or more means one slot only).
pub fn ring_min_angle(ring: u32) -> f64 {
    let s = (MIN_SEPARATION / 2.0).sinh() / ring_tau(ring).sinh();
    if s >= 1.0 {
        std::f64::consts::PI * 2.0
    } else {
        2.0 * s.asin()
    }
}

/// Number of slots of ring `ring`: `floor(2 pi / Delta)`, at least 1.
pub fn ring_capacity(ring: u32) -> u64 {
    let delta = ring_min_angle(ring);
    // The float-to-int `as` saturates; the value is at most ~3.4e11 for MAX_RING.
    let mut n = ((TAU / delta).floor() as u64).max(1);
    // Guard against 2 pi / Delta rounding up onto an integer.
    while n > 1 && TAU / (n as f64) < delta {
        n -= 1;
    }
    n
}

/// Angle (radians, at the anchor) of slot `index` on a ring of `capacity` slots.
pub(crate) fn slot_angle(capacity: u64, index: u64) -> f64 {
    TAU * (index as f64) / (capacity as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacities_grow_and_respect_separation() {
        let mut last = 0;
        for ring in 0..=MAX_RING {
            let n = ring_capacity(ring);
            assert!(n >= last, "ring {ring}");
            last = n;
            let spacing = TAU / n as f64;
            let tau = ring_tau(ring);
            let d = 2.0 * (tau.sinh() * (spacing / 2.0).sin()).asinh();
            assert!(d >= MIN_SEPARATION - 1e-12, "ring {ring}: {d}");
            // and the ring is not wastefully sparse: n + 1 slots would violate it
            let tighter = TAU / (n + 1) as f64;
            let d1 = 2.0 * (tau.sinh() * (tighter / 2.0).sin()).asinh();
            assert!(d1 < MIN_SEPARATION, "ring {ring}");
        }
        assert_eq!(ring_capacity(0), 14);
        assert_eq!(ring_tau(MAX_RING), 12.0);
    }
}
