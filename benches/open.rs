//! Time of `Index::open` against index size: it reads page-file headers and the metadata's
//! configuration and state only, so it should not grow with the number of vectors.
//! (The index is dropped outside the timed region: a drop checkpoints.) Building the three
//! indexes, up to 1 M vectors, takes about two minutes on 2 cores.

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use hnswdb::{Durability, Index, IndexOptions, Metric};
use hnswdb_datasets::clustered;

fn open(c: &mut Criterion) {
    let mut group = c.benchmark_group("open");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(5));
    for n in [10_000usize, 200_000, 1_000_000] {
        let dir = tempfile::tempdir().unwrap();
        let data = clustered(n, 32, n / 500, 1);
        let index = Index::create(
            dir.path(),
            &IndexOptions::new(32, Metric::L2).durability(Durability::None),
        )
        .unwrap();
        index
            .insert_batch(&(0..n as u64).collect::<Vec<_>>(), &data.data)
            .unwrap();
        index.close().unwrap();
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let index = Index::open(dir.path()).unwrap();
                    total += start.elapsed();
                    drop(index);
                }
                total
            })
        });
    }
    group.finish();
}

criterion_group!(benches, open);
criterion_main!(benches);
