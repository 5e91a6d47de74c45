//! The HNSW graph (Malkov & Yashunin, arXiv 1603.09320) over the vector pages, the
//! layer-0 pages and the in-memory upper layers. It speaks internal node ids (slots) only;
//! external ids, durability and metadata belong to the layers above.
//!
//! Rooms: this file holds the graph's state (node sets, files, entry point) and growth;
//! `search` the walks, `insert` neighbour selection and linking, `repair` consolidation of
//! deletes and the integrity checks, `upper` the upper-layer cache.
//!
//! Node states: *live* (in results), *tombstoned* (deleted: never in results, but still
//! routed through, with its vector and lists intact, until `consolidate` relinks its
//! in-neighbours), and *free* (neither; the slot may be reused). `routable` = live ∪
//! tombstoned.
//!
//! Concurrency: `insert` and `search` take `&self` and may run on many threads at once.
//! Layer-0 lists are atomics (see `store::layer0`), written under a striped per-node lock;
//! upper lists sit behind their own mutexes. A node is *live* once its bit is set in
//! `live`: searches follow links only to routable nodes, so a link to a slot that is free,
//! half written, or left behind by a crash is skipped rather than trusted. Liveness is
//! derived from the metadata, never read from the page files. An insert links others to
//! its node only after writing all of the node's own lists, so no concurrent insert can
//! walk into (and attach itself only to) a node whose lists are still empty.

mod insert;
mod relocate;
mod repair;
mod search;
mod upper;

use std::cmp::Ordering as CmpOrdering;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use parking_lot::{Mutex, RwLock};

use crate::distance::{Distance, Kernels, Metric, Quantizer};
use crate::error::Result;
use crate::store::{Codes, EntryPoint, Layer0, UpperLists, Vectors};

pub use relocate::{Dense, Relocated};
pub use search::WalkBudget;
use upper::UpperLayers;
pub(crate) use upper::UpperSource;

/// Codes of every routable node (SQ8 or RaBitQ) and the quantiser that made them. When a
/// graph has them, searches walk layer 0 on codes (a quarter of the bytes per distance
/// with SQ8, a 21st with RaBitQ at 384-d) and re-rank the beam with exact distances.
/// Inserts walk layer 0 the same way but choose and prune neighbours on exact distances.
pub struct Quantized {
    /// The quantiser.
    pub quantizer: Quantizer,
    /// The code file.
    pub codes: Codes,
    /// Which `codes.N` file this is.
    pub generation: u64,
    /// Metric and kernels to prepare queries with.
    pub metric: Metric,
    /// Kernels of the code distances.
    pub kernels: Kernels,
    /// Slots whose vector the quantiser does not fit (`Quantizer::fits`): their codes
    /// blur them with every vector past the same end of the trained ranges, so walks
    /// score them exactly (a plateau of equal code distances would stop a walk that
    /// entered it). Kept with the codes in the metadata (`misfits` table), so that a
    /// reopen knows them; enough new ones make a checkpoint retrain
    /// (`Index::training_due`).
    misfits: NodeSet,
    /// Misfits as the training left them (vectors in the tails of heavy-tailed data):
    /// only those beyond these count towards a retraining, which could not fit them.
    trained_misfits: AtomicU64,
    /// Whether `misfits` changed since the last checkpoint committed it.
    misfits_dirty: AtomicBool,
    /// Whether `misfits` holds every vector the codes do not fit: not for codes an older
    /// build trained, which did not note them (until the next training).
    misfits_known: bool,
}

impl Quantized {
    /// Codes of `generation` made by `quantizer`, whose misfits are `misfits` (`None`:
    /// unknown), of which `trained_misfits` were there when the codes were trained.
    pub fn new(
        quantizer: Quantizer,
        codes: Codes,
        generation: u64,
        kernels: (Metric, Kernels),
        misfits: Option<&[u32]>,
        trained_misfits: u64,
    ) -> Quantized {
        let set = NodeSet::with_capacity(codes.file().capacity());
        for &s in misfits.unwrap_or_default() {
            set.insert(s);
        }
        Quantized {
            quantizer,
            codes,
            generation,
            metric: kernels.0,
            kernels: kernels.1,
            misfits: set,
            trained_misfits: AtomicU64::new(trained_misfits),
            misfits_dirty: AtomicBool::new(false),
            misfits_known: misfits.is_some(),
        }
    }

