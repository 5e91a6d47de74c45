//! Reader isolation under stress, against a model of every value an id can ever have:
//! reader processes (plain, following, filtered, budgeted) beside a writer that inserts,
//! deletes, re-inserts deleted ids (reusing their freed slots), upserts, sets payloads,
//! consolidates, creates a field index and compacts. Every answer a reader gives must be
//! true of some committed state: an id of the universe, its vector one the id can have, its
//! reported distance that vector's, its payload's tenant the id's, a filtered answer inside
//! its filter — and no `Stale`.
//!
//! `HNSWDB_ISOLATION_SECS` sets the writer's run (default 3 s); the long run in the
//! session notes used 60.

mod common;

use std::time::{Duration, Instant};

use common::{spawn_child, sum_reports};
use hnswdb::serde_json::{Value, json};
use hnswdb::{
    Error, FieldKind, FieldSpec, Filter, Index, IndexOptions, Metric, OpenOptions, Query,
};
use rand::{RngExt, SeedableRng, rngs::StdRng};

const DIM: usize = 8;
const UNIVERSE: u64 = 3000;
/// Versions an id's vector and payload can have.
const VERSIONS: u64 = 8;
const READER_ENV: &str = "HNSWDB_ISOLATION_READER";

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The vector of `id` at version `v`: distinct for every (id, v).
fn vector(id: u64, v: u64) -> Vec<f32> {
    (0..DIM as u64)
        .map(|j| (splitmix(id * 64 + v * 8 + j) % 1000) as f32 / 100.0)
        .collect()
}

fn payload(id: u64, v: u64) -> Value {
    json!({"tenant": id % 3, "v": v})
}

