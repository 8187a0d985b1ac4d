//! [`PointIndex`]: points of the Poincare disk by id, with exact k-nearest queries by hyperbolic distance.
//!
//! The points live in an adaptive quadtree over the square `[-1, 1]^2`: a
//! leaf holds at most [`LEAF_CAPACITY`] points and splits into four quadrants
//! beyond that, so cells shrink wherever points crowd, down to the 1e-5 wide
//! annulus of hyperbolic radius 12 (leaves of identical points, and cells
//! narrower than 2^-62, are never split and may hold more).
//! Every cell keeps the bounding box of its points.
//!
//! A query walks the cells best first, by a lower bound of the hyperbolic
//! distance from the target to any point of the cell: with `g` the Euclidean
//! gap between the target `u` and the box, and `rmin` the box's smallest
//! Euclidean radius, every point `v` of the box has
//!
//! ```text
//! d(u, v) = 2 asinh(|u - v| / sqrt((1 - |u|^2)(1 - |v|^2)))
//!        >= 2 asinh(g / sqrt((1 - |u|^2)(1 - rmin^2)))
//! ```
//!
//! (Equivalently, the hyperbolic ball of radius `D` around `u`, `|u| = a`, is
//! the Euclidean disk of centre `u (1 - t^2) / (1 - t^2 a^2)` and radius
//! `t (1 - a^2) / (1 - t^2 a^2)`, `t = tanh(D / 2)`; a cell outside it is
//! skipped.) The walk stops once the k-th best distance found is below the
//! next cell's bound.
//!
//! Exactness: the distances are [`DiskPoint::distance`] itself, ties are
//! broken by id, and the bounds are computed with monotone roundings and then
//! lowered by a relative 1e-12 (far above the few ulps libm may err by), so no
//! cell holding a point that could enter the result is ever skipped: the
//! answer is exactly that of [`k_nearest`](super::k_nearest) over the same
//! points, including at the boundary and for duplicate points.
//!
//! Cost: insert and remove O(depth + 16), depth about `log4(n / 16)` for
//! spread points (one more level per halving of a cluster's width); a query
//! for k nearest visits the few cells around the target whose bound beats the
//! k-th distance: O(log n)-ish (the bench `neighbors_k3`, nodes placed around
//! one anchor, 2 busy cores: 9.5 / 16 / 34 µs among 1k / 10k / 100k nodes
//! against 0.24 / 1.8 / 16 ms for the scan; remove + insert 0.6 to 3.4 µs).
//! Memory: about 110 bytes per point besides the one stored copy of its id
//! (counted at 100,000 placed nodes, growth slack included: 33 in 24-byte leaf
//! entries, 31 in id-table slots, 22 in the hash table, 21 in 64-byte cells).

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasher, Hash, RandomState};

use super::neighbors::{Neighbor, TopK};
use super::point::DiskPoint;

/// The most points a leaf holds before it splits.
const LEAF_CAPACITY: usize = 16;
/// A subtree this small (or smaller) after a removal becomes one leaf again.
const MERGE_AT: u32 = (LEAF_CAPACITY / 2) as u32;
/// Cells at this depth (width 2^-62) are never split.
const MAX_DEPTH: u32 = 63;
/// Relative amount by which every lower bound is lowered to absorb rounding.
const BOUND_SLACK: f64 = 1e-12;
const NIL: u32 = u32::MAX;
const ROOT: u32 = 0;

/// An axis-aligned box; `x0 > x1` when empty.
#[derive(Debug, Clone, Copy)]
struct Rect {
    x0: f64,
    y0: f64,
    x1: f64,
    y1: f64,
}

impl Rect {
    const EMPTY: Rect = Rect {
        x0: f64::INFINITY,
        y0: f64::INFINITY,
        x1: f64::NEG_INFINITY,
        y1: f64::NEG_INFINITY,
    };
    const SQUARE: Rect = Rect {
        x0: -1.0,
        y0: -1.0,
        x1: 1.0,
        y1: 1.0,
    };