    /// Slots whose vector these codes do not fit.
    pub fn misfits(&self) -> usize {
        self.misfits.len()
    }

    /// Misfits beyond those the training left.
    pub fn new_misfits(&self) -> u64 {
        (self.misfits() as u64).saturating_sub(self.trained_misfits())
    }

    /// Misfits when the codes were trained.
    pub fn trained_misfits(&self) -> u64 {
        self.trained_misfits.load(Ordering::Relaxed)
    }

    /// Counts the misfits there are now as the training's.
    fn excuse_misfits(&self) {
        self.trained_misfits
            .store(self.misfits() as u64, Ordering::Relaxed);
    }

    /// Whether the misfit set is known to hold every vector the codes do not fit.
    pub fn misfits_known(&self) -> bool {
        self.misfits_known
    }

    /// Every misfit slot, ascending, if the set is known to hold them all (what a
    /// checkpoint may commit as the codes' misfits).
    pub fn misfit_slots(&self) -> Option<Vec<u32>> {
        self.misfits_known.then(|| self.misfits.members())
    }

    /// Whether the misfits changed since the last call (a checkpoint's commit).
    pub fn take_misfits_dirty(&self) -> bool {
        self.misfits_dirty.swap(false, Ordering::Relaxed)
    }

    /// Forgets slots being freed: whatever is written there next is judged anew. The
    /// training's misfits may be among them: the baseline never exceeds what is left, or
    /// new misfits would hide behind misfits that are gone.
    pub fn forget_misfits(&self, slots: &[u32]) {
        for &s in slots {
            self.set_misfit(s, false);
        }
        self.trained_misfits
            .fetch_min(self.misfits() as u64, Ordering::Relaxed);
    }

    /// Records whether slot `node`'s new vector fits the quantiser.
    fn note_fit(&self, node: u32, vector: &[f32]) {
        self.set_misfit(node, !self.quantizer.fits(vector));
    }

    fn set_misfit(&self, node: u32, misfit: bool) {
        let changed = match misfit {
            true => self.misfits.insert(node),
            false => self.misfits.remove(node),
        };
        if changed {
            self.misfits_dirty.store(true, Ordering::Relaxed);
        }
    }

    /// Whether slot `node`, holding `vector`, is either fitted by the codes or marked a
    /// misfit (for `verify`; always, while the misfits are unknown). A marked vector that
    /// fits costs an exact distance, no answer: only the other way round is a fault.
    pub fn marks_misfit(&self, node: u32, vector: &[f32]) -> bool {
        !self.misfits_known || self.misfits.contains(node) || self.quantizer.fits(vector)
    }

    /// Whether slot `node`'s codes are those of `vector` (for `verify`).
    pub fn matches(&self, node: u32, vector: &[f32]) -> bool {
        self.codes.codes(node) == self.encode(vector).as_slice()
    }

    fn encode(&self, vector: &[f32]) -> Vec<u8> {
        let mut out = vec![0u8; self.quantizer.code_bytes(vector.len())];
        self.quantizer.encode(vector, &mut out);
        out
    }
}

/// A node and its distance to the current query.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cand {
    /// Distance to the query.
    pub d: f32,
    /// Internal node id.
    pub id: u32,
}

impl Eq for Cand {}
impl PartialOrd for Cand {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Cand {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        self.d.total_cmp(&other.d).then(self.id.cmp(&other.id))
    }
}

/// Whether the first `slots` slots of a page file were all in memory when last checked
/// (`mincore`, every `search::WATCH_EVERY` walks of layer 0 from the
/// `search::WATCH_FIRST`-th, counting from 0). While they are not, walks read ahead of
/// what they will score or expand; once they are (pinned, or cached by a kernel with
/// memory to spare) a walk makes no system call for them.
#[derive(Default)]
struct Watch {
    /// Slots watched (0: none, never away).
    slots: usize,
    away: AtomicBool,
}

impl Watch {
    /// A watch of `slots` slots, away until the first check says otherwise.
    fn new(slots: usize) -> Watch {
        Watch {
            slots,
            away: AtomicBool::new(slots > 0),
        }
    }

    /// Whether anything is watched.
    #[inline]
    fn active(&self) -> bool {
        self.slots > 0
    }

    /// Whether the watched slots were not all in memory at the last check.
    #[inline]
    fn away(&self) -> bool {
        self.away.load(Ordering::Relaxed)
    }

