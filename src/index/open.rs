//! Creating and opening an index: the files of a directory, cross-checked against each
//! other and the metadata before anything is trusted, then the log replayed.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use parking_lot::{Mutex, RwLock};
use rand::RngExt;

use super::checkpoint::Syncer;
use super::payload::{self, Fields};
use super::write::{self, Ledger, MAX_LEVEL};
use super::{Durability, Index, IndexOptions, OpenOptions, Poison, Recovery, Residency, View};
use crate::distance::{Distance, Kernels, Routing};
use crate::error::{Error, Result};
use crate::graph::{Graph, Params, Quantized, UpperSource};
use crate::store::DirectReads;
use crate::store::meta::META_FILE_NAME;
use crate::store::page::{HEADER_PAGE, PageFile};
use crate::store::{
    CodeKind, Codes, Config, IdKind, Layer0, Meta, ReaderTable, Registration, State, UpperLists,
    Vectors, codes, layer0, vectors,
};
use crate::wal::{self, Position, Replay, Wal, WalIdentity};

pub(super) const VECTORS_FILE: &str = "vectors";
pub(super) const GRAPH0_FILE: &str = "graph0";
const WAL_DIR: &str = "wal";
/// How often a read-only open retries after racing the writer's checkpoint.
const READ_ONLY_ATTEMPTS: u32 = 6;

/// Upper lists not yet in memory are read from the last checkpoint's metadata.
impl UpperSource for Meta {
    fn lists(&self, node: u32) -> Result<UpperLists> {
        self.upper_of(node)
    }
    fn all(&self) -> Result<Vec<(u32, UpperLists)>> {
        self.upper_lists()
    }
}

