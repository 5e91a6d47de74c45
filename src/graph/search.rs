//! Walking the graph: the greedy descent through the upper layers, the beam search of a
//! layer (on exact vectors or on SQ8 codes with an exact re-rank), and the searches built
//! on them.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::{Cand, Graph, Quantized};
use crate::error::Result;
use crate::store::EntryPoint;

/// Per-search working memory, pooled so that a query allocates nothing but its answer.
pub(super) struct Scratch {
    /// Epoch-tagged visited marks: node `i` is visited iff `marks[i] == epoch`.
    marks: Vec<u16>,
    epoch: u16,
    candidates: BinaryHeap<Reverse<Cand>>,
    results: BinaryHeap<Cand>,
    links: Vec<u32>,
    fresh: Vec<u32>,
    /// A second list buffer, for the two-hop expansion of `Walk::Within`.
    hop: Vec<u32>,
    /// Distances computed by the current search (its cost, independent of the clock).
    pub(super) distances: usize,
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
            hop: Vec::new(),
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

/// How a beam search treats the nodes its `accept` predicate rejects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Walk {
    /// Every routable node guides the walk; only accepted nodes become answers (how
    /// tombstones and hnswlib-style filters work: the graph is never cut, but a filter
    /// that admits few nodes makes the walk visit many).
    Route,
    /// Only accepted nodes are walked. A rejected neighbour is crossed instead: its own
    /// accepted neighbours are taken in its place (ACORN-1's two-hop expansion, Patel et
    /// al., SIGMOD 2024), up to a list's worth per node, so the walk stays inside the
    /// filter's subgraph yet does not strand where the filter cuts the graph apart.
    Within,
}

/// Seeds a filtered walk starts from besides the upper layers' node (see `search_subset`).
const SEEDS_KEPT: usize = 8;

impl Graph {
    pub(super) fn with_scratch<R>(&self, f: impl FnOnce(&mut Scratch) -> R) -> R {
        let mut s = self.scratch.lock().pop().unwrap_or_else(Scratch::new);
        let r = f(&mut s);
        self.scratch.lock().push(s);
        r
    }

