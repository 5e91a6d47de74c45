//! Small durable writes from several threads: single 128-d inserts under
//! `Durability::Immediate` into a 10 k index, from 1 thread and from 8, each for a fixed
//! time. With group commit the 8 threads share fsyncs, so their rate is not capped by one
//! fsync per insert. Prints inserts/s; `HNSWDB_BENCH_SECS` sets the time per run (5 s),
//! `HNSWDB_BENCH_DIR` the directory the index lives in (a temporary one on the default
//! temp file system, which must be a real disk for the fsyncs to mean anything).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hnswdb::{Durability, Index, IndexOptions, Metric};
use hnswdb_datasets::clustered;

const DIM: usize = 128;
const PRELOAD: usize = 10_000;

/// Inserts from `threads` threads for `secs`, each with ids of its own; inserts/s.
fn rate(index: &Index, data: &hnswdb_datasets::Matrix, threads: u64, run: u64, secs: f64) -> f64 {
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (stop, done) = (&stop, &done);
            s.spawn(move || {
                let base = (run * 64 + t + 1) << 32;
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let row = (t as usize * 7919 + i as usize) % data.rows;
                    index.insert(base + i, data.row(row)).unwrap();
                    i += 1;
                }
                done.fetch_add(i, Ordering::Relaxed);
            });
        }
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
    });
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let secs: f64 = std::env::var("HNSWDB_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let root = match std::env::var_os("HNSWDB_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir(),
    }
    .unwrap();
    let data = clustered(50_000, DIM, 100, 7);
    let index = Index::create(
        root.path().join("idx"),
        &IndexOptions::new(DIM, Metric::L2)
            .durability(Durability::Immediate)
            .capacity(200_000)
            .threads(1),
    )
    .unwrap();
    let ids: Vec<u64> = (0..PRELOAD as u64).collect();
    index
        .insert_batch(&ids, &data.data[..PRELOAD * DIM])
        .unwrap();
    for (run, threads) in [1, 8].into_iter().enumerate() {
        let r = rate(&index, &data, threads, run as u64, secs);
        println!("group_commit/immediate/128d: {threads} thread(s): {r:.0} inserts/s");
    }
}
