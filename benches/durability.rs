//! Durable single inserts per durability mode (128-d vectors into a 10k index): the cost
//! of the write-ahead log's fsync under `Immediate`, against `Periodic` and `None`.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use hnswdb::{Durability, Index, IndexOptions, Metric};
use hnswdb_datasets::clustered;

fn durable_inserts(c: &mut Criterion) {
    let data = clustered(200_000, 128, 100, 7);
    let mut group = c.benchmark_group("insert/128d");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));
    for (name, mode) in [
        ("immediate", Durability::Immediate),
        (
            "periodic-10ms",
            Durability::Periodic(Duration::from_millis(10)),
        ),
        ("none", Durability::None),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::create(
            dir.path(),
            &IndexOptions::new(128, Metric::L2)
                .durability(mode)
                .threads(1),
        )
        .unwrap();
        index
            .insert_batch(
                &(0..10_000).collect::<Vec<u64>>(),
                &data.data[..10_000 * 128],
            )
            .unwrap();
        let mut next = 10_000u64;
        group.bench_function(name, |b| {
            b.iter(|| {
                let row = next as usize % data.rows;
                index.insert(next, data.row(row)).unwrap();
                next += 1;
            })
        });
    }
    group.finish();
}

criterion_group!(benches, durable_inserts);
criterion_main!(benches);
