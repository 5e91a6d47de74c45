//! The public `Index`: external ids, validation, slot allocation, persistence.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::{Mutex, MutexGuard, RwLock, RwLockReadGuard};
use rand::{RngExt, SeedableRng, rngs::StdRng};

use crate::distance::{Distance, Kernels, Metric, normalize};
use crate::error::{Error, Result};
use crate::hnsw::{Graph, Params};
use crate::layer0::Layer0;
use crate::meta::{Changes, Config, Meta, State};
use crate::vectors::Vectors;

const VECTORS_FILE: &str = "vectors";
const GRAPH0_FILE: &str = "graph0";
const META_FILE: &str = "meta.redb";
/// Levels are capped so a level fits the metadata's u8 and a freak draw cannot build a
/// tower of empty layers.
const MAX_LEVEL: usize = 32;

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

/// Settings that are not stored in the index and may differ at each open.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    ef_search: usize,
    threads: usize,
    cache_bytes: usize,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            ef_search: 64,
            threads: 0,
            cache_bytes: 64 << 20,
        }
    }
}

impl OpenOptions {
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

    fn validate(&self) -> Result<()> {
        if self.ef_search == 0 {
            return Err(Error::InvalidOption("ef_search must be at least 1".into()));
        }
        Ok(())
    }

    fn thread_count(&self) -> usize {
        if self.threads > 0 {
            self.threads
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
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
    /// Slots ever allocated (live + free).
    pub high_water: u32,
    /// Slots freed by deletes and not yet reused.
    pub free_slots: usize,
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
}

/// Writer-side bookkeeping: what changed since the last checkpoint.
struct Pending {
    high_water: u32,
    live: u64,
    free: Vec<u32>,
    level_draws: u64,
    rng: StdRng,
    /// External id → slot (None: removed) since the last checkpoint.
    ids: HashMap<u64, Option<u32>>,
    /// Slot → now free (true) or reused (false) since the last checkpoint.
    free_changes: HashMap<u32, bool>,
}

/// An open index. All methods take `&self`: share it between threads with `Arc`.
///
/// ```
/// use hnswdb::{Index, IndexOptions, Metric};
/// let dir = tempfile::tempdir()?;
/// let index = Index::create(dir.path(), &IndexOptions::new(3, Metric::L2))?;
/// index.insert(7, &[1.0, 0.0, 0.0])?;
/// index.insert(8, &[0.0, 1.0, 0.0])?;
/// index.flush()?;
/// let hits = index.search(&[0.9, 0.1, 0.0], 1)?;
/// assert_eq!(hits[0].id, 7);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Index {
    dir: PathBuf,
    config: Config,
    kernels: Kernels,
    /// Read-locked by inserts and searches, write-locked to remap (grow) and to checkpoint.
    graph: RwLock<Graph>,
    meta: Meta,
    pending: Mutex<Pending>,
    ef_search: AtomicUsize,
    threads: usize,
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
        // Page files first, metadata last: the metadata file is what marks the directory
        // as holding an index, so a crash before it leaves no half-made index behind.
        let metric = config.metric.code();
        let vectors = Vectors::create(
            &dir.join(VECTORS_FILE),
            config.dim,
            metric,
            config.index_uid,
            options.capacity,
        )?;
        let layer0 = Layer0::create(
            &dir.join(GRAPH0_FILE),
            config.dim,
            metric,
            config.m0,
            config.index_uid,
            options.capacity,
        )?;
        let meta = Meta::create(&dir.join(META_FILE), &config, options.runtime.cache_bytes)?;
        Self::assemble(
            dir,
            config,
            meta,
            State::default(),
            Vec::new(),
            vectors,
            layer0,
            &options.runtime,
        )
    }

    /// Opens the index in `dir` with default [`OpenOptions`].
    pub fn open(dir: impl AsRef<Path>) -> Result<Index> {
        Self::open_with(dir, &OpenOptions::default())
    }

