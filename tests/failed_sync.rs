//! Failure injection at every sync and commit (the `failpoints` hook `set_sync_failure`):
//! the n-th sync of each kind of file — a page file's msync/fsync (vectors, graph0, codes)
//! in a checkpoint or a growth, a log segment's fsync, the metadata commit — fails. Then:
//!
//! - the process acknowledges nothing more (every later write and checkpoint is refused:
//!   a retried fsync cannot be trusted), though the write during which the failure came may
//!   succeed (it is durable in the log; only its following checkpoint failed);
//! - the directory as the failure left it (what `kill -9` leaves) opens, verifies (no slot
//!   owned twice, every link sound), and holds exactly the acknowledged writes (plus, at
//!   most, the one whose outcome the failure left unknown).

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::copy_dir;
use common::workload::{WorkOp, Workload, apply, snapshot};
use hnswdb::failpoints::set_sync_failure;
use hnswdb::{Index, IndexOptions, Metric};
use parking_lot::Mutex;

const DIM: usize = 8;

/// The hook is process-wide: the cases run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Runs a workload until the `nth` sync of a file whose path contains `target` fails,
/// then checks the process and the crash image. Returns false if the workload never
/// reached that sync.
fn case(root: &Path, target: &'static str, nth: usize, seed: u64) -> bool {
    let name = format!("idx-{}-{nth}", target.replace(['/', '.'], "_"));
    let dir = root.join(&name);
    let index = Index::create(
        &dir,
        &IndexOptions::new(DIM, Metric::L2)
            .quantize_after(40)
            .checkpoint_bytes(4 << 10)
            .threads(2),
    )
    .unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    set_sync_failure(Some(Box::new(move |path: &Path| {
        path.to_string_lossy().contains(target) && counter.fetch_add(1, Ordering::SeqCst) == nth
    })));
    let fired = || seen.load(Ordering::SeqCst) > nth;
    let mut work = Workload::new(seed, DIM);
    let mut acked = work.model().clone();
    let mut unknown = None;
    for step in 0..400 {
        let was_fired = fired();
        let op = if step % 25 == 24 {
            WorkOp::Checkpoint
        } else {
            work.next_op()
        };
        let result = apply(&index, &op);
        if was_fired {
            assert!(
                result.is_err(),
                "{target} #{nth}: {op:?} was acknowledged after a failed sync"
            );
        } else {
            match result {
                Ok(()) => acked = work.model().clone(),
                Err(_) => {
                    assert!(
                        fired(),
                        "{target} #{nth}: {op:?} failed without a failed sync"
                    );
                    unknown = Some(work.model().clone());
                }
            }
        }
        if fired() && step % 25 == 0 {
            assert!(
                index.checkpoint().is_err(),
                "{target} #{nth}: checkpointed after"
            );
        }
    }
    set_sync_failure(None);
    if !fired() {
        return false;
    }
    let image = root.join(format!("{name}-image"));
    copy_dir(&dir, &image);
    assert!(
        index.close().is_err(),
        "{target} #{nth}: closed cleanly after"
    );
    let reopened = Index::open(&image)
        .unwrap_or_else(|e| panic!("{target} #{nth}: the crash image does not open: {e}"));
    let report = reopened.verify().unwrap();
    assert!(report.is_ok(), "{target} #{nth}: {:?}", report.problems);
    let got = snapshot(&reopened).unwrap();
    assert!(
        got == acked || Some(&got) == unknown.as_ref(),
        "{target} #{nth}: recovered {} ids, acknowledged {}",
        got.len(),
        acked.len()
    );
    // And the recovered index takes writes again.
    reopened.insert(u64::MAX, &[0.5; DIM]).unwrap();
    reopened.close().unwrap();
    true
}

#[test]
fn a_failed_sync_anywhere_poisons_the_writer_and_loses_nothing() {
    let _serial = SERIAL.lock();
    let root = tempfile::tempdir().unwrap();
    let mut reached = Vec::new();
    for target in ["vectors", "graph0", "codes.", "meta.redb", "wal/"] {
        let mut n = 0;
        for nth in 0..6 {
            if case(root.path(), target, nth, 11 + nth as u64) {
                n += 1;
            }
        }
        assert!(n > 0, "no sync of {target} was ever reached");
        reached.push((target, n));
    }
    eprintln!("failed syncs injected and recovered from: {reached:?}");
}

