//! Older format versions keep opening: `tests/fixtures/format-v1` is an index written by
//! the last version-1 build (600 vectors of 8 dimensions from `format-v1.fvecs`, ids = row
//! numbers, ids 0..50 then deleted and checkpointed). Its `graph0` records are
//! count-prefixed; this build must read them, write new lists in the same layout, and
//! leave the file at version 1, while new indexes get the version-2 record layout (in files
//! of version 3, whose vectors slots carry checksums).

use std::path::Path;

mod common;

use common::copy_dir;
use hnswdb::{Index, IndexOptions, Metric};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/format-v1");
const DIM: usize = 8;

fn fixture_vectors() -> Vec<Vec<f32>> {
    let bytes = std::fs::read(format!("{FIXTURE}.fvecs")).unwrap();
    bytes
        .chunks_exact(4 + 4 * DIM)
        .map(|row| {
            assert_eq!(u32::from_le_bytes(row[..4].try_into().unwrap()), DIM as u32);
            row[4..]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect()
        })
        .collect()
}

/// (format version, slot stride) from a page file's header (`docs/format.md`).
fn version_and_stride(file: &Path) -> (u32, u64) {
    let bytes = std::fs::read(file).unwrap();
    (
        u32::from_le_bytes(bytes[8..12].try_into().unwrap()),
        u64::from_le_bytes(bytes[32..40].try_into().unwrap()),
    )
}

/// Mean recall@10 of the graph search against exact search, over `queries`.
fn recall(index: &Index, queries: &[Vec<f32>]) -> f64 {
    let mut hits = 0;
    for q in queries {
        let exact: Vec<u64> = index
            .search_exact(q, 10)
            .unwrap()
            .iter()
            .map(|n| n.id)
            .collect();
        hits += index
            .search_ef(q, 10, 64)
            .unwrap()
            .iter()
            .filter(|n| exact.contains(&n.id))
            .count();
    }
    hits as f64 / (10 * queries.len()) as f64
}

#[test]
fn a_version_1_index_opens_answers_and_takes_writes() {
    let vectors = fixture_vectors();
    assert_eq!(vectors.len(), 600);
    let dir = tempfile::tempdir().unwrap();
    copy_dir(Path::new(FIXTURE), dir.path());
    assert_eq!(version_and_stride(&dir.path().join("graph0")), (1, 192));

    let index = Index::open(dir.path()).unwrap();
    assert_eq!(index.len(), 550);
    for (id, v) in vectors.iter().enumerate() {
        let id = id as u64;
        if id < 50 {
            assert!(!index.contains(id).unwrap(), "id {id} was deleted");
        } else {
            assert_eq!(&index.get(id).unwrap(), v, "id {id}");
        }
    }
    assert!(index.verify().unwrap().is_ok());
    // Queries near stored vectors, off the stored points themselves.
    let queries: Vec<Vec<f32>> = vectors
        .iter()
        .step_by(12)
        .map(|v| v.iter().map(|x| x + 0.05).collect())
        .collect();
    let before = recall(&index, &queries);
    assert!(before >= 0.95, "recall {before} on the version-1 graph");

    // Writes go to the version-1 file in its own layout, through a grow of both files
    // (capacity 1024 slots).
    let more: Vec<f32> = vectors.iter().flat_map(|v| v.iter().map(|x| -x)).collect();
    let ids: Vec<u64> = (1000..1600).collect();
    index.insert_batch(&ids, &more).unwrap();
    index
        .delete_batch(&(1000..1100).collect::<Vec<_>>())
        .unwrap();
    index.checkpoint().unwrap();
    index.close().unwrap();

    let index = Index::open(dir.path()).unwrap();
    assert_eq!(index.len(), 550 + 500);
    assert!(index.verify().unwrap().is_ok());
    let after = recall(&index, &queries);
    assert!(
        after >= 0.95,
        "recall {after} after writing to the version-1 graph"
    );
    assert_eq!(
        index.get(1234).unwrap(),
        vectors[234].iter().map(|x| -x).collect::<Vec<_>>()
    );
    drop(index);
    let (version, stride) = version_and_stride(&dir.path().join("graph0"));
    assert_eq!((version, stride), (1, 192), "the file keeps its layout");
}

#[test]
fn new_indexes_get_the_terminated_layout() {
    let dir = tempfile::tempdir().unwrap();
    let index = Index::create(dir.path(), &IndexOptions::new(DIM, Metric::L2).m(16)).unwrap();
    index.close().unwrap();
    // M = 16: 32 ids of 4 bytes, two cache lines (version 1 needed three). The record
    // layout is version 2's; version 3 changed only the vectors' slots.
    assert_eq!(version_and_stride(&dir.path().join("graph0")), (3, 128));
    // 8 floats, the label and the checksum: 44 bytes, one cache line.
    assert_eq!(version_and_stride(&dir.path().join("vectors")), (3, 64));
    let dir = tempfile::tempdir().unwrap();
    let index = Index::create(dir.path(), &IndexOptions::new(DIM, Metric::L2).m(8)).unwrap();
    index.close().unwrap();
    // M = 8: one cache line.
    assert_eq!(version_and_stride(&dir.path().join("graph0")), (3, 64));
}
