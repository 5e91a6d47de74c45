//! The public `Index`: external ids, validation, slot allocation, the write path through
//! the write-ahead log, checkpoints and recovery.
//!
//! Every write follows one order: plan it (validate, choose slots and levels) → append
//! its record to the log → apply it to the in-memory bookkeeping → make the record durable
//! (per the durability mode) → apply it to the graph and pages → return. Replay on open
//! applies the same records through the same functions. Lock order: `graph` (read or
//! write) → `pending` → the log's own locks.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::{Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use rand::{RngExt, SeedableRng, rngs::StdRng};

use crate::codes::{self, Codes};
use crate::distance::{Distance, Kernels, Metric, Sq8, normalize};
use crate::error::{Error, Result};
use crate::hnsw::{Graph, Params, Quantized};
use crate::layer0::Layer0;
use crate::meta::{Changes, Config, Meta, SlotState, State};
use crate::parallel::parallel_for;
use crate::recovery::{Op, Placed};
use crate::vectors::Vectors;
use crate::wal::{self, Wal, WalIdentity};

const VECTORS_FILE: &str = "vectors";
const WAL_DIR: &str = "wal";
const GRAPH0_FILE: &str = "graph0";
const META_FILE: &str = "meta.redb";
/// Levels are capped so a level fits the metadata's u8 and a freak draw cannot build a
/// tower of empty layers.
const MAX_LEVEL: usize = 32;

/// Live vectors needed before the first SQ8 quantiser is trained: fewer would give
/// component ranges that later vectors often fall outside of.
const SQ8_MIN_LIVE: u64 = 1000;

/// Vectors sampled to train a quantiser (its ranges are per-component min and max).
const SQ8_SAMPLE: usize = 100_000;

/// Settings of a new index. `dim` and `metric` are required; the rest default to hnswlib's
/// usual choices (M = 16, ef_construction = 200).
#[derive(Clone, Debug)]
pub struct IndexOptions {
    dim: usize,
    metric: Metric,
    m: usize,
    ef_construction: usize,
    seed: u64,
    capacity: usize,
    runtime: OpenOptions,
}

impl IndexOptions {
    /// Options for vectors of `dim` floats compared by `metric`.
    pub fn new(dim: usize, metric: Metric) -> IndexOptions {
        IndexOptions {
            dim,
            metric,
            m: 16,
            ef_construction: 200,
            seed: 100,
            capacity: 1024,
            runtime: OpenOptions::default(),
        }
    }

    /// Neighbours per node on upper layers; layer 0 keeps `2 * m`. Larger M: better recall
    /// on hard data, more memory and slower inserts. 2..=255.
    pub fn m(mut self, m: usize) -> Self {
        self.m = m;
        self
    }

    /// Beam width while inserting: larger builds a better graph, more slowly.
    pub fn ef_construction(mut self, ef: usize) -> Self {
        self.ef_construction = ef;
        self
    }

    /// Seed of the level generator: a single-threaded build is deterministic for a seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Slots to allocate up front (the files grow on demand anyway).
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// Default search beam width (see [`OpenOptions::ef_search`]).
    pub fn ef_search(mut self, ef: usize) -> Self {
        self.runtime.ef_search = ef;
        self
    }

    /// Worker threads for batch insert and batch search (see [`OpenOptions::threads`]).
    pub fn threads(mut self, threads: usize) -> Self {
        self.runtime.threads = threads;
        self
    }

    /// Durability of writes (see [`OpenOptions::durability`]).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.runtime.durability = durability;
        self
    }

    /// Automatic checkpoint threshold (see [`OpenOptions::checkpoint_bytes`]).
    pub fn checkpoint_bytes(mut self, bytes: u64) -> Self {
        self.runtime.checkpoint_bytes = bytes.max(1);
        self
    }

    /// When to train the SQ8 codes searches walk on (see [`OpenOptions::quantize_after`]).
    pub fn quantize_after(mut self, live: u64) -> Self {
        self.runtime.quantize_after = live;
        self
    }

    fn validate(&self) -> Result<()> {
        let bad = |s: String| Err(Error::InvalidOption(s));
        if self.dim == 0 || self.dim > 65_536 {
            return bad(format!("dimension {} is not in 1..=65536", self.dim));
        }
        if !(2..=255).contains(&self.m) {
            return bad(format!("M {} is not in 2..=255", self.m));
        }
        if self.ef_construction == 0 {
            return bad("ef_construction must be at least 1".into());
        }
        self.runtime.validate()
    }
}

/// When a write is durable, relative to the call that made it returning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// The log record is fsynced before the call returns: an acknowledged write survives
    /// `kill -9` and power loss. Concurrent writers share fsyncs (group commit).
    Immediate,
    /// The log is fsynced by a background thread at this interval: power loss may lose the
    /// writes of the last interval; `kill -9` loses nothing (the page cache survives).
    Periodic(Duration),
    /// The log is never fsynced outside checkpoints: power loss may lose every write since
    /// the last checkpoint; `kill -9` loses nothing. Never corrupts.
    None,
}

/// Settings that are not stored in the index and may differ at each open.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    ef_search: usize,
    threads: usize,
    cache_bytes: usize,
    durability: Durability,
    checkpoint_bytes: u64,
    salvage: bool,
    warm: bool,
    quantize_after: u64,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            ef_search: 64,
            threads: 0,
            cache_bytes: 64 << 20,
            durability: Durability::Immediate,
            checkpoint_bytes: 64 << 20,
            salvage: false,
            warm: false,
            quantize_after: SQ8_MIN_LIVE,
        }
    }
}

impl OpenOptions {
    /// Durability of writes (default `Immediate`).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Log size past which a checkpoint runs automatically (default 64 MiB).
    pub fn checkpoint_bytes(mut self, bytes: u64) -> Self {
        self.checkpoint_bytes = bytes.max(1);
        self
    }

    /// Ask the kernel to read the page files into memory in the background (for an index
    /// that fits in RAM and should answer at full speed from its first query). By default
    /// the files are advised for random access instead: no read-ahead, so that an index
    /// larger than memory keeps only the pages searches touch.
    pub fn warm(mut self, warm: bool) -> Self {
        self.warm = warm;
        self
    }

