//! Criterion benchmark: one semantic placement among 1k / 10k / 100k occupied slots around one anchor.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use hypersync_operator::geometry::{
    AnchorIndex, Autonomy, DiskPoint, PlacementRequest, k_nearest, place,
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

criterion_group!(benches, placement);
criterion_main!(benches);
