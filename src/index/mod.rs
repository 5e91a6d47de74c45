//! The public face: `Index` and its read API. Its rooms follow a write's way down:
//! `options` (settings), `open` (create/open and the cross-checks of files against the
//! metadata), `write` (the slot ledger and the write path through the log), `checkpoint`
//! (making it all durable in the pages and metadata), `verify` (the whole-index check),
//! `report` (what the API returns).
//!
//! Lock order: `view` (read-only views) → `graph` (read or write) → `ledger` → `fields`
//! → `meta` → the log's own locks.

mod backup;
mod checkpoint;
mod compact;
mod data;
mod keys;
mod open;
mod options;
mod payload;
mod progress;
mod query;
mod relocate;
mod report;
mod slots;
mod verify;
mod write;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use parking_lot::{Mutex, RwLock};

use crate::distance::{
    Kernels, MAX_SQUARED_NORM, Metric, Storage, bf16, f16, normalize_by, squared_norm,
};
use crate::error::{Error, Result};
use crate::graph::{Cand, Graph};
use crate::limits::check_search;
use crate::parallel::try_parallel_for;
use crate::store::{Config, Meta, ReaderTable, Registration};
use crate::wal::Wal;

use checkpoint::Syncer;
pub use compact::Compaction;
pub use data::Record;
use options::resolve_threads;
pub use options::{Durability, IndexOptions, OpenOptions};
use payload::Fields;
pub use progress::Progress;
pub use query::{Explain, Plan, Query, Tuning};
pub use report::{Hit, Neighbour, Recovery, Residency, Stats, VerifyReport};
use write::Ledger;

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
    /// Replaced (under the graph's write lock) only when a read-only view is reopened.
    meta: RwLock<Arc<Meta>>,
    ledger: Mutex<Ledger>,
    /// Indexed payload fields and their (lazily built) index. Locked after the ledger.
    fields: RwLock<Fields>,
    /// The log to append to; `None` when opened read-only.
    wal: Option<Arc<Wal>>,
    /// Where a read-only view stands in the writer's history; `None` when writable.
    view: Mutex<Option<View>>,
    /// When a following view last caught up (see [`OpenOptions::follow`]).
    followed: Mutex<std::time::Instant>,
    /// The options the index was opened with (a refresh reopens with them).
    options: OpenOptions,
    /// Set when a write failed after its record was logged, or a sync or commit failed:
    /// see [`Poison`].
    poison: Arc<Poison>,
    /// The reader table, whose oldest view decides when freed slots may be reused; `None`
    /// when opened read-only.
    readers: Option<ReaderTable>,
    ef_search: AtomicUsize,
    threads: AtomicUsize,
    recovery: Recovery,
    /// What the memory budget kept resident, if one was given.
    residency: Option<Residency>,
    _syncer: Option<Syncer>,
}

/// Set once a write failed after its record was logged (memory and log may disagree), or
/// a sync or commit failed (Linux may drop the dirty pages of a failed fsync and report
/// the next one clean — PostgreSQL's "fsyncgate" — and a failed commit leaves the
/// metadata's state unknown): every later write and checkpoint is refused until a reopen
/// recovers from the log. A full disk is reported as such, the rest as `Poisoned`.
#[derive(Debug, Default)]
pub(crate) struct Poison {
    set: AtomicBool,
    disk_full: Mutex<Option<PathBuf>>,
}

impl Poison {
    /// Poisons, for `cause`.
    fn set(&self, cause: &Error) {
        if let Error::DiskFull { path } = cause {
            self.disk_full.lock().get_or_insert_with(|| path.clone());
        }
        self.set.store(true, Ordering::Release);
    }

    fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    /// `Ok` unless poisoned.
    fn check(&self) -> Result<()> {
        if !self.is_set() {
            return Ok(());
        }
        Err(match &*self.disk_full.lock() {
            Some(path) => Error::DiskFull { path: path.clone() },
            None => Error::Poisoned,
        })
    }
}

