//! Power-loss simulation. `kill -9` keeps the page cache, so it never loses an unsynced
//! write; power loss does. This test keeps a copy of every file as of its last sync point
//! (log fsync, page-file msync/fsync, metadata commit), reported by the library's test
//! hook. At a simulated crash it rebuilds each page file 4 KiB page by 4 KiB page, choosing
//! at random between the last synced copy and the current contents, and cuts each log
//! segment at a random byte after its last synced length and zeroes some of its 4 KiB pages
//! after that length (writeback stores a file's dirty pages in any order). Recovery must
//! give the state after some prefix of the operations, and under `Immediate` that prefix
//! must hold every operation (all were acknowledged).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod common;

use common::workload::{Model, WorkOp, Workload, apply, snapshot};
use hnswdb::failpoints::set_sync_observer;
use hnswdb::{Durability, Index, IndexOptions, Metric};
use parking_lot::Mutex;
use rand::{RngExt, SeedableRng, rngs::StdRng};

const DIM: usize = 8;
const PAGE: usize = 4096;

/// Last synced contents of each file (for a log segment: its durable prefix).
type Shadows = Arc<Mutex<HashMap<PathBuf, Vec<u8>>>>;

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            out.extend(files(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

/// Builds in `to` what the disk could hold if power failed now. Returns the page-file pages
/// reverted, the log bytes cut and the log pages zeroed.
fn crash_image(
    from: &Path,
    to: &Path,
    shadows: &Shadows,
    rng: &mut StdRng,
) -> (usize, usize, usize) {
    let shadows = shadows.lock();
    let (mut pages_reverted, mut log_bytes_lost, mut log_holes) = (0, 0, 0);
    for path in files(from) {
        let rel = path.strip_prefix(from).unwrap();
        let target = to.join(rel);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        let current = std::fs::read(&path).unwrap();
        let shadow = shadows.get(&path).cloned().unwrap_or_default();
        let name = rel.to_string_lossy();
        let image = if name.ends_with(".log") {
            // Appended since the last fsync: any prefix of it may have reached the disk.
            assert!(
                current.starts_with(&shadow),
                "log {name} changed below its synced length"
            );
            let keep = if rng.random_bool(0.5) {
                current.len()
            } else {
                rng.random_range(shadow.len()..=current.len())
            };
            log_bytes_lost += current.len() - keep;
            let mut image = current[..keep].to_vec();
            // And of what it kept, any page may never have been written back.
            for (i, page) in image.chunks_mut(PAGE).enumerate() {
                let synced = shadow.len().saturating_sub(i * PAGE).min(page.len());
                if synced < page.len() && rng.random_bool(0.25) {
                    page[synced..].fill(0);
                    log_holes += 1;
                }
            }
            image
        } else if name == "meta.redb" {
            // Written only inside commits, which are durable when they return.
            current
        } else {
            // Page files: each 4 KiB page independently old or new.
            let mut image = current.clone();
            for (i, page) in image.chunks_mut(PAGE).enumerate() {
                if rng.random_bool(0.5) {
                    let old = shadow.get(i * PAGE..).unwrap_or(&[]);
                    let n = page.len().min(old.len());
                    if page[..n] != old[..n] || n < page.len() {
                        pages_reverted += 1;
                    }
                    page[..n].copy_from_slice(&old[..n]);
                    page[n..].fill(0);
                }
            }
            image
        };
        std::fs::write(&target, image).unwrap();
    }
    (pages_reverted, log_bytes_lost, log_holes)
}

#[test]
fn recovery_after_simulated_power_loss() {
    let shadows: Shadows = Arc::default();
    let recorder = shadows.clone();
    set_sync_observer(Some(Box::new(move |path: &Path, len: Option<u64>| {
        let Ok(mut bytes) = std::fs::read(path) else {
            return;
        };
        if let Some(len) = len {
            bytes.truncate(len as usize);
        }
        recorder.lock().insert(path.to_path_buf(), bytes);
    })));

    let rounds = 150;
    let (mut total_ops, mut reverted, mut lost_bytes, mut prefixes_short) = (0, 0, 0, 0);
    let mut holes = 0;
    let mut on_codes = 0;
    for round in 0..rounds {
        let mut rng = StdRng::seed_from_u64(77 + round);
        let durability = match round % 3 {
            0 | 1 => Durability::Immediate,
            _ => Durability::None,
        };
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("idx");
        let opts = IndexOptions::new(DIM, Metric::L2)
            .m(8)
            .ef_construction(64)
            .threads(2)
            .durability(durability)
            .checkpoint_bytes(rng.random_range(8u64 << 10..256 << 10))
            // Codes trained (and retrained, as a new file generation) within the run.
            .quantize_after(rng.random_range(10..80));
        let index = Index::create(&dir, &opts).unwrap();
        let mut workload = Workload::new(round, DIM);
        let mut models: Vec<Model> = vec![Model::new()];
        let mut last_checkpoint = 0;
        let ops = rng.random_range(1..300);
        for i in 0..ops {
            let op = workload.next_op();
            apply(&index, &op).unwrap();
            models.push(workload.model().clone());
            if op == WorkOp::Checkpoint {
                last_checkpoint = i + 1;
            }
        }
        total_ops += ops;
        let image = tmp.path().join("after-power-loss");
        let (r, l, h) = crash_image(&dir, &image, &shadows, &mut rng);
        reverted += r;
        lost_bytes += l;
        holes += h;
        drop(index);

        let recovered = Index::open(&image)
            .unwrap_or_else(|e| panic!("round {round}: open after power loss: {e}"));
        let state = snapshot(&recovered).unwrap();
        let prefix = models.iter().rposition(|m| *m == state);
        let Some(prefix) = prefix else {
            panic!(
                "round {round} ({durability:?}): recovered state ({} ids) is no prefix of the {ops} operations",
                state.len()
            );
        };
        if durability == Durability::Immediate {
            assert_eq!(
                prefix, ops,
                "round {round}: an acknowledged Immediate write was lost"
            );
        } else {
            assert!(
                prefix >= last_checkpoint,
                "round {round}: a checkpointed write was lost"
            );
            prefixes_short += (prefix < ops) as usize;
        }
        on_codes += (recovered.stats().unwrap().codes_generation > 0) as usize;
        let report = recovered.verify().unwrap();
        assert!(
            report.is_ok(),
            "round {round}: verify: {:?}",
            report.problems
        );
        if durability == Durability::Immediate {
            assert_eq!(
                report.stale_links, 0,
                "round {round}: stale links under Immediate"
            );
        }
        // Whatever the crash left, a consolidation brings the graph back to full health.
        recovered.consolidate().unwrap();
        let report = recovered.verify().unwrap();
        assert!(
            report.is_ok() && report.stale_links == 0 && report.unreachable == 0,
            "round {round}: {report:?}"
        );
        assert_eq!(
            snapshot(&recovered).unwrap(),
            state,
            "consolidation changed the data"
        );
    }
    set_sync_observer(None);
    assert!(
        on_codes * 4 >= rounds as usize,
        "only {on_codes} of {rounds} recoveries searched on SQ8 codes"
    );
    println!(
        "power loss: {rounds} simulated crashes after {total_ops} operations; {reverted} pages reverted to their \
         last synced contents, {lost_bytes} unsynced log bytes cut, {holes} unsynced log pages zeroed; every Immediate round recovered all \
         operations, {prefixes_short} None rounds recovered a shorter prefix; {on_codes} recoveries searched on \
         SQ8 codes; 0 failures"
    );
}
