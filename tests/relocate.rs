//! Relocation: the live rows copied densely, graph and all. It keeps every live vector,
//! payload and key, answers as brute force does, runs by itself at `close` once deletes
//! have freed enough slots, and a kill at any moment leaves the old index or the new one,
//! both whole.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

mod common;

use common::{copy_dir, spawn_child};
use hnswdb::serde_json::json;
use hnswdb::{FieldKind, FieldSpec, Filter, IdKind, Index, IndexOptions, Metric, OpenOptions};
use hnswdb::{Query, Routing, Storage};
use rand::{RngExt, SeedableRng, rngs::StdRng};

const DIM: usize = 16;
const N: u64 = 3000;

fn vector(id: u64) -> Vec<f32> {
    (0..DIM as u64)
        .map(|j| ((id * 131 + j * 17) % 1009) as f32 / 100.0)
        .collect()
}

fn l2(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Creates an index of `N` vectors with payloads and deletes those not kept by `keep`,
/// in ten batches; returns the live ids. `close` relocates unless told not to.
fn thinned(dir: &Path, options: IndexOptions, keep: impl Fn(u64) -> bool) -> Vec<u64> {
    let index = Index::create(dir, &options).unwrap();
    let ids: Vec<u64> = (0..N).collect();
    let rows: Vec<f32> = ids.iter().flat_map(|&id| vector(id)).collect();
    let payloads: Vec<_> = ids.iter().map(|id| json!({"g": id % 7})).collect();
    index
        .insert_batch_with_payloads(&ids, &rows, &payloads, 2)
        .unwrap();
    let dead: Vec<u64> = ids.iter().copied().filter(|&id| !keep(id)).collect();
    for batch in dead.chunks(dead.len().div_ceil(10).max(1)) {
        index.delete_batch(batch).unwrap();
    }
    index.close().unwrap();
    ids.into_iter().filter(|&id| keep(id)).collect()
}

fn options() -> IndexOptions {
    IndexOptions::new(DIM, Metric::L2)
        .field(FieldSpec::new("g", FieldKind::Integer))
        .threads(2)
}

/// Every live id with its vector and payload; searches at an ef above the size are exact.
fn assert_holds(index: &Index, live: &[u64]) {
    assert_eq!(index.ids().unwrap(), live);
    for &id in live.iter().step_by(13) {
        assert_eq!(index.get(id).unwrap(), vector(id));
        assert_eq!(index.get_payload(id).unwrap(), Some(json!({"g": id % 7})));
    }
    for q in (0..N + 40).step_by(97) {
        let query = vector(q * 7 + 3);
        let hits = index.search_ef(&query, 10, 2 * N as usize).unwrap();
        let mut exact: Vec<f32> = live.iter().map(|&id| l2(&query, &vector(id))).collect();
        exact.sort_by(f32::total_cmp);
        let found: Vec<f32> = hits.iter().map(|h| h.distance).collect();
        for (f, e) in found.iter().zip(&exact[..10]) {
            assert!(
                (f - e).abs() < 1e-3,
                "query {q}: {found:?} vs {:?}",
                &exact[..10]
            );
        }
    }
    let report = index.verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}

#[test]
fn relocation_keeps_everything_and_makes_the_files_dense() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("idx");
    let live = thinned(&dir, options().relocate_above(1.0), |id| id % 3 == 0);
    let before = Index::open(&dir).unwrap();
    assert_eq!(before.stats().unwrap().high_water as u64, N);
    let (index, report) = before.relocate().unwrap();
    assert_eq!(report.live, live.len() as u64);
    assert!(report.bytes_after < report.bytes_before, "{report:?}");
    let stats = index.stats().unwrap();
    assert_eq!(stats.high_water as usize, live.len());
    assert_eq!((stats.free_slots, stats.tombstones), (0, 0));
    assert_holds(&index, &live);
    // The field index still answers, and the index takes writes into fresh slots.
    let g3 = index
        .explain(&Query::new(1).filter(&Filter::eq("g", 3)))
        .unwrap()
        .matching;
    assert_eq!(g3, live.iter().filter(|&&id| id % 7 == 3).count() as u64);
    index.insert(N, &vector(N)).unwrap();
    index.delete(live[0]).unwrap();
    drop(index);
    let index = Index::open(&dir).unwrap();
    let mut now: Vec<u64> = live[1..].to_vec();
    now.push(N);
    assert_eq!(index.ids().unwrap(), now);
    let names: Vec<_> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["idx"], "nothing left beside the index");
}

