//! Options: what is fixed when an index is created (`IndexOptions`) and what may change
//! at each open (`OpenOptions`).

use std::time::Duration;

use crate::distance::{Metric, Routing, Storage};
use crate::error::{Error, Result};
use crate::filter::FieldSpec;
use crate::store::IdKind;
use crate::store::meta::{MAX_DIM, MAX_EF};

/// Live vectors needed before the first SQ8 quantiser is trained: fewer would give
/// component ranges that later vectors often fall outside of.
const SQ8_MIN_LIVE: u64 = 1000;

/// Settings of a new index. `dim` and `metric` are required; the rest default to hnswlib's
/// usual choices (M = 16, ef_construction = 200).
#[derive(Clone, Debug)]
pub struct IndexOptions {
    pub(super) dim: usize,
    pub(super) metric: Metric,
    pub(super) m: usize,
    pub(super) ef_construction: usize,
    pub(super) seed: u64,
    pub(super) capacity: usize,
    pub(super) fields: Vec<FieldSpec>,
    pub(super) routing: Routing,
    pub(super) storage: Storage,
    pub(super) id_kind: IdKind,
    pub(super) runtime: OpenOptions,
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
            fields: Vec::new(),
            routing: Routing::Sq8,
            storage: Storage::F32,
            id_kind: IdKind::Int,
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

    /// What the graph walk runs on (fixed for the index's life): SQ8 codes (the default,
    /// fastest in memory) or RaBitQ codes (a fifth of the size at 384-d, for indexes far
    /// larger than memory: with a [`OpenOptions::memory_budget`] the codes and layer-0
    /// lists stay resident and only re-ranks read vectors from disk), of one bit per
    /// component or, [`Routing::ExRaBitQ`], 2..=8 (tighter estimates for that many times
    /// the codes). See `docs/larger-than-ram.md`.
    pub fn routing(mut self, routing: Routing) -> Self {
        self.routing = routing;
        self
    }

    /// How the full vectors are stored (fixed for the index's life): f32 (the default) or
    /// f16, which halves the vector file, the memory it takes when resident and the bytes
    /// each re-rank reads, for about three significant digits per component (measured
    /// recall cost: `docs/larger-than-ram.md`). `get` then returns the f16 values widened
    /// to f32, and a component beyond ±65,504 is refused (`InvalidVector`).
    pub fn storage(mut self, storage: Storage) -> Self {
        self.storage = storage;
        self
    }

    /// What names the vectors (fixed for the index's life): the caller's `u64` ids (the
    /// default), or string keys (`IdKind::Str`), each bound to a `u64` id the index
    /// assigns and written with [`Index::insert_keys`](crate::Index::insert_keys),
    /// [`Index::upsert_keys`](crate::Index::upsert_keys) and
    /// [`Index::delete_keys`](crate::Index::delete_keys). Searches still answer ids:
    /// [`Index::key_of`](crate::Index::key_of) names them.
    pub fn id_kind(mut self, kind: IdKind) -> Self {
        self.id_kind = kind;
        self
    }

    /// Indexes a payload field, so that filters may use it (more can be added later with
    /// [`Index::create_field_index`](crate::Index::create_field_index)).
    pub fn field(mut self, spec: FieldSpec) -> Self {
        self.fields.push(spec);
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

    /// When `close` relocates after deletes (see [`OpenOptions::relocate_above`]).
    pub fn relocate_above(mut self, fraction: f64) -> Self {
        self.runtime.relocate_above = fraction;
        self
    }

    /// When to train the SQ8 codes searches walk on (see [`OpenOptions::quantize_after`]).
    pub fn quantize_after(mut self, live: u64) -> Self {
        self.runtime.quantize_after = live;
        self
    }

    pub(super) fn validate(&self) -> Result<()> {
        let bad = |s: String| Err(Error::InvalidOption(s));
        if self.dim == 0 || self.dim > MAX_DIM {
            return bad(format!("dimension {} is not in 1..={MAX_DIM}", self.dim));
        }
        if !(2..=255).contains(&self.m) {
            return bad(format!("M {} is not in 2..=255", self.m));
        }
        if !(1..=MAX_EF).contains(&self.ef_construction) {
            return bad(format!(
                "ef_construction {} is not in 1..={MAX_EF}",
                self.ef_construction
            ));
        }
        if let Routing::ExRaBitQ(bits) = self.routing
            && Routing::rabitq(bits)? != self.routing
        {
            return bad(format!(
                "Routing::ExRaBitQ takes 2 bits per component or more, not {bits} (one bit is \
                 Routing::RaBitQ)"
            ));
        }
        crate::filter::check_fields(&self.fields)?;
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

/// Default of [`OpenOptions::relocate_above`].
const RELOCATE_ABOVE: f64 = 0.1;

/// Settings that are not stored in the index and may differ at each open.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    pub(super) ef_search: usize,
    pub(super) threads: usize,
    pub(super) cache_bytes: usize,
    pub(super) durability: Durability,
    pub(super) checkpoint_bytes: u64,
    pub(super) salvage: bool,
    pub(super) warm: bool,
    pub(super) quantize_after: u64,
    pub(super) read_only: bool,
    pub(super) follow: Option<Duration>,
    pub(super) memory_budget: Option<u64>,
    pub(super) relocate_above: f64,
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
            read_only: false,
            follow: None,
            memory_budget: None,
            relocate_above: RELOCATE_ABOVE,
        }
    }
}

