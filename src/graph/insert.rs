//! Building the graph: inserting a node (paper, Algorithm 1), the neighbour-selection
//! heuristic (Algorithm 4) and the list updates that link nodes to each other.

use super::search::Start;
use super::upper::UpperNode;
use super::{Cand, Graph, LOCK_STRIPES};
use crate::error::Result;
use crate::store::EntryPoint;

impl Graph {
    /// The neighbour-selection heuristic (paper, Algorithm 4, as hnswlib applies it):
    /// walking candidates from nearest, keep one only if it is closer to the base than to
    /// every neighbour already kept. Fewer than `m` candidates are all kept. Each candidate
    /// rejected for being closer to a kept neighbour `r` is reported as `(candidate, r)`.
    ///
    /// Equidistant candidates are taken newest (highest slot) first, as hnswlib's heap of
    /// `(distance, id)` pairs takes them. Exact duplicates are all equidistant, and never
    /// reject each other (`<`): taken oldest first, every full list of a copy kept the
    /// oldest copies and dropped each new one, whose in-links vanished, and 20 copies of
    /// each of 100 vectors left a fifth of the nodes unreachable (`tests/duplicates.rs`).
    /// Copies fill at most half the list, though: a list of a copy that holds nothing but
    /// copies traps every walk that enters it (1,500 copies of one vector
    /// among 1,500 others left searches elsewhere at recall 0.69 at ef 64, now 0.97).
    /// Past half, a copy of a kept neighbour counts as rejected by it.
    pub(super) fn select(
        &self,
        sorted: &[Cand],
        m: usize,
        mut dominated: Option<&mut Vec<(u32, u32)>>,
    ) -> Vec<Cand> {
        if sorted.len() <= m {
            return sorted.to_vec();
        }
        let mut order = sorted.to_vec();
        order.sort_unstable_by(|a, b| a.d.total_cmp(&b.d).then(b.id.cmp(&a.id)));
        let mut kept: Vec<Cand> = Vec::with_capacity(m);
        let mut copies = 0;
        let mut widened = Vec::new();
        for c in order {
            if kept.len() >= m {
                break;
            }
            let v = self.vectors.vector(c.id).to_f32_in(&mut widened);
            let (mut closer, mut twin) = (None, None);
            for k in &kept {
                let d = self.distance_to(v, k.id);
                if d < c.d {
                    closer = Some(k.id);
                    break;
                }
                let same = || self.vectors.vector(c.id) == self.vectors.vector(k.id);
                if twin.is_none() && d == c.d && same() {
                    twin = Some(k.id);
                }
            }
            match closer.or(twin.filter(|_| copies >= m / 2)) {
                None => {
                    copies += usize::from(twin.is_some());
                    kept.push(c);
                }
                Some(r) => {
                    if let Some(d) = dominated.as_deref_mut() {
                        d.push((c.id, r));
                    }
                }
            }
        }
        kept
    }

    /// Runs `f` on `node`'s list at `level` under that list's lock and stores the result if
    /// `f` returns true.
    pub(super) fn update_links(
        &self,
        node: u32,
        level: usize,
        f: impl FnOnce(&mut Vec<u32>) -> bool,
    ) -> Result<()> {
        if level == 0 {
            let _guard = self.locks[node as usize % LOCK_STRIPES].lock();
            let mut list = Vec::with_capacity(self.params.m0);
            self.layer0.read_into(node, &mut list);
            if f(&mut list) {
                self.layer0.write(node, &list);
            }
        } else if let Some(u) = self.upper.get(node)?
            && let Some(slot) = u.lists.get(level - 1)
            && f(&mut slot.lock())
        {
            self.upper_dirty.lock().insert(node);
        }
        Ok(())
    }

    pub(super) fn max_links(&self, level: usize) -> usize {
        if level == 0 {
            self.params.m0
        } else {
            self.params.m
        }
    }

    /// `node`'s neighbours among `ids`, with their distances, nearest first.
    pub(super) fn by_distance(&self, node: u32, ids: impl IntoIterator<Item = u32>) -> Vec<Cand> {
        let base = self.vectors.vector(node).to_f32();
        let base = &*base;
        let mut cands: Vec<Cand> = ids
            .into_iter()
            .map(|id| Cand {
                d: self.distance_to(base, id),
                id,
            })
            .collect();
        cands.sort_unstable();
        cands
    }

