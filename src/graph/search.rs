//! Walking the graph: the greedy descent through the upper layers, the beam search of a
//! layer (on exact vectors or on SQ8 codes with an exact re-rank), and the searches built
//! on them.

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BinaryHeap, HashSet};
use std::sync::atomic::Ordering;

use super::{Cand, Graph, Quantized};
use crate::distance::{Quantizer, RaBitQuery, Sq8Query};
use crate::error::Result;
use crate::store::EntryPoint;

/// Per-search working memory, pooled so that a query allocates nothing but its answer.
pub(super) struct Scratch {
    /// Epoch-tagged visited marks: node `i` is visited iff `marks[i] == epoch`.
    marks: Vec<u16>,
    epoch: u16,
    candidates: BinaryHeap<Next>,
    results: BinaryHeap<Cand>,
    links: Vec<u32>,
    fresh: Vec<u32>,
    /// The scores of `fresh`.
    scores: Vec<f32>,
    /// Candidates popped to look at the next few (`read_ahead`), pushed back at once.
    ahead: Vec<Next>,
    /// Nodes whose list reads this walk has started (`read_ahead`).
    requested: HashSet<u32>,
    /// Distances computed by the current search (its cost, independent of the clock).
    pub(super) distances: usize,
    /// When a filtered walk gives up for a scan of the filter's vectors.
    budget: Option<WalkBudget>,
    /// Set when the walk gave up past its budget (its answer is then incomplete).
    abandoned: bool,
}

/// When a filtered walk is abandoned for a scan of the admitted vectors: once what it
/// has cost, or what it is projected to cost, exceeds what the scan would.
#[derive(Clone, Copy, Debug)]
pub struct WalkBudget {
    /// Distances the walk may compute in all: the scan's cost counted in walk distances.
    pub distances: usize,
    /// Distances after which the walk projects its total cost from the admitted nodes it
    /// has found: a walk that needs `ef` admitted nodes and has found `f` in `d`
    /// distances is projected to cost `d * ef / f`. A filter anti-correlated with the
    /// query admits nothing near it, and the walk is given up after this many distances
    /// instead of after the whole budget. Long enough that a filter unrelated to the
    /// query has shown its admitted fraction (see `WalkBudget::new`).
    pub probe: usize,
}

/// Admitted nodes a walk expects to have met when it first projects its cost: a walk
/// over a filter unrelated to the query meets them at the filter's rate, and with 16
/// expected the chance of finding under 4 is below 1 in 10,000.
const PROBE_ADMITTED: f64 = 16.0;

impl WalkBudget {
    /// The budget of a walk over a filter admitting `matching` of `live` vectors: the
    /// scan's cost, `per_match` walk distances per admitted vector.
    pub fn new(matching: u64, live: u64, per_match: f64) -> WalkBudget {
        let rate = matching.max(1) as f64 / live.max(1) as f64;
        WalkBudget {
            distances: (matching as f64 * per_match) as usize,
            probe: (PROBE_ADMITTED / rate.min(1.0)) as usize,
        }
    }

    /// Whether a walk that has computed `distances` and holds `found` of the `ef`
    /// admitted nodes it needs is, or is projected to be, over budget.
    #[inline]
    fn exceeded(&self, distances: usize, found: usize, ef: usize) -> bool {
        let projected = if distances >= self.probe && found < ef {
            // A walk that found none is projected as if it had found one.
            distances.saturating_mul(ef) / found.max(1)
        } else {
            distances
        };
        projected > self.distances
    }
}

