//! The HNSW graph (Malkov & Yashunin, arXiv 1603.09320) over the vector arena, the layer-0
//! pages and the in-memory upper layers. It speaks internal node ids only; external ids,
//! durability and metadata belong to the layers above.
//!
//! Node states: *live* (in results), *tombstoned* (deleted: never in results, but still
//! routed through, with its vector and lists intact, until `consolidate` relinks its
//! in-neighbours), and *free* (neither; the slot may be reused). `routable` = live ∪
//! tombstoned.
//!
//! Concurrency: `insert` and `search` take `&self` and may run on many threads at once.
//! Layer-0 lists are atomics (see `layer0`), written under a striped per-node lock; upper
//! lists sit behind their own mutexes. A node is *live* once its bit is set in `live`:
//! searches follow links only to routable nodes, so a link to a slot that is free, half
//! written, or left behind by a crash is skipped rather than trusted. Liveness is derived
//! from the metadata, never read from the page files. An insert links others to its node
//! only after writing all of the node's own lists, so no concurrent insert can walk into
//! (and attach itself only to) a node whose lists are still empty.

use std::cmp::{Ordering as CmpOrdering, Reverse};
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};

use crate::codes::Codes;
use crate::distance::{Distance, Kernels, Metric, Sq8};
use crate::layer0::Layer0;
use crate::vectors::Vectors;

/// SQ8 codes of every routable node and the quantiser that made them. When a graph has
/// them, searches walk layer 0 on codes (a quarter of the bytes per distance) and re-rank
/// the beam with exact distances. Inserts walk layer 0 the same way but choose and prune
/// neighbours on exact distances.
pub struct Quantized {
    /// The quantiser.
    pub sq8: Sq8,
    /// The code file.
    pub codes: Codes,
    /// Which `codes.N` file this is.
    pub generation: u64,
    /// Metric and kernels to prepare queries with.
    pub metric: Metric,
    /// Kernels of the code distances.
    pub kernels: Kernels,
}

impl Quantized {
    /// Whether slot `node`'s codes are those of `vector` (for `verify`).
    pub fn matches(&self, node: u32, vector: &[f32]) -> bool {
        let mut expected = vec![0u8; vector.len()];
        self.sq8.encode(vector, &mut expected);
        self.codes.codes(node) == expected.as_slice()
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

/// The node searches start from, and its level (the graph's top level).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryPoint {
    /// Internal node id.
    pub node: u32,
    /// Its level.
    pub level: usize,
}

/// One node's upper-layer lists: `lists[l - 1]` holds its neighbours on level `l`.
pub type UpperLists = Vec<Vec<u32>>;

/// Set of live nodes: an atomic bitset sized to the arena capacity.
pub struct LiveSet {
    words: Vec<AtomicU64>,
}

impl LiveSet {
    fn with_capacity(cap: usize) -> LiveSet {
        LiveSet {
            words: (0..cap.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn grow(&mut self, cap: usize) {
        let words = cap.div_ceil(64);
        while self.words.len() < words {
            self.words.push(AtomicU64::new(0));
        }
    }

    /// Whether node `i` is live. Ids beyond the capacity (garbage) are not.
    #[inline(always)]
    pub fn contains(&self, i: u32) -> bool {
        self.words
            .get(i as usize >> 6)
            .is_some_and(|w| w.load(Ordering::Acquire) >> (i & 63) & 1 == 1)
    }

    /// Publishes node `i` (Release: its vector and links written before are visible to
    /// whoever sees the bit).
    fn insert(&self, i: u32) {
        self.words[i as usize >> 6].fetch_or(1 << (i & 63), Ordering::Release);
    }

    fn remove(&self, i: u32) {
        self.words[i as usize >> 6].fetch_and(!(1 << (i & 63)), Ordering::Release);
    }

    /// Sets every bit below `n`, a word at a time (restoring 10^6 nodes costs microseconds).
    fn fill_below(&mut self, n: u32) {
        let n = n as usize;
        for (w, word) in self.words.iter_mut().enumerate() {
            let bits = n.saturating_sub(w * 64).min(64);
            *word.get_mut() = if bits == 64 {
                u64::MAX
            } else {
                (1u64 << bits) - 1
            };
        }
    }
}

/// Per-search working memory, pooled so that a query allocates nothing but its answer.
struct Scratch {
    /// Epoch-tagged visited marks: node `i` is visited iff `marks[i] == epoch`.
    marks: Vec<u16>,
    epoch: u16,
    candidates: BinaryHeap<Reverse<Cand>>,
    results: BinaryHeap<Cand>,
    links: Vec<u32>,
    fresh: Vec<u32>,
    /// Distances computed by the current search (its cost, independent of the clock).
    distances: usize,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            marks: Vec::new(),
            epoch: 0,
            candidates: BinaryHeap::new(),
            results: BinaryHeap::new(),
            links: Vec::new(),
            fresh: Vec::new(),
            distances: 0,
        }
    }

    fn reset(&mut self, capacity: usize) {
        if self.marks.len() < capacity {
            self.marks.resize(capacity, 0);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            // Wrapped: old marks could alias the new epoch, so clear them once in 65535.
            self.marks.fill(0);
            self.epoch = 1;
        }
        self.candidates.clear();
        self.results.clear();
    }
}

/// Marks `i` visited; true if it was not yet. Ids beyond the table count as visited.
#[inline(always)]
fn first_visit(marks: &mut [u16], epoch: u16, i: u32) -> bool {
    match marks.get_mut(i as usize) {
        Some(m) if *m != epoch => {
            *m = epoch;
            true
        }
        _ => false,
    }
}

struct UpperNode {
    lists: Box<[Mutex<Vec<u32>>]>,
}

/// Where upper lists not yet in memory come from (the metadata's last checkpoint). Upper
/// lists load on first use, node by node, so that opening an index does not read them all.
pub trait UpperSource: Send + Sync {
    /// `node`'s lists (empty: the node is on layer 0 only).
    fn lists(&self, node: u32) -> Vec<Vec<u32>>;
    /// Every node's lists.
    fn all(&self) -> Vec<(u32, UpperLists)>;
}

/// The upper layers in memory: a cache over an `UpperSource`, and the only copy of lists
/// changed since the last checkpoint (a changed node is always cached).
struct UpperLayers {
    /// Node → its lists; `None`: known to have none. Absent: not loaded yet.
    cache: RwLock<HashMap<u32, Option<Arc<UpperNode>>>>,
    /// Every node of the source is in the cache.
    complete: std::sync::atomic::AtomicBool,
    source: Option<Arc<dyn UpperSource>>,
}

impl UpperLayers {
    fn get(&self, node: u32) -> Option<Arc<UpperNode>> {
        if let Some(e) = self.cache.read().get(&node) {
            return e.clone();
        }
        let source = self
            .source
            .as_ref()
            .filter(|_| !self.complete.load(Ordering::Acquire))?;
        let lists = source.lists(node);
        let loaded = (!lists.is_empty()).then(|| Arc::new(UpperNode::from_lists(lists)));
        self.cache.write().entry(node).or_insert(loaded).clone()
    }

