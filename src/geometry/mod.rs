//! Poincare-disk geometry and deterministic semantic placement: pure, no Kubernetes types.
//!
//! - [`DiskPoint`]: validated points of the unit disk, polar form, hyperbolic
//!   distance, tiers; [`mobius_translate`] / [`mobius_translate_inverse`].
//! - [`place`]: deterministic semantic placement of a node around an anchor
//!   (algorithm [`ALGORITHM`]), separated from its neighbours by at least
//!   [`MIN_SEPARATION`] using an [`AnchorIndex`] of occupied [`Slot`]s.
//! - [`k_nearest`]: nearest neighbours by hyperbolic distance (a scan, the
//!   reference); [`PointIndex`]: the same answer from an index of the points.
//! - [`geodesic`]: the arc (or diameter) through two points, for drawing the disk.

mod error;
mod geodesic;
mod index;
mod neighbors;
mod placement;
mod point;
mod point_index;
pub mod rings;

pub use error::GeometryError;
pub use geodesic::{Geodesic, geodesic, tier_ring_radius};
pub use index::{AnchorIndex, AnchorKey};
pub use neighbors::{Neighbor, k_nearest};
pub use placement::{
    ALGORITHM, Autonomy, Placement, PlacementRequest, canonical_tags, inputs_digest, locate_slot,
    place, semantic_angle, tag_angle,
};
pub use point::{
    DiskPoint, hyperbolic_distance, mobius_translate, mobius_translate_inverse, tier_of,
};
pub use point_index::PointIndex;
pub use rings::{
    MAX_HYPERBOLIC_RADIUS, MAX_RING, MIN_SEPARATION, RING0_TAU, Slot, ring_capacity,
    ring_min_angle, ring_tau,
};
