//! Read-only opens: they change no byte, refuse writes, follow the writer with `refresh`,
//! and any number of them, in other processes, answer correctly while one writer writes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::{copy_dir, spawn_child, sum_reports};
use hnswdb::{Error, Index, IndexOptions, Metric};

const DIM: usize = 8;

/// The vector id `id` has at version `v` of the writer's workload: readers can tell
/// every value an id ever had from the id alone.
fn vector(id: u64, v: u64) -> Vec<f32> {
    (0..DIM as u64)
        .map(|j| ((id * 31 + v * 7 + j * 3) % 101) as f32 / 10.0)
        .collect()
}

/// Every file's bytes and modification time, to prove a read-only open changed nothing.
fn fingerprint(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() == "readers" {
            // The reader table: a view registers there (see docs/concurrency.md).
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            out.extend(fingerprint(&entry.path()));
        } else {
            let meta = entry.metadata().unwrap();
            out.insert(
                entry.path(),
                (
                    std::fs::read(entry.path()).unwrap(),
                    meta.modified().unwrap(),
                ),
            );
        }
    }
    out.insert(
        dir.to_path_buf(),
        (
            Vec::new(),
            std::fs::metadata(dir).unwrap().modified().unwrap(),
        ),
    );
    out
}

/// A writer with `n` ids checkpointed (codes trained) and a few more writes in its log.
fn writer(dir: &Path, n: u64) -> Index {
    let index =
        Index::create(dir, &IndexOptions::new(DIM, Metric::L2).quantize_after(100)).unwrap();
    let ids: Vec<u64> = (0..n).collect();
    let rows: Vec<f32> = ids.iter().flat_map(|&id| vector(id, 0)).collect();
    index.insert_batch(&ids, &rows).unwrap();
    index.checkpoint().unwrap();
    index.upsert(1, &vector(1, 1)).unwrap();
    index.delete(2).unwrap();
    index.insert(n, &vector(n, 0)).unwrap();
    index
}

#[test]
fn a_read_only_open_changes_no_byte_and_refuses_writes() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("idx");
    // An idle writer keeps the index open with three writes in its log after the
    // checkpoint, so that the reader has a log to replay.
    let w = writer(&dir, 500);
    std::thread::sleep(Duration::from_millis(20)); // a write would move an mtime
    let before = fingerprint(&dir);
    {
        let index = Index::open_read_only(&dir).unwrap();
        assert_eq!(index.recovery().replayed, 3);
        assert_eq!(index.get(1).unwrap(), vector(1, 1));
        assert!(matches!(index.get(2), Err(Error::UnknownId(2))));
        assert_eq!(index.search(&vector(7, 0), 1).unwrap()[0].id, 7);
        assert!(index.verify().unwrap().is_ok());
        assert!(index.stats().unwrap().len == 500);
        assert!(matches!(
            index.insert(9999, &vector(1, 1)),
            Err(Error::ReadOnly)
        ));
        assert!(matches!(index.delete(1), Err(Error::ReadOnly)));
        assert!(matches!(index.checkpoint(), Err(Error::ReadOnly)));
        index.close().unwrap();
    }
    assert!(
        fingerprint(&dir) == before,
        "a read-only open changed the directory"
    );
    drop(w);
}

#[test]
fn a_crashed_index_needs_one_writable_open_before_read_only_ones() {
    let root = tempfile::tempdir().unwrap();
    let live = root.path().join("live");
    let w = writer(&live, 100);
    let crashed = root.path().join("crashed");
    copy_dir(&live, &crashed); // the files as kill -9 of the writer leaves them
    drop(w);
    assert!(matches!(
        Index::open_read_only(&crashed),
        Err(Error::NeedsRecovery(_))
    ));
    drop(Index::open(&crashed).unwrap());
    assert_eq!(Index::open_read_only(&crashed).unwrap().len(), 100);
}