impl Index {
    /// Creates a new index in `dir`, which must be absent or an empty directory.
    ///
    /// Atomic: the files are built in a hidden sibling directory and renamed onto `dir` in
    /// one step, so a crash leaves either no index or a whole one (plus, at worst, a
    /// `.NAME.creating-*` directory beside it), and of two racing creates exactly one wins;
    /// the other gets `Error::AlreadyExists`.
    pub fn create(dir: impl AsRef<Path>, options: &IndexOptions) -> Result<Index> {
        options.validate()?;
        let dir = dir.as_ref();
        refuse_occupied(dir)?;
        let name = dir
            .file_name()
            .ok_or_else(|| Error::InvalidOption(format!("{} names no directory", dir.display())))?;
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
        let staging = parent.join(format!(
            ".{}.creating-{:016x}",
            name.to_string_lossy(),
            rand::rng().random::<u64>()
        ));
        let built = build(&staging, options).and_then(|()| publish(&staging, dir, &parent));
        if built.is_err() {
            // Best effort: the staging directory was never visible under `dir`.
            let _ = std::fs::remove_dir_all(&staging);
        }
        built?;
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
        if !options.read_only {
            return Self::open_once(dir, options);
        }
        // A reader races the writer: a checkpoint can drop the log segments, or a
        // retraining the codes file, between the reader's reading of the metadata and of
        // those files. Such an open is retried on a fresh view; damage fails every time.
        let mut attempt = 0;
        loop {
            match Self::open_once(dir, options) {
                Err(Error::Corrupt { .. } | Error::Io { .. }) if attempt < READ_ONLY_ATTEMPTS => {
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(2 << attempt));
                }
                result => return result,
            }
        }
    }

    /// Opens the index in `dir` read-only: see [`OpenOptions::read_only`].
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<Index> {
        Self::open_with(dir, &OpenOptions::default().read_only(true))
    }

    /// A read-only index moves its view forward to everything the writer has acknowledged
    /// by now. While the writer has not checkpointed since the view was taken, only the
    /// log records written since are read and applied (`catch_up`); otherwise the view is
    /// reopened (the checkpoint and log as they are now). A writable index is always
    /// current: this does nothing.
    pub fn refresh(&self) -> Result<()> {
        if self.catch_up()? {
            return Ok(());
        }
        let fresh = Self::open_with(&self.dir, &self.open_options())?;
        // A compaction gives the directory a new index of the same configuration but its
        // identity: the view follows it. Anything else is another index.
        let same = Config {
            index_uid: self.config.index_uid,
            ..fresh.config.clone()
        };
        if same != self.config {
            return Err(Error::Replaced(self.dir.clone()));
        }
        // Swap the new view's parts in, under the graph's write lock (which every read
        // holds while it uses them); `fresh` leaves with the old ones (and the old view's
        // reader-table entry). Lock order, as in `catch_up`: view, graph, ledger, meta.
        let mut view = self.view.lock();
        let mut graph = self.graph.write();
        std::mem::swap(&mut *graph, &mut *fresh.graph.write());
        std::mem::swap(&mut *self.ledger.lock(), &mut *fresh.ledger.lock());
        std::mem::swap(&mut *self.fields.write(), &mut *fresh.fields.write());
        std::mem::swap(&mut *self.meta.write(), &mut *fresh.meta.write());
        std::mem::swap(&mut *view, &mut *fresh.view.lock());
        Ok(())
    }

    /// Moves a read-only view forward in place, applying the log records the writer has
    /// written since its last one (searches wait meanwhile). True when done, or when the
    /// index is writable (always current); false when it cannot be done in place (the
    /// writer checkpointed since, or grew the files past the view's mappings): then
    /// `refresh` reopens the view.
    pub fn catch_up(&self) -> Result<bool> {
        let mut view_slot = self.view.lock();
        let Some(view) = view_slot.as_mut() else {
            return Ok(self.wal.is_some());
        };
        // Also a new field index or a compaction (which changes the identity): a reopen.
        if self.meta().latest_generation()? != self.ledger.lock().generation {
            return Ok(false);
        }
        let wal_dir = self.dir.join(WAL_DIR);
        let identity = WalIdentity {
            dim: self.config.dim as u32,
            index_uid: view.index_uid,
        };
        let resume = view.resume.as_ref();
        let replay = match wal::read_for_replay(&wal_dir, identity, view.next_lsn, false, resume) {
            Ok(replay) => replay,
            // A checkpoint between the two reads dropped the segments: reopen.
            Err(Error::Corrupt { .. } | Error::Io { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        let mut graph = self.graph.write();
        let needed = replay
            .ops
            .iter()
            .map(|(_, op)| op.slots_needed())
            .max()
            .unwrap_or(0);
        if needed > graph.capacity() {
            return Ok(false);
        }
        let mut ledger = self.ledger.lock();
        let (applied, next_lsn, resume) = view_extent(&graph, &replay, view.next_lsn)?;
        let ops = &replay.ops[..applied];
        // Check on a copy of the ledger that every record applies, so that a view is
        // moved whole or not at all.
        let mut trial = ledger.trial();
        if ops
            .iter()
            .any(|(_, op)| trial.apply(&self.meta(), self.config.dim, op).is_err())
        {
            return Ok(false);
        }
        for (lsn, op) in ops {
            write::replay(
                &mut graph,
                &mut ledger,
                &self.meta(),
                self.config.dim,
                self.threads(),
                *lsn,
                op,
                &wal_dir,
                true,
            )?;
        }
        if !ops.is_empty() {
            // Rebuilt on the next filtered search from the moved view.
            self.fields.write().index = None;
        }
        view.next_lsn = next_lsn;
        view.resume = resume;
        Ok(true)
    }

    fn open_once(dir: &Path, options: &OpenOptions) -> Result<Index> {
        let read_only = options.read_only;
        // A view registers before it reads the metadata (see `store::readers`): from
        // then on the writer reuses no slot its view may still read.
        let registration = match read_only {
            true => register(dir)?,
            false => None,
        };
        let meta = Meta::open(
            &dir.join(META_FILE_NAME),
            options.meta_cache_bytes(),
            read_only,
        )?;
        Self::open_from(dir, options, registration, meta)
    }

    /// `open_once` from the metadata on (the files cross-checked, the log replayed). A
    /// compaction calls it with the metadata it opened, and so locked, before it moved the
    /// new index into place.
    pub(super) fn open_from(
        dir: &Path,
        options: &OpenOptions,
        registration: Option<Registration>,
        opened: (Meta, Config, State),
    ) -> Result<Index> {
        let read_only = options.read_only;
        let Checkpoint {
            meta,
            config,
            state,
            mut graph,
            mut ledger,
            kernels,
        } = open_checkpoint(dir, options, opened)?;
        let residency = match options.memory_budget {
            Some(budget) => {
                let overhead = budget_overhead(options, &config, &graph, state.high_water);
                if overhead > budget {
                    return Err(Error::InvalidOption(format!(
                        "a memory budget of {:.1} MiB cannot hold what this index keeps in \
                         memory whatever is pinned: {:.1} MiB (metadata cache, upper layers, \
                         search working memory; docs/larger-than-ram.md)",
                        mib(budget),
                        mib(overhead)
                    )));
                }
                Some(apply_budget(
                    &mut graph,
                    budget,
                    overhead,
                    state.high_water as usize,
                ))
            }
            None => None,
        };
        // Replay the log into the graph and the ledger. Nothing in the directory is removed
        // or shortened before the whole open has succeeded: a failed open leaves the log's
        // tail and any stale code file for the next one to judge.
        let wal_dir = dir.join(WAL_DIR);
        if !read_only {
            std::fs::create_dir_all(&wal_dir).map_err(|e| Error::io(&wal_dir, e))?;
        }
        let identity = WalIdentity {
            dim: config.dim as u32,
            index_uid: config.index_uid,
        };
        let replay = wal::read_for_replay(
            &wal_dir,
            identity,
            state.checkpoint_lsn,
            options.salvage,
            None,
        )?;
        let threads = options.thread_count();
        let (applied, view_lsn, view_resume) = match read_only {
            true => view_extent(&graph, &replay, state.checkpoint_lsn)?,
            false => (replay.ops.len(), replay.next_lsn, None),
        };
        for (lsn, op) in &replay.ops[..applied] {
            let (dim, graph, ledger) = (config.dim, &mut graph, &mut ledger);
            write::replay(
                graph, ledger, &meta, dim, threads, *lsn, op, &wal_dir, read_only,
            )?;
        }
        let recovery = Recovery {
            replayed: applied,
            truncated_bytes: replay.tail_bytes()?,
        };
        if let Some(r) = &registration {
            r.set(state.generation)?;
        }
        let view = read_only.then(|| View {
            index_uid: config.index_uid,
            next_lsn: view_lsn,
            resume: view_resume,
            _registration: registration,
        });
        let poison = Arc::new(Poison::default());
        let writer = match read_only {
            true => None,
            false => {
                let next_lsn = replay.next_lsn;
                replay.finish()?;
                remove_stale_codes(dir, state.codes_generation)?;
                let wal = Arc::new(Wal::open(&wal_dir, identity, next_lsn)?);
                Some(Writer::start(dir, wal, options, &poison, &mut ledger)?)
            }
        };
        let fields = Fields {
            specs: payload::stored_fields(&meta)?,
            index: None,
        };
        let (wal, readers, syncer) = match writer {
            Some(w) => (Some(w.wal), Some(w.readers), w.syncer),
            None => (None, None, None),
        };
        Ok(Index {
            dir: dir.to_path_buf(),
            kernels,
            graph: RwLock::new(graph),
            meta: RwLock::new(meta),
            ledger: Mutex::new(ledger),
            fields: RwLock::new(fields),
            wal,
            view: Mutex::new(view),
            followed: Mutex::new(std::time::Instant::now()),
            options: options.clone(),
            poison,
            readers,
            ef_search: AtomicUsize::new(options.ef_search),
            threads: AtomicUsize::new(threads),
            recovery,
            residency,
            _syncer: syncer,
            config,
        })
    }
}

/// An index as of its last checkpoint: the metadata, the graph over the page files (and
/// codes) and the ledger, every one cross-checked against the others.
struct Checkpoint {
    meta: Arc<Meta>,
    config: Config,
    state: State,
    graph: Graph,
    ledger: Ledger,
    kernels: Kernels,
}

/// Opens the page files of `dir` and checks them against its opened metadata: the index
/// as of its last checkpoint, before the log is replayed.
fn open_checkpoint(
    dir: &Path,
    options: &OpenOptions,
    (meta, config, state): (Meta, Config, State),
) -> Result<Checkpoint> {
    let read_only = options.read_only;
    let vectors = Vectors::open(&dir.join(VECTORS_FILE), read_only, config.storage)?;
    let layer0 = Layer0::open(&dir.join(GRAPH0_FILE), read_only)?;
    for file in [vectors.file(), layer0.file()] {
        file.check_identity(config.file_identity(), state.high_water as usize)?;
        file.advise(options.warm);
    }
    if layer0.m0() != config.m0 {
        return Err(Error::corrupt(
            layer0.file().path(),
            "M0 disagrees with the metadata",
        ));
    }
    let free = meta.free_slots()?;
    let tombstones = meta.tombstones()?;
    check_state(&meta, &state, &free, &tombstones)?;
    let kernels = Kernels::detect();
    let params = Params {
        m: config.m,
        m0: config.m0,
        ef_construction: config.ef_construction,
    };
    let dist = Distance::new(config.metric, kernels);
    let mut graph = Graph::new(params, dist, vectors, layer0);
    // Upper lists load lazily from the metadata (see `UpperSource`): open stays O(1).
    let meta = Arc::new(meta);
    graph.restore(
        state.high_water,
        &free,
        &tombstones,
        meta.clone(),
        state.entry,
    );
    let quantized = load_codes(dir, &meta, &config, &state, kernels, &graph, options)?;
    graph.set_quantized(quantized);
    let keyed = config.id_kind == IdKind::Str;
    let ledger = Ledger::at_checkpoint(&state, free, tombstones, config.seed, keyed);
    Ok(Checkpoint {
        meta,
        config,
        state,
        graph,
        ledger,
        kernels,
    })
}

/// What only a writable index has: its log, the reader table its slot reuse waits on,
/// and the background sync of `Durability::Periodic`.
struct Writer {
    wal: Arc<Wal>,
    readers: ReaderTable,
    syncer: Option<Syncer>,
}

impl Writer {
    /// Opens the reader table (releasing the slots no registered view can still see) and
    /// starts the periodic sync, if asked for.
    fn start(
        dir: &Path,
        wal: Arc<Wal>,
        options: &OpenOptions,
        poison: &Arc<Poison>,
        ledger: &mut Ledger,
    ) -> Result<Writer> {
        let readers = ReaderTable::open(dir)?;
        ledger.slots.release(readers.oldest()?);
        let syncer = match options.durability {
            Durability::Periodic(every) => Some(Syncer::start(wal.clone(), every, poison.clone())),
            _ => None,
        };
        Ok(Writer {
            wal,
            readers,
            syncer,
        })
    }
}

/// Registers a read-only view of `dir` in its reader table. A directory that is not there
/// registers nothing: the metadata's open then says what is missing.
fn register(dir: &Path) -> Result<Option<Registration>> {
    if !dir.join(META_FILE_NAME).exists() {
        return Ok(None);
    }
    Registration::register(dir)
}

/// `create` needs `dir` absent or empty: an index there is `AlreadyExists`, other files
/// are refused rather than mixed with the index's.
fn refuse_occupied(dir: &Path) -> Result<()> {
    let mut entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    if dir.join(META_FILE_NAME).exists() {
        return Err(Error::AlreadyExists(dir.to_path_buf()));
    }
    if entries.next().is_some() {
        return Err(Error::InvalidOption(format!(
            "{} is not empty and holds no index: create needs an absent or empty directory",
            dir.display()
        )));
    }
    Ok(())
}

/// Builds a complete, closed index in `staging` (a new directory).
pub(super) fn build(staging: &Path, options: &IndexOptions) -> Result<()> {
    std::fs::create_dir(staging).map_err(|e| Error::io(staging, e))?;
    let config = Config {
        dim: options.dim,
        metric: options.metric,
        m: options.m,
        m0: 2 * options.m,
        ef_construction: options.ef_construction,
        level_mult: 1.0 / (options.m as f64).ln(),
        seed: options.seed,
        index_uid: rand::rng().random(),
        routing: options.routing,
        storage: options.storage,
        id_kind: options.id_kind,
    };
    let identity = config.file_identity();
    Vectors::create(
        &staging.join(VECTORS_FILE),
        identity,
        options.capacity,
        options.storage,
    )?;
    Layer0::create(
        &staging.join(GRAPH0_FILE),
        identity,
        config.m0,
        options.capacity,
    )?;
    let fields: Vec<(String, u64)> = options
        .fields
        .iter()
        .map(|f| (f.name.clone(), f.kind.code()))
        .collect();
    drop(Meta::create(
        &staging.join(META_FILE_NAME),
        &config,
        &fields,
        options.runtime.cache_bytes,
    )?);
    let wal_dir = staging.join(WAL_DIR);
    std::fs::create_dir(&wal_dir).map_err(|e| Error::io(&wal_dir, e))?;
    // Every file is synced by its own create; the directory entries must be too before
    // the rename can make them reachable under the index's name.
    sync_dir(&wal_dir)?;
    sync_dir(staging)
}

/// Renames `staging` onto `dir` (absent, or an empty directory, which rename replaces)
/// and makes the rename durable. A rename onto a directory that is no longer empty fails:
/// another create (or backup) won.
pub(super) fn publish(staging: &Path, dir: &Path, parent: &Path) -> Result<()> {
    match std::fs::rename(staging, dir) {
        Ok(()) => {
            sync_dir(parent)?;
            // The files were synced under the staging name; the crash-test hooks learn
            // that they are durable under this one.
            #[cfg(feature = "failpoints")]
            for sub in [dir.to_path_buf(), dir.join(WAL_DIR)] {
                for entry in std::fs::read_dir(&sub).map_err(|e| Error::io(&sub, e))? {
                    let path = entry.map_err(|e| Error::io(&sub, e))?.path();
                    if path.is_file() {
                        crate::failpoints::synced(&path, None);
                    }
                }
            }
            Ok(())
        }
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST)) => {
            Err(Error::AlreadyExists(dir.to_path_buf()))
        }
        Err(e) => Err(Error::io(dir, e)),
    }
}

