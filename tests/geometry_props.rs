//! Property tests of the Poincare-disk geometry engine (`hypersync_operator::geometry`).

use std::collections::BTreeMap;
use std::f64::consts::TAU;

use hypersync_operator::geometry::{
    AnchorIndex, AnchorKey, Autonomy, DiskPoint, MAX_HYPERBOLIC_RADIUS, MIN_SEPARATION, Placement,
    PlacementRequest, PointIndex, Slot, canonical_tags, k_nearest, locate_slot, mobius_translate,
    mobius_translate_inverse, place, ring_capacity, ring_tau, semantic_angle,
};
use proptest::prelude::*;

const AUTONOMIES: [Autonomy; 4] = [
    Autonomy::Strict,
    Autonomy::Loose,
    Autonomy::Creative,
    Autonomy::Adversarial,
];

/// A point at hyperbolic radius in `[0, max_rho]`.
fn point_within(max_rho: f64) -> impl Strategy<Value = DiskPoint> {
    (0.0..=max_rho, 0.0..TAU).prop_map(|(rho, angle)| {
        DiskPoint::from_hyperbolic_polar(rho, angle).expect("rho <= 12 is inside the disk")
    })
}

fn autonomy() -> impl Strategy<Value = Autonomy> {
    prop::sample::select(AUTONOMIES.to_vec())
}

fn tags() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec("[a-z]{1,8}", 0..5)
}

fn request() -> impl Strategy<Value = PlacementRequest> {
    (
        prop::option::of(point_within(MAX_HYPERBOLIC_RADIUS)),
        tags(),
        autonomy(),
        "[a-z]{1,6}/[a-z0-9-]{1,10}",
    )
        .prop_map(|(anchor, tags, autonomy, fallback_key)| PlacementRequest {
            anchor,
            tags,
            autonomy,
            fallback_key,
        })
}

/// Places `count` nodes with varied tags/autonomy around `anchor`, inserting each.
fn populate(index: &mut AnchorIndex, anchor: Option<DiskPoint>, count: usize) -> Vec<Placement> {
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let req = PlacementRequest {
            anchor,
            tags: vec![format!("skill-{}", i % 37), format!("domain-{}", i % 11)],
            autonomy: AUTONOMIES[i % 4],
            fallback_key: format!("ns/node-{i}"),
        };
        let p = place(&req, index).expect("capacity is far from exhausted");
        assert!(
            index.insert_placement(&p),
            "place returned an occupied slot"
        );
        out.push(p);
    }
    out
}

