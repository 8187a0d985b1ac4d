//! The k nearest points to a target by hyperbolic distance, for the `neighbors` status field.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::point::DiskPoint;

/// One neighbour found by [`k_nearest`].
#[derive(Debug, Clone, PartialEq)]
pub struct Neighbor<Id> {
    /// The caller's identifier of the point (e.g. `namespace/name`).
    pub id: Id,
    /// Hyperbolic distance to the target.
    pub distance: f64,
}

/// Heap entry ordered by (distance, id): the heap's maximum is the worst kept candidate.
struct Entry<Id> {
    distance: f64,
    id: Id,
}

impl<Id: Ord> Ord for Entry<Id> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.distance
            .total_cmp(&other.distance)
            .then_with(|| self.id.cmp(&other.id))
    }
}

impl<Id: Ord> PartialOrd for Entry<Id> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<Id: Ord> PartialEq for Entry<Id> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl<Id: Ord> Eq for Entry<Id> {}

/// The `k` best (distance, id) pairs offered so far, by the order of [`k_nearest`].
pub(super) struct TopK<Id> {
    k: usize,
    heap: BinaryHeap<Entry<Id>>,
}

impl<Id: Ord> TopK<Id> {
    pub(super) fn new(k: usize) -> Self {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k.saturating_add(1).min(1024)),
        }
    }

    /// Keeps `(distance, id)` if it is among the `k` best so far.
    pub(super) fn offer(&mut self, distance: f64, id: Id) {
        if self.k == 0 {
            return;
        }
        let entry = Entry { distance, id };
        if self.heap.len() < self.k {
            self.heap.push(entry);
        } else if let Some(mut worst) = self.heap.peek_mut()
            && entry < *worst
        {
            *worst = entry;
        }
    }

    /// The distance of the k-th best once `k` entries are kept: a point farther
    /// than this can no longer enter (one at exactly this distance still can,
    /// through the id tie-break).
    pub(super) fn full_worst(&self) -> Option<f64> {
        if self.heap.len() < self.k {
            return None;
        }
        self.heap.peek().map(|e| e.distance)
    }

    /// The kept entries, nearest first.
    pub(super) fn into_neighbors(self) -> Vec<Neighbor<Id>> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|Entry { distance, id }| Neighbor { id, distance })
            .collect()
    }
}

/// The `k` points nearest to `target` by hyperbolic distance, nearest first;
/// equal distances are ordered by `id`, so the result does not depend on the
/// input order. Costs O(n log k). The caller excludes the target's own entry
/// if it is among `points`. [`crate::geometry::PointIndex`] answers the same
/// query without scanning every point.
pub fn k_nearest<Id, I>(points: I, target: DiskPoint, k: usize) -> Vec<Neighbor<Id>>
where
    Id: Ord,
    I: IntoIterator<Item = (Id, DiskPoint)>,
{
    if k == 0 {
        return Vec::new();
    }
    let mut top = TopK::new(k);
    for (id, point) in points {
        top.offer(target.distance(point), id);
    }
    top.into_neighbors()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nearest_in_order_with_id_tie_break() {
        let target = DiskPoint::ORIGIN;
        let pts = vec![
            ("d", DiskPoint::from_polar(0.5, 0.0).unwrap()),
            ("c", DiskPoint::from_polar(0.1, 90.0).unwrap()),
            ("b", DiskPoint::from_polar(0.1, 180.0).unwrap()),
            ("a", DiskPoint::from_polar(0.9, 0.0).unwrap()),
        ];
        let got = k_nearest(pts.clone(), target, 3);
        let ids: Vec<&str> = got.iter().map(|n| n.id).collect();
        assert_eq!(ids, vec!["b", "c", "d"]);
        let mut rev = pts;
        rev.reverse();
        assert_eq!(k_nearest(rev, target, 3), got);
        assert!(k_nearest(Vec::<(u32, DiskPoint)>::new(), target, 3).is_empty());
        assert!(k_nearest(vec![(1u32, target)], target, 0).is_empty());
        assert_eq!(k_nearest(vec![(1u32, target)], target, 5).len(), 1);
    }
}