pub(super) fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// Checks the checkpointed state for consistency before anything is sized or indexed by
/// it: every slot below the high-water mark is exactly one of live, free or deleted, the
/// live count agrees, and the entry point is a node in the graph on a sane level.
fn check_state(meta: &Meta, state: &State, free: &[u32], tombstones: &[u32]) -> Result<()> {
    let corrupt = |why: String| Err(Error::corrupt(meta.path(), why));
    // Both lists come sorted and duplicate-free from their tables.
    if let Some(s) = free
        .iter()
        .chain(tombstones)
        .find(|&&s| s >= state.high_water)
    {
        return corrupt(format!(
            "free or deleted slot {s} beyond the high-water mark {}",
            state.high_water
        ));
    }
    let free_set: HashSet<u32> = free.iter().copied().collect();
    if let Some(s) = tombstones.iter().find(|s| free_set.contains(s)) {
        return corrupt(format!("slot {s} is both free and deleted"));
    }
    let counted = state.high_water as u64 - free.len() as u64 - tombstones.len() as u64;
    if counted != state.live {
        return corrupt(format!(
            "{} vectors are counted live, but the slots say {counted}",
            state.live
        ));
    }
    match state.entry {
        None if counted + tombstones.len() as u64 > 0 => {
            corrupt("the graph has nodes but no entry point".into())
        }
        Some(e) if free_set.contains(&e.node) => {
            corrupt(format!("entry point {} is a free slot", e.node))
        }
        Some(e) if e.level > MAX_LEVEL => corrupt(format!("entry point level {}", e.level)),
        _ => Ok(()),
    }
}

