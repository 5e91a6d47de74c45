//! Progress hooks: a batch insert, a compaction and a backup report their start, their
//! end and steps between, in order, and an operation that fails before it starts work
//! reports nothing.

use std::sync::Mutex;

use hnswdb::{Error, Index, IndexOptions, Metric};

const DIM: usize = 4;

fn rows(ids: &[u64]) -> Vec<f32> {
    ids.iter()
        .flat_map(|&id| (0..DIM).map(move |j| (id * 7 + j as u64) as f32 % 13.0 + 1.0))
        .collect()
}

/// Checks the reports: the start, then never down, then `total` of `total` last.
fn check(reports: &[(u64, u64)], total: u64) {
    assert_eq!(reports.first(), Some(&(0, total)), "{reports:?}");
    assert_eq!(reports.last(), Some(&(total, total)), "{reports:?}");
    assert!(reports.windows(2).all(|w| w[0].0 < w[1].0), "{reports:?}");
    assert!(reports.iter().all(|&(_, t)| t == total) && reports.len() <= 102);
}

#[test]
fn inserts_upserts_compaction_and_backup_report_progress() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("idx");
    let index = Index::create(&dir, &IndexOptions::new(DIM, Metric::L2)).unwrap();
    let seen = Mutex::new(Vec::new());
    let hook = |done: u64, total: u64| seen.lock().unwrap().push((done, total));
    let take = || std::mem::take(&mut *seen.lock().unwrap());

    let ids: Vec<u64> = (0..2000).collect();
    index
        .insert_batch_progress(&ids, &rows(&ids), None, 2, &hook)
        .unwrap();
    check(&take(), 2000);
    index
        .upsert_batch_progress(&ids[..10], &rows(&ids[..10]), None, 2, &hook)
        .unwrap();
    check(&take(), 10);
    // A duplicate id rejects the batch before anything is logged: no report.
    let refused = index.insert_batch_progress(&ids[..1], &rows(&ids[..1]), None, 1, &hook);
    assert!(matches!(refused, Err(Error::DuplicateId(0))));
    assert!(take().is_empty());

    index.delete_batch(&ids[..1500]).unwrap();
    let (index, report) = index.compact_progress(&hook).unwrap();
    assert_eq!(report.live, 500);
    check(&take(), 500);

    let copied = index
        .backup_progress(root.path().join("copy"), &hook)
        .unwrap();
    let reports = take();
    check(&reports, reports[0].1);
    assert!(copied > 0);
    assert_eq!(Index::open(root.path().join("copy")).unwrap().len(), 500);
}
