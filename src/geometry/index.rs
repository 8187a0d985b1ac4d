//! The index of occupied slots per anchor and ring, with O(log n) free-slot queries.
//!
//! Each ring stores its occupied slots as maximal runs of consecutive indices
//! (`start -> end`, inclusive) in a `BTreeMap`, so membership, insertion,
//! removal and "nearest free slot clockwise / counter-clockwise" all cost
//! O(log n) whatever the number of nodes around the anchor.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use super::error::GeometryError;
use super::point::DiskPoint;
use super::rings::{MAX_RING, Slot, ring_capacity};

/// Quantisation of anchor coordinates: 1e-12 per unit.
const ANCHOR_QUANTA_PER_UNIT: f64 = 1e12;
const FRACTION_DIGITS: usize = 12;

/// A stable identity for an anchor: its coordinates quantised to 1e-12.
///
/// Its `Display` form (`"<x>,<y>"`, each with exactly 12 decimals, e.g.
/// `"-0.200000000000,0.346410161514"`) parses back with `FromStr` to the same key,
/// so a controller can store it in a status field and rebuild an
/// [`AnchorIndex`] from existing nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AnchorKey {
    qx: i64,
    qy: i64,
}

impl AnchorKey {
    /// The key of the disk's centre (the anchor of nodes without `near`).
    pub const ORIGIN: AnchorKey = AnchorKey { qx: 0, qy: 0 };

    /// The key of an anchor point.
    pub fn of(anchor: DiskPoint) -> Self {
        // |x|, |y| < 1, so the products fit easily in i64.
        AnchorKey {
            qx: (anchor.x() * ANCHOR_QUANTA_PER_UNIT).round() as i64,
            qy: (anchor.y() * ANCHOR_QUANTA_PER_UNIT).round() as i64,
        }
    }

    /// The quantised anchor point (within 5e-13 of the original in each
    /// coordinate). Fails only if quantisation pushed it onto the unit circle.
    pub fn to_point(self) -> Result<DiskPoint, GeometryError> {
        DiskPoint::new(
            self.qx as f64 / ANCHOR_QUANTA_PER_UNIT,
            self.qy as f64 / ANCHOR_QUANTA_PER_UNIT,
        )
    }
}

fn fmt_quantised(q: i64, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let unit = 10u64.pow(FRACTION_DIGITS as u32);
    let sign = if q < 0 { "-" } else { "" };
    let m = q.unsigned_abs();
    write!(
        f,
        "{sign}{}.{:0width$}",
        m / unit,
        m % unit,
        width = FRACTION_DIGITS
    )
}

fn parse_quantised(s: &str) -> Option<i64> {
    let (negative, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int_part, frac_part) = body.split_once('.')?;
    let all_digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(int_part) || !all_digits(frac_part) || frac_part.len() != FRACTION_DIGITS {
        return None;
    }
    let int: i64 = int_part.parse().ok()?;
    if int > 1 {
        return None;
    }
    let frac: i64 = frac_part.parse().ok()?;
    let m = int * 10i64.pow(FRACTION_DIGITS as u32) + frac;
    Some(if negative { -m } else { m })
}

impl fmt::Display for AnchorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_quantised(self.qx, f)?;
        f.write_str(",")?;
        fmt_quantised(self.qy, f)
    }
}

impl FromStr for AnchorKey {
    type Err = GeometryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || GeometryError::BadAnchorKey {
            input: s.to_owned(),
        };
        let (x, y) = s.split_once(',').ok_or_else(bad)?;
        Ok(AnchorKey {
            qx: parse_quantised(x.trim()).ok_or_else(bad)?,
            qy: parse_quantised(y.trim()).ok_or_else(bad)?,
        })
    }
}

/// Occupancy of one ring: maximal runs of occupied slot indices.
#[derive(Debug, Clone)]
pub(crate) struct RingOccupancy {
    capacity: u64,
    count: u64,
    /// start -> end (inclusive); runs never touch or overlap and never wrap past capacity - 1.
    runs: BTreeMap<u64, u64>,
}

