//! Build, persist, reopen, query; recall against brute force; every bad input's error.

use hnswdb::{Error, Index, IndexOptions, Metric};
use hnswdb_datasets::{Matrix, clustered, recall_at_k};

fn build(dir: &std::path::Path, data: &Matrix, metric: Metric) -> Index {
    build_on(dir, data, IndexOptions::new(data.dim, metric))
}

fn build_on(dir: &std::path::Path, data: &Matrix, options: IndexOptions) -> Index {
    let index = Index::create(dir, &options).unwrap();
    let ids: Vec<u64> = (0..data.rows as u64).collect();
    index.insert_batch(&ids, &data.data).unwrap();
    index
}

/// Mean recall@k of the index against exact search, over `queries`.
fn recall(index: &Index, queries: &Matrix, k: usize, ef: usize) -> f64 {
    let mut total = 0.0;
    for q in 0..queries.rows {
        let found: Vec<u64> = index
            .search_ef(queries.row(q), k, ef)
            .unwrap()
            .iter()
            .map(|h| h.id)
            .collect();
        let exact: Vec<u64> = index
            .search_exact(queries.row(q), k)
            .unwrap()
            .iter()
            .map(|h| h.id)
            .collect();
        total += recall_at_k(&found, &exact, k);
    }
    total / queries.rows as f64
}

#[test]
fn recall_on_20k_clustered_64d_at_ef_64() {
    let dir = tempfile::tempdir().unwrap();
    let mut data = clustered(20_200, 64, 50, 1);
    let queries = data.split_off(200);
    let index = build(dir.path(), &data, Metric::L2);
    let r = recall(&index, &queries, 10, 64);
    assert!(r >= 0.95, "recall@10 at ef=64 is {r}");
}

/// Inserts made once the SQ8 codes exist walk layer 0 on codes (as searches do) and choose
/// neighbours on exact distances: the graph they build must be as good as an exact one.
#[test]
fn recall_when_inserts_walk_codes() {
    let dir = tempfile::tempdir().unwrap();
    let mut data = clustered(20_200, 64, 50, 1);
    let queries = data.split_off(200);
    let index = Index::create(dir.path(), &IndexOptions::new(64, Metric::L2)).unwrap();
    // Chunks: the first one trains the codes (at its checkpoint), the other nine walk them.
    for first in (0..data.rows).step_by(2_000) {
        let ids: Vec<u64> = (first as u64..first as u64 + 2_000).collect();
        index
            .insert_batch(&ids, &data.data[first * 64..(first + 2_000) * 64])
            .unwrap();
    }
    assert!(
        index.stats().unwrap().codes_generation > 0,
        "codes were never trained"
    );
    let report = index.verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.unreachable, 0);
    let r = recall(&index, &queries, 10, 64);
    assert!(r >= 0.95, "recall@10 at ef=64 is {r}");
}

/// A single batch that takes the index past `quantize_after` is built walking codes
/// trained before it (not at the checkpoint after it). The next checkpoint names them; a
/// crash before that checkpoint leaves an index that opens whole, with every row, and
/// answers as well.
#[test]
fn one_large_batch_is_built_on_codes_trained_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let mut data = clustered(20_200, 64, 50, 1);
    let queries = data.split_off(200);
    // No checkpoint but the one asked for below.
    let options = IndexOptions::new(64, Metric::L2).checkpoint_bytes(u64::MAX);
    let index = Index::create(&live, &options).unwrap();
    index
        .insert_batch(&(0..500).collect::<Vec<u64>>(), &data.data[..500 * 64])
        .unwrap();
    assert_eq!(
        index.stats().unwrap().codes_generation,
        0,
        "trained below 1000"
    );
    let ids: Vec<u64> = (500..data.rows as u64).collect();
    index.insert_batch(&ids, &data.data[500 * 64..]).unwrap();
    assert_eq!(index.stats().unwrap().codes_generation, 1);
    let r = recall(&index, &queries, 10, 64);
    assert!(r >= 0.95, "recall@10 at ef=64 is {r}");

    // A crash now: the metadata names no codes yet.
    let crashed = dir.path().join("crashed");
    snapshot(&live, &crashed);
    let reopened = Index::open(&crashed).unwrap();
    assert_eq!(reopened.len(), data.rows as u64);
    let report = reopened.verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    let r = recall(&reopened, &queries, 10, 64);
    assert!(r >= 0.95, "recall@10 at ef=64 after the crash is {r}");
    drop(reopened);

    // The checkpoint names them: a reopen walks the same codes.
    index.flush().unwrap();
    drop(index);
    let reopened = Index::open(&live).unwrap();
    assert_eq!(reopened.stats().unwrap().codes_generation, 1);
    let report = reopened.verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.unreachable, 0);
}