#[test]
fn readers_follow_the_writer_and_a_second_writer_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("idx");
    let w = writer(&dir, 300);
    let reader = Index::open_read_only(&dir).unwrap();
    assert_eq!(reader.len(), 300);
    assert!(matches!(Index::open(&dir), Err(Error::Locked(_))));
    w.insert(1000, &vector(1000, 0)).unwrap();
    w.delete(3).unwrap();
    // The view stays where it was taken until refreshed.
    assert!(matches!(reader.get(1000), Err(Error::UnknownId(1000))));
    assert_eq!(reader.get(3).unwrap(), vector(3, 0));
    // No checkpoint since the view was taken: it moves in place, reading only the log
    // written since.
    assert!(reader.catch_up().unwrap());
    assert_eq!(reader.get(1000).unwrap(), vector(1000, 0));
    assert!(matches!(reader.get(3), Err(Error::UnknownId(3))));
    w.insert(1001, &vector(1001, 0)).unwrap();
    assert!(reader.catch_up().unwrap());
    assert_eq!(reader.get(1001).unwrap(), vector(1001, 0));
    assert_eq!(
        reader.recovery().replayed,
        3,
        "the open replayed 3; catching up adds none"
    );
    // Through a checkpoint that drops the log and frees slots, and the writer reusing them.
    w.consolidate().unwrap();
    let ids: Vec<u64> = (2000..2100).collect();
    let rows: Vec<f32> = ids.iter().flat_map(|&id| vector(id, 0)).collect();
    w.insert_batch(&ids, &rows).unwrap();
    assert!(
        !reader.catch_up().unwrap(),
        "a checkpoint since: only a reopen will do"
    );
    match reader.get(4) {
        Ok(v) => assert_eq!(v, vector(4, 0)),
        Err(e) => assert!(matches!(e, Error::Stale(_)), "{e}"),
    }
    reader.refresh().unwrap();
    assert_eq!(reader.len(), w.len());
    assert_eq!(reader.get(2050).unwrap(), vector(2050, 0));
    drop(w);
    reader.refresh().unwrap();
    assert!(reader.verify().unwrap().is_ok());
}

/// Set in a reader child's environment: the index directory.
const READER_ENV: &str = "HNSWDB_READER_CHILD";