    /// Checks `file` now.
    fn check(&self, file: &crate::store::page::PageFile) {
        if self.slots > 0 {
            self.away
                .store(!file.resident(self.slots), Ordering::Relaxed);
        }
    }
}

/// Construction parameters.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    /// Neighbours per node on upper layers (and chosen per insert on every layer).
    pub m: usize,
    /// Neighbours per node on layer 0.
    pub m0: usize,
    /// Beam width while inserting.
    pub ef_construction: usize,
}

/// A set of nodes: an atomic bitset sized to the page files' capacity, and its size.
struct NodeSet {
    words: Vec<AtomicU64>,
    len: AtomicUsize,
}

impl NodeSet {
    fn with_capacity(cap: usize) -> NodeSet {
        NodeSet {
            words: (0..cap.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
            len: AtomicUsize::new(0),
        }
    }

    /// Nodes in the set (as of the changes this thread has seen).
    fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    fn grow(&mut self, cap: usize) {
        let words = cap.div_ceil(64);
        while self.words.len() < words {
            self.words.push(AtomicU64::new(0));
        }
    }

    /// Whether node `i` is in the set. Ids beyond the capacity (garbage) are not.
    #[inline(always)]
    fn contains(&self, i: u32) -> bool {
        self.words
            .get(i as usize >> 6)
            .is_some_and(|w| w.load(Ordering::Acquire) >> (i & 63) & 1 == 1)
    }

    /// Adds node `i` (Release: its vector and links written before are visible to whoever
    /// sees the bit).
    /// Whether it was not in the set before.
    fn insert(&self, i: u32) -> bool {
        let bit = 1 << (i & 63);
        let added = self.words[i as usize >> 6].fetch_or(bit, Ordering::Release) & bit == 0;
        if added {
            self.len.fetch_add(1, Ordering::Relaxed);
        }
        added
    }

    /// Whether it was in the set before.
    fn remove(&self, i: u32) -> bool {
        let bit = 1 << (i & 63);
        let removed = self.words[i as usize >> 6].fetch_and(!bit, Ordering::Release) & bit != 0;
        if removed {
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
        removed
    }

    /// The nodes in the set, ascending.
    fn members(&self) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.len());
        for (w, word) in self.words.iter().enumerate() {
            let mut bits = word.load(Ordering::Acquire);
            while bits != 0 {
                out.push((w * 64) as u32 + bits.trailing_zeros());
                bits &= bits - 1;
            }
        }
        out
    }

    /// Empties the set.
    fn clear(&self) {
        for w in &self.words {
            w.store(0, Ordering::Release);
        }
        self.len.store(0, Ordering::Relaxed);
    }

    /// Sets every bit below `n`, a word at a time (restoring 10^6 nodes costs microseconds).
    fn fill_below(&mut self, n: u32) {
        let n = n as usize;
        let mut len = 0;
        for (w, word) in self.words.iter_mut().enumerate() {
            let bits = n.saturating_sub(w * 64).min(64);
            len += bits;
            *word.get_mut() = if bits == 64 {
                u64::MAX
            } else {
                (1u64 << bits) - 1
            };
        }
        *self.len.get_mut() = len;
    }
}

/// Number of stripes of the per-node lock table (a power of two).
const LOCK_STRIPES: usize = 4096;

/// The graph.
pub struct Graph {
    params: Params,
    dist: Distance,
    vectors: Vectors,
    layer0: Layer0,
    quantized: Option<Quantized>,
    /// See `set_disk_reads`.
    disk_reads: bool,
    /// Direct reads of the vector file for re-ranks (see `set_direct_reads`).
    direct: Option<crate::store::DirectReads>,
    /// Slots whose vector was written since the page files were last synced: their bytes
    /// on disk may be older than in memory, so a direct read must not be used for them.
    unsynced: NodeSet,
    /// See `watch_lists`.
    lists_watch: Watch,
    /// See `watch_codes`.
    codes_watch: Watch,
    /// Walks of layer 0 since the open: when the watches check (`search::WATCH_EVERY`).
    walks: AtomicU64,
    upper: UpperLayers,
    /// Nodes whose upper lists changed since the metadata last stored them.
    upper_dirty: Mutex<HashSet<u32>>,
    live: NodeSet,
    /// Live or tombstoned: the nodes a search may walk through.
    routable: NodeSet,
    entry: RwLock<Option<EntryPoint>>,
    /// Held by an insert whose level exceeds the top level, for its whole run, so that two
    /// such inserts cannot both replace the entry point.
    raise: Mutex<()>,
    /// Guards read-modify-write of layer-0 lists; node `i` uses stripe `i % LOCK_STRIPES`.
    /// A thread holds at most one stripe at a time, so stripes cannot deadlock.
    locks: Box<[Mutex<()>]>,
    scratch: Mutex<Vec<search::Scratch>>,
}