    fn extend(&mut self, p: DiskPoint) {
        self.x0 = self.x0.min(p.x());
        self.y0 = self.y0.min(p.y());
        self.x1 = self.x1.max(p.x());
        self.y1 = self.y1.max(p.y());
    }

    fn union(self, o: Rect) -> Rect {
        Rect {
            x0: self.x0.min(o.x0),
            y0: self.y0.min(o.y0),
            x1: self.x1.max(o.x1),
            y1: self.y1.max(o.y1),
        }
    }

    /// One point (or empty): such a leaf cannot be split usefully.
    fn is_degenerate(self) -> bool {
        !(self.x0 < self.x1 || self.y0 < self.y1)
    }

    /// The quadrant of this cell holding `p`: bit 0 east, bit 1 north.
    fn quadrant(self, p: DiskPoint) -> usize {
        let (mx, my) = self.middle();
        usize::from(p.x() >= mx) | (usize::from(p.y() >= my) << 1)
    }

    fn middle(self) -> (f64, f64) {
        // Exact: cell edges are dyadic fractions far above the subnormals.
        ((self.x0 + self.x1) / 2.0, (self.y0 + self.y1) / 2.0)
    }

    fn child(self, q: usize) -> Rect {
        let (mx, my) = self.middle();
        let (x0, x1) = if q & 1 == 1 {
            (mx, self.x1)
        } else {
            (self.x0, mx)
        };
        let (y0, y1) = if q & 2 == 2 {
            (my, self.y1)
        } else {
            (self.y0, my)
        };
        Rect { x0, y0, x1, y1 }
    }

    /// A lower bound of `target.distance(v)` for every point `v` in this
    /// (non-empty) box; `target_omn` is `1 - |target|^2` as the distance computes it.
    fn distance_bound(self, target: DiskPoint, target_omn: f64) -> f64 {
        // Each step rounds monotonically, so these are at most the values the
        // distance computes for any point of the box (up to libm's ulps).
        let gap_x = gap(target.x(), self.x0, self.x1);
        let gap_y = gap(target.y(), self.y0, self.y1);
        if gap_x == 0.0 && gap_y == 0.0 {
            return 0.0;
        }
        let euclid = gap_x.hypot(gap_y);
        // The box's point nearest the origin, its radius lowered by a few ulps
        // so that no point's computed radius is smaller.
        let rmin = gap(0.0, self.x0, self.x1).hypot(gap(0.0, self.y0, self.y1))
            * (1.0 - 4.0 * f64::EPSILON);
        let omn_max = (1.0 - rmin) * (1.0 + rmin);
        let bound = 2.0 * (euclid / (target_omn * omn_max).sqrt()).asinh();
        bound * (1.0 - BOUND_SLACK)
    }
}

/// Distance from `t` to the interval `[lo, hi]`, computed as the distance itself would round it.
fn gap(t: f64, lo: f64, hi: f64) -> f64 {
    if t < lo {
        lo - t
    } else if t > hi {
        t - hi
    } else {
        0.0
    }
}

/// A point in a leaf; `slot` indexes `PointIndex::slots`.
#[derive(Debug, Clone, Copy)]
struct LeafEntry {
    point: DiskPoint,
    slot: u32,
}

#[derive(Debug, Clone)]
enum Kind {
    Leaf(Vec<LeafEntry>),
    /// Children by quadrant (bit 0 east, bit 1 north).
    Inner([u32; 4]),
}

#[derive(Debug, Clone)]
struct Node {
    /// Bounding box of the points below (exact: recomputed on removal).
    bbox: Rect,
    /// Number of points below.
    count: u32,
    kind: Kind,
}

impl Node {
    fn empty_leaf() -> Node {
        Node {
            bbox: Rect::EMPTY,
            count: 0,
            kind: Kind::Leaf(Vec::new()),
        }
    }
}