impl OpenOptions {
    /// The metadata's cache: under a memory budget, a sixty-fourth of it (at least
    /// 256 KiB), counted in the budget before any tier is pinned. Searches read an upper
    /// node from it once and then keep its lists themselves (counted apart), so it need
    /// not be large. Its cache is process
    /// memory the kernel cannot reclaim, so it must leave room for the pinned tiers;
    /// upper-layer lists it does not hold are read from the file's pages instead.
    pub(super) fn meta_cache_bytes(&self) -> usize {
        match self.memory_budget {
            Some(budget) => self.cache_bytes.min((budget / 64).max(256 << 10) as usize),
            None => self.cache_bytes,
        }
    }

    /// The memory this index should live in (bytes of page cache and pinned pages).
    /// hnswdb decides what stays resident, in this order while it fits: the codes the
    /// walk runs on, then the layer-0 lists (both pinned with `mlock`, each page as it is
    /// first touched while read-ahead brings the rest in the background, or pre-faulted
    /// where the process may not lock that much), then, if everything fits, the vectors
    /// too. When the vectors do not fit, each query's exact re-rank starts the disk reads
    /// of its candidates together (`MADV_WILLNEED`) instead of faulting them in one after
    /// another. `Index::stats` reports what fitted. Without a budget the kernel decides.
    pub fn memory_budget(mut self, bytes: u64) -> Self {
        self.memory_budget = Some(bytes);
        self
    }

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

    /// Open without writing a byte (default false): the files are only read, the log is
    /// replayed into this process's memory, and any number of read-only opens, in any
    /// number of processes, may run beside the one writer. Writes and checkpoints return
    /// `Error::ReadOnly`; `Index::refresh` moves the view forward to what the writer has
    /// acknowledged since. Works on read-only files and directories.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// For a read-only open: before a read, catch up with the writer (`Index::catch_up`)
    /// if `every` has passed since the view last did, so that a long-lived reader follows
    /// the writer without calling `refresh` (default: never). Catching up in place reads
    /// only the log written since; after a checkpoint of the writer's the view needs a
    /// `refresh`, which this does not do (it needs `&mut`).
    pub fn follow(mut self, every: Duration) -> Self {
        self.follow = Some(every);
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

    /// Let `close` relocate the index into dense files ([`Index::relocate`](super::Index::relocate))
    /// once free and deleted slots exceed this fraction of the slots ever used (default
    /// 0.1; 1.0 never relocates). Deletes leave holes that only later inserts fill, and a
    /// search over a half-emptied index reads about twice the pages per node it visits:
    /// docs/tuning.md has the measurements. Indexes below 1024 slots are left alone.
    pub fn relocate_above(mut self, fraction: f64) -> Self {
        self.relocate_above = fraction;
        self
    }

    pub(super) fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.relocate_above) {
            return Err(Error::InvalidOption(format!(
                "relocate_above {} is not in 0..=1",
                self.relocate_above
            )));
        }
        if !(1..=MAX_EF).contains(&self.ef_search) {
            return Err(Error::InvalidOption(format!(
                "ef_search {} is not in 1..={MAX_EF}",
                self.ef_search
            )));
        }
        Ok(())
    }

    pub(super) fn thread_count(&self) -> usize {
        resolve_threads(self.threads)
    }
}

/// A thread count as given by the user (0 = every core) made concrete.
pub(super) fn resolve_threads(threads: usize) -> usize {
    if threads > 0 {
        threads
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}