fn same_bits(a: &Placement, b: &Placement) -> bool {
    a == b
        && a.point.x().to_bits() == b.point.x().to_bits()
        && a.point.y().to_bits() == b.point.y().to_bits()
        && a.hyperbolic_radius.to_bits() == b.hyperbolic_radius.to_bits()
        && a.theta_degrees.to_bits() == b.theta_degrees.to_bits()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn placement_is_bit_identical_on_repeat(req in request(), existing in 0usize..200) {
        let mut index = AnchorIndex::new();
        populate(&mut index, req.anchor, existing);
        let a = place(&req, &index).unwrap();
        let b = place(&req, &index.clone()).unwrap();
        let c = place(&req.clone(), &index).unwrap();
        prop_assert!(same_bits(&a, &b) && same_bits(&a, &c));
    }

    #[test]
    fn placement_is_inside_disk_and_at_ring_distance(req in request(), existing in 0usize..300) {
        let mut index = AnchorIndex::new();
        populate(&mut index, req.anchor, existing);
        let p = place(&req, &index).unwrap();
        let anchor = req.anchor.unwrap_or(DiskPoint::ORIGIN);
        prop_assert!(p.point.r() < 1.0);
        prop_assert!(p.r < 1.0 && p.r >= 0.0);
        prop_assert!((0.0..360.0).contains(&p.theta_degrees));
        prop_assert!(p.hyperbolic_radius <= MAX_HYPERBOLIC_RADIUS + 1e-6, "{}", p.hyperbolic_radius);
        prop_assert_eq!(p.tau, ring_tau(p.slot.ring));
        prop_assert!(p.slot.ring >= req.autonomy.first_ring());
        let d = anchor.distance(p.point);
        prop_assert!((d - p.tau).abs() < 1e-9, "d(anchor, z) = {} but tau = {}", d, p.tau);
        prop_assert_eq!(p.tier, (p.hyperbolic_radius / std::f64::consts::LN_2).floor() as u32);
        prop_assert!(!index.contains(p.anchor_key, p.slot));
    }

    #[test]
    fn unseparated_placement_steps_tau_towards_the_semantic_angle(req in request()) {
        let p = place(&req, &AnchorIndex::new()).unwrap();
        let anchor = req.anchor.unwrap_or(DiskPoint::ORIGIN);
        let d = anchor.distance(p.point);
        // An empty index can still move a node when the preferred slot lies beyond the radius limit.
        if !p.displaced {
            prop_assert_eq!(p.slot.ring, req.autonomy.first_ring());
            prop_assert!((d - ring_tau(req.autonomy.first_ring())).abs() < 1e-9);
            // the direction at the anchor is the slot nearest the semantic angle
            let local = mobius_translate_inverse(anchor, p.point).unwrap();
            let spacing = 360.0 / ring_capacity(p.slot.ring) as f64;
            let diff = (local.theta_degrees() - p.semantic_angle_degrees).rem_euclid(360.0);
            prop_assert!(diff.min(360.0 - diff) <= spacing / 2.0 + 1e-6);
        }
        if req.anchor.is_none_or(|a| a.hyperbolic_radius() < 8.0) {
            prop_assert!(!p.displaced, "near the centre the first slot is always usable");
        }
    }

    #[test]
    fn tag_order_case_and_duplicates_do_not_matter(
        req in request(),
        perm in any::<prop::sample::Index>(),
        existing in 0usize..100,
    ) {
        let mut index = AnchorIndex::new();
        populate(&mut index, req.anchor, existing);
        let mut shuffled: Vec<String> = req.tags.iter().rev().cloned().collect();
        if !shuffled.is_empty() {
            let k = perm.index(shuffled.len());
            shuffled.rotate_left(k);
            let dup = format!("  {} ", shuffled[0].to_uppercase());
            shuffled.push(dup);
        }
        let other = PlacementRequest { tags: shuffled, ..req.clone() };
        prop_assert_eq!(canonical_tags(&req.tags), canonical_tags(&other.tags));
        let a = place(&req, &index).unwrap();
        let b = place(&other, &index).unwrap();
        prop_assert!(same_bits(&a, &b));
    }

    #[test]
    fn polar_cartesian_round_trip(r in 0.0f64..0.999_999, theta in 0.0f64..360.0) {
        let p = DiskPoint::from_polar(r, theta).unwrap();
        prop_assert!((p.r() - r).abs() < 1e-15);
        let q = DiskPoint::new(p.x(), p.y()).unwrap();
        prop_assert_eq!(p, q);
        if r > 1e-6 {
            let diff = (p.theta_degrees() - theta).rem_euclid(360.0);
            prop_assert!(diff.min(360.0 - diff) < 1e-9, "theta {} -> {}", theta, p.theta_degrees());
        }
        let back = DiskPoint::from_polar(p.r(), p.theta_degrees()).unwrap();
        prop_assert!((back.x() - p.x()).abs() < 1e-15 && (back.y() - p.y()).abs() < 1e-15);
    }

    #[test]
    fn mobius_inverse_round_trips_and_is_an_isometry(
        a in point_within(10.0),
        u in point_within(10.0),
        v in point_within(10.0),
    ) {
        let tu = mobius_translate(a, u).unwrap();
        let back = mobius_translate_inverse(a, tu).unwrap();
        prop_assert!(back.distance(u) < 1e-6, "round trip moved by {}", back.distance(u));
        let tv = mobius_translate(a, v).unwrap();
        let d0 = u.distance(v);
        let d1 = tu.distance(tv);
        prop_assert!((d0 - d1).abs() < 1e-6 * (1.0 + d0), "{} vs {}", d0, d1);
        // T_a(0) = a and T_a^-1(a) = 0
        let ta0 = mobius_translate(a, DiskPoint::ORIGIN).unwrap();
        prop_assert!(ta0.distance(a) < 1e-9);
        prop_assert!(mobius_translate_inverse(a, a).unwrap().r() < 1e-12);
    }

    #[test]
    fn distance_is_a_metric_on_samples(
        u in point_within(12.0),
        v in point_within(12.0),
        w in point_within(12.0),
    ) {
        let duv = u.distance(v);
        prop_assert_eq!(duv.to_bits(), v.distance(u).to_bits());
        prop_assert!(duv >= 0.0);
        prop_assert_eq!(u.distance(u), 0.0);
        prop_assert!(duv <= u.distance(w) + w.distance(v) + 1e-9);
        prop_assert!((u.distance(DiskPoint::ORIGIN) - u.hyperbolic_radius()).abs() < 1e-9);
    }

    #[test]
    fn k_nearest_matches_a_full_sort(
        pts in prop::collection::vec(point_within(6.0), 0..60),
        target in point_within(6.0),
        k in 0usize..12,
    ) {
        let items: Vec<(usize, DiskPoint)> = pts.iter().copied().enumerate().collect();
        let got = k_nearest(items.clone(), target, k);
        let mut all: Vec<(f64, usize)> = items.iter().map(|&(i, p)| (target.distance(p), i)).collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        all.truncate(k);
        let got_pairs: Vec<(f64, usize)> = got.iter().map(|n| (n.distance, n.id)).collect();
        prop_assert_eq!(got_pairs, all);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// The index-driven choice equals a brute-force reading of the rule: first
    /// ring from the autonomy, preferred slot nearest the semantic angle, then
    /// `+1, -1, +2, -2, ...`, then the next ring (anchor at the origin, where
    /// every slot of these rings is usable).
    #[test]
    fn placement_matches_brute_force_rule(
        occupied in prop::collection::vec((0u32..3, any::<prop::sample::Index>()), 0..60),
        removed in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
        tags in tags(),
        autonomy in autonomy(),
    ) {
        let mut index = AnchorIndex::new();
        let mut model: BTreeMap<(u32, u64), ()> = BTreeMap::new();
        for (ring, idx) in &occupied {
            let slot = Slot { ring: *ring, index: idx.index(ring_capacity(*ring) as usize) as u64 };
            prop_assert_eq!(index.insert(AnchorKey::ORIGIN, slot).unwrap(), model.insert((slot.ring, slot.index), ()).is_none());
        }
        for r in &removed {
            if model.is_empty() { break; }
            let &(ring, i) = model.keys().nth(r.index(model.len())).unwrap();
            let slot = Slot { ring, index: i };
            prop_assert!(index.remove(AnchorKey::ORIGIN, slot), "slot {:?} was not occupied", slot);
            model.remove(&(ring, i));
        }
        prop_assert_eq!(index.len(), model.len());
        let req = PlacementRequest { anchor: None, tags: tags.clone(), autonomy, fallback_key: "ns/x".into() };
        let p = place(&req, &index).unwrap();

        let alpha = semantic_angle(&canonical_tags(&tags), "ns/x");
        let mut expected = None;
        'rings: for ring in autonomy.first_ring().. {
            let n = ring_capacity(ring);
            let pref = ((alpha / (TAU / n as f64)).round() as u64) % n;
            for step in 0..n {
                let offset = (step as i64 + 1) / 2 * if step % 2 == 1 { 1 } else { -1 };
                let j = (pref as i64 + offset).rem_euclid(n as i64) as u64;
                if !model.contains_key(&(ring, j)) {
                    expected = Some(Slot { ring, index: j });
                    break 'rings;
                }
            }
        }
        prop_assert_eq!(Some(p.slot), expected);
    }

    /// An index rebuilt from stored coordinates, in another order, gives the same next placement.
    #[test]
    fn rebuilt_index_gives_the_same_placement(anchor in point_within(MAX_HYPERBOLIC_RADIUS), count in 1usize..150, next in request()) {
        let mut index = AnchorIndex::new();
        let placed = populate(&mut index, Some(anchor), count);
        let key = AnchorKey::of(anchor);
        let stored_key: AnchorKey = key.to_string().parse().unwrap();
        prop_assert_eq!(stored_key, key);
        let mut rebuilt = AnchorIndex::new();
        for p in placed.iter().rev() {
            let point = DiskPoint::new(p.point.x(), p.point.y()).unwrap();
            let slot = locate_slot(stored_key.to_point().unwrap(), point).unwrap();
            prop_assert_eq!(slot, p.slot);
            prop_assert!(rebuilt.insert(stored_key, slot).unwrap());
        }
        let next = PlacementRequest { anchor: Some(anchor), ..next };
        prop_assert!(same_bits(&place(&next, &index).unwrap(), &place(&next, &rebuilt).unwrap()));
    }
}