/// A reader process: opens the index read-only, searches, gets and refreshes in a loop,
/// checks every answer against what the writer can have written, and prints its counts.
#[test]
#[ignore = "the child process of many_reader_processes_beside_a_writer"]
fn reader_child() {
    let Ok(dir) = std::env::var(READER_ENV) else {
        eprintln!("reader_child is a child process, not a test on its own");
        return;
    };
    let deadline = Instant::now() + Duration::from_millis(1500);
    let (mut checked, mut stale, mut refreshes) = (0u64, 0u64, 0u64);
    let index = Index::open_read_only(&dir).unwrap();
    // At least one round however late this process got going: the test asserts that
    // readers checked answers, whatever the machine's speed.
    loop {
        for id in (0..3000u64).step_by(37) {
            match index.get(id) {
                // Ids are written at versions 0 and 1 only: any other value was never it.
                Ok(v) => {
                    assert!(
                        v == vector(id, 0) || v == vector(id, 1),
                        "get({id}) = {v:?}"
                    );
                    checked += 1;
                }
                Err(Error::UnknownId(_)) => checked += 1,
                Err(Error::Stale(_)) => stale += 1,
                Err(e) => panic!("get({id}): {e}"),
            }
        }
        for q in 0..10u64 {
            match index.search(&vector(q * 97, 0), 5) {
                Ok(hits) => {
                    for h in hits {
                        let d0: f32 = vector(h.id, 0)
                            .iter()
                            .zip(vector(q * 97, 0))
                            .map(|(a, b)| (a - b) * (a - b))
                            .sum();
                        let d1: f32 = vector(h.id, 1)
                            .iter()
                            .zip(vector(q * 97, 0))
                            .map(|(a, b)| (a - b) * (a - b))
                            .sum();
                        assert!(
                            (h.distance - d0).abs() < 1e-3 || (h.distance - d1).abs() < 1e-3,
                            "hit {} at {} is at no distance its vectors have",
                            h.id,
                            h.distance
                        );
                        checked += 1;
                    }
                }
                Err(Error::Stale(_)) => stale += 1,
                Err(e) => panic!("search: {e}"),
            }
        }
        match index.refresh() {
            Ok(()) => refreshes += 1,
            // The writer was killed: its metadata awaits a writable open's repair. The view
            // stays as it was and keeps answering.
            Err(Error::NeedsRecovery(_)) => stale += 1,
            Err(e) => panic!("refresh: {e}"),
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    println!("reader: {checked} answers checked, {stale} stale, {refreshes} refreshes");
}

#[test]
fn many_reader_processes_beside_a_writer() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("idx");
    let w = writer(&dir, 1000);
    let readers: Vec<_> = (0..4)
        .map(|_| spawn_child("reader_child", READER_ENV, &dir))
        .collect();
    // The writer inserts, upserts (to version 1), deletes and checkpoints meanwhile.
    let deadline = Instant::now() + Duration::from_millis(1500);
    let mut next = 1001u64;
    let mut writes = 0;
    while Instant::now() < deadline {
        let ids: Vec<u64> = (next..next + 20).collect();
        let rows: Vec<f32> = ids.iter().flat_map(|&id| vector(id, 0)).collect();
        w.insert_batch(&ids, &rows).unwrap();
        w.upsert(next - 500, &vector(next - 500, 1)).unwrap();
        w.delete(next - 900).unwrap();
        if writes % 10 == 9 {
            w.consolidate().unwrap();
        }
        next += 20;
        writes += 1;
    }
    let total = sum_reports(readers, "reader:", 1);
    eprintln!("writer: {writes} rounds of writes; readers checked {total} answers, 0 wrong");
    assert!(total > 0);
    drop(w);
    assert!(Index::open(&dir).unwrap().verify().unwrap().is_ok());
}

/// Set in the writer child's environment: the index directory.
const WRITER_ENV: &str = "HNSWDB_WRITER_CHILD";

/// The writer process of the kill test: rounds of insert (20 new ids), upsert and delete,
/// a consolidation every tenth, each round acknowledged on stdout once it returned.
#[test]
#[ignore = "the child process of readers_and_writer_survive_kill_9"]
fn writer_child() {
    let Ok(dir) = std::env::var(WRITER_ENV) else {
        eprintln!("writer_child is a child process, not a test on its own");
        return;
    };
    let w = Index::open(&dir).unwrap();
    let mut stdout = std::io::stdout();
    for round in 0u64.. {
        let next = 1001 + 20 * round;
        let ids: Vec<u64> = (next..next + 20).collect();
        let rows: Vec<f32> = ids.iter().flat_map(|&id| vector(id, 0)).collect();
        w.insert_batch(&ids, &rows).unwrap();
        w.upsert(next - 500, &vector(next - 500, 1)).unwrap();
        w.delete(next - 900).unwrap();
        if round % 10 == 9 {
            w.consolidate().unwrap();
        }
        use std::io::Write;
        stdout
            .write_all(format!("ack {round}\n").as_bytes())
            .unwrap();
        stdout.flush().unwrap();
    }
}

#[test]
fn readers_and_writer_survive_kill_9() {
    use rand::{RngExt, SeedableRng, rngs::StdRng};
    let mut rng = StdRng::seed_from_u64(5);
    let (mut acked_total, mut checked_total) = (0u64, 0u64);
    for iteration in 0..3 {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("idx");
        writer(&dir, 1000).close().unwrap();
        let mut w = spawn_child("writer_child", WRITER_ENV, &dir);
        let mut readers: Vec<_> = (0..4)
            .map(|_| spawn_child("reader_child", READER_ENV, &dir))
            .collect();
        // Kill the writer at a random moment, and one reader too.
        std::thread::sleep(Duration::from_millis(rng.random_range(200..900)));
        w.kill().unwrap();
        let victim = rng.random_range(0..readers.len());
        readers[victim].kill().unwrap();
        let out = w.wait_with_output().unwrap();
        let acked = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split("ack ").nth(1))
            .count() as u64;
        for (i, reader) in readers.into_iter().enumerate() {
            let out = reader.wait_with_output().unwrap();
            if i == victim {
                continue;
            }
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "iteration {iteration}: a reader failed: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let line = stdout.lines().find(|l| l.starts_with("reader:")).unwrap();
            checked_total += line
                .split_whitespace()
                .nth(1)
                .unwrap()
                .parse::<u64>()
                .unwrap();
        }
        // Every acknowledged round is in the recovered index; the round in flight may be.
        let index = Index::open(&dir).unwrap();
        for round in 0..acked {
            let next = 1001 + 20 * round;
            assert_eq!(
                index.get(next + 19).unwrap(),
                vector(next + 19, 0),
                "round {round}"
            );
            // Round k + 20 deletes what round k upserted: check those still alive.
            if round + 20 > acked {
                assert_eq!(index.get(next - 500).unwrap(), vector(next - 500, 1));
            }
            assert!(matches!(index.get(next - 900), Err(Error::UnknownId(_))));
        }
        let report = index.verify().unwrap();
        assert!(report.is_ok(), "{:?}", report.problems);
        acked_total += acked;
    }
    eprintln!(
        "kill -9: 3 writers and 3 readers killed; {acked_total} acknowledged write rounds found after \
         recovery; surviving readers checked {checked_total} answers, 0 wrong"
    );
}