#[test]
fn reopen_gives_the_same_answers() {
    let dir = tempfile::tempdir().unwrap();
    let mut data = clustered(3_050, 32, 20, 3);
    let queries = data.split_off(50);
    for metric in [Metric::L2, Metric::Cosine, Metric::InnerProduct] {
        let sub = dir.path().join(metric.name());
        // One build thread: the graph, and so the exact-match check of the insert below,
        // is the same on every run (a multi-threaded build is a different approximate
        // graph each time).
        let index = build_on(&sub, &data, IndexOptions::new(data.dim, metric).threads(1));
        let before: Vec<_> = (0..queries.rows)
            .map(|q| index.search(queries.row(q), 10).unwrap())
            .collect();
        index.flush().unwrap();
        drop(index);
        let index = Index::open(&sub).unwrap();
        assert_eq!(index.len(), data.rows as u64);
        assert_eq!(index.metric(), metric);
        let after: Vec<_> = (0..queries.rows)
            .map(|q| index.search(queries.row(q), 10).unwrap())
            .collect();
        assert_eq!(before, after, "{metric:?}");
        let stored = index.get(17).unwrap();
        match metric {
            Metric::Cosine => {
                let norm: f32 = stored.iter().map(|x| x * x).sum::<f32>().sqrt();
                assert!((norm - 1.0).abs() < 1e-5);
            }
            _ => assert_eq!(stored, data.row(17)),
        }
        // Inserting after a reopen keeps working; the new vector is found where exact
        // search finds it.
        index.insert(1_000_000, data.row(5)).unwrap();
        let hits = index.search_ef(data.row(5), 3, 100).unwrap();
        let exact = index.search_exact(data.row(5), 3).unwrap();
        assert_eq!(hits, exact, "{metric:?}");
        assert!(index.contains(1_000_000).unwrap());
    }
}

/// Concurrent inserts must not cut nodes off the graph. (They once did: an insert could
/// reach a node whose own lists were not written yet, link only to it, and lose that link
/// when the node's list was written; 3 to 7 of these 3,000 nodes ended up unreachable.)
#[test]
fn multi_threaded_build_leaves_every_node_reachable() {
    let data = clustered(3_000, 32, 20, 3);
    for round in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let index = build_on(
            dir.path(),
            &data,
            IndexOptions::new(32, Metric::L2).threads(2),
        );
        let report = index.verify().unwrap();
        assert!(report.is_ok(), "{:?}", report.problems);
        assert_eq!(report.unreachable, 0, "round {round}");
    }
}

#[test]
fn single_threaded_build_is_deterministic() {
    let data = clustered(1_000, 16, 10, 5);
    let answers: Vec<Vec<_>> = (0..2)
        .map(|_| {
            let dir = tempfile::tempdir().unwrap();
            let index =
                Index::create(dir.path(), &IndexOptions::new(16, Metric::L2).threads(1)).unwrap();
            for r in 0..data.rows {
                index.insert(r as u64, data.row(r)).unwrap();
            }
            (0..20)
                .map(|q| index.search(data.row(q * 7), 5).unwrap())
                .collect()
        })
        .collect();
    assert_eq!(answers[0], answers[1]);
}