#[test]
fn close_relocates_once_deletes_pass_the_threshold() {
    let root = tempfile::tempdir().unwrap();
    // 30% deleted: above the default 10%.
    let dir = root.path().join("default");
    let live = thinned(&dir, options(), |id| id % 10 >= 3);
    let index = Index::open(&dir).unwrap();
    assert_eq!(index.stats().unwrap().high_water as usize, live.len());
    assert_holds(&index, &live);
    // 5% deleted: below it, the holes stay for inserts to reuse.
    let dir = root.path().join("few");
    thinned(&dir, options(), |id| id % 20 != 0);
    assert_eq!(
        Index::open(&dir).unwrap().stats().unwrap().high_water as u64,
        N
    );
    // Turned off.
    let dir = root.path().join("off");
    thinned(&dir, options().relocate_above(1.0), |id| id % 10 >= 3);
    assert_eq!(
        Index::open(&dir).unwrap().stats().unwrap().high_water as u64,
        N
    );
    // Given at open, by a process that only deletes.
    let index = Index::open_with(&dir, &OpenOptions::default().relocate_above(0.25)).unwrap();
    index.delete(3).unwrap();
    index.close().unwrap();
    assert_eq!(
        Index::open(&dir).unwrap().stats().unwrap().high_water as usize,
        live.len() - 1
    );
    assert!(matches!(
        Index::open_with(&dir, &OpenOptions::default().relocate_above(1.5)),
        Err(hnswdb::Error::InvalidOption(_))
    ));
}

#[test]
fn relocation_keeps_keys_routing_and_storage() {
    use hnswdb::f16;
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("idx");
    let options = IndexOptions::new(DIM, Metric::L2)
        .id_kind(IdKind::Str)
        .routing(Routing::RaBitQ)
        .storage(Storage::F16)
        .quantize_after(100);
    let index = Index::create(&dir, &options).unwrap();
    let keys: Vec<String> = (0..2000).map(|i| format!("doc-{i}")).collect();
    let rows: Vec<f32> = (0..2000).flat_map(vector).collect();
    index.insert_keys(&keys, &rows, None).unwrap();
    let gone: Vec<String> = keys.iter().step_by(2).cloned().collect();
    index.delete_keys(&gone, false).unwrap();
    let (index, _) = index.relocate().unwrap();
    let stats = index.stats().unwrap();
    assert_eq!((stats.high_water, stats.routing), (1000, Routing::RaBitQ));
    assert_eq!(stats.storage, Storage::F16);
    for i in (1..2000u64).step_by(2 * 17) {
        let id = index.resolve_key(&format!("doc-{i}")).unwrap().unwrap();
        let rounded: Vec<f32> = vector(i)
            .iter()
            .map(|&x| f16::from_f32(x).to_f32())
            .collect();
        assert_eq!(index.get(id).unwrap(), rounded);
        let hit = index.search_ef(&rounded, 1, 200).unwrap()[0].id;
        assert_eq!(index.key_of(hit).unwrap().unwrap(), format!("doc-{i}"));
    }
    assert_eq!(index.resolve_key("doc-0").unwrap(), None);
    assert!(index.verify().unwrap().is_ok());
}

/// Set in the child's environment: the index to relocate.
const CHILD_ENV: &str = "HNSWDB_RELOCATE_CHILD";

#[test]
#[ignore = "the child process of relocation_killed_at_random_points_loses_nothing"]
fn relocate_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        eprintln!("relocate_child is a child process, not a test on its own");
        return;
    };
    Index::open(&dir).unwrap().relocate().unwrap();
}

#[test]
fn relocation_killed_at_random_points_loses_nothing() {
    let mut rng = StdRng::seed_from_u64(5);
    let root = tempfile::tempdir().unwrap();
    let pristine = root.path().join("pristine");
    let live = thinned(&pristine, options().relocate_above(1.0), |id| id % 2 == 0);
    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
    for round in 0..16 {
        let dir = root.path().join(format!("round{round}")).join("idx");
        copy_dir(&pristine, &dir);
        let mut child = spawn_child("relocate_child", CHILD_ENV, &dir);
        std::thread::sleep(Duration::from_millis(rng.random_range(0..400)));
        child.kill().unwrap();
        let finished = child.wait().unwrap().success();
        let index = Index::open(&dir).unwrap();
        let relocated = index.stats().unwrap().high_water as usize == live.len();
        assert_holds(&index, &live);
        *outcomes
            .entry(match (finished, relocated) {
                (true, _) => "finished before the kill",
                (false, true) => "killed after the exchange: relocated",
                (false, false) => "killed before the exchange: as it was",
            })
            .or_default() += 1;
    }
    eprintln!("relocation kills: {outcomes:?}");
}