#[test]
fn a_following_reader_keeps_up_without_refresh() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("idx");
    let w = writer(&dir, 300);
    let options = hnswdb::OpenOptions::default()
        .read_only(true)
        .follow(Duration::ZERO);
    let reader = std::sync::Arc::new(Index::open_with(&dir, &options).unwrap());
    w.insert(5000, &vector(5000, 0)).unwrap();
    assert_eq!(
        reader.get(5000).unwrap(),
        vector(5000, 0),
        "caught up in place"
    );
    // After a checkpoint the view is reopened, behind the same shared handle.
    w.consolidate().unwrap();
    w.insert(5001, &vector(5001, 0)).unwrap();
    assert_eq!(reader.get(5001).unwrap(), vector(5001, 0), "reopened");
    assert_eq!(reader.len(), w.len());
    // (Its vector equals those of ids 52, 153, 254...: any may come first.)
    let hits = reader.search(&vector(5001, 0), 10).unwrap();
    assert!(
        hits.iter().any(|h| h.id == 5001 && h.distance == 0.0),
        "{hits:?}"
    );
}

#[test]
fn a_read_only_open_works_on_a_read_only_mount() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("idx");
    writer(&dir, 200).close().unwrap();
    let ro = root.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    let bind = |args: &[&str]| {
        Command::new("mount")
            .args(args)
            .status()
            .is_ok_and(|s| s.success())
    };
    if !bind(&["--bind", dir.to_str().unwrap(), ro.to_str().unwrap()]) {
        eprintln!("skipped: cannot bind-mount here (needs root)");
        return;
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(&ro);
    assert!(bind(&["-o", "remount,ro,bind", ro.to_str().unwrap()]));
    let index = Index::open_read_only(&ro).unwrap();
    assert_eq!(index.len(), 200);
    assert_eq!(index.search(&vector(9, 0), 1).unwrap()[0].id, 9);
    assert!(index.verify().unwrap().is_ok());
    drop(index);
    // A writable open of read-only files is a typed error, not a crash.
    assert!(Index::open(&ro).is_err());
}