#[test]
fn bad_input_gets_typed_errors_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let index = Index::create(dir.path(), &IndexOptions::new(3, Metric::Cosine)).unwrap();
    index.insert(1, &[1.0, 2.0, 3.0]).unwrap();
    assert!(matches!(
        index.insert(2, &[1.0, 2.0]),
        Err(Error::DimensionMismatch {
            expected: 3,
            got: 2
        })
    ));
    assert!(matches!(
        index.insert(2, &[1.0, f32::NAN, 3.0]),
        Err(Error::NonFinite { position: 1, .. })
    ));
    assert!(matches!(
        index.insert(2, &[f32::INFINITY, 0.0, 3.0]),
        Err(Error::NonFinite { position: 0, .. })
    ));
    assert!(matches!(
        index.insert(2, &[0.0, 0.0, 0.0]),
        Err(Error::ZeroVector)
    ));
    assert!(matches!(
        index.insert(1, &[1.0, 1.0, 1.0]),
        Err(Error::DuplicateId(1))
    ));
    // A batch with one bad row or an internal duplicate is rejected whole.
    assert!(matches!(
        index.insert_batch(&[5, 6], &[1.0, 1.0, 1.0, f32::NAN, 1.0, 1.0]),
        Err(Error::NonFinite { .. })
    ));
    assert!(matches!(
        index.insert_batch(&[7, 7], &[1.0; 6]),
        Err(Error::DuplicateId(7))
    ));
    assert!(matches!(
        index.insert_batch(&[8], &[1.0; 4]),
        Err(Error::DimensionMismatch { .. })
    ));
    assert!(matches!(index.get(99), Err(Error::UnknownId(99))));
    assert!(matches!(
        index.search(&[1.0], 3),
        Err(Error::DimensionMismatch { .. })
    ));
    assert_eq!(index.len(), 1);
    assert!(
        !index.contains(5).unwrap() && !index.contains(7).unwrap() && !index.contains(8).unwrap()
    );
    assert!(matches!(
        Index::create(dir.path(), &IndexOptions::new(3, Metric::L2)),
        Err(Error::AlreadyExists(_))
    ));
    assert!(matches!(
        Index::create(dir.path().join("x"), &IndexOptions::new(0, Metric::L2)),
        Err(Error::InvalidOption(_))
    ));
    assert!(matches!(
        Index::open(dir.path().join("nothing")),
        Err(Error::NotFound(_))
    ));
}

#[test]
fn second_open_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let _index = Index::create(dir.path(), &IndexOptions::new(3, Metric::L2)).unwrap();
    assert!(matches!(Index::open(dir.path()), Err(Error::Locked(_))));
}

fn corrupt_and_open(mutate: impl Fn(&std::path::Path)) -> Error {
    let dir = tempfile::tempdir().unwrap();
    let data = clustered(300, 8, 4, 9);
    build(dir.path(), &data, Metric::L2).close().unwrap();
    mutate(dir.path());
    match Index::open(dir.path()) {
        Ok(_) => panic!("opened a damaged index"),
        Err(e) => e,
    }
}

fn patch(path: &std::path::Path, offset: u64, bytes: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(bytes).unwrap();
}

#[test]
fn damaged_or_foreign_files_are_refused() {
    // Wrong magic.
    let e = corrupt_and_open(|d| patch(&d.join("vectors"), 0, b"GARBAGE!"));
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");
    // A flipped header byte fails the checksum.
    let e = corrupt_and_open(|d| patch(&d.join("graph0"), 17, &[0xff]));
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");
    // A newer format version.
    let e = corrupt_and_open(|d| patch(&d.join("vectors"), 8, &99u32.to_le_bytes()));
    assert!(
        matches!(e, Error::UnsupportedVersion { found: 99, .. }),
        "{e}"
    );
    // Truncated page file.
    let e = corrupt_and_open(|d| {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(d.join("graph0"))
            .unwrap();
        f.set_len(5000).unwrap();
    });
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");
    // A page file from another index (same dimension, different uid).
    let e = corrupt_and_open(|d| {
        let other = tempfile::tempdir().unwrap();
        build(other.path(), &clustered(300, 8, 4, 9), Metric::L2)
            .close()
            .unwrap();
        std::fs::copy(other.path().join("vectors"), d.join("vectors")).unwrap();
    });
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");
    // Metadata that is not a redb file.
    let e = corrupt_and_open(|d| {
        std::fs::write(d.join("meta.redb"), b"not a database at all").unwrap()
    });
    assert!(matches!(e, Error::Corrupt { .. } | Error::Meta(_)), "{e}");
}