/// A read-only view's place in the writer's history: the LSN after the last log record it
/// applied. (The checkpoint it started from is its ledger's `generation`, which its entry
/// in the reader table holds.)
#[derive(Debug)]
struct View {
    /// The identity of the index viewed (a compaction, which `refresh` follows, changes it).
    index_uid: u64,
    next_lsn: u64,
    /// Where in the log the record `next_lsn` will be: catching up reads from there.
    resume: Option<crate::wal::Position>,
    /// Its entry in the reader table (`None` on a read-only file system, where no writer
    /// can reuse anything): the writer reuses no slot this view may still read.
    _registration: Option<Registration>,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("dir", &self.dir)
            .field("dim", &self.config.dim)
            .field("metric", &self.config.metric)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl Index {
    /// What opening this index recovered from the log.
    pub fn recovery(&self) -> Recovery {
        self.recovery
    }

    fn meta(&self) -> Arc<Meta> {
        self.meta.read().clone()
    }

    /// With [`OpenOptions::follow`], refreshes a read-only view before a read once the
    /// interval has passed since it last did.
    fn follow(&self) -> Result<()> {
        let Some(every) = self.options.follow else {
            return Ok(());
        };
        let mut last = self.followed.lock();
        if last.elapsed() >= every {
            *last = std::time::Instant::now();
            drop(last);
            self.refresh()?;
        }
        Ok(())
    }

    /// Where a read-only view stands in the writer's history: the identity of the index
    /// viewed (a compaction changes it) and the LSN after the last log record applied.
    /// It changes exactly when `refresh`, `catch_up` or `follow` moved the view to new
    /// writes. `None` for a writable index (always current).
    pub fn view_position(&self) -> Option<(u64, u64)> {
        self.view
            .lock()
            .as_ref()
            .map(|view| (view.index_uid, view.next_lsn))
    }

    /// The options to open this index again with as it runs now (its current `ef` and
    /// threads included).
    pub fn open_options(&self) -> OpenOptions {
        self.options
            .clone()
            .ef_search(self.ef())
            .threads(self.threads())
    }

    /// Whether the index was opened read-only (see [`OpenOptions::read_only`]).
    pub fn is_read_only(&self) -> bool {
        self.wal.is_none()
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
        self.ledger.lock().slots.live()
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
        self.prepare_write(vector).map(drop)
    }

    /// `prepare` for a vector to be stored: also within the storage's range (f16 holds
    /// at most ±65,504; rounding to it would store an infinity), and under L2 and inner
    /// product still within `MAX_SQUARED_NORM` once rounded to bf16 (which can round each
    /// component up by 2^-9 of itself).
    fn prepare_write(&self, v: &[f32]) -> Result<Vec<f32>> {
        let v = self.prepare(v)?;
        match self.config.storage {
            Storage::F32 => {}
            Storage::F16 => {
                let max = f16::MAX.to_f32();
                if let Some((position, x)) = v.iter().enumerate().find(|(_, x)| x.abs() > max) {
                    return Err(Error::InvalidVector(format!(
                        "component {position} is {x}, beyond the ±{max} an f16 index stores"
                    )));
                }
            }
            Storage::BF16 => {
                let rounded: Vec<f32> = v.iter().map(|&x| bf16::from_f32(x).to_f32()).collect();
                let norm = squared_norm(&rounded);
                if self.config.metric != Metric::Cosine && norm > MAX_SQUARED_NORM {
                    return Err(Error::InvalidVector(format!(
                        "its squared norm rounded to bf16, {norm:.3e}, exceeds \
                         {MAX_SQUARED_NORM:.3e}, so distances to it would overflow f32; scale \
                         the vectors down"
                    )));
                }
            }
        }
        Ok(v)
    }

    /// Checks a vector and returns it as stored: normalised for cosine.
    fn prepare(&self, v: &[f32]) -> Result<Vec<f32>> {
        if v.len() != self.config.dim {
            return Err(Error::DimensionMismatch {
                expected: self.config.dim,
                got: v.len(),
            });
        }
        // The squared norm is finite exactly when every component is (squares of finite
        // f32 are finite in f64): one vectorised pass decides; the search is only for
        // the error's position.
        let norm = squared_norm(v);
        if !norm.is_finite()
            && let Some((position, &value)) = v.iter().enumerate().find(|(_, x)| !x.is_finite())
        {
            return Err(Error::NonFinite { position, value });
        }
        let mut v = v.to_vec();
        if self.config.metric == Metric::Cosine {
            if !normalize_by(&mut v, norm) {
                return Err(Error::ZeroVector);
            }
        } else if norm > MAX_SQUARED_NORM {
            return Err(Error::InvalidVector(format!(
                "its squared norm {norm:.3e} exceeds {MAX_SQUARED_NORM:.3e}, so distances to \
                 it would overflow f32; scale the vectors down"
            )));
        }
        Ok(v)
    }

    /// Slot of `id`, counting changes since the last checkpoint.
    /// The slot of `id` as readers may see it: mapped, and its vector in place. An insert
    /// maps its ids in the ledger before it writes their vectors (they are logged first),
    /// and its ids stay invisible until the graph publishes them.
    fn visible_slot(&self, graph: &Graph, id: u64) -> Result<Option<u32>> {
        let slot = self.ledger.lock().slot_of(&self.meta(), id)?;
        Ok(slot.filter(|&s| graph.is_live(s)))
    }

    /// The `k` nearest vectors to `query`, nearest first, with the default `ef`.
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<Neighbour>> {
        self.search_ef(query, k, self.ef())
    }

    /// The `k` nearest vectors to `query`, searching with beam width `max(ef, k)`. A beam
    /// at least as wide as the index's `len()` scans instead: the answer is then exact.
    pub fn search_ef(&self, query: &[f32], k: usize, ef: usize) -> Result<Vec<Neighbour>> {
        check_search(k, 0, ef)?;
        self.follow()?;
        let q = self.prepare(query)?;
        let graph = self.graph.read();
        self.searched(&graph, || graph.search(&q, k, ef.max(1)))
    }

    /// `search_ef`, also returning the number of distances computed: the cost of the
    /// query independent of the machine and its load (used to compare graphs).
    pub fn search_counted(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
    ) -> Result<(Vec<Neighbour>, usize)> {
        check_search(k, 0, ef)?;
        self.follow()?;
        let q = self.prepare(query)?;
        let graph = self.graph.read();
        let mut distances = 0;
        let found = self.searched(&graph, || {
            let (found, counted) = graph.search_counted(&q, k, ef.max(1))?;
            distances = counted;
            Ok(found)
        })?;
        Ok((found, distances))
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
        check_search(k, 0, ef)?;
        self.follow()?;
        let q = self.prepare(query)?;
        let graph = self.graph.read();
        self.searched(&graph, || {
            Ok(graph.search_where(&q, k, ef.max(1), filter)?.0)
        })
    }

    /// Searches every row of `queries` on the index's worker threads; answers in query
    /// order.
    pub fn search_batch(
        &self,
        queries: &[f32],
        k: usize,
        ef: usize,
    ) -> Result<Vec<Vec<Neighbour>>> {
        self.search_batch_threads(queries, k, ef, self.threads())
    }

    /// `search_batch` on `threads` threads (at least one) for this call only: the index's
    /// default (`set_threads`) is left as it is.
    pub fn search_batch_threads(
        &self,
        queries: &[f32],
        k: usize,
        ef: usize,
        threads: usize,
    ) -> Result<Vec<Vec<Neighbour>>> {
        check_search(k, 0, ef)?;
        self.follow()?;
        let rows = self.rows(queries)?;
        // Every row is checked before any is searched, as a batch insert checks its rows.
        let rows: Vec<Vec<f32>> = rows
            .iter()
            .map(|q| self.prepare(q))
            .collect::<Result<_>>()?;
        let graph = self.graph.read();
        self.each_row(rows.len(), threads, |i| {
            self.searched(&graph, || graph.search(&rows[i], k, ef.max(1)))
        })
    }

    /// The rows of a batch of queries (`dim` floats each).
    fn rows<'a>(&self, queries: &'a [f32]) -> Result<Vec<&'a [f32]>> {
        let dim = self.config.dim;
        if !queries.len().is_multiple_of(dim) {
            return Err(Error::DimensionMismatch {
                expected: dim,
                got: queries.len() % dim,
            });
        }
        Ok(queries.chunks_exact(dim).collect())
    }

    /// `search(i)` for every row `i < n` on `threads` threads; answers in row order.
    fn each_row<T: Send>(
        &self,
        n: usize,
        threads: usize,
        search: impl Fn(usize) -> Result<Vec<T>> + Sync,
    ) -> Result<Vec<Vec<T>>> {
        let answers: Vec<Mutex<Vec<T>>> = (0..n).map(|_| Mutex::new(Vec::new())).collect();
        try_parallel_for(n, threads.max(1), |i| {
            *answers[i].lock() = search(i)?;
            Ok(())
        })?;
        Ok(answers.into_iter().map(Mutex::into_inner).collect())
    }

    /// Exact search by a full scan (slow; for measuring recall).
    pub fn search_exact(&self, query: &[f32], k: usize) -> Result<Vec<Neighbour>> {
        check_search(k, 0, 0)?;
        self.follow()?;
        let q = self.prepare(query)?;
        let graph = self.graph.read();
        self.searched(&graph, || Ok(graph.brute_force(&q, k, |_| true)))
    }

    /// Runs `search` (of `graph`, whose lock the caller holds) and reports its answers,
    /// each checked against its slot's checksum: a damaged vector or label is an error,
    /// never a wrong id or distance. A label the search's own re-rank read and verified
    /// from disk is used as read; the record of such labels is emptied before and after,
    /// so that no other search's (another graph's, before a refresh) can vouch for one.
    fn searched(
        &self,
        graph: &Graph,
        search: impl FnOnce() -> Result<Vec<Cand>>,
    ) -> Result<Vec<Neighbour>> {
        graph.take_verified();
        let found = search();
        let verified = graph.take_verified();
        found?
            .into_iter()
            .map(|c| {
                let id = match verified.binary_search_by_key(&c.id, |&(slot, _)| slot) {
                    Ok(at) => verified[at].1,
                    Err(_) => {
                        self.check_intact(graph, c.id)?;
                        graph.vectors().label(c.id)
                    }
                };
                Ok(Neighbour { id, distance: c.d })
            })
            .collect()
    }

    fn check_intact(&self, graph: &Graph, slot: u32) -> Result<()> {
        if graph.vectors().intact(slot) {
            Ok(())
        } else if self.wal.is_none() {
            // A read-only view shares the pages with the writer, which may be writing this
            // slot (free in its state) right now.
            Err(Error::Stale(format!("slot {slot} is being rewritten")))
        } else {
            Err(Error::corrupt(
                graph.vectors().file().path(),
                format!("slot {slot} fails its checksum: its vector or id is damaged"),
            ))
        }
    }

    /// Whether `id` is present.
    pub fn contains(&self, id: u64) -> Result<bool> {
        self.follow()?;
        let graph = self.graph.read();
        Ok(self.visible_slot(&graph, id)?.is_some())
    }

    /// The stored vector of `id` (unit length under cosine, as hnswlib returns it).
    pub fn get(&self, id: u64) -> Result<Vec<f32>> {
        self.follow()?;
        let graph = self.graph.read();
        let slot = self.visible_slot(&graph, id)?.ok_or(Error::UnknownId(id))?;
        self.vector_at(&graph, id, slot)
    }

    /// The stored vector of `id` at `slot` (of `graph`, whose lock the caller holds),
    /// checked against the slot's checksum and label.
    fn vector_at(&self, graph: &Graph, id: u64, slot: u32) -> Result<Vec<f32>> {
        self.check_intact(graph, slot)?;
        let label = graph.vectors().label(slot);
        if label != id {
            let why = format!("id {id} maps to slot {slot}, which holds id {label}");
            return Err(if self.wal.is_none() {
                // The writer freed and reused the slot since this view was taken.
                Error::Stale(why)
            } else {
                Error::corrupt(self.meta().path(), why)
            });
        }
        Ok(graph.vectors().vector(slot).to_f32().into_owned())
    }

    /// Every live id with its slot, in id order.
    fn id_map(&self, p: &Ledger) -> Result<Vec<(u64, u32)>> {
        let mut map: HashMap<u64, u32> = self.meta().all_ids()?.into_iter().collect();
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
        self.follow()?;
        let graph = self.graph.read();
        let p = self.ledger.lock();
        let mut ids = Vec::with_capacity(p.slots.live() as usize);
        for (id, slot) in self.id_map(&p)? {
            if !p.slots.is_live(slot) {
                return Err(Error::corrupt(
                    self.meta().path(),
                    format!("id {id} maps to slot {slot}, which holds no live vector"),
                ));
            }
            // Ids of an insert still in flight are not visible yet.
            if graph.is_live(slot) {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    /// What the memory budget of the open keeps resident (`None`: opened without one).
    /// Unlike `stats`, reads nothing: a caller timing an open asks this.
    pub fn residency(&self) -> Option<&Residency> {
        self.residency.as_ref()
    }

    /// Counts and settings. Fails only if the upper layers cannot be read from the
    /// metadata (it counts their nodes, loading every one: O(n / M), about 40 ms at 1 M
    /// vectors, M 16).
    pub fn stats(&self) -> Result<Stats> {
        let graph = self.graph.read();
        let p = self.ledger.lock();
        Ok(Stats {
            len: p.slots.live(),
            capacity: graph.capacity(),
            high_water: p.slots.high_water(),
            free_slots: p.slots.free_count(),
            held_slots: p.slots.held_count(),
            tombstones: p.slots.tombstones().len(),
            upper_nodes: graph.upper_count()?,
            max_level: graph.entry().map_or(0, |e| e.level),
            dim: self.config.dim,
            metric: self.config.metric,
            m: self.config.m,
            ef_construction: self.config.ef_construction,
            kernels: self.kernels.isa,
            wal_bytes: self.wal.as_ref().map_or(0, |w| w.bytes_since_checkpoint()),
            codes_generation: graph.quantized().map_or(0, |q| q.generation),
            misfits: graph.quantized().map_or(0, |q| q.misfits()),
            routing: self.config.routing,
            storage: self.config.storage,
            id_kind: self.config.id_kind,
            residency: self.residency.clone(),
        })
    }
}

impl Drop for Index {
    fn drop(&mut self) {
        // A clean close checkpoints; errors cannot be reported from drop (use `close`).
        if self.wal.is_some() && !self.poison.is_set() {
            let _ = self.checkpoint();
        }
    }
}
