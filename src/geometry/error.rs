//! The error type of the geometry engine and its bounded reason categories.

/// Everything that can go wrong in the geometry engine.
///
/// All fallible geometry functions return this instead of panicking; every
/// variant maps to a bounded [`GeometryError::reason`] usable as an Event
/// reason or a metric label.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GeometryError {
    /// A coordinate or radius was NaN or infinite.
    #[error("failed to build a disk point: coordinates must be finite (x={x}, y={y})")]
    NonFinite {
        /// The offending x (or r) value.
        x: f64,
        /// The offending y (or theta) value.
        y: f64,
    },
    /// The Euclidean radius is not in `[0, 1)`.
    #[error("failed to build a disk point: radius {r} is outside [0, 1)")]
    OutsideDisk {
        /// The offending Euclidean radius.
        r: f64,
    },
    /// The anchor lies beyond the hyperbolic radius the engine places around.
    #[error("failed to place: anchor hyperbolic radius {radius} exceeds the limit {limit}")]
    AnchorTooFar {
        /// Hyperbolic radius of the anchor.
        radius: f64,
        /// [`crate::geometry::MAX_HYPERBOLIC_RADIUS`].
        limit: f64,
    },
    /// Every slot of every ring around the anchor within the radius limit is taken.
    #[error(
        "failed to place: no free slot around anchor {anchor} within hyperbolic radius {limit}"
    )]
    NoFreeSlot {
        /// Display form of the anchor key.
        anchor: String,
        /// [`crate::geometry::MAX_HYPERBOLIC_RADIUS`].
        limit: f64,
    },
    /// A slot does not exist (ring beyond the last ring, or index beyond the ring's capacity).
    #[error("failed to use slot (ring {ring}, index {index}): {detail}")]
    InvalidSlot {
        /// Ring number of the slot.
        ring: u32,
        /// Index of the slot within its ring.
        index: u64,
        /// What is wrong with it.
        detail: String,
    },
    /// A point does not sit on a placement ring slot of the given anchor.
    #[error("failed to locate the slot of a point: {detail}")]
    NotOnLattice {
        /// What did not match.
        detail: String,
    },
    /// An anchor key string could not be parsed.
    #[error("failed to parse anchor key {input:?}: expected \"<x>,<y>\" with 12 decimals")]
    BadAnchorKey {
        /// The rejected input.
        input: String,
    },
}

impl GeometryError {
    /// A bounded, CamelCase category for Events and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            GeometryError::NonFinite { .. } | GeometryError::OutsideDisk { .. } => "InvalidPoint",
            GeometryError::AnchorTooFar { .. } => "AnchorOutOfRange",
            GeometryError::NoFreeSlot { .. } => "PlacementExhausted",
            GeometryError::InvalidSlot { .. } => "InvalidSlot",
            GeometryError::NotOnLattice { .. } => "NotOnLattice",
            GeometryError::BadAnchorKey { .. } => "InvalidAnchorKey",
        }
    }
}