/// A sync that fails while a compaction or a backup writes its new directory fails that
/// operation alone: the index is untouched (it opens with every write), and no staging
/// directory is left behind.
#[test]
fn a_failed_sync_in_compaction_or_backup_loses_nothing() {
    let _serial = SERIAL.lock();
    let root = tempfile::tempdir().unwrap();
    let mut failed = 0;
    for (what, nth) in (0..4).flat_map(|n| [("compacting", n), ("backup", n)]) {
        let dir = root.path().join(format!("idx-{what}-{nth}"));
        let index =
            Index::create(&dir, &IndexOptions::new(DIM, Metric::L2).quantize_after(40)).unwrap();
        let mut work = Workload::new(nth as u64, DIM);
        for _ in 0..150 {
            apply(&index, &work.next_op()).unwrap();
        }
        let model = work.model().clone();
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = seen.clone();
        let staging = format!(".{what}-");
        set_sync_failure(Some(Box::new(move |path: &Path| {
            path.to_string_lossy().contains(&staging)
                && counter.fetch_add(1, Ordering::SeqCst) == nth
        })));
        let result = match what {
            "compacting" => index.compact().map(|(i, _)| drop(i)),
            _ => {
                let r = index
                    .backup(root.path().join(format!("copy-{nth}")))
                    .map(drop);
                drop(index);
                r
            }
        };
        set_sync_failure(None);
        if seen.load(Ordering::SeqCst) > nth {
            assert!(
                result.is_err(),
                "{what} #{nth} succeeded through a failed sync"
            );
            failed += 1;
        }
        let reopened = Index::open(&dir).unwrap();
        assert!(reopened.verify().unwrap().is_ok(), "{what} #{nth}");
        assert_eq!(snapshot(&reopened).unwrap(), model, "{what} #{nth}");
        let debris: Vec<_> = std::fs::read_dir(root.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .contains(&format!(".{what}-"))
            })
            .collect();
        assert!(debris.is_empty(), "{what} #{nth} left {debris:?}");
    }
    assert!(failed >= 4, "few injected failures were reached: {failed}");
}

/// A checkpoint does its I/O under a shared lock: while its page-file sync is held up
/// (the hook parks it), searches in the same process still answer.
#[test]
fn searches_answer_while_a_checkpoint_syncs() {
    let _serial = SERIAL.lock();
    let root = tempfile::tempdir().unwrap();
    let index = Arc::new(
        Index::create(root.path().join("idx"), &IndexOptions::new(DIM, Metric::L2)).unwrap(),
    );
    let mut work = Workload::new(3, DIM);
    for _ in 0..100 {
        apply(&index, &work.next_op()).unwrap();
    }
    let (parked_tx, parked) = std::sync::mpsc::channel::<()>();
    let (release, released_rx) = std::sync::mpsc::channel::<()>();
    let (parked_tx, released_rx) = (Mutex::new(Some(parked_tx)), Mutex::new(released_rx));
    set_sync_failure(Some(Box::new(move |path: &Path| {
        if path.ends_with("vectors")
            && let Some(tx) = parked_tx.lock().take()
        {
            tx.send(()).unwrap();
            released_rx.lock().recv().unwrap();
        }
        false
    })));
    let checkpointing = {
        let index = index.clone();
        std::thread::spawn(move || index.checkpoint())
    };
    parked.recv().unwrap();
    // The checkpoint is inside its sync. A search on another thread must finish; a
    // checkpoint holding the graph exclusively would block it until the release.
    let (done_tx, done) = std::sync::mpsc::channel();
    let searcher = {
        let index = index.clone();
        std::thread::spawn(move || done_tx.send(index.search(&[0.5; DIM], 3).map(|h| h.len())))
    };
    let answered = done.recv_timeout(std::time::Duration::from_secs(60));
    release.send(()).unwrap();
    checkpointing.join().unwrap().unwrap();
    // Its send fails only if the answer came after the wait gave up (then reported below).
    let _ = searcher.join().unwrap();
    set_sync_failure(None);
    assert_eq!(
        answered
            .expect("the search waited for the checkpoint")
            .unwrap(),
        3
    );
}