impl Graph {
    /// An empty graph over the given files (no live nodes).
    pub fn new(params: Params, dist: Distance, vectors: Vectors, layer0: Layer0) -> Graph {
        debug_assert_eq!(params.m0, layer0.m0());
        let cap = vectors.file().capacity().min(layer0.file().capacity());
        Graph {
            params,
            dist,
            vectors,
            layer0,
            quantized: None,
            disk_reads: false,
            direct: None,
            unsynced: NodeSet::with_capacity(cap),
            lists_watch: Watch::default(),
            codes_watch: Watch::default(),
            walks: AtomicU64::new(0),
            upper: UpperLayers::default(),
            upper_dirty: Mutex::new(HashSet::new()),
            live: NodeSet::with_capacity(cap),
            routable: NodeSet::with_capacity(cap),
            entry: RwLock::new(None),
            raise: Mutex::new(()),
            locks: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            scratch: Mutex::new(Vec::new()),
        }
    }

    /// Restores the state kept in metadata: live and tombstoned nodes, where upper lists
    /// are read from, and the entry point.
    pub fn restore(
        &mut self,
        high_water: u32,
        free: &[u32],
        tombstones: &[u32],
        upper: Arc<dyn UpperSource>,
        entry: Option<EntryPoint>,
    ) {
        // Every slot below the high-water mark is live but for the free and deleted ones.
        self.live.fill_below(high_water);
        self.routable.fill_below(high_water);
        for &i in free {
            self.live.remove(i);
            self.routable.remove(i);
        }
        for &i in tombstones {
            self.live.remove(i);
        }
        self.upper.set_source(upper);
        *self.entry.get_mut() = entry;
    }

    /// Slots every file holds.
    pub fn capacity(&self) -> usize {
        let codes = self
            .quantized
            .as_ref()
            .map_or(usize::MAX, |q| q.codes.file().capacity());
        self.vectors
            .file()
            .capacity()
            .min(self.layer0.file().capacity())
            .min(codes)
    }

    /// Grows every page file to at least `cap` slots. Needs exclusive access (remaps).
    pub fn grow(&mut self, cap: usize) -> Result<()> {
        self.vectors.file_mut().grow(cap)?;
        self.layer0.file_mut().grow(cap)?;
        if let Some(q) = &mut self.quantized {
            q.codes.file_mut().grow(cap)?;
        }
        let cap = self.capacity();
        if let Some(q) = &mut self.quantized {
            q.misfits.grow(cap);
        }
        self.live.grow(cap);
        self.routable.grow(cap);
        self.unsynced.grow(cap);
        Ok(())
    }

    /// The vector pages.
    pub fn vectors(&self) -> &Vectors {
        &self.vectors
    }

    /// Makes every page file durable (msync, fsync).
    pub fn sync(&self) -> Result<()> {
        self.vectors.file().sync()?;
        self.layer0.file().sync()?;
        if let Some(q) = &self.quantized {
            q.codes.file().sync()?;
        }
        // Every slot's bytes on disk are now those in memory. (Callers hold the graph
        // exclusively, so no insert marks a slot between the sync and this.)
        self.unsynced.clear();
        Ok(())
    }

    /// The current entry point.
    pub fn entry(&self) -> Option<EntryPoint> {
        *self.entry.read()
    }

    /// Whether `node` is live (would appear in results).
    pub fn is_live(&self, node: u32) -> bool {
        self.live.contains(node)
    }

    /// Number of nodes with upper lists.
    pub fn upper_count(&self) -> Result<usize> {
        Ok(self.upper.nodes()?.len())
    }

    /// Copies `node`'s neighbours on `level` into `out` (cleared first).
    #[inline]
    pub fn links(&self, node: u32, level: usize, out: &mut Vec<u32>) -> Result<()> {
        out.clear();
        if level == 0 {
            self.layer0.read_into(node, out);
        } else if let Some(u) = self.upper.get(node)?
            && let Some(list) = u.lists.get(level - 1)
        {
            out.extend_from_slice(&list.lock());
        }
        Ok(())
    }