fn l2(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

fn secs() -> f64 {
    std::env::var("HNSWDB_ISOLATION_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0)
}

/// Checks one answer: the id can have a vector at exactly this distance from `q`.
fn check_hit(q: &[f32], id: u64, distance: f32, what: &str) {
    assert!(id < UNIVERSE, "{what}: id {id} was never written");
    let near = (0..VERSIONS).any(|v| {
        let d = l2(q, &vector(id, v));
        (d - distance).abs() <= 1e-3 * d.max(1.0)
    });
    assert!(
        near,
        "{what}: id {id} at {distance} is at no distance its vectors have"
    );
}

/// One reader process: its kind is in the environment (`plain`, `follow`, `budget`).
#[test]
#[ignore = "the child process of readers_see_only_committed_states"]
fn isolation_reader() {
    let Ok(spec) = std::env::var(READER_ENV) else {
        eprintln!("isolation_reader is a child process, not a test on its own");
        return;
    };
    let (kind, dir) = spec.split_once(':').unwrap();
    let mut options = OpenOptions::default().read_only(true);
    match kind {
        "follow" => options = options.follow(Duration::ZERO),
        // Just above what the index holds whatever it pins (~1.35 MB on one thread): the
        // codes at most stay resident, the lists and vectors are read from disk.
        "budget" => options = options.threads(1).memory_budget(1_400_000),
        _ => {}
    }
    let index = Index::open_with(dir, &options).unwrap();
    let deadline = Instant::now() + Duration::from_secs_f64(secs() + 0.5);
    let mut rng = StdRng::seed_from_u64(splitmix(kind.len() as u64));
    let mut checked = 0u64;
    let mut refreshes = 0u64;
    // At least one round however late this process got going: the test asserts that
    // readers checked answers, whatever the machine's speed.
    loop {
        for _ in 0..20 {
            let id = rng.random_range(0..UNIVERSE);
            match index.get(id) {
                Ok(v) => assert!(
                    (0..VERSIONS).any(|x| v == vector(id, x)),
                    "get({id}) = {v:?}"
                ),
                Err(Error::UnknownId(_)) => {}
                Err(e) => panic!("get({id}): {e}"),
            }
            match index.get_payload(id) {
                Ok(Some(p)) => assert_eq!(p["tenant"], json!(id % 3), "payload of {id}"),
                Ok(None) | Err(Error::UnknownId(_)) => {}
                Err(e) => panic!("get_payload({id}): {e}"),
            }
            checked += 2;
        }
        let q = vector(rng.random_range(0..UNIVERSE), rng.random_range(0..VERSIONS));
        for h in index.search(&q, 10).unwrap() {
            check_hit(&q, h.id, h.distance, "search");
            checked += 1;
        }
        for h in index.search_exact(&q, 5).unwrap() {
            check_hit(&q, h.id, h.distance, "search_exact");
            checked += 1;
        }
        let tenant = rng.random_range(0..3u64);
        let filter = Filter::eq("tenant", tenant as i64);
        for h in index
            .search_with(&q, &Query::new(10).filter(&filter))
            .unwrap()
        {
            check_hit(&q, h.id, h.distance, "filtered search");
            assert_eq!(
                h.id % 3,
                tenant,
                "filtered search: id {} of another tenant",
                h.id
            );
            checked += 1;
        }
        if kind != "follow" && rng.random_bool(0.2) {
            index.refresh().unwrap();
            refreshes += 1;
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    println!("reader {kind}: {checked} answers checked, {refreshes} refreshes, 0 wrong");
}

/// The writer's state: which ids are live.
struct Writer {
    index: Index,
    live: Vec<u64>,
    dead: Vec<u64>,
    rng: StdRng,
    ops: u64,
}

impl Writer {
    fn step(&mut self) {
        let roll = self.rng.random_range(0..100);
        let v = self.rng.random_range(0..VERSIONS);
        if roll < 35 && !self.dead.is_empty() {
            // Insert (re-insert) a few absent ids: they take freed slots when allowed.
            let n = self.rng.random_range(1..=8).min(self.dead.len());
            let ids: Vec<u64> = (0..n)
                .map(|_| {
                    self.dead
                        .swap_remove(self.rng.random_range(0..self.dead.len()))
                })
                .collect();
            let rows: Vec<f32> = ids.iter().flat_map(|&id| vector(id, v)).collect();
            let payloads: Vec<Value> = ids.iter().map(|&id| payload(id, v)).collect();
            self.index
                .insert_batch_with_payloads(&ids, &rows, &payloads, 1)
                .unwrap();
            self.live.extend(ids);
        } else if roll < 65 && self.live.len() > 100 {
            let n = self.rng.random_range(1..=8);
            let ids: Vec<u64> = (0..n)
                .map(|_| {
                    self.live
                        .swap_remove(self.rng.random_range(0..self.live.len()))
                })
                .collect();
            self.index.delete_batch(&ids).unwrap();
            self.dead.extend(ids);
        } else if roll < 80 && !self.live.is_empty() {
            let id = self.live[self.rng.random_range(0..self.live.len())];
            self.index.upsert(id, &vector(id, v)).unwrap();
        } else if !self.live.is_empty() {
            let id = self.live[self.rng.random_range(0..self.live.len())];
            self.index.set_payload(id, &payload(id, v)).unwrap();
        }
        self.ops += 1;
        if self.ops.is_multiple_of(50) {
            self.index.consolidate().unwrap();
        }
    }
}

#[test]
fn readers_see_only_committed_states() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("idx");
    let options = IndexOptions::new(DIM, Metric::L2)
        .quantize_after(200)
        .field(FieldSpec::new("tenant", FieldKind::Integer));
    let index = Index::create(&dir, &options).unwrap();
    let ids: Vec<u64> = (0..UNIVERSE / 2).collect();
    let rows: Vec<f32> = ids.iter().flat_map(|&id| vector(id, 0)).collect();
    let payloads: Vec<Value> = ids.iter().map(|&id| payload(id, 0)).collect();
    index
        .insert_batch_with_payloads(&ids, &rows, &payloads, 2)
        .unwrap();
    index.checkpoint().unwrap();
    let readers: Vec<_> = ["plain", "follow", "budget"]
        .iter()
        .map(|kind| {
            spawn_child(
                "isolation_reader",
                READER_ENV,
                format!("{kind}:{}", dir.display()),
            )
        })
        .collect();
    let mut w = Writer {
        index,
        live: ids,
        dead: (UNIVERSE / 2..UNIVERSE).collect(),
        rng: StdRng::seed_from_u64(7),
        ops: 0,
    };
    let run = Duration::from_secs_f64(secs());
    let start = Instant::now();
    let (mut indexed, mut compacted) = (false, false);
    while start.elapsed() < run {
        w.step();
        if !indexed && start.elapsed() > run / 3 {
            w.index
                .create_field_index(FieldSpec::new("v", FieldKind::Integer))
                .unwrap();
            indexed = true;
        }
        if !compacted && start.elapsed() > run / 2 {
            let index = std::mem::replace(
                &mut w.index,
                Index::open_read_only(&dir).unwrap(), // a placeholder while it compacts
            );
            w.index = index.compact().unwrap().0;
            compacted = true;
        }
    }
    let total = sum_reports(readers, "reader ", 2);
    eprintln!(
        "writer: {} operations (field index created, compacted); readers checked {total} \
         answers, 0 wrong",
        w.ops
    );
    assert!(total > 0);
    assert!(w.index.verify().unwrap().is_ok());
}