/// An id and its point; `next` chains the slots whose ids share a hash (or,
/// for a free slot, the next free slot).
#[derive(Debug, Clone)]
struct Slot<Id> {
    id: Option<Id>,
    point: DiskPoint,
    next: u32,
}

/// Cells waiting in a query, nearest bound first.
#[derive(Debug, Clone, Copy)]
struct Pending {
    bound: f64,
    node: u32,
}

impl Ord for Pending {
    fn cmp(&self, other: &Self) -> Ordering {
        self.bound
            .total_cmp(&other.bound)
            .then(self.node.cmp(&other.node))
    }
}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Pending {}

/// Points of the disk keyed by id, answering "the k nearest by hyperbolic
/// distance" exactly as [`k_nearest`](super::k_nearest) would over the same
/// points, without scanning them all. See the module header for costs.
#[derive(Debug, Clone)]
pub struct PointIndex<Id> {
    /// Cells; `ROOT` is the square `[-1, 1]^2`. Freed cells are listed in `free_nodes`.
    nodes: Vec<Node>,
    free_nodes: Vec<u32>,
    /// Ids and points; free slots are chained from `free_slot`.
    slots: Vec<Slot<Id>>,
    free_slot: u32,
    /// Hash of an id -> first slot of its chain.
    by_hash: HashMap<u64, u32>,
    hasher: RandomState,
    len: usize,
}

impl<Id> Default for PointIndex<Id> {
    fn default() -> Self {
        PointIndex {
            nodes: vec![Node::empty_leaf()],
            free_nodes: Vec::new(),
            slots: Vec::new(),
            free_slot: NIL,
            by_hash: HashMap::new(),
            hasher: RandomState::new(),
            len: 0,
        }
    }
}

impl<Id: Ord + Clone + Hash + Eq> PointIndex<Id> {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the index holds no point.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The point of `id`, if present.
    pub fn get(&self, id: &Id) -> Option<DiskPoint> {
        self.find(id).map(|s| self.slots[s as usize].point)
    }

    /// Inserts `id` at `p`; an `id` already present moves to `p`. Returns its previous point.
    pub fn insert(&mut self, id: Id, p: DiskPoint) -> Option<DiskPoint> {
        if let Some(slot) = self.find(&id) {
            let old = self.slots[slot as usize].point;
            if old.x().to_bits() != p.x().to_bits() || old.y().to_bits() != p.y().to_bits() {
                self.tree_remove(slot, old);
                self.slots[slot as usize].point = p;
                self.tree_insert(slot, p);
            }
            return Some(old);
        }
        let hash = self.hasher.hash_one(&id);
        let next = self.by_hash.get(&hash).copied().unwrap_or(NIL);
        let slot = if self.free_slot == NIL {
            let slot = u32::try_from(self.slots.len())
                .ok()
                .filter(|&s| s != NIL)
                .expect("PointIndex holds fewer than 2^32 - 1 points");
            self.slots.push(Slot {
                id: Some(id),
                point: p,
                next,
            });
            slot
        } else {
            let slot = self.free_slot;
            let s = &mut self.slots[slot as usize];
            self.free_slot = s.next;
            *s = Slot {
                id: Some(id),
                point: p,
                next,
            };
            slot
        };
        self.by_hash.insert(hash, slot);
        self.tree_insert(slot, p);
        self.len += 1;
        None
    }

