//! Bulk deletes against bulk inserts, per id (issue 25: deleting 4,750 ids through the
//! Python binding took 5.6-14 s). An index of 20,000 clustered 384-d vectors, durable
//! (`Durability::Immediate`, the binding's default); then, each on a fresh copy:
//! inserting 5,000 more, deleting 5,000 by id in one call, deleting 5,000 by a payload
//! filter, and deleting 500 one call per id. Prints the times (and the recall after the
//! bulk delete's consolidation); asserts nothing about them.
//!
//! `cargo bench --bench deletes`

use std::path::Path;
use std::time::Instant;

use hnswdb::{Filter, Index, IndexOptions, Metric};
use hnswdb_datasets::clustered;
use serde_json::json;

const N: usize = 20_000;
const CHANGED: usize = 5_000;
const DIM: usize = 384;

/// An index of the first `n` rows, each with the payload `{"group": id % 4}`.
fn build(dir: &Path, rows: &[f32], n: usize) -> Index {
    let index = Index::create(dir, &IndexOptions::new(DIM, Metric::Cosine)).unwrap();
    let ids: Vec<u64> = (0..n as u64).collect();
    let payloads: Vec<_> = ids.iter().map(|id| json!({"group": id % 4})).collect();
    index
        .insert_batch_with_payloads(&ids, &rows[..n * DIM], &payloads, index.threads())
        .unwrap();
    index.flush().unwrap();
    index
}

fn timed(what: &str, ids: usize, f: impl FnOnce()) {
    let start = Instant::now();
    f();
    let s = start.elapsed().as_secs_f64();
    println!(
        "{what:<36} {ids:>5} ids  {s:>8.3} s  {:>8.1} us/id",
        s * 1e6 / ids as f64
    );
}

/// Recall@10 at ef 16 of 200 live vectors as queries, against exact search.
fn recall(index: &Index) -> f64 {
    let mut hit = 0;
    for q in 0..200u64 {
        let v = index.get(q * 88 + 1).unwrap(); // 1 mod 4: never deleted
        let exact: Vec<u64> = index
            .search_exact(&v, 10)
            .unwrap()
            .iter()
            .map(|h| h.id)
            .collect();
        let found = index.search_ef(&v, 10, 16).unwrap();
        hit += found.iter().filter(|h| exact.contains(&h.id)).count();
    }
    hit as f64 / 2000.0
}

fn main() {
    let data = clustered(N + CHANGED, DIM, 100, 7);
    let tmp = tempfile::tempdir().unwrap();
    let fresh = |name: &str, n: usize| build(&tmp.path().join(name), &data.data, n);

    let index = fresh("insert", N);
    let new: Vec<u64> = (N as u64..(N + CHANGED) as u64).collect();
    timed("insert_batch", CHANGED, || {
        index
            .insert_batch(&new, &data.data[N * DIM..(N + CHANGED) * DIM])
            .unwrap()
    });

    let index = fresh("by-id", N);
    let every_fourth: Vec<u64> = (0..N as u64).filter(|id| id % 4 == 0).collect();
    timed("delete_batch", every_fourth.len(), || {
        index.delete_batch(&every_fourth).unwrap()
    });
    println!("recall@10 at ef 16 after it: {:.4}", recall(&index));

    let index = fresh("by-filter", N);
    timed("delete_where {group: 0}", CHANGED, || {
        assert_eq!(
            index.delete_where(&Filter::eq("group", 0)).unwrap(),
            CHANGED as u64
        )
    });

    let index = fresh("one-by-one", N);
    timed("delete, one call per id", 500, || {
        for &id in &every_fourth[..500] {
            index.delete(id).unwrap();
        }
    });
}