impl Scratch {
    pub(super) fn new() -> Scratch {
        Scratch {
            marks: Vec::new(),
            epoch: 0,
            candidates: BinaryHeap::new(),
            results: BinaryHeap::new(),
            links: Vec::new(),
            fresh: Vec::new(),
            scores: Vec::new(),
            ahead: Vec::new(),
            requested: HashSet::new(),
            distances: 0,
            budget: None,
            abandoned: false,
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
        self.requested.clear();
    }
}

/// Candidates whose layer-0 lists a walk reads ahead when the lists live on disk: the
/// next ones it will likely expand, their reads in flight together (as DiskANN's beam
/// width). Measured on 1 M static MiniLM vectors (RaBitQ 2-bit, M 16, ef 512, codes
/// pinned, lists not, 201 MiB): 8 read 2.1 MiB a query where starting the read of every
/// queued candidate read 3.5 (4.5 with 8 queries in flight, at 0.75x the QPS); none at
/// all read 2.1 MiB at 0.55x the QPS on one thread; 16 or 32 gained nothing over 8.
const LISTS_AHEAD: usize = 8;

/// Walks of layer 0 between two checks of whether watched codes and lists are in memory
/// (`Graph::watch_codes`, `Graph::watch_lists`): a check is one `mincore` over a file
/// (about 30k pages at 1 M 2-bit codes), so rare enough to cost nothing, often enough that
/// a walk does not pay a system call per neighbour for long after the file has come in.
/// On the 100k full-model set under a 5 MiB budget with everything in the page cache (no
/// memory pressure), checking codes only until pinned ones came in left such walks at
/// 0.65x the QPS.
const WATCH_EVERY: u64 = 64;

/// The walk (from 0) of the first check, then every `WATCH_EVERY` walks: checking at the
/// first walk of a cold 1 M index made its first answer take 19-34 ms instead of 16-20.
pub(super) const WATCH_FIRST: u64 = 8;

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

/// Vectors whose disk reads a bounded re-rank starts together in its first round: small
/// enough that the bound can stop the re-rank early when the estimates are good. Each
/// later round doubles, up to `RERANK_BATCH_MAX`: when the bound prunes little (noisy
/// estimates, large ef) the reads take fewer round trips (on the 1 M synthetic set under
/// a budget, ef 96: 762 -> 880 QPS; Debian unchanged).
const RERANK_BATCH: usize = 16;

/// Candidates per answer that a re-rank on SQ8 codes reads whatever their codes say
/// (see `Graph::rerank_all`).
const RERANK_FIRST: usize = 2;

/// The largest round of re-rank reads (one io_uring submission holds 64).
const RERANK_BATCH_MAX: usize = 64;

/// How many of a code walk's `beam` its re-rank must rank exactly to answer `keep`. A
/// beam short of `ef` holds every node the walk could reach, and one of `live` nodes
/// holds every live node: all of it is then re-ranked, so a search with ef at or above
/// the index's size is exact, as hnswlib's is, whatever the codes' error (SQ8 clamps
/// vectors outside its trained range; the error the first few re-ranked show can
/// understate the rest's). Otherwise `keep`.
fn rerank_depth(beam: &[Cand], ef: usize, keep: usize, live: usize) -> usize {
    if beam.len() < ef || beam.len() >= live {
        beam.len()
    } else {
        keep
    }
}

std::thread_local! {
    /// Labels that re-ranks on this thread read and verified from disk since the last
    /// `take_verified`: [(slot, label)].
    static VERIFIED: std::cell::RefCell<Vec<(u32, u64)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A candidate a walk may expand: the nearest first, and of equidistant ones the newest
/// (highest slot) first, as hnswlib's heap of `(-distance, id)` pairs pops them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Next(Cand);

impl PartialOrd for Next {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl Ord for Next {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (other.0.d.total_cmp(&self.0.d)).then(self.0.id.cmp(&other.0.id))
    }
}

/// How far ahead of the node it scores a scan starts loading one: admitted slots are
/// sparse in the arena, so the hardware prefetcher cannot guess them.
const SCAN_AHEAD: usize = 8;

/// The `keep` nearest of `ids` by `score` (unordered), loading each `SCAN_AHEAD` nodes
/// before it is scored with `prefetch`.
fn nearest(
    ids: &[u32],
    keep: usize,
    score: impl Fn(u32) -> f32,
    prefetch: impl Fn(u32),
) -> Vec<Cand> {
    let mut heap: BinaryHeap<Cand> = BinaryHeap::with_capacity(keep + 1);
    ids.iter().take(SCAN_AHEAD).for_each(|&n| prefetch(n));
    // The distance a node must beat to enter: the heap's worst once it is full.
    let mut worst = f32::INFINITY;
    for (i, &id) in ids.iter().enumerate() {
        if let Some(&ahead) = ids.get(i + SCAN_AHEAD) {
            prefetch(ahead);
        }
        let d = score(id);
        if d < worst || heap.len() < keep {
            heap.push(Cand { d, id });
            if heap.len() > keep {
                heap.pop();
            }
            if heap.len() == keep {
                worst = heap.peek().map_or(f32::INFINITY, |w| w.d);
            }
        }
    }
    heap.into_vec()
}

/// A query prepared for one kind of code.
enum Prepared {
    Sq8(Sq8Query),
    RaBitQ(RaBitQuery),
}

impl Prepared {
    fn new(quantized: &Quantized, q: &[f32]) -> Prepared {
        match &quantized.quantizer {
            Quantizer::Sq8(sq8) => Prepared::Sq8(sq8.query(quantized.metric, quantized.kernels, q)),
            Quantizer::RaBitQ(bits) => {
                Prepared::RaBitQ(bits.query(quantized.metric, quantized.kernels, q))
            }
        }
    }

    #[inline(always)]
    fn eval(&self, code: &[u8]) -> f32 {
        match self {
            Prepared::Sq8(p) => p.eval(code),
            Prepared::RaBitQ(p) => p.eval(code),
        }
    }
}

/// The beam a search on RaBitQ codes keeps on layer 1 before entering layer 0 (SQ8 codes
/// rank well enough for hnswlib's greedy descent). With 1-bit estimates a greedy descent
/// lands farther from the query: on the Debian set (M 8, ef 48) it cost 0.008 of recall
/// against a descent on exact vectors, of which a beam of 16 on layer 1 won back 0.005,
/// for a few hundred more code lookups and no vector read.
const RABITQ_LAYER1_BEAM: usize = 16;

/// Where a walk of layer 0 on codes starts.
pub(super) enum Start<'a> {
    /// From these nodes (their distances recomputed on codes).
    Nodes(&'a [Cand]),
    /// From the top: a greedy descent of the upper layers from the entry point, on codes.
    Top(EntryPoint),
}

impl Graph {
    pub(super) fn with_scratch<R>(&self, f: impl FnOnce(&mut Scratch) -> R) -> R {
        let mut s = self.scratch.lock().pop().unwrap_or_else(Scratch::new);
        // Unlimited unless the search sets its own (a budget must never outlive it).
        s.budget = None;
        s.abandoned = false;
        let r = f(&mut s);
        self.scratch.lock().push(s);
        r
    }

    /// Greedy walk on `level` by `score`: moves to a closer neighbour until none is
    /// closer. `fetch` starts loading what `score` will read, for all the neighbours of
    /// a node before any is scored.
    fn greedy(
        &self,
        s: &mut Scratch,
        mut cur: Cand,
        level: usize,
        score: &impl Fn(u32) -> f32,
        fetch: &impl Fn(u32),
    ) -> Result<Cand> {
        loop {
            let mut changed = false;
            self.links(cur.id, level, &mut s.links)?;
            s.links.iter().for_each(|&n| fetch(n));
            for &n in &s.links {
                if !self.routable.contains(n) {
                    continue;
                }
                s.distances += 1;
                let d = score(n);
                if d < cur.d {
                    cur = Cand { d, id: n };
                    changed = true;
                }
            }
            if !changed {
                return Ok(cur);
            }
        }
    }

    /// Greedy descent from `ep` down to level `down_to + 1` on exact distances: the node
    /// a search of level `down_to` starts from.
    pub(super) fn descend(
        &self,
        s: &mut Scratch,
        q: &[f32],
        ep: EntryPoint,
        down_to: usize,
    ) -> Result<Cand> {
        self.descend_by(s, ep, down_to, &|n| self.distance_to(q, n), &|_| {})
    }

    /// `descend` scoring nodes with `score` (codes, for a search walking on them: the
    /// descent then reads no vector, which under a memory budget would be a page fault
    /// per hop).
    fn descend_by(
        &self,
        s: &mut Scratch,
        ep: EntryPoint,
        down_to: usize,
        score: &impl Fn(u32) -> f32,
        fetch: &impl Fn(u32),
    ) -> Result<Cand> {
        s.distances += 1;
        let mut cur = Cand {
            d: score(ep.node),
            id: ep.node,
        };
        for l in (down_to + 1..=ep.level).rev() {
            cur = self.greedy(s, cur, l, score, fetch)?;
        }
        Ok(cur)
    }

    /// Best-first beam search of width `ef` on `level` from `entry`; the answer is sorted
    /// by ascending distance (paper, Algorithm 2). Only nodes that `accept` admits become
    /// answers; every routable node still guides the walk, so a filter narrows the answers
    /// without cutting the graph (as hnswlib's filtered search does).
    ///
    /// `score` gives a node's distance to the query and `prefetch` starts loading what
    /// `score` will read: exact vectors, or codes.
    #[allow(clippy::too_many_arguments)] // private; each argument is one concern of the walk
    pub(super) fn search_layer(
        &self,
        s: &mut Scratch,
        entry: &[Cand],
        ef: usize,
        level: usize,
        accept: impl Fn(u32) -> bool,
        score: impl Fn(u32) -> f32,
        prefetch: impl Fn(u32),
    ) -> Result<Vec<Cand>> {
        s.reset(self.capacity());
        let Scratch {
            marks,
            epoch,
            candidates,
            results,
            links,
            fresh,
            scores,
            ahead,
            requested,
            distances,
            budget,
            abandoned,
        } = s;
        // Read once: the loop below runs for every candidate of every query. Only the
        // walk of layer 0 is budgeted: it is the one that looks for admitted nodes.
        let budget = budget.filter(|_| level == 0);
        let lists_away = self.lists_watch.away();
        let epoch = *epoch;
        for &e in entry {
            if first_visit(marks, epoch, e.id) {
                candidates.push(Next(e));
                if accept(e.id) {
                    results.push(e);
                }
            }
        }
        while results.len() > ef {
            results.pop();
        }
        while let Some(Next(c)) = candidates.pop() {
            if results.len() >= ef && results.peek().is_some_and(|w| c.d > w.d) {
                break;
            }
            if budget.is_some_and(|b| b.exceeded(*distances, results.len(), ef)) {
                *abandoned = true;
                break;
            }
            if lists_away && level == 0 {
                self.read_ahead(candidates, ahead, requested);
            }
            self.links(c.id, level, links)?;
            // The next candidate is likely expanded next: start loading its list now, so
            // the miss overlaps this round's distance computations.
            if level == 0
                && let Some(Next(next)) = candidates.peek()
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
            // All of the round's scores first, then the heaps: a score compared as soon
            // as computed puts an unpredictable branch behind each code's load, and every
            // mispredicted one threw away the loads and sums begun after it (Debian set,
            // ef 20: 10-20% of the walk).
            scores.clear();
            scores.extend(fresh.iter().map(|&n| score(n)));
            for (&n, &d) in fresh.iter().zip(scores.iter()) {
                if results.len() < ef || results.peek().is_some_and(|w| d < w.d) {
                    candidates.push(Next(Cand { d, id: n }));
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
        if level == 0 {
            self.count_walk();
        }
        Ok(out)
    }

    /// Counts a walk of layer 0, checking the watches on the `WATCH_FIRST`-th and every
    /// `WATCH_EVERY`-th after: a cold open's first answers should not wait for a scan of
    /// files still arriving. Without a watch (no budget) nothing is counted: walks on
    /// many threads would share the counter's cache line for nothing.
    fn count_walk(&self) {
        if !self.lists_watch.active() && !self.codes_watch.active() {
            return;
        }
        if self.walks.fetch_add(1, Ordering::Relaxed) % WATCH_EVERY == WATCH_FIRST {
            self.lists_watch.check(self.layer0.file());
            if let Some(quantized) = &self.quantized {
                self.codes_watch.check(quantized.codes.file());
            }
        }
    }

    /// Starts reading the layer-0 lists of the `LISTS_AHEAD - 1` best candidates after
    /// the one being expanded, each once a walk, so that the expansions to come find
    /// them read (or on their way) instead of each waiting for its own page fault.
    fn read_ahead(
        &self,
        candidates: &mut BinaryHeap<Next>,
        ahead: &mut Vec<Next>,
        requested: &mut HashSet<u32>,
    ) {
        while ahead.len() + 1 < LISTS_AHEAD
            && let Some(next) = candidates.pop()
        {
            ahead.push(next);
        }
        for Next(c) in ahead.iter() {
            if requested.insert(c.id) {
                self.layer0.will_need(c.id);
            }
        }
        candidates.extend(ahead.drain(..));
    }

    /// `search_layer` on exact vectors.
    pub(super) fn search_layer_exact(
        &self,
        s: &mut Scratch,
        q: &[f32],
        entry: &[Cand],
        ef: usize,
        level: usize,
        accept: impl Fn(u32) -> bool,
    ) -> Result<Vec<Cand>> {
        self.search_layer(
            s,
            entry,
            ef,
            level,
            accept,
            |n| self.distance_to(q, n),
            |n| self.vectors.prefetch(n),
        )
    }

    /// `search_layer` on layer 0 walking on codes, then the beam re-ranked exactly (the
    /// order within the beam is what quantisation blurs, and the beam is small): on SQ8
    /// codes the best `2 * keep` and those the codes' observed error leaves in reach
    /// (`rerank_all`); on RaBitQ codes, in order of their error bounds' lower ends until
    /// no remaining candidate can beat the `keep`-th exact distance. Returns the
    /// re-ranked candidates, nearest first.
    #[allow(clippy::too_many_arguments)] // private; each argument is one concern of the walk
    pub(super) fn search_codes(
        &self,
        s: &mut Scratch,
        quantized: &Quantized,
        q: &[f32],
        entry: Start<'_>,
        ef: usize,
        keep: usize,
        accept: impl Fn(u32) -> bool,
    ) -> Result<Vec<Cand>> {
        // One walk per kind of code, each with its own scorer inlined: the walk scores
        // thousands of codes per query. An abandoned walk's beam is not worth re-ranking.
        Ok(match &quantized.quantizer {
            Quantizer::Sq8(sq8) => {
                let prepared = sq8.query(quantized.metric, quantized.kernels, q);
                let beam =
                    self.walk_codes(s, quantized, q, entry, 1, ef, accept, |c| prepared.eval(c))?;
                match s.abandoned {
                    true => beam,
                    false => {
                        let keep = rerank_depth(&beam, ef, keep, self.live.len());
                        self.rerank_all(s, q, beam, keep)
                    }
                }
            }
            Quantizer::RaBitQ(bits) => {
                let prepared = bits.query(quantized.metric, quantized.kernels, q);
                let beam = self.walk_codes(
                    s,
                    quantized,
                    q,
                    entry,
                    RABITQ_LAYER1_BEAM,
                    ef,
                    accept,
                    |c| prepared.eval(c),
                )?;
                match s.abandoned {
                    true => beam,
                    false => {
                        let keep = rerank_depth(&beam, ef, keep, self.live.len());
                        self.rerank_bounded(s, q, quantized, &prepared, beam, keep)
                    }
                }
            }
        })
    }

    /// `search_layer` on layer 0 scoring codes with `eval`, from `entry`; a descent from
    /// the top keeps a beam of `layer1_beam` on layer 1 (1: greedy, as hnswlib). Nodes
    /// whose vector the codes did not fit (`Quantized::misfits`) are scored exactly
    /// against `q`: their codes are all alike, and a walk among equal distances stops.
    #[allow(clippy::too_many_arguments)] // private; each argument is one concern of the walk
    fn walk_codes(
        &self,
        s: &mut Scratch,
        quantized: &Quantized,
        q: &[f32],
        entry: Start<'_>,
        layer1_beam: usize,
        ef: usize,
        accept: impl Fn(u32) -> bool,
        eval: impl Fn(&[u8]) -> f32,
    ) -> Result<Vec<Cand>> {
        let blurred = quantized.misfits() > 0;
        let misfit = |n: u32| blurred && quantized.misfits.contains(n);
        let score = |n: u32| match misfit(n) {
            true => self.distance_to(q, n),
            false => eval(quantized.codes.codes(n)),
        };
        let away = self.codes_watch.away();
        let fetch = |n: u32| match (misfit(n), away) {
            // What `score` reads: a misfit's vector (from disk, under a budget), else codes.
            (true, _) => {
                if self.disk_reads {
                    self.vectors.will_need(n);
                }
                self.vectors.prefetch(n);
            }
            (false, true) => quantized.codes.will_need(n),
            (false, false) => quantized.codes.prefetch(n),
        };
        let start: Vec<Cand> = match entry {
            Start::Nodes(nodes) => nodes
                .iter()
                .map(|c| Cand {
                    d: score(c.id),
                    id: c.id,
                })
                .collect(),
            Start::Top(ep) if ep.level == 0 || layer1_beam <= 1 => {
                vec![self.descend_by(s, ep, 0, &score, &fetch)?]
            }
            Start::Top(ep) => {
                // Greedy down to layer 1, then a beam there: its nodes all enter layer 0.
                let top = self.descend_by(s, ep, 1, &score, &fetch)?;
                self.search_layer(
                    s,
                    &[top],
                    layer1_beam,
                    1,
                    |n| self.routable.contains(n),
                    score,
                    fetch,
                )?
            }
        };
        self.search_layer(s, &start, ef, 0, accept, score, fetch)
    }

    /// The exact distances of `ids` to `q`, their vectors read together: by direct reads
    /// for slots synced since written, when the graph has them (recording each label the
    /// read verified, for `verified_label`); else through the mapping, every load started
    /// before any is compared (cache misses always, disk reads too when the vectors live
    /// on disk).
    fn exact_distances(&self, q: &[f32], ids: &[u32]) -> Vec<f32> {
        let mut out = vec![0f32; ids.len()];
        let mut mapped: Vec<usize> = Vec::new();
        match &self.direct {
            Some(direct) => {
                let (clean, unsynced): (Vec<usize>, Vec<usize>) =
                    (0..ids.len()).partition(|&i| !self.unsynced.contains(ids[i]));
                mapped = unsynced;
                let file = self.vectors.file();
                let offsets: Vec<u64> = clean
                    .iter()
                    .map(|&i| file.slot_offset(ids[i] as usize))
                    .collect();
                let reads = direct.read(&offsets, self.vectors.slot_bytes());
                VERIFIED.with(|v| {
                    let mut v = v.borrow_mut();
                    for (read, &i) in reads.iter().zip(&clean) {
                        match read.bytes().and_then(|b| self.vectors.parse_slot(b)) {
                            Some((vector, label)) => {
                                out[i] = self.dist.eval_row(q, vector);
                                v.push((ids[i], label));
                            }
                            // Failed or damaged: the mapping reads it again and reports
                            // damage as every other read does.
                            None => mapped.push(i),
                        }
                    }
                });
            }
            None => mapped.extend(0..ids.len()),
        }
        if self.disk_reads {
            mapped.iter().for_each(|&i| self.vectors.will_need(ids[i]));
        }
        mapped.iter().for_each(|&i| self.vectors.prefetch(ids[i]));
        for i in mapped {
            out[i] = self.distance_to(q, ids[i]);
        }
        out
    }

    /// The labels this thread's re-ranks read and verified from disk since the last call,
    /// sorted by slot; the record is left empty. A caller reporting a search's answers
    /// calls it before the search (to forget what an earlier one left) and after it (see
    /// `Index::searched`), so that only this search's reads, made under the same lock and
    /// of the same graph, vouch for a label.
    pub fn take_verified(&self) -> Vec<(u32, u64)> {
        let mut verified = VERIFIED.with(|v| std::mem::take(&mut *v.borrow_mut()));
        verified.sort_unstable();
        verified
    }

    /// The candidates of `beam` (scored on SQ8 codes) that can be among the `keep`
    /// nearest, with their exact distances, nearest first. The `RERANK_FIRST * keep`
    /// best by code are re-ranked; of the rest, only those whose code distance, less
    /// twice the largest code error those showed, still beats the `keep`-th exact
    /// distance found. SQ8 ranks well: on the Debian set (ef 16-128, k 10) re-ranking
    /// only the best 2k gave the same recall to four places as re-ranking the whole beam,
    /// and at ef 64-128 (recall 0.99) the re-rank of whole f32 rows was a sixth of the
    /// query's time. The error margin re-ranks more where the codes are coarse.
    pub(super) fn rerank_all(
        &self,
        s: &mut Scratch,
        q: &[f32],
        mut beam: Vec<Cand>,
        keep: usize,
    ) -> Vec<Cand> {
        beam.sort_unstable();
        let first = (RERANK_FIRST * keep.max(1)).min(beam.len());
        let mut out = self.exact_of(s, q, &beam[..first]);
        if first < beam.len() {
            let error = beam[..first]
                .iter()
                .zip(&out)
                .fold(0f32, |e, (code, exact)| e.max((exact.d - code.d).abs()));
            out.sort_unstable();
            let bound = out[keep.clamp(1, first) - 1].d + 2.0 * error;
            let rest = beam[first..].partition_point(|c| c.d <= bound);
            out.extend(self.exact_of(s, q, &beam[first..first + rest]));
        }
        out.sort_unstable();
        out
    }

    /// `cands` with their exact distances (in the same order), their vectors loaded
    /// together.
    fn exact_of(&self, s: &mut Scratch, q: &[f32], cands: &[Cand]) -> Vec<Cand> {
        s.distances += cands.len();
        let ids: Vec<u32> = cands.iter().map(|c| c.id).collect();
        if self.direct.is_some() {
            let exact = self.exact_distances(q, &ids);
            return ids
                .into_iter()
                .zip(exact)
                .map(|(id, d)| Cand { d, id })
                .collect();
        }
        // In memory (the common case): the loads started before any comparison so that
        // their misses overlap.
        if self.disk_reads {
            ids.iter().for_each(|&n| self.vectors.will_need(n));
        }
        ids.iter().for_each(|&n| self.vectors.prefetch(n));
        ids.into_iter()
            .map(|id| Cand {
                d: self.distance_to(q, id),
                id,
            })
            .collect()
    }

    /// Exact distances in order of the estimates' lower bounds, in rounds of
    /// `RERANK_BATCH` vectors doubling to `RERANK_BATCH_MAX` (a round's reads in flight
    /// together), until the next lower bound exceeds
    /// the `keep`-th exact distance found: a candidate that cannot be among the `keep`
    /// nearest is never read.
    fn rerank_bounded(
        &self,
        s: &mut Scratch,
        q: &[f32],
        quantized: &Quantized,
        bits: &RaBitQuery,
        beam: Vec<Cand>,
        keep: usize,
    ) -> Vec<Cand> {
        let mut order: Vec<Cand> = beam
            .iter()
            .map(|c| {
                let (estimate, error) = bits.estimate(quantized.codes.codes(c.id));
                Cand {
                    d: estimate - error,
                    id: c.id,
                }
            })
            .collect();
        order.sort_unstable();
        let keep = keep.max(1);
        let mut best: BinaryHeap<Cand> = BinaryHeap::with_capacity(keep + 1);
        let worst = |best: &BinaryHeap<Cand>| {
            if best.len() < keep {
                f32::INFINITY
            } else {
                best.peek().map_or(f32::INFINITY, |w| w.d)
            }
        };
        let mut at = 0;
        let mut size = RERANK_BATCH;
        while at < order.len() {
            let batch = &order[at..(at + size).min(order.len())];
            at += batch.len();
            size = (2 * size).min(RERANK_BATCH_MAX);
            let bound = worst(&best);
            if batch[0].d > bound {
                break;
            }
            let wanted: Vec<u32> = batch
                .iter()
                .filter(|c| c.d <= bound)
                .map(|c| c.id)
                .collect();
            for (id, d) in wanted.iter().copied().zip(self.exact_distances(q, &wanted)) {
                s.distances += 1;
                if best.len() < keep {
                    best.push(Cand { d, id });
                } else if best.peek().is_some_and(|w| d < w.d) {
                    best.pop();
                    best.push(Cand { d, id });
                }
            }
        }
        let mut found = best.into_vec();
        found.sort_unstable();
        found
    }

    /// The `k` nearest live nodes to `q`, searching layer 0 with a beam of `max(ef, k)`.
    pub fn search(&self, q: &[f32], k: usize, ef: usize) -> Result<Vec<Cand>> {
        Ok(self.search_counted(q, k, ef)?.0)
    }

    /// `search`, also returning how many distances it computed.
    pub fn search_counted(&self, q: &[f32], k: usize, ef: usize) -> Result<(Vec<Cand>, usize)> {
        self.search_accepting(q, k, ef, |n| self.live.contains(n))
    }

    /// The `k` nearest live nodes among those `admit` accepts, every routable node
    /// guiding the walk, or `None` if the walk went over `budget` (a filter whose nodes
    /// lie away from the query makes the walk long: the caller then scans them instead).
    pub fn search_admitted(
        &self,
        q: &[f32],
        k: usize,
        ef: usize,
        budget: Option<WalkBudget>,
        admit: impl Fn(u32) -> bool,
    ) -> Result<Option<Vec<Cand>>> {
        Ok(self
            .search_budgeted(q, k, ef, budget, |n| self.live.contains(n) && admit(n))?
            .0)
    }

    /// The `k` nearest live nodes among `slots` by a scan: on codes with the best
    /// `max(rerank, k)` re-ranked exactly when the graph has codes, else exactly. For
    /// filters that admit few nodes, where a scan beats any walk.
    pub fn scan_subset(
        &self,
        q: &[f32],
        k: usize,
        rerank: usize,
        slots: impl Iterator<Item = u32>,
    ) -> Vec<Cand> {
        let live: Vec<u32> = slots.filter(|&n| self.live.contains(n)).collect();
        let mut found = match &self.quantized {
            None => nearest(
                &live,
                k,
                |n| self.distance_to(q, n),
                |n| self.vectors.prefetch(n),
            ),
            Some(quantized) => {
                let prepared = Prepared::new(quantized, q);
                let pool = nearest(
                    &live,
                    rerank.max(k),
                    |n| prepared.eval(quantized.codes.codes(n)),
                    |n| quantized.codes.prefetch(n),
                );
                self.rerank_all(&mut Scratch::new(), q, pool, k)
            }
        };
        found.sort_unstable();
        found.truncate(k);
        found
    }

    /// `search_counted` restricted to the live nodes whose label `filter` admits.
    pub fn search_where(
        &self,
        q: &[f32],
        k: usize,
        ef: usize,
        filter: impl Fn(u64) -> bool,
    ) -> Result<(Vec<Cand>, usize)> {
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
    ) -> Result<(Vec<Cand>, usize)> {
        let (found, distances) = self.search_budgeted(q, k, ef, None, accept)?;
        // Never abandoned: there is no budget.
        Ok((found.unwrap_or_default(), distances))
    }

    /// `search_accepting` given up (`None`) once over `budget`; also returns the
    /// distances computed.
    fn search_budgeted(
        &self,
        q: &[f32],
        k: usize,
        ef: usize,
        budget: Option<WalkBudget>,
        accept: impl Fn(u32) -> bool,
    ) -> Result<(Option<Vec<Cand>>, usize)> {
        let Some(ep) = self.entry() else {
            return Ok((Some(Vec::new()), 0));
        };
        let live = self.live.len();
        if ef.max(k) >= live {
            // A beam as wide as the answers could be would visit every node it reaches, at
            // the cost of a scan: scan, so that such a search is exact even when the
            // graph leaves a node reachable only through an upper layer (seen after
            // two-thread builds of many exact copies, `tests/duplicates.rs`, and
            // consolidations of degenerate low-dimensional data).
            return Ok((Some(self.brute_force(q, k, accept)), live));
        }
        self.with_scratch(|s| {
            s.distances = 0;
            s.budget = budget;
            let mut found = match &self.quantized {
                None => {
                    let start = self.descend(s, q, ep, 0)?;
                    self.search_layer_exact(s, q, &[start], ef.max(k), 0, accept)?
                }
                Some(quantized) => {
                    self.search_codes(s, quantized, q, Start::Top(ep), ef.max(k), k, accept)?
                }
            };
            found.truncate(k);
            Ok(((!s.abandoned).then_some(found), s.distances))
        })
    }

    /// Exact k nearest nodes that `accept` admits (only live ones are answers), by a
    /// full scan.
    pub fn brute_force(&self, q: &[f32], k: usize, accept: impl Fn(u32) -> bool) -> Vec<Cand> {
        let mut all: Vec<Cand> = (0..self.capacity() as u32)
            .filter(|&i| self.live.contains(i) && accept(i))
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