/// Removes every `codes.N` but the one the metadata names (`current`, 0 for none): left by
/// a checkpoint that crashed before or after its commit, never referenced. Called only
/// once an open has succeeded, so that a damaged metadata file cannot make it delete the
/// codes in use.
fn remove_stale_codes(dir: &Path, current: u64) -> Result<()> {
    for (generation, path) in codes::generations_in(dir) {
        if generation != current {
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
    }
    Ok(())
}

/// How far a read-only view applies the log `replay` read from record `first_lsn` on:
/// the ops the writer has already applied (`write::applied_prefix`), and the record its
/// next catch-up reads from (with where in the log it is, when that is the end).
fn view_extent(
    graph: &Graph,
    replay: &Replay,
    first_lsn: u64,
) -> Result<(usize, u64, Option<Position>)> {
    let applied = write::applied_prefix(graph, &replay.ops)?;
    Ok(match applied == replay.ops.len() {
        true => (applied, replay.next_lsn, replay.resume.clone()),
        // An op's records follow the last record of the op before it.
        false => {
            let next = applied
                .checked_sub(1)
                .map_or(first_lsn, |i| replay.ops[i].0 + 1);
            (applied, next, None)
        }
    })
}

/// Opens the code file the metadata names, if any.
fn load_codes(
    dir: &Path,
    meta: &Meta,
    config: &Config,
    state: &State,
    kernels: Kernels,
    graph: &Graph,
    options: &OpenOptions,
) -> Result<Option<Quantized>> {
    if state.codes_generation == 0 {
        return Ok(None);
    }
    let path = dir.join(codes::file_name(state.codes_generation));
    let quantizer = meta.quantizer(config.dim, config.routing)?.ok_or_else(|| {
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
    if quantizer.routing() != config.routing {
        return Err(Error::corrupt(
            meta.path(),
            "the stored quantiser is not of the index's routing kind",
        ));
    }
    let mut codes = Codes::open(&path, CodeKind::of(config.routing), options.read_only)?;
    codes
        .file()
        .check_identity(config.file_identity(), state.high_water as usize)?;
    // A crash between growing the vectors and growing the codes leaves the codes short
    // (a reader cannot grow them; the graph then counts only the slots all files hold).
    // So does a full disk, which refused the write that needed them longer: the codes
    // stay short then too, rather than the open failing (every logged write fits them).
    if !options.read_only {
        match codes.file_mut().grow(graph.capacity()) {
            Err(Error::DiskFull { .. }) => {}
            grown => grown?,
        }
    }
    codes.file().advise(options.warm);
    // Unknown when the table describes other codes (or none: an older build's index).
    let misfits = match state.misfits_generation == state.codes_generation {
        true => Some(meta.misfits()?),
        false => None,
    };
    if let Some(&s) = misfits.iter().flatten().find(|&&s| s >= state.high_water) {
        let why = format!("misfit slot {s} is past the high-water mark");
        return Err(Error::corrupt(meta.path(), why));
    }
    Ok(Some(Quantized::new(
        quantizer,
        codes,
        state.codes_generation,
        (config.metric, kernels),
        misfits.as_deref(),
        state.codes_misfits,
    )))
}

/// Threads that read vectors for re-ranks when they live on disk and the kernel refuses
/// io_uring (which needs none): enough to keep a first round of re-rank reads (16 slots)
/// in flight together.
const DIRECT_READERS: usize = 16;

/// Bytes of heap an upper node takes besides its links: its map entry, `Arc`, lock, list
/// headers and the allocator's own (measured: 210 bytes a node with its 8 links, all
/// upper nodes of the Debian set at M = 8 loaded).
const UPPER_NODE_BYTES: u64 = 180;

/// Heap a searching process needs beyond what `budget_overhead` counts by name: queries
/// and answers in flight, metadata read transactions, allocator slack (measured on the
/// Debian set under a 9 MiB budget: the heap's resident size ran 0.6 MiB above its peak
/// live bytes).
const WORKING_BYTES: u64 = 1 << 20;

/// What an index keeps in memory whatever tiers a budget pins, counted against the
/// budget first: the metadata's cache; the upper layers, cached as searches visit them
/// (one node in M has them: M links and `UPPER_NODE_BYTES`); per concurrent search, a
/// visited mark of two bytes per slot; the graph's three slot bitsets; `WORKING_BYTES`.
fn budget_overhead(options: &OpenOptions, config: &Config, graph: &Graph, high_water: u32) -> u64 {
    overhead_for(
        options,
        config.m,
        graph.capacity() as u64,
        high_water as u64,
    )
}

/// `budget_overhead` of an index of `capacity` slots, `high_water` of them used.
fn overhead_for(options: &OpenOptions, m: usize, capacity: u64, high_water: u64) -> u64 {
    let m = m.max(1) as u64;
    let upper = high_water.div_ceil(m) * (4 * m + UPPER_NODE_BYTES);
    let marks = 2 * capacity * options.thread_count() as u64;
    let sets = 3 * capacity.div_ceil(8);
    options.meta_cache_bytes() as u64 + upper + marks + sets + WORKING_BYTES
}

/// The most RaBitQ bits per component the planner picks (`IndexOptions::routing_for`):
/// beyond 4 a code grows towards SQ8's size (8 bits at 384-d take 524 bytes against
/// SQ8's 384) and its estimate costs more than SQ8's, for estimates that 4 bits already
/// make tight (`docs/larger-than-ram.md`).
const PLAN_MAX_BITS: u8 = 4;

/// Bits the planner picks when not even the 1-bit codes fit beside the overhead, so
/// that every walk reads codes from disk: a code read is a 4 KiB page whatever its
/// size, and tighter estimates make the walk and the re-rank shorter. On 1 M static
/// MiniLM vectors under 67 MiB (nothing pinned) 2-bit codes reached recall 0.95 and
/// 1-bit codes stopped at 0.926.
const PLAN_UNPINNED_BITS: u8 = 2;

impl IndexOptions {
    /// The routing to create this index with, so that searches opened with `open` (its
    /// memory budget and threads) keep the most useful tiers resident once it holds
    /// `expected` vectors: SQ8 when its codes, the layer-0 lists and the vectors all fit
    /// (the walk is fastest there); else the most RaBitQ bits (up to 4) whose codes fit
    /// beside the lists; else the most whose codes fit alone; else 2-bit codes read
    /// from disk. Counts what an open counts (`OpenOptions::memory_budget`), with the
    /// files' capacity a quarter above `expected`. `InvalidOption` when `open` has no
    /// budget or one below the overhead, naming both figures.
    pub fn routing_for(&self, open: &OpenOptions, expected: u64) -> Result<Routing> {
        let Some(budget) = open.memory_budget else {
            return Err(Error::InvalidOption(
                "planning the routing needs a memory budget".into(),
            ));
        };
        let n = expected.max(1);
        let overhead = overhead_for(open, self.m, n + n / 4, n);
        let Some(left) = budget.checked_sub(overhead) else {
            return Err(Error::InvalidOption(format!(
                "a memory budget of {:.1} MiB is below the {:.1} MiB an index of {expected} \
                 vectors keeps in memory whatever it pins",
                mib(budget),
                mib(overhead)
            )));
        };
        // What `PageFile::span` counts: the header page, then the slots.
        let file = |stride: usize| HEADER_PAGE as u64 + n * stride as u64;
        let codes = |routing: Routing| file(CodeKind::of(routing).stride(self.dim));
        let lists = file(layer0::record_stride(2 * self.m));
        let vectors = file(vectors::slot_stride(self.dim, self.storage));
        if codes(Routing::Sq8) + lists + vectors <= left {
            return Ok(Routing::Sq8);
        }
        let most = |room: u64| {
            (1..=PLAN_MAX_BITS)
                .rev()
                .filter_map(|bits| Routing::rabitq(bits).ok())
                .find(|&r| codes(r) <= room)
        };
        match most(left.saturating_sub(lists)).or_else(|| most(left)) {
            Some(routing) => Ok(routing),
            None => Routing::rabitq(PLAN_UNPINNED_BITS),
        }
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// Decides what stays in memory under `budget` bytes (see `OpenOptions::memory_budget`),
/// `overhead` of which the index takes whatever is pinned (`budget_overhead`): the
/// codes, then the layer-0 lists, then the vectors of the `used` slots, each pinned while
/// the whole of it fits in what is left.
fn apply_budget(graph: &mut Graph, budget: u64, overhead: u64, used: usize) -> Residency {
    let mut left = budget - overhead;
    let codes_bytes = graph.codes_file_mut().map_or(0, |f| f.span(used) as u64);
    let layer0_bytes = graph.layer0_file_mut().span(used) as u64;
    let vector_bytes = graph.vectors_file_mut().span(used) as u64;
    let mut resident = Vec::new();
    let mut pinned = true;
    let mut keep = |file: &mut PageFile, name: &'static str, bytes: u64| -> bool {
        if bytes > left {
            return false;
        }
        left -= bytes;
        if file.pin(used).is_err() {
            // Not allowed to lock this much (RLIMIT_MEMLOCK): fault it in instead.
            pinned = false;
            file.advise(true);
        }
        resident.push(name);
        true
    };
    // In order, each tier only if the ones before it fit: codes steer every hop, layer-0
    // lists every expansion, vectors only the final re-rank.
    let fits = graph
        .codes_file_mut()
        .is_none_or(|f| keep(f, "codes", codes_bytes))
        && keep(graph.layer0_file_mut(), "layer0", layer0_bytes)
        && keep(graph.vectors_file_mut(), "vectors", vector_bytes);
    graph.set_disk_reads(!fits);
    if !resident.contains(&"layer0") {
        graph.watch_lists(used);
    }
    if codes_bytes > 0 {
        graph.watch_codes(used);
    }
    if !fits {
        let vectors = graph.vectors_file_mut();
        vectors.advise(false);
        // Where the file system has no O_DIRECT, re-ranks read through the mapping.
        let direct = DirectReads::open(vectors.path(), DIRECT_READERS).ok();
        graph.set_direct_reads(direct);
    }
    Residency {
        budget,
        overhead_bytes: overhead,
        codes_bytes,
        layer0_bytes,
        vector_bytes,
        resident,
        pinned,
        disk_reads: !fits,
    }
}
