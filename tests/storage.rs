//! 16-bit vector storage (`Storage::F16`, `Storage::BF16`): half the vector file, values
//! rounded to the storage's type, the same answers as an f32 index up to that rounding,
//! typed errors for what the type cannot hold, and the file kind checked on open.

use hnswdb::{Error, Index, IndexOptions, Metric, OpenOptions, Routing, Storage, bf16, f16};
use hnswdb_datasets::{clustered, exact_knn, recall_at_k};

/// `v` as `storage` stores it.
fn rounded(v: &[f32], storage: Storage) -> Vec<f32> {
    match storage {
        Storage::F32 => v.to_vec(),
        Storage::F16 => v.iter().map(|&x| f16::from_f32(x).to_f32()).collect(),
        Storage::BF16 => v.iter().map(|&x| bf16::from_f32(x).to_f32()).collect(),
    }
}

const STORAGES: [Storage; 3] = [Storage::F32, Storage::F16, Storage::BF16];

#[test]
fn a_16_bit_index_stores_rounded_vectors_and_answers_like_an_f32_one() {
    let (n, dim) = (3000, 48);
    let data = clustered(n + 100, dim, 20, 5);
    for metric in [Metric::L2, Metric::Cosine] {
        let tmp = tempfile::tempdir().unwrap();
        let mut sizes = Vec::new();
        let mut recalls = Vec::new();
        for storage in STORAGES {
            let dir = tmp.path().join(storage.name());
            let index = Index::create(
                &dir,
                &IndexOptions::new(dim, metric)
                    .storage(storage)
                    .quantize_after(500),
            )
            .unwrap();
            let ids: Vec<u64> = (0..n as u64).collect();
            index.insert_batch(&ids, &data.data[..n * dim]).unwrap();
            index.close().unwrap();
            let index = Index::open(&dir).unwrap();
            assert_eq!(index.stats().unwrap().storage, storage);
            let report = index.verify().unwrap();
            assert!(
                report.is_ok(),
                "{storage:?} {metric:?}: {:?}",
                report.problems
            );
            // `get` returns what was stored: the rounding of the (normalised) vector.
            for id in (0..n as u64).step_by(97) {
                let row = &data.data[id as usize * dim..(id as usize + 1) * dim];
                let mut want = row.to_vec();
                if metric == Metric::Cosine {
                    let norm = want.iter().map(|x| x * x).sum::<f32>().sqrt();
                    want.iter_mut().for_each(|x| *x /= norm);
                }
                let got = index.get(id).unwrap();
                match storage {
                    Storage::F32 => {
                        for (g, w) in got.iter().zip(&want) {
                            assert!((g - w).abs() <= 1e-6 * w.abs().max(1.0));
                        }
                    }
                    Storage::F16 | Storage::BF16 => {
                        // Values of the type, each within half a unit of the last place
                        // of the vector given (normalised here in f32, in f64 by the
                        // index: hence the margin).
                        assert_eq!(got, rounded(&got, storage));
                        let tolerance = 1.25 * storage.rounding();
                        for (g, w) in got.iter().zip(&want) {
                            assert!((g - w).abs() <= tolerance * w.abs() + 1e-7, "{g} vs {w}");
                        }
                        if metric == Metric::L2 {
                            assert_eq!(got, rounded(&want, storage));
                        }
                    }
                }
            }
            let mut base = data.clone();
            let queries = base.split_off(100);
            let truth = exact_knn(&base, &queries, 10, metric, 2);
            let mut total = 0.0;
            for (r, t) in truth.iter().enumerate() {
                let t: Vec<u64> = t.iter().map(|&x| x as u64).collect();
                let found: Vec<u64> = index
                    .search_ef(queries.row(r), 10, 64)
                    .unwrap()
                    .iter()
                    .map(|h| h.id)
                    .collect();
                total += recall_at_k(&found, &t, 10);
            }
            recalls.push(total / truth.len() as f64);
            sizes.push(std::fs::metadata(dir.join("vectors")).unwrap().len());
        }
        for half in [1, 2] {
            assert!(
                recalls[half] >= recalls[0] - 0.02,
                "{metric:?}: recall {recalls:?}"
            );
            assert!(recalls[half] >= 0.9, "{metric:?}: recall {recalls:?}");
            // 48 × 2 bytes + label + checksum = 108 -> 128 bytes a slot, against 256.
            assert!(
                sizes[half] * 10 < sizes[0] * 6,
                "{metric:?}: sizes {sizes:?}"
            );
        }
    }
}

