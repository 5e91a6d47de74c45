//! The kill -9 loop. A child process (this test binary re-executing itself, running only
//! `crash_child`) runs a seeded mix of inserts, upserts, deletes and checkpoints and prints
//! the number of each operation once it is acknowledged; the parent SIGKILLs it at a
//! random moment, reopens the index and checks that every acknowledged operation is
//! visible, that nothing never issued is, that `verify` passes and that recall is still
//! high.
//!
//! `cargo test --release --test crash_kill` runs 30 iterations; the long run is
//! `cargo test --release --test crash_kill kill_9_loop_1000 -- --ignored --nocapture`
//! (1,000 iterations).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use std::time::{Duration, Instant};

use common::spawn_child;
use common::workload::{Model, Workload, apply, snapshot};
use hnswdb::{Durability, Index, IndexOptions, Metric, Routing, Storage};
use rand::{RngExt, SeedableRng, rngs::StdRng};

const DIM: usize = 8;

/// Set in the child's environment: `<index dir>;<seed>;<durability>`.
const CHILD_ENV: &str = "HNSWDB_CRASH_CHILD";

/// The acknowledgement line of operation `n` on the child's stdout. The test harness
/// prints lines of its own there, so acks carry a marker.
const ACK: &str = "ack ";

/// The child: creates the index and runs the workload, acknowledging each operation after
/// its call returned, until killed.
#[test]
#[ignore = "the kill loop's child process; runs only when re-executed by kill_9_loop_*"]
fn crash_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        eprintln!("crash_child is the kill loop's child process, not a test on its own");
        return;
    };
    let mut parts = spec.split(';');
    let (dir, seed, durability, storage, routing) = (
        parts.next().unwrap(),
        parts.next().unwrap().parse().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap().parse::<Storage>().unwrap(),
        parts.next().unwrap().parse::<Routing>().unwrap(),
    );
    let durability = match durability {
        "immediate" => Durability::Immediate,
        "periodic" => Durability::Periodic(Duration::from_millis(5)),
        _ => Durability::None,
    };
    let opts = IndexOptions::new(DIM, Metric::L2)
        .storage(storage)
        .routing(routing)
        .m(8)
        .ef_construction(64)
        .threads(2)
        .durability(durability)
        .checkpoint_bytes(64 << 10)
        // Train SQ8 codes early so that kills also land in code training and retraining.
        .quantize_after(64);
    let index = Index::create(Path::new(dir), &opts).unwrap();
    let mut workload = Workload::new(seed, DIM);
    let mut stdout = std::io::stdout();
    for i in 0..100_000 {
        apply(&index, &workload.next_op()).unwrap();
        // One write per line, so that a line is never split by the kill.
        stdout.write_all(format!("{ACK}{i}\n").as_bytes()).unwrap();
        stdout.flush().unwrap();
    }
}

/// The operation number an output line of the child acknowledges, if it is an ack.
fn ack(line: &str) -> Option<usize> {
    line.split(ACK).nth(1).map(|n| n.trim().parse().unwrap())
}

struct Outcome {
    acked: usize,
    checked_ids: usize,
    replayed: usize,
    truncated: u64,
    recall: f64,
    /// Code generation the recovered index searches on (0: exact vectors).
    codes_generation: u64,
}