/// The reader table at work: while a view is open, the slots a checkpoint frees are held
/// back, so the view keeps answering from its snapshot (never another id's vector under
/// an old id, never a record outside its filter); once it refreshes they are reused.
#[test]
fn freed_slots_wait_until_no_reader_can_see_them() {
    use hnswdb::{Filter, Query, serde_json::json};
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("idx");
    let opts = IndexOptions::new(DIM, Metric::L2)
        .field(hnswdb::FieldSpec::new("tenant", hnswdb::FieldKind::Integer));
    let w = Index::create(&dir, &opts).unwrap();
    let ids: Vec<u64> = (0..200).collect();
    let rows: Vec<f32> = ids.iter().flat_map(|&id| vector(id, 0)).collect();
    let tenants: Vec<_> = ids.iter().map(|id| json!({"tenant": id % 2})).collect();
    w.insert_batch_with_payloads(&ids, &rows, &tenants, 2)
        .unwrap();
    w.checkpoint().unwrap();
    let reader = Index::open_read_only(&dir).unwrap();
    // Delete tenant 0's even ids, free their slots, and insert tenant-1 records: without
    // the reader they would land in the freed slots.
    let gone: Vec<u64> = (0..100).map(|i| i * 2).collect();
    w.delete_batch(&gone).unwrap();
    w.consolidate().unwrap();
    let stats = w.stats().unwrap();
    assert_eq!(stats.held_slots, 100, "held for the open reader");
    let fresh: Vec<u64> = (1000..1100).collect();
    let rows: Vec<f32> = fresh.iter().flat_map(|&id| vector(id, 1)).collect();
    let tenants: Vec<_> = fresh.iter().map(|_| json!({"tenant": 1})).collect();
    w.insert_batch_with_payloads(&fresh, &rows, &tenants, 2)
        .unwrap();
    assert_eq!(
        w.stats().unwrap().high_water,
        300,
        "no held slot was reused"
    );
    // The reader still sees its snapshot, whole.
    let zero = Filter::eq("tenant", 0);
    for &id in &gone[..20] {
        assert_eq!(reader.get(id).unwrap(), vector(id, 0));
        let hits = reader
            .search_with(&vector(id, 0), &Query::new(5).filter(&zero))
            .unwrap();
        assert!(hits.iter().all(|h| h.id % 2 == 0 && h.id < 200), "{hits:?}");
        // Every answer is a record of the view with its own distance. (The walk follows
        // the writer's current links, which no longer lead to the ids it consolidated
        // away: a search may miss them; `get` does not.)
        for h in reader.search(&vector(id, 0), 5).unwrap() {
            assert!(h.id < 200, "a new record in an old view: {h:?}");
            let d: f32 = vector(id, 0)
                .iter()
                .zip(reader.get(h.id).unwrap())
                .map(|(a, b)| (a - b) * (a - b))
                .sum();
            assert!((d - h.distance).abs() <= 1e-4 * d.max(1.0), "{h:?} vs {d}");
        }
    }
    // Refreshed, the reader holds nothing back: the next checkpoint frees the slots for
    // reuse, and new inserts take them.
    reader.refresh().unwrap();
    assert!(matches!(reader.get(0), Err(Error::UnknownId(0))));
    w.checkpoint().unwrap();
    assert_eq!(w.stats().unwrap().held_slots, 0);
    w.insert(5000, &vector(5000, 0)).unwrap();
    assert_eq!(
        w.stats().unwrap().high_water,
        300,
        "a freed slot was reused"
    );
    drop(reader);
    assert!(w.verify().unwrap().is_ok());
}

