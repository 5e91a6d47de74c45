//! A full disk gives `Error::DiskFull`, loses nothing acknowledged, and the index keeps
//! answering; once space is freed, writes work again. Runs on a 4 MiB tmpfs, so it needs
//! root (CI has it); elsewhere it says so and does nothing.

use std::path::Path;
use std::process::Command;

use hnswdb::{Error, Index, IndexOptions, Metric};
use hnswdb_datasets::clustered;

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn mount_small_tmpfs(at: &Path) -> Option<Mount> {
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(at)
        .status()
        .is_ok_and(|s| s.success());
    ok.then(|| Mount(at.to_path_buf()))
}

#[test]
fn full_disk_is_a_typed_error_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(_mount) = mount_small_tmpfs(tmp.path()) else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let ballast = tmp.path().join("ballast");
    std::fs::write(&ballast, vec![0u8; 1 << 20]).unwrap();
    let dir = tmp.path().join("idx");
    let data = clustered(20_000, 64, 20, 3);
    let index = Index::create(&dir, &IndexOptions::new(64, Metric::L2).threads(2)).unwrap();
    let mut acked = 0usize;
    let err = loop {
        let ids: Vec<u64> = (acked as u64..acked as u64 + 100).collect();
        match index.insert_batch(&ids, &data.data[acked * 64..(acked + 100) * 64]) {
            Ok(()) => acked += 100,
            Err(e) => break e,
        }
        assert!(acked < data.rows, "a 4 MiB disk never filled");
    };
    assert!(
        matches!(err, Error::DiskFull { .. }),
        "expected DiskFull, got {err}"
    );
    assert!(acked > 0);
    // Nothing acknowledged is lost, nothing rejected is visible, and searches still work.
    assert_eq!(index.len(), acked as u64);
    assert!(!index.contains(acked as u64).unwrap());
    for id in [0, acked as u64 / 2, acked as u64 - 1] {
        assert_eq!(index.get(id).unwrap(), data.row(id as usize));
        assert_eq!(
            index.search_ef(data.row(id as usize), 1, 64).unwrap()[0].id,
            id
        );
    }
    // While the disk is still full, the index closes (its checkpoint may fail) and opens
    // again for reading: a full disk never makes an index unreadable.
    drop(index);
    let index = Index::open(&dir).unwrap();
    assert_eq!(index.len(), acked as u64);
    assert_eq!(index.get(0).unwrap(), data.row(0));
    assert!(index.verify().unwrap().is_ok());
    // Free space: writes work again, and everything survives a reopen.
    std::fs::remove_file(&ballast).unwrap();
    let ids: Vec<u64> = (acked as u64..acked as u64 + 100).collect();
    index
        .insert_batch(&ids, &data.data[acked * 64..(acked + 100) * 64])
        .unwrap();
    index.close().unwrap();
    let reopened = Index::open(&dir).unwrap();
    assert_eq!(reopened.len(), acked as u64 + 100);
    assert!(reopened.verify().unwrap().is_ok());
}

#[test]
fn a_full_disk_at_any_growth_step_loses_nothing() {
    // Ballasts of many sizes make the disk fill at a different step each time: growing
    // the vectors, then the graph, then the codes, writing the log, committing metadata.
    let mut outcomes = std::collections::BTreeMap::new();
    for step in 0..16u64 {
        let tmp = tempfile::tempdir().unwrap();
        let Some(_mount) = mount_small_tmpfs(tmp.path()) else {
            eprintln!("skipped: cannot mount a tmpfs here (needs root)");
            return;
        };
        std::fs::write(
            tmp.path().join("ballast"),
            vec![0u8; ((step * 160 + 200) << 10) as usize],
        )
        .unwrap();
        let dir = tmp.path().join("idx");
        let data = clustered(20_000, 64, 20, step);
        let opts = IndexOptions::new(64, Metric::L2)
            .threads(2)
            .quantize_after(500);
        let index = match Index::create(&dir, &opts) {
            Ok(index) => index,
            Err(e) => {
                assert!(
                    matches!(e, Error::DiskFull { .. }),
                    "step {step}: create: {e}"
                );
                *outcomes.entry("create refused").or_insert(0) += 1;
                continue;
            }
        };
        let mut acked = 0usize;
        let err = loop {
            let ids: Vec<u64> = (acked as u64..acked as u64 + 50).collect();
            match index.insert_batch(&ids, &data.data[acked * 64..(acked + 50) * 64]) {
                Ok(()) => acked += 50,
                Err(e) => break e,
            }
        };
        assert!(matches!(err, Error::DiskFull { .. }), "step {step}: {err}");
        assert_eq!(index.len(), acked as u64, "step {step}");
        drop(index);
        // Still full: the index opens and holds every acknowledged vector. (A read-only
        // open may find that the metadata awaits a repair the failed close could not
        // write; a writable open makes it, as the CLI's read commands do.)
        let reader = match Index::open_read_only(&dir) {
            Err(Error::NeedsRecovery(_)) => {
                *outcomes
                    .entry("read-only open needed a writable one first")
                    .or_insert(0) += 1;
                Index::open(&dir).unwrap()
            }
            opened => opened.unwrap(),
        };
        assert_eq!(reader.len(), acked as u64, "step {step}");
        for id in [0, acked as u64 / 2, acked.saturating_sub(1) as u64] {
            assert_eq!(
                reader.get(id).unwrap(),
                data.row(id as usize),
                "step {step}"
            );
        }
        assert!(reader.verify().unwrap().is_ok(), "step {step}");
        *outcomes.entry("filled, nothing lost").or_insert(0) += 1;
    }
    eprintln!("full disk at 16 points: {outcomes:?}");
}