fn l2(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Runs one child until a random kill, then checks the recovered index.
fn one_kill(iteration: u64) -> Outcome {
    let mut rng = StdRng::seed_from_u64(0xC0FFEE ^ iteration);
    let dir = tempfile::tempdir().unwrap();
    let index_dir = dir.path().join("idx");
    let durability = ["immediate", "periodic", "none"][iteration as usize % 3];
    // Every durability mode meets each of: f32 and SQ8 (the defaults), f16 vectors, RaBitQ
    // routing.
    let (storage, routing) =
        [("f32", "sq8"), ("f16", "sq8"), ("f32", "rabitq")][(iteration as usize / 3) % 3];
    let seed = 1000 + iteration;
    let mut child = spawn_child(
        "crash_child",
        CHILD_ENV,
        format!(
            "{};{seed};{durability};{storage};{routing}",
            index_dir.to_str().unwrap()
        ),
    );
    // Kill after a random number of acknowledgements, so that kills land at every stage:
    // early, mid-checkpoint, after many operations. Counting acknowledgements rather than
    // time keeps what the loop covers (recoveries on codes) the same on a slow machine.
    let target_acks = rng.random_range(1..400usize);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = 0;
    while acked < target_acks {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(n) = ack(&line) {
                    assert_eq!(n, acked, "acks arrive in order");
                    acked += 1;
                }
            }
            _ => break,
        }
    }
    child.kill().unwrap(); // SIGKILL
    // Acks already in the pipe were written before the kill: they count too.
    for n in lines.map_while(Result::ok).filter_map(|l| ack(&l)) {
        assert_eq!(n, acked);
        acked += 1;
    }
    child.wait().unwrap();

    // The parent regenerates the workload: the state must be that after the acknowledged
    // operations, or after one more (the one in flight may have completed unacknowledged).
    let mut workload = Workload::new(seed, DIM);
    let mut expected: Vec<Model> = vec![Model::new()];
    for _ in 0..=acked {
        workload.next_op();
        expected.push(workload.model().clone());
    }
    if !index_dir.join("meta.redb").exists() {
        assert_eq!(
            acked, 0,
            "killed before the index existed, yet operations were acknowledged"
        );
        return Outcome {
            acked,
            checked_ids: 0,
            replayed: 0,
            truncated: 0,
            recall: 1.0,
            codes_generation: 0,
        };
    }
    let index = Index::open(&index_dir)
        .unwrap_or_else(|e| panic!("iteration {iteration}: reopen failed: {e}"));
    let recovery = index.recovery();
    let codes_generation = index.stats().unwrap().codes_generation;
    let state = snapshot(&index).unwrap();
    assert!(
        state == expected[acked] || state == expected[acked + 1],
        "iteration {iteration} ({durability}): recovered {} ids; expected {} (after {acked} acked ops) or {}",
        state.len(),
        expected[acked].len(),
        expected[acked + 1].len()
    );
    let report = index.verify().unwrap();
    assert!(
        report.is_ok(),
        "iteration {iteration}: verify: {:?}",
        report.problems
    );
    assert_eq!(
        report.stale_links, 0,
        "iteration {iteration}: stale links after kill -9"
    );

    // Recall@10 against brute force over the recovered state.
    let mut recall = 1.0;
    if state.len() >= 10 {
        let vectors: Vec<(&u64, &Vec<f32>)> = state.iter().map(|(id, (v, _))| (id, v)).collect();
        let mut total = 0.0;
        for q in 0..20 {
            let query = vectors[(q * 7919) % vectors.len()].1;
            let mut exact: Vec<(f32, u64)> =
                vectors.iter().map(|(id, v)| (l2(query, v), **id)).collect();
            exact.sort_by(|a, b| a.0.total_cmp(&b.0));
            // One bit per dimension of 8-d vectors ranks coarsely: a wider beam there.
            let ef = if routing == "rabitq" { 200 } else { 64 };
            let found = index.search_ef(query, 10, ef).unwrap();
            let hits = found
                .iter()
                .filter(|h| exact[..10].iter().any(|e| e.1 == h.id))
                .count();
            total += hits as f64 / 10.0;
        }
        recall = total / 20.0;
        assert!(
            recall >= 0.9,
            "iteration {iteration}: recall@10 {recall} after recovery ({} unreachable, {} live, {} tombstones)",
            report.unreachable,
            report.live,
            report.tombstones
        );
    }
    // The recovered index accepts writes and survives a clean reopen.
    index.insert(u64::MAX, &[0.5; DIM]).unwrap();
    index.close().unwrap();
    let reopened = Index::open(&index_dir).unwrap();
    assert!(reopened.contains(u64::MAX).unwrap());
    assert_eq!(
        reopened.recovery().replayed,
        0,
        "a clean close leaves nothing to replay"
    );
    Outcome {
        acked,
        checked_ids: state.len(),
        replayed: recovery.replayed,
        truncated: recovery.truncated_bytes,
        recall,
        codes_generation,
    }
}

fn kill_loop(iterations: u64) {
    let start = Instant::now();
    let (mut acked, mut ids, mut recall, mut replayed, mut torn) = (0, 0, 0.0, 0, 0);
    let (mut on_codes, mut retrained) = (0, 0);
    // HNSWDB_KILL_FROM=N starts at iteration N, to reproduce a failure.
    let from: u64 = std::env::var("HNSWDB_KILL_FROM")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    for i in from..from + iterations {
        let o = one_kill(i);
        acked += o.acked;
        ids += o.checked_ids;
        recall += o.recall;
        replayed += o.replayed;
        torn += (o.truncated > 0) as usize;
        on_codes += (o.codes_generation > 0) as usize;
        retrained += (o.codes_generation > 1) as usize;
    }
    // The recoveries must cover searches on codes, retrained ones included, or the
    // loop would not be testing what the index does by default.
    assert!(
        on_codes * 2 >= iterations as usize && retrained > 0,
        "only {on_codes} of {iterations} recoveries had codes ({retrained} retrained)"
    );
    println!(
        "kill -9 loop: {iterations} kills, {acked} acknowledged operations checked, {ids} recovered ids compared, \
         {replayed} log records replayed, {torn} torn log tails dropped, {on_codes} recoveries searching on codes (SQ8 or RaBitQ) \
         ({retrained} of a retrained generation), mean recall@10 {:.4}, 0 failures, {:.1} s",
        recall / iterations as f64,
        start.elapsed().as_secs_f64()
    );
}

#[test]
fn kill_9_loop_30() {
    kill_loop(30);
}

#[test]
#[ignore = "long run: 1,000 kills (about ten minutes)"]
fn kill_9_loop_1000() {
    kill_loop(1000);
}