    /// Adds the link `node -> new` (at distance `d`), pruning `node`'s list with the
    /// heuristic when it is full; links to dead nodes are dropped on the way. Returns
    /// whether `node` links to `new` afterwards.
    ///
    /// A link `node -> x` pruned because a kept neighbour `r` is closer to `x` is moved to
    /// `r -> x` when `r` has room: the heuristic's own premise is that `x` is reached
    /// through `r`, and without that link `x` can lose its last in-link and become
    /// unreachable.
    pub(super) fn add_link(&self, node: u32, new: u32, d: f32, level: usize) -> Result<bool> {
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
            let mut cands = self.by_distance(
                node,
                list.iter().copied().filter(|&x| self.live.contains(x)),
            );
            let at = cands.partition_point(|c| *c < Cand { d, id: new });
            cands.insert(at, Cand { d, id: new });
            let kept = self.select(&cands, max, Some(&mut dominated));
            linked = kept.iter().any(|c| c.id == new);
            list.clear();
            list.extend(kept.iter().map(|c| c.id));
            true
        })?;
        // Outside `node`'s lock: a thread holds one list lock at a time.
        for (x, r) in dominated {
            self.update_links(r, level, |list| {
                let room = list.len() < max && x != r && !list.contains(&x);
                if room {
                    list.push(x);
                }
                room
            })?;
        }
        Ok(linked)
    }

    /// Writes the list `chosen` for `node` (being inserted) on `level`. Links that other
    /// inserts added to `node` meanwhile are kept, pruned with `chosen` by the heuristic
    /// when they do not all fit: overwriting them would take those nodes' in-link away.
    fn set_own_links(&self, node: u32, level: usize, chosen: &[Cand]) -> Result<()> {
        let max = self.max_links(level);
        self.update_links(node, level, |list| {
            let added = list
                .iter()
                .copied()
                .filter(|&x| x != node && self.live.contains(x))
                .filter(|&x| !chosen.iter().any(|c| c.id == x));
            let mut cands = self.by_distance(node, added);
            cands.extend_from_slice(chosen);
            cands.sort_unstable();
            list.clear();
            list.extend(self.select(&cands, max, None).iter().map(|c| c.id));
            true
        })
    }

    /// Makes `from` link to `to` even when `from`'s list is full, by
    /// replacing its farthest neighbour. Used when no neighbour kept a new node, which
    /// would otherwise be unreachable.
    pub(super) fn force_link(&self, from: u32, to: u32, level: usize) -> Result<()> {
        let max = self.max_links(level);
        self.update_links(from, level, |list| {
            if list.contains(&to) || from == to {
                return false;
            }
            if list.len() < max {
                list.push(to);
                return true;
            }
            // A link to a node not in the graph is replaced first; else the farthest.
            let mut widened = Vec::new();
            let base = self.vectors.vector(from).to_f32_in(&mut widened);
            let (far, _) = list
                .iter()
                .enumerate()
                .map(|(i, &x)| match self.routable.contains(x) {
                    true => (i, self.distance_to(base, x)),
                    false => (i, f32::INFINITY),
                })
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .expect("a full list is not empty");
            list[far] = to;
            true
        })
    }

    /// Whether the writer has made the insert of `v` under `label` in slot `node` in the
    /// pages it shares with a read-only view: the slot holds them, its codes (if any)
    /// encode it, and it is linked on layer 0 (unless `first`: the first node a view with
    /// none adopts, which becomes its entry point, may have no links yet). A view
    /// applies only inserts the writer has made (`Graph::adopt`): one of its own would
    /// write into its private copy of the pages, which would then hide every later change
    /// the writer makes to them.
    pub fn adoptable(&self, node: u32, v: &[f32], label: u64, first: bool) -> Result<bool> {
        if !self.vectors.holds(node, v, label) {
            return Ok(false);
        }
        let stored = self.vectors.vector(node).to_f32();
        if (self.quantized.as_ref()).is_some_and(|q| !q.matches(node, &stored)) {
            return Ok(false);
        }
        let mut links = Vec::new();
        self.links(node, 0, &mut links)?;
        Ok(!links.is_empty() || first)
    }

    /// A read-only view's replay of an insert the writer has already made (`adoptable`):
    /// publishes `node` without inserting it again; only its upper lists, which live in
    /// the writer's memory, are built (a search of the upper layers only), or it becomes
    /// the entry point of an empty view. Returns false, changing nothing, when the insert
    /// is not adoptable.
    pub fn adopt(&self, node: u32, level: usize, v: &[f32], label: u64) -> Result<bool> {
        if !self.adoptable(node, v, label, self.entry.read().is_none())? {
            return Ok(false);
        }
        if let Some(q) = &self.quantized {
            q.note_fit(node, &self.vectors.vector(node).to_f32());
        }
        self.publish(node, level);
        if level > 0 || self.entry.read().is_none() {
            self.connect(node, level, 1, &[])?;
        }
        Ok(true)
    }

    /// Inserts `v` (already validated and normalised) as node `node` with the given level
    /// (paper, Algorithm 1). `node` must not be live. Safe to call from many threads.
    ///
    /// Replay (`recovering`) re-inserts a node whose earlier insert may be partly or
    /// wholly in the pages already. Its own layer-0 list is then kept as extra candidates:
    /// the rest of the graph may already depend on it (neighbours pruned a link to `b`
    /// because `node` links to `b`), and a fresh search cannot find what only that list
    /// reaches. Duplicate links are never added twice.
    pub fn insert(
        &self,
        node: u32,
        level: usize,
        v: &[f32],
        label: u64,
        recovering: bool,
    ) -> Result<()> {
        debug_assert!(!self.live.contains(node), "insert of live node {node}");
        let mut earlier = Vec::new();
        if recovering {
            self.links(node, 0, &mut earlier)?;
        }
        self.unsynced.insert(node);
        self.vectors.write(node, v, label);
        if let Some(q) = &self.quantized {
            // From the vector as stored (rounded, under f16), as a retraining would.
            let stored = self.vectors.vector(node).to_f32();
            q.codes.write(node, &q.encode(&stored));
            q.note_fit(node, &stored);
        }
        self.update_links(node, 0, |list| {
            list.clear();
            true
        })?;
        self.publish(node, level);
        self.connect(node, level, 0, &earlier)
    }

    /// Makes `node`, whose vector is in place, a node of the graph on `level` and below
    /// (its upper lists still empty): searches may reach it from now on.
    fn publish(&self, node: u32, level: usize) {
        self.upper.set(
            node,
            (level > 0).then(|| UpperNode::from_lists(vec![Vec::new(); level])),
        );
        self.upper_dirty.lock().insert(node);
        self.routable.insert(node);
        self.live.insert(node);
    }

    /// Links the published `node` into layers `lowest..=level` (neighbours chosen by a
    /// search from the entry point, `earlier` added on layer 0 as extra candidates), and
    /// makes it the entry point if it tops the graph.
    fn connect(&self, node: u32, level: usize, lowest: usize, earlier: &[u32]) -> Result<()> {
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
            return Ok(());
        };
        let q = self.vectors.vector(node).to_f32();
        let q = &*q;
        self.with_scratch(|s| -> Result<()> {
            let cur = self.descend(s, q, ep, level)?;
            let mut entry_set = vec![cur];
            let mut links_back = Vec::with_capacity(level.min(ep.level) + 1);
            for l in (lowest..=level.min(ep.level)).rev() {
                let live = |n| self.live.contains(n);
                let ef = self.params.ef_construction;
                let mut found = match &self.quantized {
                    // Layer 0 holds almost all of an insert's distances: walk it on codes
                    // as searches do; neighbours are still chosen on exact distances.
                    Some(quantized) if l == 0 => {
                        self.search_codes(s, quantized, q, Start::Nodes(&entry_set), ef, ef, live)?
                    }
                    _ => self.search_layer_exact(s, q, &entry_set, ef, l, live)?,
                };
                if l == 0 && !earlier.is_empty() {
                    for &e in earlier {
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
                self.set_own_links(node, l, &chosen)?;
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
                    linked |= self.add_link(c.id, node, c.d, l)?;
                }
                if !linked && let Some(nearest) = chosen.first() {
                    self.force_link(nearest.id, node, l)?;
                }
            }
            Ok(())
        })?;
        if level > ep.level {
            *self.entry.write() = Some(EntryPoint { node, level });
        }
        Ok(())
    }
}