    /// Removes `id`; false if it was absent.
    pub fn remove(&mut self, id: &Id) -> bool {
        let hash = self.hasher.hash_one(id);
        let Some(&head) = self.by_hash.get(&hash) else {
            return false;
        };
        // Unlink the slot from its hash chain.
        let mut prev = NIL;
        let mut cur = head;
        while cur != NIL && self.slots[cur as usize].id.as_ref() != Some(id) {
            prev = cur;
            cur = self.slots[cur as usize].next;
        }
        if cur == NIL {
            return false;
        }
        let next = self.slots[cur as usize].next;
        if prev != NIL {
            self.slots[prev as usize].next = next;
        } else if next != NIL {
            self.by_hash.insert(hash, next);
        } else {
            self.by_hash.remove(&hash);
        }
        let point = self.slots[cur as usize].point;
        self.tree_remove(cur, point);
        let s = &mut self.slots[cur as usize];
        s.id = None;
        s.next = self.free_slot;
        self.free_slot = cur;
        self.len -= 1;
        true
    }

    /// The `k` points nearest to `target` by hyperbolic distance, nearest
    /// first, equal distances ordered by id, leaving out `exclude` (e.g. the
    /// target's own id): exactly what [`k_nearest`](super::k_nearest) returns
    /// over the index's points (without `exclude`).
    pub fn k_nearest(
        &self,
        target: DiskPoint,
        k: usize,
        exclude: Option<&Id>,
    ) -> Vec<Neighbor<Id>> {
        if k == 0 || self.len == 0 {
            return Vec::new();
        }
        let excluded = exclude.and_then(|id| self.find(id)).unwrap_or(NIL);
        let target_omn = target.one_minus_norm_sqr();
        let mut top: TopK<&Id> = TopK::new(k);
        let mut pending = BinaryHeap::new();
        pending.push(Reverse(Pending {
            bound: 0.0,
            node: ROOT,
        }));
        while let Some(Reverse(Pending { bound, node })) = pending.pop() {
            if top.full_worst().is_some_and(|worst| bound > worst) {
                break;
            }
            match &self.nodes[node as usize].kind {
                Kind::Leaf(entries) => {
                    for e in entries {
                        if e.slot == excluded {
                            continue;
                        }
                        let distance = target.distance(e.point);
                        if top.full_worst().is_some_and(|worst| distance > worst) {
                            continue;
                        }
                        if let Some(id) = self.slots[e.slot as usize].id.as_ref() {
                            top.offer(distance, id);
                        }
                    }
                }
                Kind::Inner(children) => {
                    for &child in children {
                        let c = &self.nodes[child as usize];
                        if c.count == 0 {
                            continue;
                        }
                        let bound = c.bbox.distance_bound(target, target_omn);
                        if top.full_worst().is_some_and(|worst| bound > worst) {
                            continue;
                        }
                        pending.push(Reverse(Pending { bound, node: child }));
                    }
                }
            }
        }
        top.into_neighbors()
            .into_iter()
            .map(|Neighbor { id, distance }| Neighbor {
                id: id.clone(),
                distance,
            })
            .collect()
    }

    fn find(&self, id: &Id) -> Option<u32> {
        let mut cur = *self.by_hash.get(&self.hasher.hash_one(id))?;
        while cur != NIL {
            let s = &self.slots[cur as usize];
            if s.id.as_ref() == Some(id) {
                return Some(cur);
            }
            cur = s.next;
        }
        None
    }
}

impl<Id> PointIndex<Id> {
    fn alloc_node(&mut self, node: Node) -> u32 {
        if let Some(i) = self.free_nodes.pop() {
            self.nodes[i as usize] = node;
            i
        } else {
            let i = u32::try_from(self.nodes.len()).expect("fewer than 2^32 cells");
            self.nodes.push(node);
            i
        }
    }

    fn tree_insert(&mut self, slot: u32, p: DiskPoint) {
        let mut node = ROOT;
        let mut cell = Rect::SQUARE;
        let mut depth = 0;
        loop {
            let n = &mut self.nodes[node as usize];
            n.count += 1;
            n.bbox.extend(p);
            match &mut n.kind {
                Kind::Inner(children) => {
                    let q = cell.quadrant(p);
                    node = children[q];
                    cell = cell.child(q);
                    depth += 1;
                }
                Kind::Leaf(entries) => {
                    entries.push(LeafEntry { point: p, slot });
                    if entries.len() > LEAF_CAPACITY {
                        self.split(node, cell, depth);
                    }
                    return;
                }
            }
        }
    }