#[test]
fn concurrent_search_during_batch_insert() {
    let dir = tempfile::tempdir().unwrap();
    let data = clustered(6_000, 16, 20, 11);
    let index = Index::create(dir.path(), &IndexOptions::new(16, Metric::L2).threads(2)).unwrap();
    index
        .insert_batch(&(0..1000).collect::<Vec<u64>>(), &data.data[..1000 * 16])
        .unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            let ids: Vec<u64> = (1000..6000).collect();
            index.insert_batch(&ids, &data.data[1000 * 16..]).unwrap();
        });
        s.spawn(|| {
            for q in 0..500 {
                let hits = index.search(data.row(q % 1000), 5).unwrap();
                assert!(!hits.is_empty());
                assert!(hits.windows(2).all(|w| w[0].distance <= w[1].distance));
            }
        });
    });
    assert_eq!(index.len(), 6000);
    let r = recall(&index, &clustered(50, 16, 20, 11), 10, 64);
    assert!(r >= 0.9, "recall after concurrent build {r}");
}

/// Copies the index files while the index is open and unflushed: what a `kill -9` at that
/// moment leaves on disk (the page cache is shared, so the copy sees every write).
fn snapshot(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in std::fs::read_dir(from).unwrap() {
        let f = f.unwrap();
        if f.file_type().unwrap().is_file() {
            std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
        }
    }
}

#[test]
fn reopening_after_a_crash_before_flush_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let mut data = clustered(4_100, 16, 20, 21);
    let queries = data.split_off(100);
    let index = Index::create(&live, &IndexOptions::new(16, Metric::L2)).unwrap();
    index
        .insert_batch(&(0..2000).collect::<Vec<u64>>(), &data.data[..2000 * 16])
        .unwrap();
    index.flush().unwrap();
    // Unflushed inserts that grow the files and rewrite links of flushed nodes.
    index
        .insert_batch(&(2000..4000).collect::<Vec<u64>>(), &data.data[2000 * 16..])
        .unwrap();
    let crashed = dir.path().join("crashed");
    snapshot(&live, &crashed);
    let reopened = Index::open(&crashed).unwrap();
    assert!(reopened.len() >= 2000);
    for q in 0..queries.rows {
        let hits = reopened.search(queries.row(q), 10).unwrap();
        assert_eq!(hits.len(), 10);
        // Every hit is an id the index says it holds, with its true distance.
        for h in hits {
            assert!(reopened.contains(h.id).unwrap());
            let v = reopened.get(h.id).unwrap();
            let d: f32 = v
                .iter()
                .zip(queries.row(q))
                .map(|(a, b)| (a - b) * (a - b))
                .sum();
            assert!((d - h.distance).abs() < 1e-3);
        }
    }
    // The reopened index keeps accepting writes.
    reopened.insert(99_999, queries.row(0)).unwrap();
    assert!(reopened.contains(99_999).unwrap());
}

#[test]
fn filtered_search_returns_only_admitted_ids_and_matches_exact() {
    let dir = tempfile::tempdir().unwrap();
    let mut data = clustered(5_050, 32, 20, 7);
    let queries = data.split_off(50);
    let index = build(dir.path(), &data, Metric::L2);
    let admit = |id: u64| id % 7 == 3;
    let mut total = 0.0;
    for q in 0..queries.rows {
        let found = index
            .search_filtered(queries.row(q), 10, 200, admit)
            .unwrap();
        assert_eq!(found.len(), 10);
        assert!(found.iter().all(|h| admit(h.id)));
        assert!(found.windows(2).all(|w| w[0].distance <= w[1].distance));
        // Exact answer among admitted ids: scan a deep exact result.
        let exact: Vec<u64> = index
            .search_exact(queries.row(q), data.rows)
            .unwrap()
            .into_iter()
            .map(|h| h.id)
            .filter(|&id| admit(id))
            .take(10)
            .collect();
        let ids: Vec<u64> = found.iter().map(|h| h.id).collect();
        total += recall_at_k(&ids, &exact, 10);
    }
    let r = total / queries.rows as f64;
    assert!(r >= 0.95, "filtered recall@10 at ef=200 is {r}");
    // A filter that admits nothing gives nothing; one that admits everything is a search.
    assert!(
        index
            .search_filtered(queries.row(0), 10, 64, |_| false)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        index
            .search_filtered(queries.row(0), 10, 64, |_| true)
            .unwrap(),
        index.search_ef(queries.row(0), 10, 64).unwrap()
    );
}
