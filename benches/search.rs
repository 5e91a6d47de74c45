//! Single-query search latency at a few ef values on a clustered 20k x 64 index.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use hnswdb::{Index, IndexOptions, Metric};
use hnswdb_datasets::clustered;
use std::hint::black_box;

fn search(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut data = clustered(20_500, 64, 50, 1);
    let queries = data.split_off(500);
    let index = Index::create(dir.path(), &IndexOptions::new(64, Metric::L2)).unwrap();
    let ids: Vec<u64> = (0..data.rows as u64).collect();
    index.insert_batch(&ids, &data.data).unwrap();
    let mut group = c.benchmark_group("search/clustered-20k-64d/k10");
    for ef in [16usize, 64, 128] {
        group.bench_with_input(BenchmarkId::from_parameter(ef), &ef, |b, &ef| {
            let mut q = 0;
            b.iter(|| {
                q = (q + 1) % queries.rows;
                black_box(index.search_ef(queries.row(q), 10, ef).unwrap())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, search);
criterion_main!(benches);