    /// Splits an overfull leaf into four quadrants (recursively while a quadrant stays overfull).
    fn split(&mut self, node: u32, cell: Rect, depth: u32) {
        let n = &mut self.nodes[node as usize];
        if depth >= MAX_DEPTH || n.bbox.is_degenerate() {
            return;
        }
        let Kind::Leaf(entries) = std::mem::replace(&mut n.kind, Kind::Inner([NIL; 4])) else {
            return;
        };
        let mut quadrants: [Node; 4] = std::array::from_fn(|_| Node::empty_leaf());
        for e in entries {
            let c = &mut quadrants[cell.quadrant(e.point)];
            c.count += 1;
            c.bbox.extend(e.point);
            if let Kind::Leaf(list) = &mut c.kind {
                list.push(e);
            }
        }
        let mut children = [NIL; 4];
        for (q, child) in quadrants.into_iter().enumerate() {
            let overfull = child.count as usize > LEAF_CAPACITY;
            children[q] = self.alloc_node(child);
            if overfull {
                self.split(children[q], cell.child(q), depth + 1);
            }
        }
        self.nodes[node as usize].kind = Kind::Inner(children);
    }

    fn tree_remove(&mut self, slot: u32, p: DiskPoint) {
        let mut path = Vec::with_capacity(24);
        let mut node = ROOT;
        let mut cell = Rect::SQUARE;
        loop {
            path.push(node);
            match &mut self.nodes[node as usize].kind {
                Kind::Inner(children) => {
                    let q = cell.quadrant(p);
                    node = children[q];
                    cell = cell.child(q);
                }
                Kind::Leaf(entries) => {
                    let pos = entries
                        .iter()
                        .position(|e| e.slot == slot)
                        .expect("an indexed point is in the leaf of its cell");
                    entries.swap_remove(pos);
                    break;
                }
            }
        }
        // Counts and exact boxes, bottom up.
        for &n in path.iter().rev() {
            let bbox = match &self.nodes[n as usize].kind {
                Kind::Leaf(entries) => entries.iter().fold(Rect::EMPTY, |mut b, e| {
                    b.extend(e.point);
                    b
                }),
                Kind::Inner(children) => children
                    .iter()
                    .fold(Rect::EMPTY, |b, &c| b.union(self.nodes[c as usize].bbox)),
            };
            let node = &mut self.nodes[n as usize];
            node.count -= 1;
            node.bbox = bbox;
        }
        // The topmost inner cell left small enough becomes a leaf again.
        if let Some(&top) = path.iter().find(|&&n| {
            let node = &self.nodes[n as usize];
            matches!(node.kind, Kind::Inner(_)) && node.count <= MERGE_AT
        }) {
            self.collapse(top);
        }
    }