/// Checks minimum separation among `placed` (all around `anchor`):
/// every ring's angular neighbours, every pair of angular neighbours across
/// adjacent rings, and `sample` nodes against all others. Returns the smallest
/// distance seen.
fn assert_separated(anchor: DiskPoint, placed: &[Placement], sample: usize) -> f64 {
    let tol = 1e-9;
    let mut min_seen = f64::INFINITY;
    let mut check = |a: &Placement, b: &Placement| {
        let d = a.point.distance(b.point);
        assert!(
            d >= MIN_SEPARATION - tol,
            "nodes {:?} and {:?} only {d} apart",
            a.slot,
            b.slot
        );
        min_seen = min_seen.min(d);
    };
    // Group by ring, sorted by anchor-relative angle (recomputed from the points).
    let mut rings: BTreeMap<u32, Vec<(f64, &Placement)>> = BTreeMap::new();
    for p in placed {
        let d = anchor.distance(p.point);
        assert!(
            (d - p.tau).abs() < 1e-9,
            "node off its ring: {d} vs {}",
            p.tau
        );
        let angle = mobius_translate_inverse(anchor, p.point)
            .unwrap()
            .theta_radians();
        rings.entry(p.slot.ring).or_default().push((angle, p));
    }
    for list in rings.values_mut() {
        list.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    for (ring, list) in &rings {
        // neighbours on the same ring, cyclically
        for i in 0..list.len() {
            let j = (i + 1) % list.len();
            if i != j {
                check(list[i].1, list[j].1);
            }
        }
        // nearest angles on the next ring (on each side, cyclically)
        if let Some(outer) = rings.get(&(ring + 1)) {
            for &(angle, p) in list {
                let pos = outer.partition_point(|(a, _)| *a < angle);
                for k in [pos + outer.len() - 1, pos, pos + 1] {
                    check(p, outer[k % outer.len()].1);
                }
            }
        }
    }
    // sampled full check
    let stride = (placed.len() / sample.max(1)).max(1);
    for p in placed.iter().step_by(stride) {
        for q in placed {
            if !std::ptr::eq(p, q) {
                check(p, q);
            }
        }
    }
    min_seen
}

#[test]
fn minimum_separation_holds_for_10_000_nodes_around_one_anchor() {
    let anchor = DiskPoint::from_polar(0.5, 30.0).unwrap();
    let mut index = AnchorIndex::new();
    let placed = populate(&mut index, Some(anchor), 10_000);
    assert_eq!(index.occupied_around(AnchorKey::of(anchor)), 10_000);
    let min = assert_separated(anchor, &placed, 200);
    assert!(
        min < MIN_SEPARATION + 0.05,
        "rings are packed tightly: {min}"
    );
}

#[test]
fn minimum_separation_holds_all_pairs_near_the_radius_limit() {
    // Anchor near the limit: many slots are cut off, the search has to skip them.
    let anchor = DiskPoint::from_hyperbolic_polar(11.5, 4.0).unwrap();
    let mut index = AnchorIndex::new();
    let placed = populate(&mut index, Some(anchor), 2_000);
    for p in &placed {
        assert!(p.hyperbolic_radius <= MAX_HYPERBOLIC_RADIUS + 1e-6);
    }
    // sample == len: a full all-pairs check
    assert_separated(anchor, &placed, placed.len());
}

#[test]
fn seed_example_point_round_trips() {
    let p = DiskPoint::from_polar(0.4, 120.0).unwrap();
    let q = DiskPoint::new(p.x(), p.y()).unwrap();
    assert!((q.r() - 0.4).abs() < 1e-15);
    assert!((q.theta_degrees() - 120.0).abs() < 1e-12);
    assert_eq!(q.tier(), 1);
}

/// A point uniform (by Euclidean area) in the disk of radius 0.999_999.
fn uniform_point() -> impl Strategy<Value = DiskPoint> {
    (0.0f64..1.0, 0.0..360.0).prop_map(|(u, theta)| {
        DiskPoint::from_polar(u.sqrt().min(0.999_999), theta).expect("r < 1")
    })
}

/// Points within hyperbolic distance 3 of one anchor anywhere up to radius 12.
fn anchored_cluster(size: usize) -> impl Strategy<Value = Vec<DiskPoint>> {
    (
        point_within(MAX_HYPERBOLIC_RADIUS),
        prop::collection::vec(point_within(3.0), 1..size),
    )
        .prop_map(|(anchor, offsets)| {
            offsets
                .into_iter()
                .filter_map(|o| mobius_translate(anchor, o).ok())
                .collect()
        })
}

/// Points at hyperbolic radius 10..12 (r within 1e-4 of 1) in a narrow sector.
fn boundary_cluster(size: usize) -> impl Strategy<Value = Vec<DiskPoint>> {
    (
        0.0..TAU,
        prop::collection::vec((10.0..=MAX_HYPERBOLIC_RADIUS, 0.0..1e-3), 1..size),
    )
        .prop_map(|(base, polar)| {
            polar
                .into_iter()
                .map(|(rho, da)| {
                    DiskPoint::from_hyperbolic_polar(rho, base + da).expect("rho <= 12")
                })
                .collect()
        })
}

/// The points of `count` real placements around one anchor.
fn placed_points(count: std::ops::Range<usize>) -> impl Strategy<Value = Vec<DiskPoint>> {
    (point_within(MAX_HYPERBOLIC_RADIUS), count).prop_map(|(anchor, n)| {
        let mut index = AnchorIndex::new();
        populate(&mut index, Some(anchor), n)
            .into_iter()
            .map(|p| p.point)
            .collect()
    })
}

/// One step on a `PointIndex`: insert (or move) an id at a pool point, or remove an id.
#[derive(Debug, Clone)]
enum Op {
    Insert(u32, prop::sample::Index),
    Remove(u32),
}

fn ops(ids: u32, len: usize) -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            3 => (0..ids, any::<prop::sample::Index>()).prop_map(|(id, i)| Op::Insert(id, i)),
            1 => (0..ids).prop_map(Op::Remove),
        ],
        0..len,
    )
}