    /// Opens the index in `dir`. Reads the page-file headers and the metadata's
    /// configuration and state; never the vectors or layer 0.
    pub fn open_with(dir: impl AsRef<Path>, options: &OpenOptions) -> Result<Index> {
        options.validate()?;
        let dir = dir.as_ref();
        let (meta, config, state) = Meta::open(&dir.join(META_FILE), options.cache_bytes)?;
        let vectors = Vectors::open(&dir.join(VECTORS_FILE))?;
        let layer0 = Layer0::open(&dir.join(GRAPH0_FILE))?;
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
        Self::assemble(dir, config, meta, state, free, vectors, layer0, options)
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        dir: &Path,
        config: Config,
        meta: Meta,
        state: State,
        free: Vec<u32>,
        vectors: Vectors,
        layer0: Layer0,
        options: &OpenOptions,
    ) -> Result<Index> {
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
        let free_set: HashSet<u32> = free.iter().copied().collect();
        if free.iter().any(|&s| s >= state.high_water) {
            return Err(Error::corrupt(
                meta.path(),
                "free slot beyond the high-water mark",
            ));
        }
        let upper = meta.upper_lists()?;
        graph.restore(
            (0..state.high_water).filter(|s| !free_set.contains(s)),
            upper,
            state.entry,
        );
        let rng = StdRng::seed_from_u64(config.seed ^ state.level_draws.rotate_left(32));
        Ok(Index {
            dir: dir.to_path_buf(),
            kernels,
            graph: RwLock::new(graph),
            meta,
            pending: Mutex::new(Pending {
                high_water: state.high_water,
                live: state.live,
                free,
                level_draws: state.level_draws,
                rng,
                ids: HashMap::new(),
                free_changes: HashMap::new(),
            }),
            ef_search: AtomicUsize::new(options.ef_search),
            threads: options.thread_count(),
            config,
        })
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

    /// A read lock on the graph together with the writer bookkeeping, such that the page
    /// files hold at least `needed(&pending)` slots; grows them (write lock) when not.
    /// Both guards are returned together so that no other writer can allocate in between.
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

    /// Inserts `vector` under `id`. Fails with `DuplicateId` if `id` is present.
    pub fn insert(&self, id: u64, vector: &[f32]) -> Result<()> {
        self.insert_batch(&[id], vector)
    }

    /// Inserts `ids.len()` vectors laid out row after row in `vectors`, on all worker
    /// threads. All or nothing: a bad vector or a duplicate id rejects the whole batch
    /// before anything is written. Searches may run meanwhile.
    pub fn insert_batch(&self, ids: &[u64], vectors: &[f32]) -> Result<()> {
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
        let mut rows = Vec::with_capacity(vectors.len());
        for v in vectors.chunks_exact(dim) {
            rows.extend(self.prepare(v)?);
        }
        let n = ids.len();
        // Room for the worst case (no free slot reused): the batch must not remap midway.
        let (graph, mut p) = self.lock_with_room(|p| p.high_water as usize + n)?;
        let plan = {
            let mut seen = HashSet::with_capacity(n);
            for &id in ids {
                if !seen.insert(id) || self.slot_of(&p, id)?.is_some() {
                    return Err(Error::DuplicateId(id));
                }
            }
            if p.high_water as u64 + n as u64 > u32::MAX as u64 {
                return Err(Error::Capacity);
            }
            let mut plan = Vec::with_capacity(n);
            for &id in ids {
                let slot = match p.free.pop() {
                    Some(s) => {
                        p.free_changes.insert(s, false);
                        s
                    }
                    None => {
                        p.high_water += 1;
                        p.high_water - 1
                    }
                };
                let r: f64 = p.rng.random();
                p.level_draws += 1;
                let level = ((-(1.0 - r).ln() * self.config.level_mult) as usize).min(MAX_LEVEL);
                p.ids.insert(id, Some(slot));
                p.live += 1;
                plan.push((slot, level));
            }
            drop(p);
            plan
        };
        let work = |i: usize| {
            let (slot, level) = plan[i];
            graph.insert(slot, level, &rows[i * dim..(i + 1) * dim], ids[i]);
        };
        parallel_for(n, self.threads, work);
        Ok(())
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
        parallel_for(rows.len(), self.threads, |i| {
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

    /// Makes everything written so far durable: msync of the page files, then one redb
    /// commit of the metadata. After it returns, a reopen sees every write made before it.
    pub fn flush(&self) -> Result<()> {
        let graph = self.graph.write();
        graph.vectors().arena().sync()?;
        graph.layer0().arena().sync()?;
        let mut p = self.pending.lock();
        let upper = graph.dirty_upper();
        let state = State {
            high_water: p.high_water,
            live: p.live,
            entry: graph.entry(),
            checkpoint_lsn: 0,
            level_draws: p.level_draws,
        };
        self.meta.commit(&Changes {
            ids: &p.ids,
            free: &p.free_changes,
            upper: &upper,
            state: &state,
        })?;
        graph.clear_upper_dirty();
        p.ids.clear();
        p.free_changes.clear();
        Ok(())
    }

    /// Flushes and closes the index, reporting any error (dropping it flushes too, but
    /// cannot report).
    pub fn close(self) -> Result<()> {
        self.flush()
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
            upper_nodes: graph.upper_count(),
            max_level: graph.entry().map_or(0, |e| e.level),
            dim: self.config.dim,
            metric: self.config.metric,
            m: self.config.m,
            ef_construction: self.config.ef_construction,
            kernels: self.kernels.isa,
        }
    }
}

impl Drop for Index {
    fn drop(&mut self) {
        // A clean close checkpoints; errors cannot be reported from drop (use `close`).
        let _ = self.flush();
    }
}

/// Runs `f(0..n)` on up to `threads` scoped threads, handing out indexes one at a time so
/// that uneven work balances itself.
pub(crate) fn parallel_for(n: usize, threads: usize, f: impl Fn(usize) + Sync) {
    let threads = threads.clamp(1, n.max(1));
    if threads == 1 {
        (0..n).for_each(f);
        return;
    }
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    f(i);
                }
            });
        }
    });
}