    /// Turns the subtree under `node` into one leaf, freeing its cells.
    fn collapse(&mut self, node: u32) {
        let mut entries = Vec::with_capacity(self.nodes[node as usize].count as usize);
        let mut stack =
            match std::mem::replace(&mut self.nodes[node as usize].kind, Kind::Leaf(Vec::new())) {
                Kind::Inner(children) => children.to_vec(),
                Kind::Leaf(list) => {
                    entries = list;
                    Vec::new()
                }
            };
        while let Some(n) = stack.pop() {
            self.free_nodes.push(n);
            match std::mem::replace(&mut self.nodes[n as usize].kind, Kind::Leaf(Vec::new())) {
                Kind::Inner(children) => stack.extend(children),
                Kind::Leaf(list) => entries.extend(list),
            }
        }
        self.nodes[node as usize].kind = Kind::Leaf(entries);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::k_nearest;

    fn reference(
        points: &[(u32, DiskPoint)],
        target: DiskPoint,
        k: usize,
        exclude: Option<u32>,
    ) -> Vec<Neighbor<u32>> {
        k_nearest(
            points
                .iter()
                .copied()
                .filter(|(id, _)| Some(*id) != exclude),
            target,
            k,
        )
    }

    #[test]
    fn empty_index_returns_nothing() {
        let index: PointIndex<u32> = PointIndex::new();
        assert!(index.is_empty());
        assert_eq!(index.len(), 0);
        assert!(index.k_nearest(DiskPoint::ORIGIN, 3, None).is_empty());
        assert!(index.k_nearest(DiskPoint::ORIGIN, 3, Some(&7)).is_empty());
    }

    #[test]
    fn k_larger_than_len_returns_all_sorted() {
        let mut index = PointIndex::new();
        let pts: Vec<(u32, DiskPoint)> = (0..5)
            .map(|i| {
                (
                    i,
                    DiskPoint::from_polar(0.1 * f64::from(i), 40.0 * f64::from(i)).unwrap(),
                )
            })
            .collect();
        for &(id, p) in &pts {
            assert_eq!(index.insert(id, p), None);
        }
        let target = DiskPoint::new(0.2, -0.1).unwrap();
        let got = index.k_nearest(target, 10, None);
        assert_eq!(got.len(), 5);
        assert_eq!(got, reference(&pts, target, 10, None));
        assert!(index.k_nearest(target, 0, None).is_empty());
        assert_eq!(index.k_nearest(target, usize::MAX, None).len(), 5);
    }

    #[test]
    fn exclude_leaves_out_one_id_only() {
        let mut index = PointIndex::new();
        let p = DiskPoint::new(0.5, 0.5).unwrap();
        let pts = [
            (1, p),
            (2, p),
            (3, DiskPoint::new(0.5, 0.49).unwrap()),
            (4, DiskPoint::ORIGIN),
        ];
        for &(id, q) in &pts {
            index.insert(id, q);
        }
        let got = index.k_nearest(p, 2, Some(&1));
        assert_eq!(got, reference(&pts, p, 2, Some(1)));
        assert_eq!(got[0].id, 2);
        assert_eq!(got[0].distance, 0.0);
        assert_eq!(got[1].id, 3);
        // an absent id excludes nothing
        assert_eq!(index.k_nearest(p, 2, Some(&9)), reference(&pts, p, 2, None));
    }

    #[test]
    fn insert_moves_and_remove_forgets() {
        let mut index = PointIndex::new();
        let a = DiskPoint::new(0.1, 0.0).unwrap();
        let b = DiskPoint::new(-0.9, 0.0).unwrap();
        assert_eq!(index.insert("x", a), None);
        assert_eq!(index.insert("x", b), Some(a));
        assert_eq!(index.len(), 1);
        assert_eq!(index.get(&"x"), Some(b));
        let near_b = index.k_nearest(b, 1, None);
        assert_eq!(near_b[0].id, "x");
        assert_eq!(near_b[0].distance, 0.0);
        assert!(index.remove(&"x"));
        assert!(!index.remove(&"x"));
        assert!(index.is_empty());
        assert!(index.k_nearest(b, 1, None).is_empty());
    }

    #[test]
    fn many_duplicates_stay_in_one_leaf_and_tie_break_by_id() {
        let mut index = PointIndex::new();
        let p = DiskPoint::from_hyperbolic_polar(12.0, 1.0).unwrap();
        for id in (0..100u32).rev() {
            index.insert(id, p);
        }
        let got = index.k_nearest(p, 3, Some(&0));
        let ids: Vec<u32> = got.iter().map(|n| n.id).collect();
        assert_eq!(ids, vec![1, 2, 3]);
        for id in 0..100u32 {
            assert!(index.remove(&id));
        }
        assert_eq!(index.nodes[ROOT as usize].count, 0);
    }

    #[test]
    fn splits_and_merges_keep_counts_and_boxes_exact() {
        let mut index = PointIndex::new();
        let mut pts = Vec::new();
        for i in 0..2_000u32 {
            let p = DiskPoint::from_hyperbolic_polar(
                11.0 + f64::from(i % 7) * 0.1,
                f64::from(i) * 0.001,
            )
            .unwrap();
            index.insert(i, p);
            pts.push((i, p));
        }
        let deep = index.nodes.len();
        assert!(
            deep > 100,
            "a boundary cluster splits into many cells: {deep}"
        );
        for (i, _) in pts.drain(..1_992) {
            assert!(index.remove(&i));
        }
        let live = index.nodes.len() - index.free_nodes.len();
        assert_eq!(live, 1, "cells merge back into one leaf as points leave");
        assert_eq!(index.nodes[ROOT as usize].count, 8);
        let target = DiskPoint::from_hyperbolic_polar(11.0, 1.995).unwrap();
        assert_eq!(
            index.k_nearest(target, 3, None),
            reference(&pts, target, 3, None)
        );
    }

    #[test]
    fn bound_never_exceeds_a_distance_in_the_box() {
        // Points packed at the boundary, the target on the other side or next to them.
        let targets = [
            DiskPoint::ORIGIN,
            DiskPoint::from_hyperbolic_polar(12.0, 0.3).unwrap(),
            DiskPoint::new(0.999_999_999_999, 0.0).unwrap(),
            DiskPoint::new(-0.3, 0.2).unwrap(),
        ];
        let pts: Vec<DiskPoint> = (0..200)
            .map(|i| {
                let rho = 6.0 + f64::from(i) * 0.05 + f64::from(i % 3) * 4.0;
                DiskPoint::from_hyperbolic_polar(rho, 0.3 + f64::from(i) * 1e-7).unwrap()
            })
            .chain([DiskPoint::new(0.999_999_999_999_9, 1e-8).unwrap()])
            .collect();
        let mut bbox = Rect::EMPTY;
        for &p in &pts {
            bbox.extend(p);
        }
        for t in targets {
            let b = bbox.distance_bound(t, t.one_minus_norm_sqr());
            for &p in &pts {
                assert!(b <= t.distance(p), "bound {b} > {}", t.distance(p));
                // The box of one point: the bound is the distance, less the slack
                // and the few ulps of radius it gives up (which matter only
                // beyond hyperbolic radius 24, where 1 - r < 1e-10).
                let mut one = Rect::EMPTY;
                one.extend(p);
                let tight = one.distance_bound(t, t.one_minus_norm_sqr());
                let d = t.distance(p);
                assert!(tight <= d, "{tight} vs {d}");
                if t.hyperbolic_radius() <= 24.0 && p.hyperbolic_radius() <= 24.0 {
                    assert!(tight >= d * (1.0 - 1e-6), "{tight} vs {d}");
                }
            }
        }
    }

    #[test]
    fn ball_is_the_euclidean_disk_of_the_header() {
        // centre u (1 - t^2) / (1 - t^2 a^2), radius t (1 - a^2) / (1 - t^2 a^2)
        for (a, dist) in [(0.0, 1.0), (0.5, 0.3), (0.9, 2.0), (0.999, 4.0)] {
            let u = DiskPoint::from_polar(a, 30.0).unwrap();
            let t = (dist / 2.0f64).tanh();
            let scale = (1.0 - t * t) / (1.0 - t * t * a * a);
            let radius = t * (1.0 - a * a) / (1.0 - t * t * a * a);
            for k in 0..12 {
                let phi = f64::from(k) * 0.5;
                let v = DiskPoint::new(
                    u.x() * scale + radius * phi.cos(),
                    u.y() * scale + radius * phi.sin(),
                )
                .unwrap();
                assert!((u.distance(v) - dist).abs() < 1e-9, "{a} {dist} {phi}");
            }
        }
    }
}