    /// On a log damaged in its middle, keep the records before the damage instead of
    /// refusing to open (default false: damage is an error).
    pub fn salvage(mut self, salvage: bool) -> Self {
        self.salvage = salvage;
        self
    }

    /// Default beam width of `search` (at least k is always used). Larger: higher recall,
    /// slower queries.
    pub fn ef_search(mut self, ef: usize) -> Self {
        self.ef_search = ef;
        self
    }

    /// Worker threads for batch operations; 0 (the default) uses every core.
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// Page cache of the metadata database (redb), in bytes. Default 64 MiB.
    pub fn cache_size(mut self, bytes: usize) -> Self {
        self.cache_bytes = bytes;
        self
    }

    /// Train the SQ8 codes that searches walk on once the index holds `live` vectors
    /// (default 1000), and retrain whenever it has doubled since. Searches then read one
    /// byte per component instead of four and re-rank their beam exactly; recall per ef
    /// is within noise of exact walks (docs/benchmarks.md). `u64::MAX` never trains
    /// (existing codes stay in use and maintained).
    pub fn quantize_after(mut self, live: u64) -> Self {
        self.quantize_after = live.max(1);
        self
    }

    fn validate(&self) -> Result<()> {
        if self.ef_search == 0 {
            return Err(Error::InvalidOption("ef_search must be at least 1".into()));
        }
        Ok(())
    }

    fn thread_count(&self) -> usize {
        resolve_threads(self.threads)
    }
}

