//! What a read-only view pays beside a busy writer: opening it (the last checkpoint plus
//! the log written since, replayed into the view) and refreshing it (the records written
//! since it last looked). The writer logs `HNSWDB_BENCH_N` (default 50,000) vectors of
//! 384 dimensions in batches of 1,000, then stays open. It checkpoints only when it
//! retrains its SQ8 codes (each time the index doubles: the last at 32,768 of 50,000);
//! with `HNSWDB_BENCH_EXACT=1` it trains none, and never checkpoints. Prints the figures;
//! asserts nothing about time.
//!
//! `cargo bench --bench reader_open` (building the writer's index takes a few minutes on
//! two cores).

use std::time::{Duration, Instant};

use hnswdb::{Durability, Index, IndexOptions, Metric, OpenOptions};
use hnswdb_datasets::clustered;

const DIM: usize = 384;
const BATCH: usize = 1_000;

fn main() {
    let n: usize = std::env::var("HNSWDB_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let dir = tempfile::tempdir().unwrap();
    let mut options = IndexOptions::new(DIM, Metric::Cosine)
        .ef_construction(100)
        .durability(Durability::None)
        .checkpoint_bytes(u64::MAX);
    if std::env::var_os("HNSWDB_BENCH_EXACT").is_some() {
        options = options.quantize_after(u64::MAX);
    }
    let writer = Index::create(dir.path(), &options).unwrap();
    let data = clustered(n + BATCH, DIM, 100, 7).data;
    let started = Instant::now();
    for (b, rows) in data[..n * DIM].chunks(BATCH * DIM).enumerate() {
        let ids: Vec<u64> = (b * BATCH..b * BATCH + rows.len() / DIM)
            .map(|i| i as u64)
            .collect();
        writer.insert_batch(&ids, rows).unwrap();
    }
    let log = writer.stats().unwrap().wal_bytes;
    println!(
        "writer: {n} vectors of {DIM} dims logged since its last checkpoint ({:.0} MB of log) in {:.1} s",
        log as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    let read_only = OpenOptions::default().read_only(true);
    let (view, open) = best_of(3, || Index::open_with(dir.path(), &read_only).unwrap());
    println!(
        "read-only open:            {:>8.1} ms ({} records replayed)",
        ms(open),
        view.recovery().replayed
    );
    let ((), idle) = best_of(3, || view.refresh().unwrap());
    println!("refresh, nothing new:      {:>8.1} ms", ms(idle));
    let ids: Vec<u64> = (n as u64..(n + BATCH) as u64).collect();
    writer.insert_batch(&ids, &data[n * DIM..]).unwrap();
    let start = Instant::now();
    view.refresh().unwrap();
    println!(
        "refresh, {BATCH} new vectors: {:>8.1} ms",
        ms(start.elapsed())
    );
    assert_eq!(view.len(), (n + BATCH) as u64);
    drop(view);
    writer.flush().unwrap();
    let (_, clean) = best_of(3, || Index::open_with(dir.path(), &read_only).unwrap());
    println!("read-only open, no log:    {:>8.1} ms", ms(clean));
    writer.close().unwrap();
}

/// The value and the shortest time of `runs` calls of `f`.
fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (T, Duration) {
    let mut best = Duration::MAX;
    let mut value = None;
    for _ in 0..runs {
        let start = Instant::now();
        let v = f();
        best = best.min(start.elapsed());
        value = Some(v);
    }
    (value.expect("at least one run"), best)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
