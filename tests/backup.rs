//! Hot backup under a concurrent write workload: the copy opens on its own, verifies, and
//! holds exactly the state after some prefix of the acknowledged writes, one no older
//! than the writes acknowledged before the backup began.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::workload::{Workload, apply, snapshot};
use hnswdb::{Error, Index, IndexOptions, Metric};

const DIM: usize = 8;

#[test]
fn a_backup_taken_during_writes_is_a_consistent_prefix() {
    for round in 0..4u64 {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("idx");
        let opts = IndexOptions::new(DIM, Metric::L2)
            .m(8)
            .ef_construction(32)
            .threads(1)
            .checkpoint_bytes(32 << 10)
            .quantize_after(64);
        let index = Arc::new(Index::create(&dir, &opts).unwrap());
        let acked = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (index, acked, stop) = (index.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut workload = Workload::new(round, DIM);
                let mut ops = Vec::new();
                while !stop.load(Ordering::Acquire) {
                    let op = workload.next_op();
                    apply(&index, &op).unwrap();
                    ops.push(op);
                    acked.fetch_add(1, Ordering::Release);
                }
                ops
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(100));
        let first = acked.load(Ordering::Acquire);
        let dest = root.path().join("backup");
        index.backup(&dest).unwrap();
        let last = acked.load(Ordering::Acquire);
        stop.store(true, Ordering::Release);
        let ops = writer.join().unwrap();
        assert!(matches!(index.backup(&dest), Err(Error::AlreadyExists(_))));
        // The states after each prefix of the writes, replayed on a model.
        let mut model = Workload::new(round, DIM);
        let states: Vec<_> = std::iter::once(model.model().clone())
            .chain(ops.iter().map(|_| {
                model.next_op();
                model.model().clone()
            }))
            .collect();
        let copy = Index::open_read_only(&dest).unwrap();
        assert!(copy.verify().unwrap().is_ok());
        let state = snapshot(&copy).unwrap();
        let k = (first..=(last + 1).min(ops.len()))
            .find(|&k| states[k] == state)
            .unwrap_or_else(|| {
                panic!("round {round}: the backup is no state between writes {first} and {last}")
            });
        eprintln!(
            "round {round}: backup holds writes 0..{k} (acked {first} at its start, {last} at its end)"
        );
    }
}
