//! Group commit: concurrent durable writes share fsyncs. Every acknowledged write is in
//! the durable part of the log, and a failed fsync fails every writer that waited on it
//! and poisons the index until it is reopened.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use common::copy_dir;
use hnswdb::failpoints::{fail_next_log_sync, set_sync_observer};
use hnswdb::{Durability, Error, Index, IndexOptions, Metric};
use parking_lot::Mutex;

const DIM: usize = 8;
const THREADS: u64 = 8;

fn options() -> IndexOptions {
    IndexOptions::new(DIM, Metric::L2)
        .durability(Durability::Immediate)
        .capacity(4096)
        .quantize_after(u64::MAX)
        .threads(1)
}

fn row(id: u64) -> Vec<f32> {
    (0..DIM).map(|j| (id * 31 + j as u64) as f32).collect()
}

fn log_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

#[test]
fn every_acknowledged_concurrent_insert_is_in_the_synced_log() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("idx");
    // The durable length of each of this index's log segments, as the fsyncs report it.
    let synced: Arc<Mutex<HashMap<PathBuf, u64>>> = Arc::default();
    let (recorder, mine) = (synced.clone(), dir.clone());
    set_sync_observer(Some(Box::new(move |path: &Path, len: Option<u64>| {
        if let (true, Some(len)) = (path.starts_with(&mine), len) {
            let mut s = recorder.lock();
            let at = s.entry(path.to_path_buf()).or_default();
            *at = (*at).max(len);
        }
    })));
    let index = Index::create(&dir, &options()).unwrap();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let index = &index;
            s.spawn(move || {
                for i in 0..40 {
                    let id = t * 1000 + i;
                    index.insert(id, &row(id)).unwrap();
                }
            });
        }
    });
    // Power loss: each segment keeps only what an fsync reported durable.
    let image = root.path().join("image");
    copy_dir(&dir, &image);
    set_sync_observer(None);
    drop(index);
    for (path, len) in synced.lock().iter() {
        let copy = image.join("wal").join(path.file_name().unwrap());
        let bytes = std::fs::read(&copy).unwrap();
        std::fs::write(&copy, &bytes[..*len as usize]).unwrap();
    }
    let recovered = Index::open(&image).unwrap();
    let mut want: Vec<u64> = (0..THREADS)
        .flat_map(|t| (0..40).map(move |i| t * 1000 + i))
        .collect();
    want.sort();
    assert_eq!(recovered.ids().unwrap(), want);
    assert!(recovered.verify().unwrap().is_ok());
}

#[test]
fn a_failed_log_fsync_fails_every_writer_waiting_on_it_and_poisons_until_reopen() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("idx");
    let index = Index::create(&dir, &options()).unwrap();
    for id in 0..10 {
        index.insert(id, &row(id)).unwrap();
    }
    let before = log_bytes(&dir);
    index.insert(10, &row(10)).unwrap();
    let record = log_bytes(&dir) - before;
    // The failing fsync waits until every writer below has appended its record, so that
    // all of them wait on it.
    let (watched, until) = (dir.clone(), log_bytes(&dir) + THREADS * record);
    fail_next_log_sync(
        &dir,
        Box::new(move || {
            let give_up = Instant::now() + Duration::from_secs(60);
            while log_bytes(&watched) < until && Instant::now() < give_up {
                std::thread::sleep(Duration::from_millis(1));
            }
        }),
    );
    let results: Vec<_> = std::thread::scope(|s| {
        let writers: Vec<_> = (0..THREADS)
            .map(|t| {
                let index = &index;
                s.spawn(move || index.insert(100 + t, &row(100 + t)))
            })
            .collect();
        writers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    for r in &results {
        assert!(matches!(r, Err(Error::Io { .. })), "{r:?}");
    }
    // Until a reopen, every write and checkpoint is refused.
    assert!(matches!(index.insert(200, &row(200)), Err(Error::Poisoned)));
    assert!(matches!(index.delete(3), Err(Error::Poisoned)));
    assert!(matches!(index.checkpoint(), Err(Error::Poisoned)));
    drop(index);
    // Each failed write may or may not have reached the disk; every acknowledged one did.
    let reopened = Index::open(&dir).unwrap();
    let ids = reopened.ids().unwrap();
    assert!((0..=10).all(|id| ids.contains(&id)), "{ids:?}");
    assert!(
        ids.iter()
            .all(|&id| id <= 10 || (100..100 + THREADS).contains(&id))
    );
    reopened.insert(200, &row(200)).unwrap();
    assert!(reopened.verify().unwrap().is_ok());
}

/// A read-only view that catches up while the writer has logged a write but not yet
/// applied it (here: the log's fsync is held, then fails) leaves that write for a later
/// refresh. One it applied itself went into its private copy of the shared pages, which
/// then hid every later change the writer made to them: an adversarial run's reader,
/// refreshing beside a writer, kept missing the newest vectors for dozens of refreshes.
#[test]
fn a_view_applies_only_what_the_writer_has_applied() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    let spread = |id: u64| -> Vec<f32> {
        (0..DIM as u64)
            .map(|j| ((id * 2_654_435_761 + j * 40_503) % 10_007) as f32 / 100.0)
            .collect()
    };
    let rows = |ids: &[u64]| -> Vec<f32> { ids.iter().flat_map(|&id| spread(id)).collect() };
    let index = Index::create(&dir, &options().quantize_after(200)).unwrap();
    let first: Vec<u64> = (0..300).collect();
    index.insert_batch(&first, &rows(&first)).unwrap();
    let view = Arc::new(Index::open_read_only(&dir).unwrap());
    let seen = Arc::new(Mutex::new(None));
    let (v, s) = (view.clone(), seen.clone());
    fail_next_log_sync(
        &dir,
        Box::new(move || {
            // The record is in the log; the writer applies it only after the fsync.
            v.refresh().unwrap();
            *s.lock() = Some(v.len());
        }),
    );
    let second: Vec<u64> = (300..600).collect();
    assert!(index.insert_batch(&second, &rows(&second)).is_err());
    assert_eq!(
        *seen.lock(),
        Some(300),
        "the view applied an unapplied write"
    );
    drop(index);
    // The reopened writer recovers the write from the log, then links many more.
    let index = Index::open(&dir).unwrap();
    let third: Vec<u64> = (600..2000).collect();
    index.insert_batch(&third, &rows(&third)).unwrap();
    view.refresh().unwrap();
    assert_eq!(view.len(), index.len());
    let report = view.verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    let found = index
        .ids()
        .unwrap()
        .iter()
        .filter(|&&id| view.search_ef(&spread(id), 1, 64).unwrap()[0].distance == 0.0)
        .count();
    assert!(
        found * 100 >= 99 * index.len() as usize,
        "{found} of {}",
        index.len()
    );
}