    /// Greedy walk on `level`: moves to a closer neighbour until none is closer.
    pub(super) fn greedy(
        &self,
        s: &mut Scratch,
        q: &[f32],
        mut cur: Cand,
        level: usize,
    ) -> Result<Cand> {
        loop {
            let mut changed = false;
            self.links(cur.id, level, &mut s.links)?;
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
                return Ok(cur);
            }
        }
    }

    /// Greedy descent from `ep` down to level `down_to + 1`: the node a search of level
    /// `down_to` starts from.
    pub(super) fn descend(
        &self,
        s: &mut Scratch,
        q: &[f32],
        ep: EntryPoint,
        down_to: usize,
    ) -> Result<Cand> {
        s.distances += 1;
        let mut cur = Cand {
            d: self.distance_to(q, ep.node),
            id: ep.node,
        };
        for l in (down_to + 1..=ep.level).rev() {
            cur = self.greedy(s, q, cur, l)?;
        }
        Ok(cur)
    }

    /// Best-first beam search of width `ef` on `level` from `entry`; the answer is sorted
    /// by ascending distance (paper, Algorithm 2). Only nodes that `accept` admits become
    /// answers; `walk` says whether the others still guide the walk (see `Walk`).
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
        walk: Walk,
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
            hop,
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
            self.links(c.id, level, links)?;
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
            match walk {
                Walk::Route => {
                    for &n in links.iter() {
                        if self.routable.contains(n) && first_visit(marks, epoch, n) {
                            prefetch(n);
                            fresh.push(n);
                        }
                    }
                }
                Walk::Within => {
                    // Rejected neighbours are not marked: another node may cross them to
                    // different accepted nodes.
                    let budget = self.max_links(level);
                    for &n in links.iter() {
                        if fresh.len() >= budget {
                            break;
                        }
                        if !self.routable.contains(n) {
                            continue;
                        }
                        if accept(n) {
                            if first_visit(marks, epoch, n) {
                                prefetch(n);
                                fresh.push(n);
                            }
                            continue;
                        }
                        self.links(n, level, hop)?;
                        for &m in hop.iter() {
                            if fresh.len() >= budget {
                                break;
                            }
                            if self.routable.contains(m)
                                && accept(m)
                                && first_visit(marks, epoch, m)
                            {
                                prefetch(m);
                                fresh.push(m);
                            }
                        }
                    }
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
        Ok(out)
    }

    /// `search_layer` on exact vectors, every routable node guiding the walk.
    pub(super) fn search_layer_exact(
        &self,
        s: &mut Scratch,
        q: &[f32],
        entry: &[Cand],
        ef: usize,
        level: usize,
        accept: impl Fn(u32) -> bool,
    ) -> Result<Vec<Cand>> {
        self.search_layer_walk(s, q, entry, ef, level, Walk::Route, accept)
    }

    /// `search_layer` on exact vectors.
    #[allow(clippy::too_many_arguments)] // private; as search_layer
    fn search_layer_walk(
        &self,
        s: &mut Scratch,
        q: &[f32],
        entry: &[Cand],
        ef: usize,
        level: usize,
        walk: Walk,
        accept: impl Fn(u32) -> bool,
    ) -> Result<Vec<Cand>> {
        self.search_layer(
            s,
            entry,
            ef,
            level,
            walk,
            accept,
            |n| self.distance_to(q, n),
            |n| self.vectors.prefetch(n),
        )
    }

    /// `search_layer` on layer 0 walking on codes, then the beam re-ranked exactly: the
    /// order within the beam is what quantisation blurs, and the beam is small.
    #[allow(clippy::too_many_arguments)] // private; as search_layer
    pub(super) fn search_codes(
        &self,
        s: &mut Scratch,
        quantized: &Quantized,
        q: &[f32],
        entry: &[Cand],
        ef: usize,
        walk: Walk,
        accept: impl Fn(u32) -> bool,
    ) -> Result<Vec<Cand>> {
        let prepared = quantized.sq8.query(quantized.metric, quantized.kernels, q);
        let score = |n: u32| prepared.eval(quantized.codes.codes(n));
        let start: Vec<Cand> = entry
            .iter()
            .map(|c| Cand {
                d: score(c.id),
                id: c.id,
            })
            .collect();
        let mut beam = self.search_layer(s, &start, ef, 0, walk, accept, score, |n| {
            quantized.codes.prefetch(n)
        })?;
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
        Ok(beam)
    }

    /// The `k` nearest live nodes to `q`, searching layer 0 with a beam of `max(ef, k)`.
    pub fn search(&self, q: &[f32], k: usize, ef: usize) -> Result<Vec<Cand>> {
        Ok(self.search_counted(q, k, ef)?.0)
    }

    /// `search`, also returning how many distances it computed.
    pub fn search_counted(&self, q: &[f32], k: usize, ef: usize) -> Result<(Vec<Cand>, usize)> {
        self.search_accepting(q, k, ef, Walk::Route, |n| self.live.contains(n))
    }

    /// The `k` nearest live nodes among those `admit` accepts, walking only inside them
    /// (`Walk::Within`): for filters the caller has as a set. Besides the node the upper
    /// layers lead to, the walk starts from the nearest `SEEDS_KEPT` of `seeds` (admitted
    /// nodes spread over the set): where the filter's nodes lie in several regions, or
    /// away from the query (a filter anti-correlated with it), the walk then starts inside
    /// each region near the query rather than only where the unfiltered graph leads. May
    /// find fewer than `k` when the admitted nodes are few and scattered; the caller then
    /// scans them.
    pub fn search_subset(
        &self,
        q: &[f32],
        k: usize,
        ef: usize,
        admit: impl Fn(u32) -> bool,
        seeds: impl Iterator<Item = u32>,
    ) -> Result<(Vec<Cand>, usize)> {
        let mut scored: Vec<Cand> = seeds
            .filter(|&n| self.live.contains(n) && admit(n))
            .map(|n| Cand {
                d: self.distance_to(q, n),
                id: n,
            })
            .collect();
        scored.sort_unstable();
        scored.truncate(SEEDS_KEPT);
        let seeds: Vec<u32> = scored.iter().map(|c| c.id).collect();
        let (found, distances) = self.search_from(q, k, ef, Walk::Within, &seeds, |n| {
            self.live.contains(n) && admit(n)
        })?;
        Ok((found, distances + scored.len()))
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
        let live = slots.filter(|&n| self.live.contains(n));
        let top = |scored: &mut dyn Iterator<Item = Cand>, keep: usize| {
            let mut heap: BinaryHeap<Cand> = BinaryHeap::with_capacity(keep + 1);
            for c in scored {
                if heap.len() < keep {
                    heap.push(c);
                } else if heap.peek().is_some_and(|w| c.d < w.d) {
                    heap.pop();
                    heap.push(c);
                }
            }
            heap.into_vec()
        };
        let mut found = match &self.quantized {
            None => top(
                &mut live.map(|n| Cand {
                    d: self.distance_to(q, n),
                    id: n,
                }),
                k,
            ),
            Some(quantized) => {
                let prepared = quantized.sq8.query(quantized.metric, quantized.kernels, q);
                let mut pool = top(
                    &mut live.map(|n| Cand {
                        d: prepared.eval(quantized.codes.codes(n)),
                        id: n,
                    }),
                    rerank.max(k),
                );
                for c in &pool {
                    self.vectors.prefetch(c.id);
                }
                for c in &mut pool {
                    c.d = self.distance_to(q, c.id);
                }
                pool
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
        self.search_accepting(q, k, ef, Walk::Route, |n| {
            self.live.contains(n) && filter(self.vectors.label(n))
        })
    }

    fn search_accepting(
        &self,
        q: &[f32],
        k: usize,
        ef: usize,
        walk: Walk,
        accept: impl Fn(u32) -> bool,
    ) -> Result<(Vec<Cand>, usize)> {
        self.search_from(q, k, ef, walk, &[], accept)
    }

    /// The layer-0 search from where the upper layers lead, and from `seeds` too.
    fn search_from(
        &self,
        q: &[f32],
        k: usize,
        ef: usize,
        walk: Walk,
        seeds: &[u32],
        accept: impl Fn(u32) -> bool,
    ) -> Result<(Vec<Cand>, usize)> {
        let Some(ep) = self.entry() else {
            return Ok((Vec::new(), 0));
        };
        self.with_scratch(|s| {
            s.distances = 0;
            let mut entry = vec![self.descend(s, q, ep, 0)?];
            // Seeds enter as the walk's other starting points (their distances are
            // recomputed on the walk's own scale, codes or exact).
            entry.extend(seeds.iter().map(|&id| Cand { d: 0.0, id }));
            let mut found = match &self.quantized {
                None => {
                    for c in &mut entry[1..] {
                        c.d = self.distance_to(q, c.id);
                    }
                    self.search_layer_walk(s, q, &entry, ef.max(k), 0, walk, accept)?
                }
                Some(quantized) => {
                    self.search_codes(s, quantized, q, &entry, ef.max(k), walk, accept)?
                }
            };
            found.truncate(k);
            Ok((found, s.distances))
        })
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