    fn set(&self, node: u32, lists: Option<UpperNode>) {
        self.cache.write().insert(node, lists.map(Arc::new));
    }

    /// Loads every node not cached yet; afterwards misses cost nothing.
    fn load_all(&self) {
        if self.complete.load(Ordering::Acquire) {
            return;
        }
        if let Some(source) = &self.source {
            let all = source.all();
            let mut cache = self.cache.write();
            for (node, lists) in all {
                cache
                    .entry(node)
                    .or_insert_with(|| Some(Arc::new(UpperNode::from_lists(lists))));
            }
        }
        self.complete.store(true, Ordering::Release);
    }

    /// Every node with upper lists (loads them all).
    fn nodes(&self) -> Vec<(u32, Arc<UpperNode>)> {
        self.load_all();
        self.cache
            .read()
            .iter()
            .filter_map(|(&n, u)| u.clone().map(|u| (n, u)))
            .collect()
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
    upper: UpperLayers,
    /// Nodes whose upper lists changed since the metadata last stored them.
    upper_dirty: Mutex<HashSet<u32>>,
    live: LiveSet,
    /// Live or tombstoned: the nodes a search may walk through.
    routable: LiveSet,
    entry: RwLock<Option<EntryPoint>>,
    /// Held by an insert whose level exceeds the top level, for its whole run, so that two
    /// such inserts cannot both replace the entry point.
    raise: Mutex<()>,
    /// Guards read-modify-write of layer-0 lists; node `i` uses stripe `i % LOCK_STRIPES`.
    /// A thread holds at most one stripe at a time, so stripes cannot deadlock.
    locks: Box<[Mutex<()>]>,
    scratch: Mutex<Vec<Scratch>>,
}

impl Graph {
    /// An empty graph over the given files (no live nodes).
    pub fn new(params: Params, dist: Distance, vectors: Vectors, layer0: Layer0) -> Graph {
        debug_assert_eq!(params.m0, layer0.m0());
        let cap = vectors.arena().capacity().min(layer0.arena().capacity());
        Graph {
            params,
            dist,
            vectors,
            layer0,
            quantized: None,
            upper: UpperLayers {
                cache: RwLock::new(HashMap::new()),
                complete: std::sync::atomic::AtomicBool::new(false),
                source: None,
            },
            upper_dirty: Mutex::new(HashSet::new()),
            live: LiveSet::with_capacity(cap),
            routable: LiveSet::with_capacity(cap),
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
        self.upper.source = Some(upper);
        *self.entry.get_mut() = entry;
    }

    /// Slots the files hold.
    pub fn capacity(&self) -> usize {
        self.vectors
            .arena()
            .capacity()
            .min(self.layer0.arena().capacity())
    }

    /// Grows both page files to at least `cap` slots. Needs exclusive access (remaps).
    pub fn grow(&mut self, cap: usize) -> crate::Result<()> {
        self.vectors.arena_mut().grow(cap)?;
        self.layer0.arena_mut().grow(cap)?;
        if let Some(q) = &mut self.quantized {
            q.codes.arena_mut().grow(cap)?;
        }
        let cap = self.capacity();
        self.live.grow(cap);
        self.routable.grow(cap);
        Ok(())
    }

    /// The vector arena.
    pub fn vectors(&self) -> &Vectors {
        &self.vectors
    }

    /// The layer-0 pages.
    pub fn layer0(&self) -> &Layer0 {
        &self.layer0
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
    pub fn upper_count(&self) -> usize {
        self.upper.nodes().len()
    }

    /// Copies `node`'s neighbours on `level` into `out` (cleared first).
    pub fn links(&self, node: u32, level: usize, out: &mut Vec<u32>) {
        out.clear();
        if level == 0 {
            self.layer0.read_into(node, out);
        } else if let Some(u) = self.upper.get(node)
            && let Some(list) = u.lists.get(level - 1)
        {
            out.extend_from_slice(&list.lock());
        }
    }

    /// Upper lists of the nodes changed since the last `clear_upper_dirty`, `None` for a node
    /// that lost its upper lists. Called by the metadata layer at a checkpoint.
    pub fn dirty_upper(&self) -> Vec<(u32, Option<UpperLists>)> {
        let dirty = self.upper_dirty.lock();
        let cache = self.upper.cache.read();
        dirty
            .iter()
            .map(|&n| {
                // A changed node is always cached (changes go through the cache).
                let lists = cache
                    .get(&n)
                    .cloned()
                    .flatten()
                    .map(|u| u.lists.iter().map(|l| l.lock().clone()).collect());
                (n, lists)
            })
            .collect()
    }

    /// Forgets the dirty set after it was stored.
    pub fn clear_upper_dirty(&self) {
        self.upper_dirty.lock().clear();
    }

    #[inline(always)]
    fn distance_to(&self, q: &[f32], node: u32) -> f32 {
        self.dist.eval(q, self.vectors.vector(node))
    }

    fn with_scratch<R>(&self, f: impl FnOnce(&mut Scratch) -> R) -> R {
        let mut s = self.scratch.lock().pop().unwrap_or_else(Scratch::new);
        let r = f(&mut s);
        self.scratch.lock().push(s);
        r
    }

    /// Greedy walk on `level`: moves to a closer neighbour until none is closer.
    fn greedy(&self, s: &mut Scratch, q: &[f32], mut cur: Cand, level: usize) -> Cand {
        loop {
            let mut changed = false;
            self.links(cur.id, level, &mut s.links);
            for &n in &s.links {
                if !self.routable.contains(n) {
                    continue;
                }
                s.distances += 1;
                let d = self.distance_to(q, n);
                if d < cur.d {
                    cur = Cand { d, id: n };
                    changed = true;
                }
            }
            if !changed {
                return cur;
            }
        }
    }

    /// Best-first beam search of width `ef` on `level` from `entry`; the answer is sorted
    /// by ascending distance (paper, Algorithm 2). Only nodes that `accept` admits become
    /// answers; every routable node still guides the walk, so a filter narrows the answers
    /// without cutting the graph (as hnswlib's filtered search does).
    ///
    /// `score` gives a node's distance to the query and `prefetch` starts loading what
    /// `score` will read: exact vectors, or codes.
    #[allow(clippy::too_many_arguments)] // private; each argument is one concern of the walk
    fn search_layer(
        &self,
        s: &mut Scratch,
        entry: &[Cand],
        ef: usize,
        level: usize,
        accept: impl Fn(u32) -> bool,
        score: impl Fn(u32) -> f32,
        prefetch: impl Fn(u32),
    ) -> Vec<Cand> {
        s.reset(self.capacity());
        let Scratch {
            marks,
            epoch,
            candidates,
            results,
            links,
            fresh,
            distances,
        } = s;
        let epoch = *epoch;
        for &e in entry {
            if first_visit(marks, epoch, e.id) {
                candidates.push(Reverse(e));
                if accept(e.id) {
                    results.push(e);
                }
            }
        }
        while results.len() > ef {
            results.pop();
        }
        while let Some(Reverse(c)) = candidates.pop() {
            if results.len() >= ef && results.peek().is_some_and(|w| c.d > w.d) {
                break;
            }
            self.links(c.id, level, links);
            // The next candidate is likely expanded next: start loading its list now, so
            // the miss overlaps this round's distance computations.
            if level == 0
                && let Some(Reverse(next)) = candidates.peek()
            {
                self.layer0.prefetch(next.id);
            }
            // First pass: drop visited and unroutable nodes and start loading the vectors of
            // the rest, so that their cache misses overlap instead of queueing behind each
            // distance computation.
            fresh.clear();
            for &n in links.iter() {
                if self.routable.contains(n) && first_visit(marks, epoch, n) {
                    prefetch(n);
                    fresh.push(n);
                }
            }
            *distances += fresh.len();
            for &n in fresh.iter() {
                let d = score(n);
                if results.len() < ef || results.peek().is_some_and(|w| d < w.d) {
                    candidates.push(Reverse(Cand { d, id: n }));
                    // Tombstoned (and filtered-out) nodes guide the walk but are never
                    // answers.
                    if accept(n) {
                        results.push(Cand { d, id: n });
                        if results.len() > ef {
                            results.pop();
                        }
                    }
                }
            }
        }
        let mut out: Vec<Cand> = results.drain().collect();
        out.sort_unstable();
        out
    }

    /// `search_layer` on layer 0 walking on codes, then the beam re-ranked exactly: the
    /// order within the beam is what quantisation blurs, and the beam is small.
    fn search_codes(
        &self,
        s: &mut Scratch,
        quantized: &Quantized,
        q: &[f32],
        entry: &[Cand],
        ef: usize,
        accept: impl Fn(u32) -> bool,
    ) -> Vec<Cand> {
        let prepared = quantized.sq8.query(quantized.metric, quantized.kernels, q);
        let score = |n: u32| prepared.eval(quantized.codes.codes(n));
        let start: Vec<Cand> = entry
            .iter()
            .map(|c| Cand {
                d: score(c.id),
                id: c.id,
            })
            .collect();
        let mut beam = self.search_layer(s, &start, ef, 0, accept, score, |n| {
            quantized.codes.prefetch(n)
        });
        // The beam's vectors are cold (the walk read codes): start loading all of them
        // before comparing any, so their misses overlap.
        for c in &beam {
            self.vectors.prefetch(c.id);
        }
        for c in &mut beam {
            c.d = self.distance_to(q, c.id);
        }
        s.distances += beam.len();
        beam.sort_unstable();
        beam
    }

    /// The neighbour-selection heuristic (paper, Algorithm 4, as hnswlib applies it):
    /// walking candidates from nearest, keep one only if it is closer to the base than to
    /// every neighbour already kept. Fewer than `m` candidates are all kept. Each candidate
    /// rejected for being closer to a kept neighbour `r` is reported as `(candidate, r)`.
    fn select(
        &self,
        sorted: &[Cand],
        m: usize,
        mut dominated: Option<&mut Vec<(u32, u32)>>,
    ) -> Vec<Cand> {
        if sorted.len() <= m {
            return sorted.to_vec();
        }
        let mut kept: Vec<Cand> = Vec::with_capacity(m);
        for &c in sorted {
            if kept.len() >= m {
                break;
            }
            let v = self.vectors.vector(c.id);
            match kept.iter().find(|k| self.distance_to(v, k.id) < c.d) {
                None => kept.push(c),
                Some(r) => {
                    if let Some(d) = dominated.as_deref_mut() {
                        d.push((c.id, r.id));
                    }
                }
            }
        }
        kept
    }

    /// Runs `f` on `node`'s list at `level` under that list's lock and stores the result if
    /// `f` returns true.
    fn update_links(&self, node: u32, level: usize, f: impl FnOnce(&mut Vec<u32>) -> bool) {
        if level == 0 {
            let _guard = self.locks[node as usize % LOCK_STRIPES].lock();
            let mut list = Vec::with_capacity(self.params.m0);
            self.layer0.read_into(node, &mut list);
            if f(&mut list) {
                self.layer0.write(node, &list);
            }
        } else {
            let Some(u) = self.upper.get(node) else {
                return;
            };
            let Some(slot) = u.lists.get(level - 1) else {
                return;
            };
            if f(&mut slot.lock()) {
                self.upper_dirty.lock().insert(node);
            }
        }
    }

    fn max_links(&self, level: usize) -> usize {
        if level == 0 {
            self.params.m0
        } else {
            self.params.m
        }
    }

    /// Adds the link `node -> new` (at distance `d`), pruning `node`'s list with the
    /// heuristic when it is full; links to dead nodes are dropped on the way. Returns
    /// whether `node` links to `new` afterwards.
    ///
    /// A link `node -> x` pruned because a kept neighbour `r` is closer to `x` is moved to
    /// `r -> x` when `r` has room: the heuristic's own premise is that `x` is reached
    /// through `r`, and without that link `x` can lose its last in-link and become
    /// unreachable.
    fn add_link(&self, node: u32, new: u32, d: f32, level: usize) -> bool {
        let max = self.max_links(level);
        let mut dominated = Vec::new();
        let mut linked = true;
        self.update_links(node, level, |list| {
            if list.contains(&new) {
                return false;
            }
            if list.len() < max {
                list.push(new);
                return true;
            }
            let base = self.vectors.vector(node);
            let mut cands: Vec<Cand> = list
                .iter()
                .filter(|&&x| self.live.contains(x))
                .map(|&x| Cand {
                    d: self.distance_to(base, x),
                    id: x,
                })
                .collect();
            cands.push(Cand { d, id: new });
            cands.sort_unstable();
            let kept = self.select(&cands, max, Some(&mut dominated));
            linked = kept.iter().any(|c| c.id == new);
            list.clear();
            list.extend(kept.iter().map(|c| c.id));
            true
        });
        // Outside `node`'s lock: a thread holds one list lock at a time.
        for (x, r) in dominated {
            self.update_links(r, level, |list| {
                let room = list.len() < max && x != r && !list.contains(&x);
                if room {
                    list.push(x);
                }
                room
            });
        }
        linked
    }

    /// Writes the list `chosen` for `node` (being inserted) on `level`. Links that other
    /// inserts added to `node` meanwhile are kept, pruned with `chosen` by the heuristic
    /// when they do not all fit: overwriting them would take those nodes' in-link away.
    fn set_own_links(&self, node: u32, level: usize, chosen: &[Cand]) {
        let max = self.max_links(level);
        self.update_links(node, level, |list| {
            let base = self.vectors.vector(node);
            let mut cands: Vec<Cand> = chosen.to_vec();
            cands.extend(
                list.iter()
                    .filter(|&&x| x != node && self.live.contains(x))
                    .filter(|&&x| !chosen.iter().any(|c| c.id == x))
                    .map(|&x| Cand {
                        d: self.distance_to(base, x),
                        id: x,
                    }),
            );
            cands.sort_unstable();
            list.clear();
            list.extend(self.select(&cands, max, None).iter().map(|c| c.id));
            true
        });
    }

    /// Makes `from` link to `to` (at distance `d`) even when `from`'s list is full, by
    /// replacing its farthest neighbour. Used when no neighbour kept a new node, which
    /// would otherwise be unreachable.
    fn force_link(&self, from: u32, to: u32, d: f32, level: usize) {
        let max = self.max_links(level);
        self.update_links(from, level, |list| {
            if list.contains(&to) || from == to {
                return false;
            }
            if list.len() < max {
                list.push(to);
                return true;
            }
            let base = self.vectors.vector(from);
            let (far, far_d) = list
                .iter()
                .enumerate()
                .map(|(i, &x)| (i, self.distance_to(base, x)))
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .expect("a full list is not empty");
            debug_assert!(far_d >= d || list.len() == max);
            list[far] = to;
            true
        });
    }

    /// Inserts `v` (already validated and normalised) as node `node` with the given level
    /// (paper, Algorithm 1). `node` must not be live. Safe to call from many threads.
    ///
    /// Replay (`recovering`) re-inserts a node whose earlier insert may be partly or
    /// wholly in the pages already. Its own layer-0 list is then kept as extra candidates:
    /// the rest of the graph may already depend on it (neighbours pruned a link to `b`
    /// because `node` links to `b`), and a fresh search cannot find what only that list
    /// reaches. Duplicate links are never added twice.
    pub fn insert(&self, node: u32, level: usize, v: &[f32], label: u64, recovering: bool) {
        debug_assert!(!self.live.contains(node), "insert of live node {node}");
        let mut earlier = Vec::new();
        if recovering {
            self.links(node, 0, &mut earlier);
        }
        self.vectors.write(node, v, label);
        if let Some(q) = &self.quantized {
            let mut codes = vec![0u8; v.len()];
            q.sq8.encode(v, &mut codes);
            q.codes.write(node, &codes);
        }
        self.update_links(node, 0, |list| {
            list.clear();
            true
        });
        self.upper.set(
            node,
            (level > 0).then(|| UpperNode::from_lists(vec![Vec::new(); level])),
        );
        self.upper_dirty.lock().insert(node);
        self.routable.insert(node);
        self.live.insert(node);

        let mut entry = *self.entry.read();
        let _raise = if entry.is_none_or(|e| level > e.level) {
            let guard = self.raise.lock();
            entry = *self.entry.read();
            Some(guard)
        } else {
            None
        };
        let Some(ep) = entry.filter(|e| e.node != node) else {
            *self.entry.write() = Some(EntryPoint { node, level });
            return;
        };
        let q = self.vectors.vector(node);
        self.with_scratch(|s| {
            let mut cur = Cand {
                d: self.distance_to(q, ep.node),
                id: ep.node,
            };
            for l in (level + 1..=ep.level).rev() {
                cur = self.greedy(s, q, cur, l);
            }
            let mut entry_set = vec![cur];
            let mut links_back = Vec::with_capacity(level.min(ep.level) + 1);
            for l in (0..=level.min(ep.level)).rev() {
                let live = |n| self.live.contains(n);
                let mut found = match &self.quantized {
                    // Layer 0 holds almost all of an insert's distances: walk it on codes
                    // as searches do; neighbours are still chosen on exact distances.
                    Some(quantized) if l == 0 => self.search_codes(
                        s,
                        quantized,
                        q,
                        &entry_set,
                        self.params.ef_construction,
                        live,
                    ),
                    _ => self.search_layer(
                        s,
                        &entry_set,
                        self.params.ef_construction,
                        l,
                        live,
                        |n| self.distance_to(q, n),
                        |n| self.vectors.prefetch(n),
                    ),
                };
                if l == 0 && !earlier.is_empty() {
                    for &e in &earlier {
                        if self.live.contains(e) && !found.iter().any(|c| c.id == e) {
                            found.push(Cand {
                                d: self.distance_to(q, e),
                                id: e,
                            });
                        }
                    }
                    found.sort_unstable();
                }
                found.retain(|c| c.id != node);
                let chosen = self.select(&found, self.params.m, None);
                self.set_own_links(node, l, &chosen);
                links_back.push((l, chosen));
                if !found.is_empty() {
                    entry_set = found;
                }
            }
            // Only now, with every list of `node` written, may other nodes link to it. A
            // concurrent insert that reached `node` earlier would have walked (and linked
            // itself to) a node whose lists were still empty: it would pick `node` as its
            // only neighbour, and lose its one in-link when `node`'s list was written.
            for (l, chosen) in links_back {
                let mut linked = false;
                for c in &chosen {
                    linked |= self.add_link(c.id, node, c.d, l);
                }
                if !linked && let Some(nearest) = chosen.first() {
                    self.force_link(nearest.id, node, nearest.d, l);
                }
            }
        });
        if level > ep.level {
            *self.entry.write() = Some(EntryPoint { node, level });
        }
    }

    /// The `k` nearest live nodes to `q`, searching layer 0 with a beam of `max(ef, k)`.
    pub fn search(&self, q: &[f32], k: usize, ef: usize) -> Vec<Cand> {
        self.search_counted(q, k, ef).0
    }

    /// `search`, also returning how many distances it computed.
    pub fn search_counted(&self, q: &[f32], k: usize, ef: usize) -> (Vec<Cand>, usize) {
        self.search_accepting(q, k, ef, |n| self.live.contains(n))
    }

    /// `search_counted` restricted to the live nodes whose label `filter` admits.
    pub fn search_where(
        &self,
        q: &[f32],
        k: usize,
        ef: usize,
        filter: impl Fn(u64) -> bool,
    ) -> (Vec<Cand>, usize) {
        self.search_accepting(q, k, ef, |n| {
            self.live.contains(n) && filter(self.vectors.label(n))
        })
    }

    fn search_accepting(
        &self,
        q: &[f32],
        k: usize,
        ef: usize,
        accept: impl Fn(u32) -> bool,
    ) -> (Vec<Cand>, usize) {
        let Some(ep) = self.entry() else {
            return (Vec::new(), 0);
        };
        self.with_scratch(|s| {
            s.distances = 1;
            let mut cur = Cand {
                d: self.distance_to(q, ep.node),
                id: ep.node,
            };
            for l in (1..=ep.level).rev() {
                cur = self.greedy(s, q, cur, l);
            }
            let mut found = match &self.quantized {
                None => self.search_layer(
                    s,
                    &[cur],
                    ef.max(k),
                    0,
                    accept,
                    |n| self.distance_to(q, n),
                    |n| self.vectors.prefetch(n),
                ),
                Some(quantized) => self.search_codes(s, quantized, q, &[cur], ef.max(k), accept),
            };
            found.truncate(k);
            (found, s.distances)
        })
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

    /// Writes the codes of every routable node below `high_water` into `codes`, on
    /// `threads` threads.
    pub fn encode_routable(&self, sq8: &Sq8, codes: &Codes, high_water: u32, threads: usize) {
        crate::parallel::parallel_for(high_water as usize, threads, |i| {
            let node = i as u32;
            if self.routable.contains(node) {
                let v = self.vectors.vector(node);
                let mut out = vec![0u8; v.len()];
                sq8.encode(v, &mut out);
                codes.write(node, &out);
            }
        });
    }

    /// Deletes `node` from results at once; it keeps routing searches until `consolidate`.
    pub fn tombstone(&self, node: u32) {
        self.live.remove(node);
    }

    /// Relinks every live node that points at a non-live node (FreshDiskANN's consolidation:
    /// candidates are the node's live neighbours and the live neighbours of its dead ones,
    /// pruned by the same heuristic as inserts), then forgets `tombstones` (which become
    /// free) and moves the entry point off a dead node. The caller must hold exclusive
    /// access: nothing else may insert or search meanwhile.
    pub fn consolidate(&self, tombstones: &[u32], high_water: u32, threads: usize) {
        // Whole-graph passes ask every node for its level: load the upper layers once.
        self.upper.load_all();
        crate::parallel::parallel_for(high_water as usize, threads, |u| {
            if self.live.contains(u as u32) {
                self.repair(u as u32, 0);
            }
        });
        let upper: Vec<(u32, usize)> = self
            .upper
            .nodes()
            .into_iter()
            .filter(|(n, _)| self.live.contains(*n))
            .map(|(n, u)| (n, u.lists.len()))
            .collect();
        crate::parallel::parallel_for(upper.len(), threads, |i| {
            let (node, levels) = upper[i];
            for l in 1..=levels {
                self.repair(node, l);
            }
        });
        for &t in tombstones {
            debug_assert!(!self.live.contains(t));
            if self.upper.get(t).is_some() {
                self.upper.set(t, None);
                self.upper_dirty.lock().insert(t);
            }
            self.routable.remove(t);
        }
        let entry = *self.entry.read();
        if entry.is_some_and(|e| !self.live.contains(e.node)) {
            let new_entry = self
                .upper
                .nodes()
                .iter()
                .map(|(n, u)| (u.lists.len(), std::cmp::Reverse(*n)))
                .max()
                .map(|(level, std::cmp::Reverse(node))| EntryPoint { node, level })
                .or_else(|| {
                    (0..high_water)
                        .find(|&n| self.live.contains(n))
                        .map(|node| EntryPoint { node, level: 0 })
                });
            *self.entry.write() = new_entry;
        }
    }

    /// Marks in `seen` every routable node reachable from `from` by links on any level:
    /// what a search can reach (it descends through upper levels, then walks layer 0).
    fn mark_reachable(&self, from: u32, seen: &mut [bool]) {
        let mut stack = vec![from];
        let mut list = Vec::new();
        while let Some(n) = stack.pop() {
            if (n as usize) >= seen.len() || seen[n as usize] || !self.routable.contains(n) {
                continue;
            }
            seen[n as usize] = true;
            let levels = self.upper.get(n).map_or(0, |u| u.lists.len());
            for level in 0..=levels {
                self.links(n, level, &mut list);
                stack.extend_from_slice(&list);
            }
        }
    }

    /// Links every live node that cannot be reached from the entry point back
    /// into the graph, from the nearest reachable node a search finds. Pruning can, rarely,
    /// take a node's last in-link; this restores the invariant `verify` checks. O(n).
    /// Exclusive access, like `consolidate`.
    pub fn reconnect(&self, high_water: u32) -> usize {
        let Some(entry) = self.entry() else {
            return 0;
        };
        self.upper.load_all();
        let mut seen = vec![false; high_water as usize];
        self.mark_reachable(entry.node, &mut seen);
        let mut relinked = 0;
        for x in 0..high_water {
            if seen[x as usize] || !self.live.contains(x) {
                continue;
            }
            let q = self.vectors.vector(x);
            let found = self.search(q, 2, self.params.ef_construction);
            if let Some(near) = found.iter().find(|c| c.id != x) {
                self.force_link(near.id, x, near.d, 0);
                relinked += 1;
            }
            self.mark_reachable(x, &mut seen);
        }
        relinked
    }

    /// Whether a link to `target` on `level` is sound: the target is live and has that level.
    fn sound_link(&self, target: u32, level: usize) -> bool {
        self.live.contains(target)
            && (level == 0
                || self
                    .upper
                    .get(target)
                    .is_some_and(|u| u.lists.len() >= level))
    }

    /// Replaces the unsound links of `node` on `level` (see `consolidate`).
    fn repair(&self, node: u32, level: usize) {
        let mut list = Vec::new();
        self.links(node, level, &mut list);
        if list.iter().all(|&n| n != node && self.sound_link(n, level)) {
            return;
        }
        let mut pool: HashSet<u32> = list
            .iter()
            .copied()
            .filter(|&n| n != node && self.sound_link(n, level))
            .collect();
        // FreshDiskANN's pool is N(node) ∪ N(dead); adding the neighbours of the live
        // neighbours too lets the repaired list be chosen from a neighbourhood about as wide
        // as an insert's search sees, which keeps recall at small ef equal to a fresh build.
        let mut theirs = Vec::new();
        for &other in list
            .iter()
            .filter(|&&n| n != node && self.routable.contains(n))
        {
            self.links(other, level, &mut theirs);
            pool.extend(
                theirs
                    .iter()
                    .copied()
                    .filter(|&n| n != node && self.sound_link(n, level)),
            );
        }
        let base = self.vectors.vector(node);
        let mut cands: Vec<Cand> = pool
            .into_iter()
            .map(|id| Cand {
                d: self.distance_to(base, id),
                id,
            })
            .collect();
        cands.sort_unstable();
        cands.truncate(self.params.ef_construction.max(self.max_links(level)));
        let kept = self.select(&cands, self.max_links(level), None);
        self.update_links(node, level, |l| {
            l.clear();
            l.extend(kept.iter().map(|c| c.id));
            true
        });
        // As an insert does, give each new neighbour the link back: HNSW navigates on
        // (mostly) bidirectional links, and a repair that only rewrote out-lists would
        // leave the repaired region harder to enter than a fresh build.
        for c in kept.iter().filter(|c| !list.contains(&c.id)) {
            self.add_link(c.id, node, c.d, level);
        }
    }

    /// Checks the graph over slots `0..high_water`. Appends a line per integrity problem
    /// (an entry point missing, dead or not on the top level; upper lists on a node not
    /// in the graph). Returns the counts of stale links (to slots not in the graph, or to a
    /// node not on that level: skipped by searches, removed by consolidation) and of live
    /// nodes no search can reach from the entry point (by links on any level): matters of
    /// search quality.
    pub fn check(&self, high_water: u32, problems: &mut Vec<String>) -> (usize, usize) {
        let mut stale = 0;
        let mut list = Vec::new();
        let upper: HashMap<u32, Arc<UpperNode>> = self.upper.nodes().into_iter().collect();
        let top = upper.values().map(|u| u.lists.len()).max().unwrap_or(0);
        let live: Vec<u32> = (0..high_water).filter(|&n| self.live.contains(n)).collect();
        match *self.entry.read() {
            None if !live.is_empty() => problems.push("no entry point but live nodes exist".into()),
            None => {}
            Some(e) => {
                if !self.routable.contains(e.node) {
                    problems.push(format!("entry point {} is not in the graph", e.node));
                }
                if e.level != top || upper.get(&e.node).map_or(0, |u| u.lists.len()) != e.level {
                    problems.push(format!(
                        "entry point {} has level {} but the top level is {top}",
                        e.node, e.level
                    ));
                }
            }
        }
        for n in (0..high_water).filter(|&n| self.routable.contains(n)) {
            self.links(n, 0, &mut list);
            stale += list
                .iter()
                .filter(|&&t| t >= high_water || t == n || !self.routable.contains(t))
                .count();
        }
        for (&n, u) in upper.iter() {
            if !self.routable.contains(n) {
                problems.push(format!("node {n} has upper lists but is not in the graph"));
            }
            for (i, l) in u.lists.iter().enumerate() {
                let on_level = |t: u32| {
                    upper.get(&t).is_some_and(|tu| tu.lists.len() > i) && self.routable.contains(t)
                };
                stale += l.lock().iter().filter(|&&t| !on_level(t)).count();
            }
        }
        drop(upper);
        if let Some(e) = *self.entry.read() {
            let mut seen = vec![false; high_water as usize];
            self.mark_reachable(e.node, &mut seen);
            return (stale, live.iter().filter(|&&n| !seen[n as usize]).count());
        }
        (stale, 0)
    }

    /// Exact k nearest live nodes by a full scan (for tests and `verify`).
    pub fn brute_force(&self, q: &[f32], k: usize) -> Vec<Cand> {
        let mut all: Vec<Cand> = (0..self.capacity() as u32)
            .filter(|&i| self.live.contains(i))
            .map(|i| Cand {
                d: self.distance_to(q, i),
                id: i,
            })
            .collect();
        all.sort_unstable();
        all.truncate(k);
        all
    }
}

impl UpperNode {
    fn from_lists(lists: UpperLists) -> UpperNode {
        UpperNode {
            lists: lists.into_iter().map(Mutex::new).collect(),
        }
    }
}