/// Opens the code file the metadata names, if any, and removes every other `codes.N`
/// (left by a checkpoint that crashed before or after its commit: never referenced).
fn load_codes(
    dir: &Path,
    meta: &Meta,
    config: &Config,
    state: &State,
    kernels: Kernels,
    graph: &Graph,
    warm: bool,
) -> Result<Option<Quantized>> {
    for (generation, path) in codes::generations_in(dir) {
        if generation != state.codes_generation {
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
    }
    if state.codes_generation == 0 {
        return Ok(None);
    }
    let path = dir.join(codes::file_name(state.codes_generation));
    let sq8 = meta.quantizer(config.dim)?.ok_or_else(|| {
        Error::corrupt(
            meta.path(),
            "metadata names a code file but holds no quantiser",
        )
    })?;
    if !path.exists() {
        return Err(Error::corrupt(
            &path,
            "the code file the metadata names is missing",
        ));
    }
    let mut codes = Codes::open(&path)?;
    let h = codes.arena().header();
    if h.index_uid != config.index_uid {
        return Err(Error::corrupt(&path, "file belongs to another index"));
    }
    if h.dim as usize != config.dim || h.metric != config.metric.code() {
        return Err(Error::corrupt(
            &path,
            "dimension or metric disagrees with the metadata",
        ));
    }
    if (h.capacity as usize) < state.high_water as usize {
        return Err(Error::corrupt(
            &path,
            "file holds fewer slots than the metadata uses",
        ));
    }
    // A crash between growing the vectors and growing the codes leaves the codes short.
    codes.arena_mut().grow(graph.capacity())?;
    if warm {
        codes.arena().advise_willneed();
    } else {
        codes.arena().advise_random();
    }
    Ok(Some(Quantized {
        sq8,
        codes,
        generation: state.codes_generation,
        metric: config.metric,
        kernels,
    }))
}

/// A thread count as given by the user (0 = every core) made concrete.
fn resolve_threads(threads: usize) -> usize {
    if threads > 0 {
        threads
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// One search hit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Neighbour {
    /// The external id given at insert.
    pub id: u64,
    /// Its distance to the query under the index metric.
    pub distance: f32,
}

/// Counts and settings, for `stats` and monitoring.
#[derive(Clone, Debug)]
pub struct Stats {
    /// Live vectors.
    pub len: u64,
    /// Slots the page files hold.
    pub capacity: usize,
    /// Slots ever allocated (live + tombstoned + free).
    pub high_water: u32,
    /// Slots freed by consolidated deletes and not yet reused.
    pub free_slots: usize,
    /// Deleted vectors still linked into the graph, awaiting consolidation.
    pub tombstones: usize,
    /// Nodes on layer 1 and above.
    pub upper_nodes: usize,
    /// Top level of the graph.
    pub max_level: usize,
    /// Vector dimension.
    pub dim: usize,
    /// Metric.
    pub metric: Metric,
    /// M.
    pub m: usize,
    /// ef_construction.
    pub ef_construction: usize,
    /// Instruction set of the distance kernels in use.
    pub kernels: &'static str,
    /// Log bytes written since the last checkpoint.
    pub wal_bytes: u64,
    /// Generation `N` of the SQ8 code file `codes.N` searches walk on; 0 when searches
    /// walk on exact vectors (no codes trained yet).
    pub codes_generation: u64,
}

/// What opening the index had to recover.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Log records written after the last checkpoint and replayed.
    pub replayed: usize,
    /// Bytes of torn (or, with salvage, damaged) log tail that were dropped.
    pub truncated_bytes: u64,
}

/// What `verify` found.
#[derive(Clone, Debug, Default)]
pub struct VerifyReport {
    /// One line per integrity problem; empty when the index is sound.
    pub problems: Vec<String>,
    /// Live vectors that no search can reach from the entry point. Not an integrity
    /// problem (their data and ids are intact) but a recall one: HNSW pruning can, rarely,
    /// remove a node's last in-link. `Index::consolidate` links them back.
    pub unreachable: usize,
    /// Links to slots that hold no node (left by a write that power loss undid in a
    /// non-`Immediate` mode). Searches skip them; `Index::consolidate` removes them.
    pub stale_links: usize,
    /// Live vectors checked.
    pub live: u64,
    /// Tombstoned slots.
    pub tombstones: usize,
    /// Free slots.
    pub free: usize,
}

impl VerifyReport {
    /// True when no integrity problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// In-memory bookkeeping of writes: the state as of the last checkpoint plus every logged
/// write since. Changed only under its mutex, in log order.
struct Pending {
    high_water: u32,
    live: u64,
    /// Reusable slots, smallest reused first.
    free: BTreeSet<u32>,
    tombstones: BTreeSet<u32>,
    level_draws: u64,
    rng: StdRng,
    /// External id → slot (None: deleted) since the last checkpoint.
    ids: HashMap<u64, Option<u32>>,
    /// Slots whose state changed since the last checkpoint.
    slots: HashMap<u32, SlotState>,
    /// Generation of the code file in use (0: none).
    codes_generation: u64,
    /// Live vectors when its quantiser was trained.
    codes_trained_live: u64,
}

impl Pending {
    /// The `n` slots the next insert would take: free ones first, then fresh ones.
    fn plan_slots(&self, n: usize) -> Vec<u32> {
        let reused = self.free.iter().copied().take(n);
        let fresh = (0..n.saturating_sub(self.free.len())).map(|i| self.high_water + i as u32);
        reused.chain(fresh).collect()
    }

    /// Marks `slot` live: it must be free or at/after the high-water mark.
    fn take_slot(&mut self, slot: u32) -> std::result::Result<(), String> {
        if slot < self.high_water {
            if !self.free.remove(&slot) {
                return Err(format!("slot {slot} is taken"));
            }
        } else {
            // Slots skipped over (none in a log this code wrote) become free.
            self.free.extend(self.high_water..slot);
            self.high_water = slot + 1;
        }
        self.slots.insert(slot, SlotState::Live);
        Ok(())
    }

    fn tombstone(&mut self, slot: u32) {
        self.tombstones.insert(slot);
        self.slots.insert(slot, SlotState::Tombstone);
    }

    fn draw_level(&mut self, level_mult: f64) -> u8 {
        let r: f64 = self.rng.random();
        self.level_draws += 1;
        ((-(1.0 - r).ln() * level_mult) as usize).min(MAX_LEVEL) as u8
    }
}

/// Stops the periodic-sync thread when the index is dropped.
struct Syncer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Syncer {
    fn start(wal: Arc<Wal>, every: Duration) -> Syncer {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let (lock, cv) = &*flag;
            let mut stopped = lock.lock();
            while !*stopped {
                cv.wait_for(&mut stopped, every);
                // A failed background fsync is retried at the next tick; the next
                // checkpoint reports a persistent failure.
                let _ = wal.sync_all();
            }
        });
        Syncer {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        *self.stop.0.lock() = true;
        self.stop.1.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An open index. All methods take `&self`: share it between threads with `Arc`.
///
/// ```
/// use hnswdb::{Index, IndexOptions, Metric};
/// let dir = tempfile::tempdir()?;
/// let index = Index::create(dir.path(), &IndexOptions::new(3, Metric::L2))?;
/// index.insert(7, &[1.0, 0.0, 0.0])?;
/// index.insert(8, &[0.0, 1.0, 0.0])?;
/// index.delete(8)?;
/// let hits = index.search(&[0.9, 0.1, 0.0], 1)?;
/// assert_eq!(hits[0].id, 7);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Index {
    dir: PathBuf,
    config: Config,
    kernels: Kernels,
    /// Read-locked by inserts and searches; write-locked to remap (grow), for deletes and
    /// upserts (so that they apply in log order relative to inserts), and to checkpoint.
    graph: RwLock<Graph>,
    meta: Arc<Meta>,
    pending: Mutex<Pending>,
    wal: Arc<Wal>,
    durability: Durability,
    checkpoint_bytes: u64,
    /// Set when a write failed after its record was logged: memory and log may disagree,
    /// so further writes are refused until a reopen replays the log.
    poisoned: AtomicBool,
    ef_search: AtomicUsize,
    threads: AtomicUsize,
    quantize_after: u64,
    recovery: Recovery,
    _syncer: Option<Syncer>,
}

impl Index {
    /// Creates a new index in `dir` (created if missing; must not already hold an index).
    pub fn create(dir: impl AsRef<Path>, options: &IndexOptions) -> Result<Index> {
        options.validate()?;
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        if dir.join(META_FILE).exists() {
            return Err(Error::AlreadyExists(dir.to_path_buf()));
        }
        let config = Config {
            dim: options.dim,
            metric: options.metric,
            m: options.m,
            m0: 2 * options.m,
            ef_construction: options.ef_construction,
            level_mult: 1.0 / (options.m as f64).ln(),
            seed: options.seed,
            index_uid: rand::rng().random(),
        };
        // Page files and log first, metadata last: the metadata file is what marks the
        // directory as holding an index, so a crash before it leaves no half-made index.
        let metric = config.metric.code();
        Vectors::create(
            &dir.join(VECTORS_FILE),
            config.dim,
            metric,
            config.index_uid,
            options.capacity,
        )?;
        Layer0::create(
            &dir.join(GRAPH0_FILE),
            config.dim,
            metric,
            config.m0,
            config.index_uid,
            options.capacity,
        )?;
        let wal_dir = dir.join(WAL_DIR);
        if wal_dir.exists() {
            std::fs::remove_dir_all(&wal_dir).map_err(|e| Error::io(&wal_dir, e))?;
        }
        drop(Meta::create(
            &dir.join(META_FILE),
            &config,
            options.runtime.cache_bytes,
        )?);
        Self::open_with(dir, &options.runtime)
    }

    /// Opens the index in `dir` with default [`OpenOptions`].
    pub fn open(dir: impl AsRef<Path>) -> Result<Index> {
        Self::open_with(dir, &OpenOptions::default())
    }

    /// Opens the index in `dir`: reads the page-file headers and the metadata's
    /// configuration and state (never the vectors or layer 0), then replays the log
    /// records written since the last checkpoint.
    pub fn open_with(dir: impl AsRef<Path>, options: &OpenOptions) -> Result<Index> {
        options.validate()?;
        let dir = dir.as_ref();
        let (meta, config, state) = Meta::open(&dir.join(META_FILE), options.cache_bytes)?;
        let vectors = Vectors::open(&dir.join(VECTORS_FILE))?;
        let layer0 = Layer0::open(&dir.join(GRAPH0_FILE))?;
        for arena in [vectors.arena(), layer0.arena()] {
            if options.warm {
                arena.advise_willneed();
            } else {
                arena.advise_random();
            }
        }
        for (h, path) in [
            (vectors.arena().header(), vectors.arena().path()),
            (layer0.arena().header(), layer0.arena().path()),
        ] {
            if h.index_uid != config.index_uid {
                return Err(Error::corrupt(path, "file belongs to another index"));
            }
            if h.dim as usize != config.dim || h.metric != config.metric.code() {
                return Err(Error::corrupt(
                    path,
                    "dimension or metric disagrees with the metadata",
                ));
            }
            if (h.capacity as usize) < state.high_water as usize {
                return Err(Error::corrupt(
                    path,
                    "file holds fewer slots than the metadata uses",
                ));
            }
        }
        if layer0.m0() != config.m0 {
            return Err(Error::corrupt(
                layer0.arena().path(),
                "M0 disagrees with the metadata",
            ));
        }
        let free = meta.free_slots()?;
        let tombstones = meta.tombstones()?;
        if free
            .iter()
            .chain(&tombstones)
            .any(|&s| s >= state.high_water)
        {
            return Err(Error::corrupt(
                meta.path(),
                "free or deleted slot beyond the high-water mark",
            ));
        }
        let kernels = Kernels::detect();
        let params = Params {
            m: config.m,
            m0: config.m0,
            ef_construction: config.ef_construction,
        };
        let mut graph = Graph::new(
            params,
            Distance::new(config.metric, kernels),
            vectors,
            layer0,
        );
        // Upper lists load lazily from the metadata (see `UpperSource`): open stays O(1).
        let meta = Arc::new(meta);
        graph.restore(
            state.high_water,
            &free,
            &tombstones,
            meta.clone(),
            state.entry,
        );
        let quantized = load_codes(dir, &meta, &config, &state, kernels, &graph, options.warm)?;
        graph.set_quantized(quantized);

        let wal_dir = dir.join(WAL_DIR);
        std::fs::create_dir_all(&wal_dir).map_err(|e| Error::io(&wal_dir, e))?;
        let identity = WalIdentity {
            dim: config.dim as u32,
            index_uid: config.index_uid,
        };
        let scan = wal::read_all(
            &wal_dir,
            identity,
            state.checkpoint_lsn,
            options.salvage,
            false,
        )?;
        let next_lsn = scan.next_lsn.unwrap_or(0).max(state.checkpoint_lsn);
        let wal = Arc::new(Wal::open(&wal_dir, identity, next_lsn)?);
        let syncer = match options.durability {
            Durability::Periodic(every) => Some(Syncer::start(wal.clone(), every)),
            _ => None,
        };
        let index = Index {
            dir: dir.to_path_buf(),
            kernels,
            graph: RwLock::new(graph),
            meta,
            pending: Mutex::new(Pending {
                high_water: state.high_water,
                live: state.live,
                free: free.into_iter().collect(),
                tombstones: tombstones.into_iter().collect(),
                level_draws: state.level_draws,
                rng: StdRng::seed_from_u64(config.seed ^ state.level_draws.rotate_left(32)),
                ids: HashMap::new(),
                slots: HashMap::new(),
                codes_generation: state.codes_generation,
                codes_trained_live: state.codes_trained_live,
            }),
            wal,
            durability: options.durability,
            checkpoint_bytes: options.checkpoint_bytes,
            poisoned: AtomicBool::new(false),
            ef_search: AtomicUsize::new(options.ef_search),
            threads: AtomicUsize::new(options.thread_count()),
            quantize_after: options.quantize_after,
            recovery: Recovery {
                replayed: scan.records.len(),
                truncated_bytes: scan.truncated_bytes,
            },
            _syncer: syncer,
            config,
        };
        for record in &scan.records {
            let op = Op::decode(record.kind, &record.payload, index.config.dim).map_err(|why| {
                Error::corrupt(&wal_dir, format!("log record {}: {why}", record.lsn))
            })?;
            index.replay(&op).map_err(|why| {
                Error::corrupt(&wal_dir, format!("log record {}: {why}", record.lsn))
            })?;
        }
        Ok(index)
    }

    /// Re-applies a logged write during recovery.
    fn replay(&self, op: &Op) -> std::result::Result<(), String> {
        let needed = match op {
            Op::Insert(items) => items.iter().map(|p| p.slot as usize + 1).max().unwrap_or(0),
            Op::Upsert(p) => p.slot as usize + 1,
            Op::Delete(_) => 0,
        };
        let mut graph = self.graph.write();
        graph.grow(needed).map_err(|e| e.to_string())?;
        let old_slots = self.apply_pending(&mut self.pending.lock(), op)?;
        self.apply_graph(&graph, op, &old_slots, true);
        Ok(())
    }

    /// Applies `op` to the bookkeeping. Returns the slots it tombstones. Fails (changing
    /// nothing) if `op` does not fit the current state, which for a planned write is a bug
    /// and for a replayed one a damaged log.
    fn apply_pending(&self, p: &mut Pending, op: &Op) -> std::result::Result<Vec<u32>, String> {
        // Check everything first so that a bad record changes nothing.
        let mut old = Vec::new();
        match op {
            Op::Insert(items) => {
                let mut seen = HashSet::new();
                for it in items {
                    if !seen.insert(it.id)
                        || self.slot_of(p, it.id).map_err(|e| e.to_string())?.is_some()
                    {
                        return Err(format!("insert of existing id {}", it.id));
                    }
                }
            }
            Op::Upsert(it) => old.push(
                self.slot_of(p, it.id)
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("upsert of unknown id {}", it.id))?,
            ),
            Op::Delete(ids) => {
                let mut seen = HashSet::new();
                for &id in ids {
                    if !seen.insert(id) {
                        return Err(format!("id {id} deleted twice in one record"));
                    }
                    old.push(
                        self.slot_of(p, id)
                            .map_err(|e| e.to_string())?
                            .ok_or_else(|| format!("delete of unknown id {id}"))?,
                    );
                }
            }
        }
        let placed: &[Placed] = match op {
            Op::Insert(items) => items,
            Op::Upsert(it) => std::slice::from_ref(it),
            Op::Delete(_) => &[],
        };
        let mut slots = HashSet::new();
        for it in placed {
            let taken = it.slot < p.high_water && !p.free.contains(&it.slot);
            if !slots.insert(it.slot) || taken || it.vector.len() != self.config.dim {
                return Err(format!("slot {} of id {} is not available", it.slot, it.id));
            }
        }
        for it in placed {
            p.take_slot(it.slot)?;
            p.ids.insert(it.id, Some(it.slot));
        }
        for &slot in &old {
            p.tombstone(slot);
        }
        match op {
            Op::Insert(items) => p.live += items.len() as u64,
            Op::Upsert(_) => {}
            Op::Delete(ids) => {
                p.live -= ids.len() as u64;
                for id in ids {
                    p.ids.insert(*id, None);
                }
            }
        }
        Ok(old)
    }

    /// Applies `op` to the graph (after `apply_pending` returned `old`); `recovering`
    /// when replaying the log (see `Graph::insert`).
    fn apply_graph(&self, graph: &Graph, op: &Op, old: &[u32], recovering: bool) {
        match op {
            Op::Insert(items) => parallel_for(items.len(), self.threads(), |i| {
                let it = &items[i];
                graph.insert(it.slot, it.level as usize, &it.vector, it.id, recovering);
            }),
            Op::Upsert(it) => {
                graph.insert(it.slot, it.level as usize, &it.vector, it.id, recovering);
            }
            Op::Delete(_) => {}
        }
        for &slot in old {
            graph.tombstone(slot);
        }
    }

    /// Logs `op`, applies it to the bookkeeping and makes it durable per the mode. The
    /// caller applies it to the graph afterwards, still holding its graph lock.
    fn log(&self, mut p: MutexGuard<'_, Pending>, op: &Op) -> Result<Vec<u32>> {
        let (kind, payload) = op.encode();
        let lsn = self.wal.append(kind, &payload)?;
        let old = match self.apply_pending(&mut p, op) {
            Ok(old) => old,
            Err(why) => {
                self.poisoned.store(true, Ordering::Release);
                return Err(Error::Meta(format!("internal error after logging: {why}")));
            }
        };
        drop(p);
        if self.durability == Durability::Immediate
            && let Err(e) = self.wal.sync_to(lsn)
        {
            // The record may or may not be on disk: the outcome is unknown until a
            // reopen replays the log, so refuse further writes.
            self.poisoned.store(true, Ordering::Release);
            return Err(e);
        }
        Ok(old)
    }

    fn check_writable(&self) -> Result<()> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::Poisoned);
        }
        Ok(())
    }

    /// What opening this index recovered from the log.
    pub fn recovery(&self) -> Recovery {
        self.recovery
    }

    /// Directory of the index.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.config.dim
    }

    /// Distance metric.
    pub fn metric(&self) -> Metric {
        self.config.metric
    }

    /// Number of live vectors.
    pub fn len(&self) -> u64 {
        self.pending.lock().live
    }

    /// True when the index holds no vector.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Default beam width of `search`.
    pub fn ef(&self) -> usize {
        self.ef_search.load(Ordering::Relaxed)
    }

    /// Sets the default beam width of `search` (hnswlib's `set_ef`).
    pub fn set_ef(&self, ef: usize) {
        self.ef_search.store(ef.max(1), Ordering::Relaxed);
    }

    /// Worker threads used by batch insert, batch search and consolidation.
    pub fn threads(&self) -> usize {
        self.threads.load(Ordering::Relaxed)
    }

    /// Sets the worker threads of batch operations; 0 uses every core (hnswlib's
    /// `set_num_threads`).
    pub fn set_threads(&self, threads: usize) {
        self.threads
            .store(resolve_threads(threads), Ordering::Relaxed);
    }

    /// Checks `vector` as `insert` would (dimension, finite components, not all-zero under
    /// cosine) without writing anything: lets a caller validate a whole set of writes
    /// before issuing any of them.
    pub fn validate(&self, vector: &[f32]) -> Result<()> {
        self.prepare(vector).map(drop)
    }

    /// Checks a vector and returns it as stored: normalised for cosine.
    fn prepare(&self, v: &[f32]) -> Result<Vec<f32>> {
        if v.len() != self.config.dim {
            return Err(Error::DimensionMismatch {
                expected: self.config.dim,
                got: v.len(),
            });
        }
        if let Some((position, &value)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
            return Err(Error::NonFinite { position, value });
        }
        let mut v = v.to_vec();
        if self.config.metric == Metric::Cosine && !normalize(&mut v) {
            return Err(Error::ZeroVector);
        }
        Ok(v)
    }

    /// Slot of `id`, counting changes since the last checkpoint.
    fn slot_of(&self, pending: &Pending, id: u64) -> Result<Option<u32>> {
        match pending.ids.get(&id) {
            Some(&slot) => Ok(slot),
            None => self.meta.lookup(id),
        }
    }

    /// A read lock on the graph together with the bookkeeping, such that the page files
    /// hold at least `needed(&pending)` slots; grows them (write lock) when not. Both
    /// guards are returned together so that no other writer can allocate in between.
    fn lock_with_room(
        &self,
        needed: impl Fn(&Pending) -> usize,
    ) -> Result<(RwLockReadGuard<'_, Graph>, MutexGuard<'_, Pending>)> {
        loop {
            let graph = self.graph.read();
            let pending = self.pending.lock();
            let want = needed(&pending);
            if want <= graph.capacity() {
                return Ok((graph, pending));
            }
            drop(pending);
            drop(graph);
            self.graph.write().grow(want)?;
        }
    }

    /// The exclusive counterpart of `lock_with_room`.
    fn lock_exclusive_with_room(
        &self,
        extra: usize,
    ) -> Result<(RwLockWriteGuard<'_, Graph>, MutexGuard<'_, Pending>)> {
        let mut graph = self.graph.write();
        let want = self.pending.lock().high_water as usize + extra;
        graph.grow(want)?;
        let pending = self.pending.lock();
        Ok((graph, pending))
    }

    /// Inserts `vector` under `id`. Fails with `DuplicateId` if `id` is present.
    pub fn insert(&self, id: u64, vector: &[f32]) -> Result<()> {
        self.insert_batch(&[id], vector)
    }

    /// Inserts `ids.len()` vectors laid out row after row in `vectors`, on all worker
    /// threads, as one logged write: all or nothing. A bad vector or a duplicate id
    /// rejects the whole batch before anything is written. Searches may run meanwhile.
    pub fn insert_batch(&self, ids: &[u64], vectors: &[f32]) -> Result<()> {
        self.check_writable()?;
        let dim = self.config.dim;
        if vectors.len() != ids.len() * dim {
            return Err(Error::DimensionMismatch {
                expected: dim,
                got: if ids.is_empty() {
                    vectors.len()
                } else {
                    vectors.len() / ids.len()
                },
            });
        }
        if ids.is_empty() {
            return Ok(());
        }
        let rows: Vec<Vec<f32>> = vectors
            .chunks_exact(dim)
            .map(|v| self.prepare(v))
            .collect::<Result<_>>()?;
        let n = ids.len();
        // Room for the worst case (no free slot reused): the batch must not remap midway.
        let (graph, mut p) = self.lock_with_room(|p| p.high_water as usize + n)?;
        let mut seen = HashSet::with_capacity(n);
        for &id in ids {
            if !seen.insert(id) || self.slot_of(&p, id)?.is_some() {
                return Err(Error::DuplicateId(id));
            }
        }
        if p.high_water as u64 + n as u64 >= u32::MAX as u64 {
            return Err(Error::Capacity);
        }
        let slots = p.plan_slots(n);
        let items: Vec<Placed> = ids
            .iter()
            .zip(rows)
            .zip(slots)
            .map(|((&id, vector), slot)| Placed {
                id,
                slot,
                level: p.draw_level(self.config.level_mult),
                vector,
            })
            .collect();
        let op = Op::Insert(items);
        let old = self.log(p, &op)?;
        self.apply_graph(&graph, &op, &old, false);
        drop(graph);
        self.maybe_checkpoint();
        Ok(())
    }

    /// Replaces the vector of `id`, or inserts it if absent, as one logged write. Searches
    /// see the old vector or the new one, never both or neither.
    pub fn upsert(&self, id: u64, vector: &[f32]) -> Result<()> {
        self.check_writable()?;
        let vector = self.prepare(vector)?;
        let (graph, mut p) = self.lock_exclusive_with_room(1)?;
        let slot = p.plan_slots(1)[0];
        let placed = Placed {
            id,
            slot,
            level: p.draw_level(self.config.level_mult),
            vector,
        };
        let op = if self.slot_of(&p, id)?.is_some() {
            Op::Upsert(placed)
        } else {
            Op::Insert(vec![placed])
        };
        let old = self.log(p, &op)?;
        self.apply_graph(&graph, &op, &old, false);
        drop(graph);
        self.maybe_checkpoint();
        Ok(())
    }

    /// Deletes `id`: it leaves search results at once. Fails with `UnknownId` if absent.
    pub fn delete(&self, id: u64) -> Result<()> {
        self.delete_batch(&[id])
    }

    /// Deletes every id of `ids` as one logged write: all or nothing (an unknown or
    /// repeated id rejects the whole batch). The graph is repaired around the deleted
    /// nodes by the next consolidation (see `docs/durability.md`), after which their slots
    /// are reused.
    pub fn delete_batch(&self, ids: &[u64]) -> Result<()> {
        self.check_writable()?;
        if ids.is_empty() {
            return Ok(());
        }
        let graph = self.graph.write();
        let p = self.pending.lock();
        let mut seen = HashSet::with_capacity(ids.len());
        for &id in ids {
            if !seen.insert(id) || self.slot_of(&p, id)?.is_none() {
                return Err(Error::UnknownId(id));
            }
        }
        let op = Op::Delete(ids.to_vec());
        let old = self.log(p, &op)?;
        self.apply_graph(&graph, &op, &old, false);
        drop(graph);
        self.maybe_checkpoint();
        Ok(())
    }

    /// Deleted nodes are consolidated once they are this large a share of the graph:
    /// often enough that each repair has few dead neighbours to route around, rarely
    /// enough that the O(n) pass is amortised over many deletes.
    fn consolidation_due(p: &Pending) -> bool {
        let t = p.tombstones.len() as u64;
        t > 0 && t * 20 >= p.live + t
    }

    /// Runs a checkpoint if one is due. Called after a write has succeeded: that write is
    /// durable in the log whatever happens here, so a failed checkpoint (a full disk, say)
    /// must not turn it into an error. The checkpoint is retried at the next write, and
    /// `flush`/`close` report failures.
    fn maybe_checkpoint(&self) {
        let due = self.wal.bytes_since_checkpoint() >= self.checkpoint_bytes
            || Self::consolidation_due(&self.pending.lock())
            || {
                // Graph before bookkeeping: the lock order of every other path.
                let graph = self.graph.read();
                self.training_due(&self.pending.lock(), &graph)
            };
        if due {
            let _ = self.checkpoint();
        }
    }
    /// The `k` nearest vectors to `query`, nearest first, with the default `ef`.
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<Neighbour>> {
        self.search_ef(query, k, self.ef())
    }

    /// The `k` nearest vectors to `query`, searching with beam width `max(ef, k)`.
    pub fn search_ef(&self, query: &[f32], k: usize, ef: usize) -> Result<Vec<Neighbour>> {
        let q = self.prepare(query)?;
        let graph = self.graph.read();
        Ok(Self::hits(&graph, graph.search(&q, k, ef.max(1))))
    }

    /// `search_ef`, also returning the number of distances computed: the cost of the
    /// query independent of the machine and its load (used to compare graphs).
    pub fn search_counted(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
    ) -> Result<(Vec<Neighbour>, usize)> {
        let q = self.prepare(query)?;
        let graph = self.graph.read();
        let (found, distances) = graph.search_counted(&q, k, ef.max(1));
        Ok((Self::hits(&graph, found), distances))
    }

    /// The `k` nearest vectors to `query` among those whose id `filter` admits, nearest
    /// first. Rejected nodes still route the search, so the graph stays connected; a filter
    /// that admits few ids makes the search visit more of the graph (raise `ef` if it
    /// returns fewer than `k`).
    ///
    /// ```
    /// # use hnswdb::{Index, IndexOptions, Metric};
    /// # let dir = tempfile::tempdir()?;
    /// let index = Index::create(dir.path(), &IndexOptions::new(2, Metric::L2))?;
    /// index.insert_batch(&[1, 2, 3], &[0.0, 0.0, 1.0, 0.0, 2.0, 0.0])?;
    /// let odd = index.search_filtered(&[0.0, 0.0], 2, 16, |id| id % 2 == 1)?;
    /// assert_eq!(odd.iter().map(|n| n.id).collect::<Vec<_>>(), [1, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn search_filtered(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        filter: impl Fn(u64) -> bool,
    ) -> Result<Vec<Neighbour>> {
        let q = self.prepare(query)?;
        let graph = self.graph.read();
        let (found, _) = graph.search_where(&q, k, ef.max(1), filter);
        Ok(Self::hits(&graph, found))
    }

    /// Searches every row of `queries` on all worker threads; answers in query order.
    pub fn search_batch(
        &self,
        queries: &[f32],
        k: usize,
        ef: usize,
    ) -> Result<Vec<Vec<Neighbour>>> {
        let dim = self.config.dim;
        if !queries.len().is_multiple_of(dim) {
            return Err(Error::DimensionMismatch {
                expected: dim,
                got: queries.len() % dim,
            });
        }
        let rows: Vec<Vec<f32>> = queries
            .chunks_exact(dim)
            .map(|q| self.prepare(q))
            .collect::<Result<_>>()?;
        let graph = self.graph.read();
        let answers: Vec<Mutex<Vec<Neighbour>>> =
            rows.iter().map(|_| Mutex::new(Vec::new())).collect();
        parallel_for(rows.len(), self.threads(), |i| {
            *answers[i].lock() = Self::hits(&graph, graph.search(&rows[i], k, ef.max(1)));
        });
        Ok(answers.into_iter().map(Mutex::into_inner).collect())
    }

    /// Exact search by a full scan (slow; for measuring recall).
    pub fn search_exact(&self, query: &[f32], k: usize) -> Result<Vec<Neighbour>> {
        let q = self.prepare(query)?;
        let graph = self.graph.read();
        Ok(Self::hits(&graph, graph.brute_force(&q, k)))
    }

    fn hits(graph: &Graph, found: Vec<crate::hnsw::Cand>) -> Vec<Neighbour> {
        found
            .into_iter()
            .map(|c| Neighbour {
                id: graph.vectors().label(c.id),
                distance: c.d,
            })
            .collect()
    }

    /// Whether `id` is present.
    pub fn contains(&self, id: u64) -> Result<bool> {
        let p = self.pending.lock();
        Ok(self.slot_of(&p, id)?.is_some())
    }

    /// The stored vector of `id` (unit length under cosine, as hnswlib returns it).
    pub fn get(&self, id: u64) -> Result<Vec<f32>> {
        let graph = self.graph.read();
        let slot = {
            let p = self.pending.lock();
            self.slot_of(&p, id)?.ok_or(Error::UnknownId(id))?
        };
        Ok(graph.vectors().vector(slot).to_vec())
    }

    /// Every live id with its slot, in id order.
    fn id_map(&self, p: &Pending) -> Result<Vec<(u64, u32)>> {
        let mut map: HashMap<u64, u32> = self.meta.all_ids()?.into_iter().collect();
        for (&id, &slot) in &p.ids {
            match slot {
                Some(s) => map.insert(id, s),
                None => map.remove(&id),
            };
        }
        let mut all: Vec<(u64, u32)> = map.into_iter().collect();
        all.sort_unstable();
        Ok(all)
    }

    /// Every live id, ascending.
    pub fn ids(&self) -> Result<Vec<u64>> {
        let p = self.pending.lock();
        Ok(self.id_map(&p)?.into_iter().map(|(id, _)| id).collect())
    }

    /// Makes everything written so far durable and shortens recovery: consolidates deleted
    /// nodes if enough have gathered, msyncs the page files, commits the metadata with the
    /// checkpoint LSN, then drops the log before it. Runs automatically as the log grows.
    pub fn checkpoint(&self) -> Result<()> {
        self.checkpoint_inner(false)
    }

    /// A checkpoint that also consolidates every deleted node, however few, and links any
    /// unreachable node back into the graph: after it, every link points at a live node,
    /// every live node is reachable and every freed slot is reusable. O(n).
    pub fn consolidate(&self) -> Result<()> {
        self.checkpoint_inner(true)
    }

    fn checkpoint_inner(&self, force_consolidate: bool) -> Result<()> {
        self.check_writable()?;
        let mut graph = self.graph.write();
        let mut p = self.pending.lock();
        if force_consolidate || Self::consolidation_due(&p) {
            let dead: Vec<u32> = p.tombstones.iter().copied().collect();
            // Relinks around the dead in the page files only: until the metadata commit
            // below, a crash brings the tombstones back (from metadata and log), and a
            // graph already relinked around them is still a valid graph.
            graph.consolidate(&dead, p.high_water, self.threads());
            for slot in dead {
                p.free.insert(slot);
                p.slots.insert(slot, SlotState::Free);
            }
            p.tombstones.clear();
            // Relinking around many dead nodes is where in-links are most often lost.
            graph.reconnect(p.high_water);
        }
        let trained = if self.training_due(&p, &graph) {
            Some(self.train_codes(&graph, &p)?)
        } else {
            None
        };
        graph.vectors().arena().sync()?;
        graph.layer0().arena().sync()?;
        if let Some(q) = graph.quantized() {
            q.codes.arena().sync()?;
        }
        let checkpoint_lsn = self.wal.next_lsn();
        let upper = graph.dirty_upper();
        let (codes_generation, codes_trained_live) = match &trained {
            Some(q) => (q.generation, p.live),
            None => (p.codes_generation, p.codes_trained_live),
        };
        let state = State {
            high_water: p.high_water,
            live: p.live,
            entry: graph.entry(),
            checkpoint_lsn,
            level_draws: p.level_draws,
            codes_generation,
            codes_trained_live,
        };
        self.meta.commit(&Changes {
            ids: &p.ids,
            slots: &p.slots,
            upper: &upper,
            state: &state,
            quantizer: trained.as_ref().map(|q| &q.sq8),
        })?;
        if let Some(q) = trained {
            // The metadata now names the new generation: searches may use it, and the old
            // file is garbage (a crash before this removal leaves it for `open` to remove).
            let old = graph
                .quantized()
                .map(|o| o.codes.arena().path().to_path_buf());
            graph.set_quantized(Some(q));
            if let Some(old) = old {
                let _ = std::fs::remove_file(old);
            }
            p.codes_generation = codes_generation;
            p.codes_trained_live = codes_trained_live;
        }
        graph.clear_upper_dirty();
        p.ids.clear();
        p.slots.clear();
        self.wal.truncate_before(checkpoint_lsn)
    }

    /// Whether a checkpoint should (re)train the quantiser: first once the index has
    /// `quantize_after` vectors, then whenever it has doubled since the last training,
    /// so that component ranges follow the data at amortised O(1) cost per insert.
    fn training_due(&self, p: &Pending, graph: &Graph) -> bool {
        match graph.quantized() {
            None => p.live >= self.quantize_after,
            Some(_) => {
                self.quantize_after != u64::MAX
                    && p.live
                        >= p.codes_trained_live
                            .max(self.quantize_after)
                            .saturating_mul(2)
            }
        }
    }

    /// Trains a quantiser on (a sample of) the live vectors and writes the codes of every
    /// routable node into a new code file, `codes.<generation + 1>`, synced. Nothing refers
    /// to the file until the checkpoint's metadata commit names its generation.
    fn train_codes(&self, graph: &Graph, p: &Pending) -> Result<Quantized> {
        let live: Vec<u32> = (0..p.high_water).filter(|&s| graph.is_live(s)).collect();
        let step = live.len().div_ceil(SQ8_SAMPLE).max(1);
        let sq8 = Sq8::train(
            self.config.dim,
            live.iter()
                .step_by(step)
                .map(|&s| graph.vectors().vector(s)),
        );
        let generation = p.codes_generation + 1;
        let path = self.dir.join(codes::file_name(generation));
        if path.exists() {
            // Left by a checkpoint that crashed before its commit: never referenced.
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
        let codes = Codes::create(
            &path,
            self.config.dim,
            self.config.metric.code(),
            self.config.index_uid,
            graph.capacity(),
        )?;
        codes.arena().advise_random();
        graph.encode_routable(&sq8, &codes, p.high_water, self.threads());
        codes.arena().sync()?;
        Ok(Quantized {
            sq8,
            codes,
            generation,
            metric: self.config.metric,
            kernels: self.kernels,
        })
    }

    /// Makes every write so far durable: a checkpoint. After it returns, a reopen sees
    /// every write made before it, whatever the durability mode.
    pub fn flush(&self) -> Result<()> {
        self.checkpoint()
    }

    /// Checkpoints and closes the index, reporting any error (dropping it checkpoints
    /// too, but cannot report).
    pub fn close(self) -> Result<()> {
        self.checkpoint()
    }

    /// Checks the whole index: id maps both ways (metadata ↔ slot labels), slot states,
    /// vectors finite, every link in range and into the graph, the entry point, and that
    /// every live node is reachable from it. Reads every page: O(n).
    pub fn verify(&self) -> Result<VerifyReport> {
        let graph = self.graph.read();
        let p = self.pending.lock();
        let mut problems = Vec::new();
        let ids = self.id_map(&p)?;
        if ids.len() as u64 != p.live {
            problems.push(format!(
                "{} ids are mapped but {} vectors are counted live",
                ids.len(),
                p.live
            ));
        }
        let mut mapped = HashSet::with_capacity(ids.len());
        for &(id, slot) in &ids {
            if slot >= p.high_water || !graph.is_live(slot) {
                problems.push(format!("id {id} maps to slot {slot}, which is not live"));
                continue;
            }
            if !mapped.insert(slot) {
                problems.push(format!("slot {slot} is mapped by two ids"));
            }
            let label = graph.vectors().label(slot);
            if label != id {
                problems.push(format!(
                    "id {id} maps to slot {slot}, whose label is {label}"
                ));
            }
            let v = graph.vectors().vector(slot);
            if v.iter().any(|x| !x.is_finite()) {
                problems.push(format!("vector of id {id} holds NaN or infinity"));
            } else if self.config.metric == Metric::Cosine {
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                if (norm - 1.0).abs() > 1e-3 {
                    problems.push(format!("vector of id {id} has norm {norm} under cosine"));
                }
            }
            if let Some(q) = graph.quantized()
                && !q.matches(slot, v)
            {
                problems.push(format!(
                    "codes of id {id} (slot {slot}) in {} do not encode its vector",
                    q.codes.arena().path().display()
                ));
            }
        }
        for slot in 0..p.high_water {
            let free = p.free.contains(&slot);
            let tomb = p.tombstones.contains(&slot);
            if free && tomb {
                problems.push(format!("slot {slot} is both free and deleted"));
            }
            if graph.is_live(slot) != (!free && !tomb) {
                problems.push(format!(
                    "slot {slot}: live flag disagrees with the free and deleted sets"
                ));
            }
            if graph.is_live(slot) && !mapped.contains(&slot) {
                problems.push(format!("live slot {slot} has no id"));
            }
        }
        let (stale_links, unreachable) = graph.check(p.high_water, &mut problems);
        Ok(VerifyReport {
            problems,
            unreachable,
            stale_links,
            live: p.live,
            tombstones: p.tombstones.len(),
            free: p.free.len(),
        })
    }

    /// Counts and settings.
    pub fn stats(&self) -> Stats {
        let graph = self.graph.read();
        let p = self.pending.lock();
        Stats {
            len: p.live,
            capacity: graph.capacity(),
            high_water: p.high_water,
            free_slots: p.free.len(),
            tombstones: p.tombstones.len(),
            upper_nodes: graph.upper_count(),
            max_level: graph.entry().map_or(0, |e| e.level),
            dim: self.config.dim,
            metric: self.config.metric,
            m: self.config.m,
            ef_construction: self.config.ef_construction,
            kernels: self.kernels.isa,
            wal_bytes: self.wal.bytes_since_checkpoint(),
            codes_generation: graph.quantized().map_or(0, |q| q.generation),
        }
    }
}

impl Drop for Index {
    fn drop(&mut self) {
        // A clean close checkpoints; errors cannot be reported from drop (use `close`).
        if !self.poisoned.load(Ordering::Acquire) {
            let _ = self.checkpoint();
        }
    }
}