impl RingOccupancy {
    fn new(capacity: u64) -> Self {
        RingOccupancy {
            capacity,
            count: 0,
            runs: BTreeMap::new(),
        }
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    /// The run containing `j`, if `j` is occupied.
    fn run_of(&self, j: u64) -> Option<(u64, u64)> {
        self.runs
            .range(..=j)
            .next_back()
            .filter(|&(_, &end)| end >= j)
            .map(|(&s, &e)| (s, e))
    }

    pub(crate) fn contains(&self, j: u64) -> bool {
        self.run_of(j).is_some()
    }

    fn insert(&mut self, j: u64) -> bool {
        if self.contains(j) {
            return false;
        }
        let mut start = j;
        let mut end = j;
        if j > 0
            && let Some((s, e)) = self.run_of(j - 1)
        {
            debug_assert_eq!(e, j - 1);
            self.runs.remove(&s);
            start = s;
        }
        if let Some(e) = self.runs.remove(&(j + 1)) {
            end = e;
        }
        self.runs.insert(start, end);
        self.count += 1;
        true
    }

    fn remove(&mut self, j: u64) -> bool {
        let Some((s, e)) = self.run_of(j) else {
            return false;
        };
        self.runs.remove(&s);
        if s < j {
            self.runs.insert(s, j - 1);
        }
        if j < e {
            self.runs.insert(j + 1, e);
        }
        self.count -= 1;
        true
    }

    /// Steps (going up, cyclically) from `j` to the nearest free slot, `0` if `j` is free.
    pub(crate) fn free_distance_up(&self, j: u64) -> Option<u64> {
        let n = self.capacity;
        let Some((_, end)) = self.run_of(j) else {
            return Some(0);
        };
        let mut cand = end + 1;
        if cand >= n {
            cand = match self.run_of(0) {
                None => 0,
                Some((_, e0)) if e0 + 1 < n && e0 < j => e0 + 1,
                Some(_) => return None,
            };
        }
        Some((cand + n - j) % n)
    }

    /// Steps (going down, cyclically) from `j` to the nearest free slot, `0` if `j` is free.
    pub(crate) fn free_distance_down(&self, j: u64) -> Option<u64> {
        let n = self.capacity;
        let Some((start, _)) = self.run_of(j) else {
            return Some(0);
        };
        let cand = if start > 0 {
            start - 1
        } else {
            match self.run_of(n - 1) {
                None => n - 1,
                Some((s_last, _)) if s_last > j + 1 => s_last - 1,
                Some(_) => return None,
            }
        };
        Some((j + n - cand) % n)
    }
}

/// Occupied slots of every anchor, keyed by [`AnchorKey`] then ring.
///
/// Build it from the placements already written to existing nodes' statuses
/// (with [`AnchorIndex::insert`] or [`AnchorIndex::insert_placement`]), then ask
/// [`crate::geometry::place`] for new placements and insert them as they are
/// written. The placement chosen is a pure function of the request and of the
/// *set* of occupied slots, so an index rebuilt in any order gives the same answers.
#[derive(Debug, Clone, Default)]
pub struct AnchorIndex {
    anchors: BTreeMap<AnchorKey, BTreeMap<u32, RingOccupancy>>,
    len: usize,
}

impl AnchorIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Total number of occupied slots over all anchors.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no slot is occupied.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of occupied slots around one anchor.
    pub fn occupied_around(&self, anchor: AnchorKey) -> usize {
        self.anchors.get(&anchor).map_or(0, |rings| {
            rings
                .values()
                .map(|r| usize::try_from(r.count).unwrap_or(usize::MAX))
                .sum()
        })
    }

    /// Marks `slot` around `anchor` as occupied. Returns `Ok(false)` if it already
    /// was, and an error if the slot does not exist.
    pub fn insert(&mut self, anchor: AnchorKey, slot: Slot) -> Result<bool, GeometryError> {
        check_slot(slot)?;
        let ring = self
            .anchors
            .entry(anchor)
            .or_default()
            .entry(slot.ring)
            .or_insert_with(|| RingOccupancy::new(ring_capacity(slot.ring)));
        let added = ring.insert(slot.index);
        if added {
            self.len += 1;
        }
        Ok(added)
    }

    /// Frees `slot` around `anchor`. Returns whether it was occupied.
    pub fn remove(&mut self, anchor: AnchorKey, slot: Slot) -> bool {
        let Some(rings) = self.anchors.get_mut(&anchor) else {
            return false;
        };
        let Some(ring) = rings.get_mut(&slot.ring) else {
            return false;
        };
        let removed = ring.remove(slot.index);
        if removed {
            self.len -= 1;
            if ring.count == 0 {
                rings.remove(&slot.ring);
            }
            if rings.is_empty() {
                self.anchors.remove(&anchor);
            }
        }
        removed
    }