/// A reader follows a compaction of its index (a new identity, same configuration) and
/// a field index created after it opened.
#[test]
fn a_reader_follows_compaction_and_new_field_indexes() {
    use hnswdb::{FieldKind, FieldSpec, Filter, Query, serde_json::json};
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("idx");
    let w = writer(&dir, 300);
    w.set_payload(7, &json!({"tag": "x"})).unwrap();
    let reader = Index::open_read_only(&dir).unwrap();
    w.create_field_index(FieldSpec::new("tag", FieldKind::Keyword))
        .unwrap();
    reader.refresh().unwrap();
    let x = Filter::eq("tag", "x");
    let hits = reader
        .search_with(&vector(7, 0), &Query::new(3).filter(&x))
        .unwrap();
    assert_eq!(hits.iter().map(|h| h.id).collect::<Vec<_>>(), [7]);
    let (w, _) = w.compact().unwrap();
    w.insert(9000, &vector(9000, 0)).unwrap();
    reader.refresh().unwrap();
    assert_eq!(reader.get(9000).unwrap(), vector(9000, 0));
    assert_eq!(reader.len(), w.len());
}

/// A view that catches up many times, reading only the log after where it stopped and
/// adopting the rows the writer already put in the shared pages, holds exactly what the
/// writer holds: the same ids, vectors and payloads, and every new row found by a search.
#[test]
fn a_view_caught_up_in_steps_holds_what_the_writer_holds() {
    let dir = tempfile::tempdir().unwrap();
    // Few enough writes that no checkpoint (consolidation, retraining, a check of the
    // codes once the live count grows by a quarter) runs meanwhile.
    let w = writer(dir.path(), 400);
    let view = Index::open_read_only(dir.path()).unwrap();
    for round in 0..12u64 {
        let ids: Vec<u64> = (1000 + round * 8..1008 + round * 8).collect();
        let rows: Vec<f32> = ids.iter().flat_map(|&id| vector(id, 0)).collect();
        w.insert_batch(&ids, &rows).unwrap();
        w.upsert(round, &vector(round, 1)).unwrap();
        w.delete(100 + round).unwrap();
        let payload = hnswdb::serde_json::json!({ "round": round });
        w.set_payload(200 + round, &payload).unwrap();
        let before = view.view_position().unwrap();
        assert!(
            view.catch_up().unwrap(),
            "no checkpoint ran: caught up in place"
        );
        assert!(view.view_position().unwrap().1 > before.1);
        assert_eq!(view.ids().unwrap(), w.ids().unwrap());
        for id in ids.iter().copied().chain([round]) {
            assert_eq!(view.get(id).unwrap(), w.get(id).unwrap());
            let hits = view.search(&w.get(id).unwrap(), 1).unwrap();
            assert_eq!(hits[0].distance, 0.0, "row {id} is reachable in the view");
        }
        assert_eq!(view.get_payload(200 + round).unwrap(), Some(payload));
    }
    let unchanged = view.view_position();
    view.refresh().unwrap();
    assert_eq!(
        view.view_position(),
        unchanged,
        "nothing new: the view did not move"
    );
    assert!(view.verify().unwrap().is_ok());
}

/// A view never refreshed walks the writer's layer-0 lists as the writer changes them:
/// once the writer has grown its files, a list may link to a slot beyond the view's
/// mapping. That is a node newer than the view, not damage: until 2026-12-07 `verify` on
/// the view called graph0 damaged (an adversarial run).
#[test]
fn a_stale_view_verifies_after_the_writer_grows_its_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    let w = Index::create(&dir, &IndexOptions::new(DIM, Metric::L2).threads(1)).unwrap();
    w.insert(0, &vector(0, 0)).unwrap();
    w.checkpoint().unwrap();
    let view = Index::open_read_only(&dir).unwrap();
    for batch in 0..3u64 {
        let ids: Vec<u64> = (1 + batch * 1000..1 + (batch + 1) * 1000).collect();
        let rows: Vec<f32> = ids.iter().flat_map(|&id| vector(id, 0)).collect();
        w.insert_batch(&ids, &rows).unwrap();
        let report = view.verify().unwrap();
        assert!(report.is_ok(), "after batch {batch}: {:?}", report.problems);
        assert_eq!(view.search(&vector(0, 0), 1).unwrap()[0].distance, 0.0);
    }
}