#[test]
fn what_f16_cannot_hold_is_refused_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    let index = Index::create(
        &dir,
        &IndexOptions::new(4, Metric::L2).storage(Storage::F16),
    )
    .unwrap();
    index.insert(1, &[1.0, 2.0, 3.0, 4.0]).unwrap();
    for bad in [[70_000.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, -1e6]] {
        assert!(matches!(
            index.insert(2, &bad),
            Err(Error::InvalidVector(_))
        ));
        assert!(matches!(
            index.upsert(1, &bad),
            Err(Error::InvalidVector(_))
        ));
        assert!(matches!(index.validate(&bad), Err(Error::InvalidVector(_))));
        // Queries are never stored: any finite query is answered.
        assert_eq!(index.search(&bad, 1).unwrap()[0].id, 1);
    }
    assert_eq!(index.len(), 1);
    assert_eq!(index.get(1).unwrap(), [1.0, 2.0, 3.0, 4.0]);
    // The largest value f16 holds is accepted.
    index.insert(3, &[65_504.0, 0.0, 0.0, 0.0]).unwrap();
    index.close().unwrap();
    let index = Index::open(&dir).unwrap();
    assert_eq!(index.get(3).unwrap()[0], 65_504.0);
    assert_eq!(index.len(), 2);
}

#[test]
fn rounding_is_half_a_unit_in_the_last_place() {
    // 1 + 2^-11 lies halfway between two f16 values, 1 + 2^-8 between two bf16 ones: a
    // hair above rounds up by (almost) the whole half unit.
    for (storage, half) in [
        (Storage::F16, 2f32.powi(-11)),
        (Storage::BF16, 2f32.powi(-8)),
    ] {
        assert_eq!(storage.rounding(), half);
        let above = rounded(&[1.0 + half * 1.01], storage)[0];
        assert_eq!(above, 1.0 + 2.0 * half, "{storage:?}");
    }
    assert_eq!(Storage::F32.rounding(), 0.0);
}

#[test]
fn bf16_holds_f32_range_and_refuses_what_rounding_would_overflow() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    let index = Index::create(
        &dir,
        &IndexOptions::new(4, Metric::L2).storage(Storage::BF16),
    )
    .unwrap();
    // What f16 refuses, bf16 holds (rounded to 8 significant bits).
    let big = [70_000.0, -1.0e6, 3.0e9, 1.0e-30];
    index.insert(1, &big).unwrap();
    // The largest f32 below 2^63 is within MAX_SQUARED_NORM but rounds up to 2^63 in
    // bf16, whose square is beyond it: refused, as distances to it could overflow.
    let edge = f32::from_bits(2f32.powi(63).to_bits() - 1);
    let bad = [edge, 0.0, 0.0, 0.0];
    let f32_index =
        Index::create(tmp.path().join("f32"), &IndexOptions::new(4, Metric::L2)).unwrap();
    f32_index.insert(1, &bad).unwrap();
    for result in [
        index.insert(2, &bad),
        index.upsert(1, &bad),
        index.validate(&bad),
    ] {
        assert!(matches!(result, Err(Error::InvalidVector(_))), "{result:?}");
    }
    assert_eq!(index.search(&bad, 1).unwrap()[0].id, 1);
    assert_eq!(index.len(), 1);
    index.close().unwrap();
    let index = Index::open(&dir).unwrap();
    assert_eq!(index.get(1).unwrap(), rounded(&big, Storage::BF16));
    assert_eq!(index.get(1).unwrap()[1], -999_424.0);
}

#[test]
fn a_vector_file_of_another_storage_is_refused_on_open() {
    let tmp = tempfile::tempdir().unwrap();
    let mut dirs = Vec::new();
    for storage in STORAGES {
        let dir = tmp.path().join(storage.name());
        let index =
            Index::create(&dir, &IndexOptions::new(8, Metric::L2).storage(storage)).unwrap();
        index.insert(1, &[0.5; 8]).unwrap();
        index.close().unwrap();
        dirs.push(dir);
    }
    // One index's metadata with another's vector file: never read as the wrong type,
    // not even between f16 and bf16, whose slots have the same shape.
    for (meta, file) in [(1, 0), (0, 1), (2, 1), (1, 2), (2, 0)] {
        let swapped = tmp.path().join(format!("swapped-{meta}-{file}"));
        std::fs::create_dir_all(&swapped).unwrap();
        for entry in std::fs::read_dir(&dirs[meta]).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                std::fs::copy(entry.path(), swapped.join(entry.file_name())).unwrap();
            }
        }
        std::fs::create_dir_all(swapped.join("wal")).unwrap();
        std::fs::copy(dirs[file].join("vectors"), swapped.join("vectors")).unwrap();
        let opened = Index::open(&swapped);
        assert!(
            matches!(opened, Err(Error::Corrupt { .. })),
            "{meta} {file}: {:?}",
            opened.map(|_| ())
        );
    }
}