    /// Whether `slot` around `anchor` is occupied.
    pub fn contains(&self, anchor: AnchorKey, slot: Slot) -> bool {
        self.ring(anchor, slot.ring)
            .is_some_and(|r| r.contains(slot.index))
    }

    pub(crate) fn ring(&self, anchor: AnchorKey, ring: u32) -> Option<&RingOccupancy> {
        self.anchors.get(&anchor).and_then(|rings| rings.get(&ring))
    }
}

fn check_slot(slot: Slot) -> Result<(), GeometryError> {
    if slot.ring > MAX_RING {
        return Err(GeometryError::InvalidSlot {
            ring: slot.ring,
            index: slot.index,
            detail: format!("the last ring is {MAX_RING}"),
        });
    }
    let capacity = ring_capacity(slot.ring);
    if slot.index >= capacity {
        return Err(GeometryError::InvalidSlot {
            ring: slot.ring,
            index: slot.index,
            detail: format!("ring {} has {capacity} slots", slot.ring),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchor_key_round_trips_through_strings() {
        let p = DiskPoint::from_polar(0.4, 120.0).unwrap();
        let key = AnchorKey::of(p);
        let s = key.to_string();
        assert_eq!(s, "-0.200000000000,0.346410161514");
        assert_eq!(s.parse::<AnchorKey>().unwrap(), key);
        assert_eq!(
            AnchorKey::ORIGIN.to_string(),
            "0.000000000000,0.000000000000"
        );
        assert_eq!(AnchorKey::of(DiskPoint::ORIGIN), AnchorKey::ORIGIN);
        let near_one = DiskPoint::new(0.999_999_999_999_9, 0.0).unwrap();
        let k = AnchorKey::of(near_one);
        assert_eq!(k.to_string().parse::<AnchorKey>().unwrap(), k);
    }

    #[test]
    fn anchor_key_rejects_garbage() {
        for bad in [
            "",
            "0.1,0.2",
            "0.000000000000",
            "x.000000000000,0.000000000000",
            "2.000000000000,0.000000000000",
            "0.000000000000,0.0000000000001",
            "+0.000000000000,0.000000000000",
        ] {
            let err = bad.parse::<AnchorKey>().unwrap_err();
            assert_eq!(err.reason(), "InvalidAnchorKey", "{bad}");
        }
    }

    #[test]
    fn runs_merge_and_split() {
        let mut r = RingOccupancy::new(10);
        assert!(r.insert(3));
        assert!(r.insert(5));
        assert!(r.insert(4));
        assert!(!r.insert(4));
        assert_eq!(r.runs.len(), 1);
        assert_eq!(r.runs.get(&3), Some(&5));
        assert!(r.remove(4));
        assert!(!r.remove(4));
        assert_eq!(r.runs.len(), 2);
        assert_eq!(r.count(), 2);
        assert_eq!(r.free_distance_up(3), Some(1));
        assert_eq!(r.free_distance_down(5), Some(1));
        assert_eq!(r.free_distance_up(0), Some(0));
    }

    #[test]
    fn free_search_wraps_around() {
        let mut r = RingOccupancy::new(6);
        for j in [4, 5, 0, 1] {
            r.insert(j);
        }
        assert_eq!(r.free_distance_up(5), Some(3)); // 5 -> 0 -> 1 -> 2
        assert_eq!(r.free_distance_down(0), Some(3)); // 0 -> 5 -> 4 -> 3
        for j in [2, 3] {
            r.insert(j);
        }
        assert_eq!(r.free_distance_up(2), None);
        assert_eq!(r.free_distance_down(2), None);
        assert_eq!(r.count(), r.capacity());
    }

    #[test]
    fn index_insert_remove_and_validation() {
        let mut idx = AnchorIndex::new();
        let k = AnchorKey::ORIGIN;
        let s = Slot { ring: 0, index: 3 };
        assert!(idx.insert(k, s).unwrap());
        assert!(!idx.insert(k, s).unwrap());
        assert!(idx.contains(k, s));
        assert_eq!(idx.len(), 1);
        assert_eq!(idx.occupied_around(k), 1);
        assert!(idx.remove(k, s));
        assert!(idx.is_empty());
        assert!(!idx.remove(k, s));
        let bad = idx.insert(k, Slot { ring: 0, index: 14 }).unwrap_err();
        assert_eq!(bad.reason(), "InvalidSlot");
        assert!(
            idx.insert(
                k,
                Slot {
                    ring: MAX_RING + 1,
                    index: 0
                }
            )
            .is_err()
        );
    }
}
