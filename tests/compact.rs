//! Compaction gives back the space of deleted vectors, keeps every live one, and a kill
//! at any moment leaves the old index or the new one, both whole.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

mod common;

use common::{copy_dir, spawn_child};
use hnswdb::{Index, IndexOptions, Metric};
use rand::{RngExt, SeedableRng, rngs::StdRng};

const DIM: usize = 32;

fn vector(id: u64) -> Vec<f32> {
    (0..DIM as u64)
        .map(|j| ((id * 131 + j * 17) % 1009) as f32 / 100.0)
        .collect()
}

/// An index of 5,000 vectors of which 4,000 were deleted in 20 batches (and not
/// relocated by its close); returns the live ids.
fn thinned(dir: &Path) -> Vec<u64> {
    let options = IndexOptions::new(DIM, Metric::L2).relocate_above(1.0);
    let index = Index::create(dir, &options).unwrap();
    let ids: Vec<u64> = (0..5000).collect();
    let rows: Vec<f32> = ids.iter().flat_map(|&id| vector(id)).collect();
    index.insert_batch(&ids, &rows).unwrap();
    let dead: Vec<u64> = ids.iter().copied().filter(|id| id % 5 != 0).collect();
    for batch in dead.chunks(200) {
        index.delete_batch(batch).unwrap();
    }
    index.close().unwrap();
    ids.into_iter().filter(|id| id % 5 == 0).collect()
}

fn assert_holds(index: &Index, live: &[u64]) {
    assert_eq!(index.ids().unwrap(), live);
    for &id in live.iter().step_by(37) {
        assert_eq!(index.get(id).unwrap(), vector(id));
        assert_eq!(index.search(&vector(id), 1).unwrap()[0].id, id);
    }
    assert!(index.verify().unwrap().is_ok());
}

#[test]
fn compaction_gives_back_the_space_of_deletes() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("idx");
    let live = thinned(&dir);
    let (index, report) = Index::open(&dir).unwrap().compact().unwrap();
    eprintln!("compaction: {report:?}");
    assert_eq!(report.live, live.len() as u64);
    assert!(
        report.bytes_after * 2 < report.bytes_before,
        "{report:?}: the files did not shrink"
    );
    assert_holds(&index, &live);
    drop(index);
    assert_holds(&Index::open(&dir).unwrap(), &live);
    let names: Vec<_> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["idx"], "nothing left beside the index");
}

/// Set in the child's environment: the index to compact.
const CHILD_ENV: &str = "HNSWDB_COMPACT_CHILD";

#[test]
#[ignore = "the child process of compaction_killed_at_random_points_loses_nothing"]
fn compact_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        eprintln!("compact_child is a child process, not a test on its own");
        return;
    };
    Index::open(&dir).unwrap().compact().unwrap();
}

#[test]
fn compaction_killed_at_random_points_loses_nothing() {
    let mut rng = StdRng::seed_from_u64(3);
    let root = tempfile::tempdir().unwrap();
    let pristine = root.path().join("pristine");
    let live = thinned(&pristine);
    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
    for round in 0..16 {
        let work = root.path().join(format!("round{round}"));
        let dir = work.join("idx");
        copy_dir(&pristine, &dir);
        let mut child = spawn_child("compact_child", CHILD_ENV, &dir);
        std::thread::sleep(Duration::from_millis(rng.random_range(0..90)));
        child.kill().unwrap();
        let finished = child.wait().unwrap().success();
        let index = Index::open(&dir).unwrap();
        let compacted = index.stats().unwrap().high_water as usize == live.len();
        assert_holds(&index, &live);
        *outcomes
            .entry(match (finished, compacted) {
                (true, _) => "finished before the kill",
                (false, true) => "killed after the exchange: compacted",
                (false, false) => "killed before the exchange: as it was",
            })
            .or_default() += 1;
    }
    eprintln!("compaction kills: {outcomes:?}");
}

#[test]
fn compaction_keeps_payloads_fields_routing_and_storage() {
    use hnswdb::serde_json::json;
    use hnswdb::{FieldKind, FieldSpec, Filter, Query, Routing, Storage, f16};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    let options = IndexOptions::new(DIM, Metric::L2)
        .routing(Routing::RaBitQ)
        .storage(Storage::F16)
        .quantize_after(100)
        .field(FieldSpec::new("g", FieldKind::Integer));
    let index = Index::create(&dir, &options).unwrap();
    let ids: Vec<u64> = (0..600).collect();
    let rows: Vec<f32> = ids.iter().flat_map(|&id| vector(id)).collect();
    let payloads: Vec<_> = ids
        .iter()
        .map(|id| {
            if id % 3 == 0 {
                json!(null)
            } else {
                json!({"g": id % 4})
            }
        })
        .collect();
    index
        .insert_batch_with_payloads(&ids, &rows, &payloads, 1)
        .unwrap();
    index.delete_batch(&(0..300).collect::<Vec<_>>()).unwrap();
    let (index, _) = index.compact().unwrap();
    assert_eq!(index.stats().unwrap().routing, Routing::RaBitQ);
    assert_eq!(index.stats().unwrap().storage, Storage::F16);
    for id in (300..600u64).step_by(17) {
        let rounded: Vec<f32> = vector(id)
            .iter()
            .map(|&x| f16::from_f32(x).to_f32())
            .collect();
        assert_eq!(index.get(id).unwrap(), rounded);
    }
    assert_eq!(index.fields(), [FieldSpec::new("g", FieldKind::Integer)]);
    for id in 300..600u64 {
        let want = (id % 3 != 0).then(|| json!({"g": id % 4}));
        assert_eq!(index.get_payload(id).unwrap(), want);
    }
    let g1 = index
        .explain(&Query::new(1).filter(&Filter::eq("g", 1)))
        .unwrap()
        .matching;
    assert_eq!(
        g1,
        (300..600u64)
            .filter(|id| id % 3 != 0 && id % 4 == 1)
            .count() as u64
    );
}
