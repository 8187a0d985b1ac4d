//! Criterion benchmarks: one semantic placement among 1k / 10k / 100k occupied slots around one
//! anchor; the k = 3 nearest neighbours of a placed node among 1k / 10k / 100k placed nodes, by the
//! `k_nearest` scan and by the `PointIndex`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use hypersync_operator::geometry::{
    AnchorIndex, Autonomy, DiskPoint, PlacementRequest, PointIndex, k_nearest, place,
};

const AUTONOMIES: [Autonomy; 4] = [
    Autonomy::Strict,
    Autonomy::Loose,
    Autonomy::Creative,
    Autonomy::Adversarial,
];

fn request(anchor: DiskPoint, i: usize) -> PlacementRequest {
    PlacementRequest {
        anchor: Some(anchor),
        tags: vec![format!("skill-{}", i % 37), format!("domain-{}", i % 11)],
        autonomy: AUTONOMIES[i % 4],
        fallback_key: format!("ns/node-{i}"),
    }
}

fn populated(anchor: DiskPoint, count: usize) -> AnchorIndex {
    let mut index = AnchorIndex::new();
    for i in 0..count {
        let p = place(&request(anchor, i), &index).expect("capacity is far from exhausted");
        index.insert_placement(&p);
    }
    index
}

fn placement(c: &mut Criterion) {
    let anchor = DiskPoint::from_polar(0.3, 120.0).expect("valid anchor");
    let mut group = c.benchmark_group("place_among_occupied");
    for count in [1_000usize, 10_000, 100_000] {
        let index = populated(anchor, count);
        // A Strict node: its first rings are full, so the search has to walk outward.
        let strict = PlacementRequest {
            autonomy: Autonomy::Strict,
            ..request(anchor, count + 1)
        };
        group.bench_with_input(BenchmarkId::new("strict", count), &index, |b, index| {
            b.iter(|| place(black_box(&strict), black_box(index)))
        });
        let mut scratch = index.clone();
        let mut i = count;
        group.bench_with_input(
            BenchmarkId::new("place_insert_remove", count),
            &count,
            |b, _| {
                b.iter(|| {
                    i += 1;
                    let p = place(&request(anchor, i), &scratch).expect("free slot");
                    scratch.insert_placement(&p);
                    scratch.remove(p.anchor_key, p.slot);
                    p
                })
            },
        );
    }
    group.finish();

    let index_points: Vec<(usize, DiskPoint)> = {
        let mut index = AnchorIndex::new();
        (0..10_000)
            .map(|i| {
                let p = place(&request(anchor, i), &index).expect("free slot");
                index.insert_placement(&p);
                (i, p.point)
            })
            .collect()
    };
    c.bench_function("k_nearest/8_of_10000", |b| {
        b.iter(|| k_nearest(black_box(index_points.iter().copied()), anchor, 8))
    });
}

/// The ids (`ns/node-<i>`) and points of `count` nodes placed around `anchor`.
fn placed_nodes(anchor: DiskPoint, count: usize) -> Vec<(String, DiskPoint)> {
    let mut index = AnchorIndex::new();
    (0..count)
        .map(|i| {
            let p = place(&request(anchor, i), &index).expect("free slot");
            index.insert_placement(&p);
            (format!("ns/node-{i}"), p.point)
        })
        .collect()
}

/// The 3 nearest neighbours of a placed node (its own id excluded), as the
/// AgentNode controller needs them: scanning every node vs the `PointIndex`.
/// The queried node cycles through a fixed stride of the placed ones.
fn neighbours(c: &mut Criterion) {
    let anchor = DiskPoint::from_polar(0.3, 120.0).expect("valid anchor");
    let mut group = c.benchmark_group("neighbors_k3");
    group.sample_size(20);
    for count in [1_000usize, 10_000, 100_000] {
        let nodes = placed_nodes(anchor, count);
        let mut index = PointIndex::new();
        for (id, p) in &nodes {
            index.insert(id.clone(), *p);
        }
        let stride = 7919; // prime: queries visit the rings in a scattered order
        let mut q = 0;
        group.bench_with_input(BenchmarkId::new("scan", count), &nodes, |b, nodes| {
            b.iter(|| {
                q = (q + stride) % nodes.len();
                let (own, target) = &nodes[q];
                k_nearest(
                    nodes
                        .iter()
                        .filter(|(id, _)| id != own)
                        .map(|(id, p)| (id, *p)),
                    black_box(*target),
                    3,
                )
            })
        });
        group.bench_with_input(BenchmarkId::new("index", count), &index, |b, index| {
            b.iter(|| {
                q = (q + stride) % nodes.len();
                let (own, target) = &nodes[q];
                index.k_nearest(black_box(*target), 3, Some(own))
            })
        });
        group.bench_function(BenchmarkId::new("index_remove_insert", count), |b| {
            b.iter(|| {
                q = (q + stride) % nodes.len();
                let (id, p) = &nodes[q];
                index.remove(black_box(id));
                index.insert(id.clone(), *p)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, placement, neighbours);
criterion_main!(benches);