/// Plays `ops` on a `PointIndex` and on a map, then checks queries (targets
/// from the pool, a stored point with its own id excluded, and `extra`)
/// against the scan `k_nearest` over the map.
fn check_index_against_scan(
    pool: &[DiskPoint],
    ops: &[Op],
    extra: &[DiskPoint],
    k: usize,
) -> Result<(), TestCaseError> {
    if pool.is_empty() {
        return Ok(());
    }
    let mut index = PointIndex::new();
    let mut model: BTreeMap<u32, DiskPoint> = BTreeMap::new();
    for op in ops {
        match op {
            Op::Insert(id, i) => {
                let p = *i.get(pool);
                prop_assert_eq!(index.insert(*id, p), model.insert(*id, p));
            }
            Op::Remove(id) => prop_assert_eq!(index.remove(id), model.remove(id).is_some()),
        }
        prop_assert_eq!(index.len(), model.len());
    }
    let scan = |target: DiskPoint, k: usize, exclude: Option<u32>| {
        k_nearest(
            model
                .iter()
                .filter(|(id, _)| Some(**id) != exclude)
                .map(|(id, p)| (*id, *p)),
            target,
            k,
        )
    };
    let targets = pool.iter().step_by(pool.len() / 8 + 1).chain(extra);
    for &target in targets {
        for kk in [k, 1, 3] {
            prop_assert_eq!(index.k_nearest(target, kk, None), scan(target, kk, None));
        }
    }
    for (&id, &p) in model.iter().step_by(model.len() / 8 + 1) {
        prop_assert_eq!(index.k_nearest(p, k, Some(&id)), scan(p, k, Some(id)));
        prop_assert_eq!(index.get(&id), Some(p));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn point_index_matches_scan_uniform(
        pool in prop::collection::vec(uniform_point(), 1..300),
        ops in ops(250, 400),
        extra in prop::collection::vec(uniform_point(), 0..4),
        k in 0usize..12,
    ) {
        check_index_against_scan(&pool, &ops, &extra, k)?;
    }

    #[test]
    fn point_index_matches_scan_near_one_anchor(
        pool in anchored_cluster(300),
        ops in ops(250, 400),
        extra in prop::collection::vec(point_within(MAX_HYPERBOLIC_RADIUS), 0..4),
        k in 0usize..12,
    ) {
        check_index_against_scan(&pool, &ops, &extra, k)?;
    }

    #[test]
    fn point_index_matches_scan_near_the_boundary(
        pool in boundary_cluster(300),
        ops in ops(250, 400),
        extra in prop::collection::vec(point_within(MAX_HYPERBOLIC_RADIUS), 0..4),
        k in 0usize..12,
    ) {
        check_index_against_scan(&pool, &ops, &extra, k)?;
    }

    /// Few distinct points, many ids: duplicates everywhere, ties broken by id.
    #[test]
    fn point_index_matches_scan_with_duplicates(
        pool in prop::collection::vec(point_within(MAX_HYPERBOLIC_RADIUS), 1..5),
        ops in ops(100, 300),
        k in 0usize..40,
    ) {
        check_index_against_scan(&pool, &ops, &[], k)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn point_index_matches_scan_on_real_placements(
        pool in placed_points(1..600),
        ops in ops(600, 1_200),
        extra in prop::collection::vec(point_within(MAX_HYPERBOLIC_RADIUS), 0..4),
        k in 0usize..12,
    ) {
        check_index_against_scan(&pool, &ops, &extra, k)?;
    }
}