    /// `node`'s level: 0 unless it has upper lists.
    fn level_of(&self, node: u32) -> Result<usize> {
        Ok(self.upper.get(node)?.map_or(0, |u| u.level()))
    }

    /// Upper lists of the nodes changed since the last `clear_upper_dirty`, `None` for a node
    /// that lost its upper lists: what a checkpoint stores.
    pub fn dirty_upper(&self) -> Vec<(u32, Option<UpperLists>)> {
        let dirty: Vec<u32> = self.upper_dirty.lock().iter().copied().collect();
        self.upper.snapshot(dirty)
    }

    /// Forgets the dirty set after it was stored.
    pub fn clear_upper_dirty(&self) {
        self.upper_dirty.lock().clear();
    }

    #[inline(always)]
    fn distance_to(&self, q: &[f32], node: u32) -> f32 {
        self.dist.eval_row(q, self.vectors.vector(node))
    }

    /// The quantised codes searches walk on, if any.
    pub fn quantized(&self) -> Option<&Quantized> {
        self.quantized.as_ref()
    }

    /// Installs (or removes) the codes searches walk on. The codes must cover every
    /// routable node (see `encode_routable`) and the file every slot.
    pub fn set_quantized(&mut self, quantized: Option<Quantized>) {
        self.quantized = quantized;
    }

    /// Writes the codes of every routable node below `high_water` into `quantized`'s
    /// file, on `threads` threads, noting which vectors they do not fit; those are the
    /// misfits the training leaves.
    pub fn encode_routable(&self, quantized: &Quantized, high_water: u32, threads: usize) {
        crate::parallel::parallel_for(high_water as usize, threads, |i| {
            let node = i as u32;
            if self.routable.contains(node) {
                let v = self.vectors.vector(node).to_f32();
                quantized.codes.write(node, &quantized.encode(&v));
                quantized.note_fit(node, &v);
            }
        });
        quantized.excuse_misfits();
    }

    /// Whether an exact re-rank should start the disk reads of a batch of vectors before
    /// reading any (`PageFile::will_need`): set when the vectors do not fit the memory
    /// budget, so that each query's reads are in flight together instead of queued
    /// behind one page fault after another. Off, a re-rank costs no system calls.
    pub fn set_disk_reads(&mut self, on: bool) {
        self.disk_reads = on;
    }

    /// Lets re-ranks read vectors with `reads` (direct reads around the page cache) when
    /// the vectors live on disk; slots written since the last sync are read through the
    /// mapping still.
    pub fn set_direct_reads(&mut self, reads: Option<crate::store::DirectReads>) {
        self.direct = reads;
    }

    /// Watches whether the layer-0 lists of the first `slots` slots are in memory (see
    /// `Watch`): while they are not, a walk starts reading the lists of the next
    /// candidates it will expand (`search::LISTS_AHEAD` of them) together, so that they
    /// are on their way while it expands this one. Set when the lists do not fit the
    /// memory budget (0: they do, and are pinned).
    pub fn watch_lists(&mut self, slots: usize) {
        self.lists_watch = Watch::new(slots);
    }

    /// Watches whether the codes of the first `slots` slots are in memory (see `Watch`):
    /// while they are not, a walk starts the reads of an expanded node's neighbours'
    /// codes together before scoring any (`PageFile::will_need`), the descent's too. Set
    /// under a memory budget, where codes that did not fit are read from disk by every
    /// walk, and pinned ones by the first walks of a cold open while the pin's background
    /// read is still arriving.
    pub fn watch_codes(&mut self, slots: usize) {
        self.codes_watch = Watch::new(slots);
    }

    /// The layer-0 page file (for pinning and sizes).
    pub fn layer0_file_mut(&mut self) -> &mut crate::store::page::PageFile {
        self.layer0.file_mut()
    }

    /// The vector page file (for pinning and sizes).
    pub fn vectors_file_mut(&mut self) -> &mut crate::store::page::PageFile {
        self.vectors.file_mut()
    }

    /// The code file, if any (for pinning and sizes).
    pub fn codes_file_mut(&mut self) -> Option<&mut crate::store::page::PageFile> {
        self.quantized.as_mut().map(|q| q.codes.file_mut())
    }

    /// Deletes `node` from results at once; it keeps routing searches until `consolidate`.
    pub fn tombstone(&self, node: u32) {
        self.live.remove(node);
    }
}

#[cfg(test)]
mod tests;