#[test]
fn a_16_bit_index_under_a_memory_budget_reads_its_vectors_from_disk_alike() {
    for storage in [Storage::F16, Storage::BF16] {
        under_a_memory_budget(storage);
    }
}

/// RaBitQ routing with the vectors on disk: re-ranks parse 16-bit slots read directly.
fn under_a_memory_budget(storage: Storage) {
    let (n, dim) = (4000, 32);
    let data = clustered(n + 50, dim, 20, 8);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    let index = Index::create(
        &dir,
        &IndexOptions::new(dim, Metric::L2)
            .storage(storage)
            .routing(Routing::RaBitQ)
            .quantize_after(500),
    )
    .unwrap();
    let ids: Vec<u64> = (0..n as u64).collect();
    index.insert_batch(&ids, &data.data[..n * dim]).unwrap();
    index.close().unwrap();
    let queries = &data.data[n * dim..];
    let answers = |index: &Index| -> Vec<Vec<(u64, f32)>> {
        queries
            .chunks_exact(dim)
            .map(|q| {
                index
                    .search_ef(q, 10, 64)
                    .unwrap()
                    .iter()
                    .map(|h| (h.id, h.distance))
                    .collect()
            })
            .collect()
    };
    let all = answers(&Index::open(&dir).unwrap());
    // Just above the overhead (~1.4 MiB with 2 threads): the vectors stay on disk.
    let budget = OpenOptions::default().threads(2).memory_budget(1_600_000);
    let tight = Index::open_with(&dir, &budget).unwrap();
    let residency = tight.stats().unwrap().residency.unwrap();
    assert!(residency.disk_reads, "{residency:?}");
    assert_eq!(answers(&tight), all);
}

#[test]
fn an_index_beyond_the_defaults_carries_a_metadata_version_older_builds_refuse() {
    // An older build would ignore the `storage` and `routing` keys and misread the files;
    // version 3 makes it refuse them as newer instead (4 a string-id index, which it
    // would take for an integer-id one; 5 multi-bit RaBitQ codes, which it would take
    // for a corrupt index, or bf16 storage, whose code a version-3/4 build does not
    // know). Defaults stay at 2, and no commit lowers the version.
    use redb::{Database, ReadableDatabase, TableDefinition};
    const CONFIG: TableDefinition<&str, u64> = TableDefinition::new("config");
    let version = |dir: &std::path::Path| -> u64 {
        let db = Database::open(dir.join("meta.redb")).unwrap();
        let txn = db.begin_read().unwrap();
        txn.open_table(CONFIG)
            .unwrap()
            .get("meta_version")
            .unwrap()
            .unwrap()
            .value()
    };
    let tmp = tempfile::tempdir().unwrap();
    for (name, options, expected) in [
        ("plain", IndexOptions::new(4, Metric::L2), 2),
        (
            "f16",
            IndexOptions::new(4, Metric::L2).storage(Storage::F16),
            3,
        ),
        (
            "rabitq",
            IndexOptions::new(4, Metric::L2).routing(Routing::RaBitQ),
            3,
        ),
        (
            "bf16",
            IndexOptions::new(4, Metric::L2)
                .storage(Storage::BF16)
                .id_kind(hnswdb::IdKind::Str),
            5,
        ),
        (
            "str",
            IndexOptions::new(4, Metric::L2).id_kind(hnswdb::IdKind::Str),
            4,
        ),
        (
            "rabitq4",
            IndexOptions::new(4, Metric::L2).routing(Routing::ExRaBitQ(4)),
            5,
        ),
    ] {
        let dir = tmp.path().join(name);
        let index = Index::create(&dir, &options).unwrap();
        match index.id_kind() {
            hnswdb::IdKind::Int => index.insert(1, &[1.0, 0.0, 0.0, 0.0]).unwrap(),
            hnswdb::IdKind::Str => index
                .insert_keys(&["a"], &[1.0, 0.0, 0.0, 0.0], None)
                .unwrap(),
        }
        index
            .create_field_index(hnswdb::FieldSpec::parse("tag:int").unwrap())
            .unwrap();
        index.checkpoint().unwrap();
        index.close().unwrap();
        assert_eq!(version(&dir), expected, "{name}");
        assert_eq!(Index::open(&dir).unwrap().len(), 1);
    }
    // A version from the future is refused, not misread.
    let dir = tmp.path().join("f16");
    {
        let db = Database::open(dir.join("meta.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(CONFIG)
            .unwrap()
            .insert("meta_version", 6)
            .unwrap();
        txn.commit().unwrap();
    }
    assert!(matches!(
        Index::open(&dir),
        Err(Error::UnsupportedVersion { found: 6, .. })
    ));
}
