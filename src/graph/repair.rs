//! Healing the graph: consolidation of deleted nodes (relinking their in-neighbours),
//! reconnection of nodes that lost every in-link, and the integrity checks `verify` runs.

use std::collections::{HashMap, HashSet};

use super::search::Start;
use super::{Graph, upper::UpperNode};
use crate::error::Result;
use crate::parallel::try_parallel_for;
use crate::store::EntryPoint;

impl Graph {
    /// Relinks every live node that points at a non-live node (FreshDiskANN's consolidation:
    /// candidates are the node's live neighbours and the live neighbours of its dead ones,
    /// pruned by the same heuristic as inserts), then forgets `tombstones` (which become
    /// free) and moves the entry point off a dead node. The caller must hold exclusive
    /// access: nothing else may insert or search meanwhile.
    pub fn consolidate(&self, tombstones: &[u32], high_water: u32, threads: usize) -> Result<()> {
        // Whole-graph passes ask every node for its level: load the upper layers once.
        let upper_nodes = self.upper.nodes()?;
        try_parallel_for(high_water as usize, threads, |u| {
            if self.live.contains(u as u32) {
                self.repair(u as u32, 0)?;
            }
            Ok(())
        })?;
        let upper: Vec<(u32, usize)> = upper_nodes
            .iter()
            .filter(|(n, _)| self.live.contains(*n))
            .map(|(n, u)| (*n, u.level()))
            .collect();
        try_parallel_for(upper.len(), threads, |i| {
            let (node, levels) = upper[i];
            (1..=levels).try_for_each(|l| self.repair(node, l))
        })?;
        for &t in tombstones {
            debug_assert!(!self.live.contains(t));
            if self.upper.get(t)?.is_some() {
                self.upper.set(t, None);
                self.upper_dirty.lock().insert(t);
            }
            self.routable.remove(t);
        }
        let entry = *self.entry.read();
        if entry.is_some_and(|e| !self.live.contains(e.node)) {
            let new_entry = self
                .upper
                .nodes()?
                .iter()
                .map(|(n, u)| (u.level(), std::cmp::Reverse(*n)))
                .max()
                .map(|(level, std::cmp::Reverse(node))| EntryPoint { node, level })
                .or_else(|| {
                    (0..high_water)
                        .find(|&n| self.live.contains(n))
                        .map(|node| EntryPoint { node, level: 0 })
                });
            *self.entry.write() = new_entry;
        }
        Ok(())
    }

    /// Marks in `seen` every routable node reachable from `from` by layer-0 links: what a
    /// search's walk of layer 0 can reach from the entry point. Not by links on any level:
    /// a search descends greedily to one node and walks layer 0 from there, so a group of
    /// nodes that only upper links lead into is an island no search enters (upserts that
    /// moved most vectors away left 60 of 150 unmoved ones unfound at ef 3,000 of 4,000
    /// while `verify` counted none unreachable).
    fn mark_reachable(&self, from: u32, seen: &mut [bool]) -> Result<()> {
        let mut stack = vec![from];
        let mut list = Vec::new();
        while let Some(n) = stack.pop() {
            if (n as usize) >= seen.len() || seen[n as usize] || !self.routable.contains(n) {
                continue;
            }
            seen[n as usize] = true;
            self.links(n, 0, &mut list)?;
            stack.extend_from_slice(&list);
        }
        Ok(())
    }

    /// Links every live node that cannot be reached from the entry point back
    /// into the graph, from the nearest reachable node a search finds. Pruning can, rarely,
    /// take a node's last in-link; this restores the invariant `verify` checks. O(n).
    /// Exclusive access, like `consolidate`. Returns how many nodes it relinked.
    pub fn reconnect(&self, high_water: u32) -> Result<usize> {
        let Some(entry) = self.entry() else {
            return Ok(0);
        };
        self.upper.load_all()?;
        let mut seen = vec![false; high_water as usize];
        self.mark_reachable(entry.node, &mut seen)?;
        let mut relinked = 0;
        for x in 0..high_water {
            if seen[x as usize] || !self.live.contains(x) {
                continue;
            }
            let q = self.vectors.vector(x).to_f32();
            let q = &*q;
            // From a node already reachable: the nearest one found may lie in x's island.
            let ef = self.params.ef_construction;
            let found = self.search(q, ef, ef)?;
            let reachable = found.iter().find(|c| c.id != x && seen[c.id as usize]);
            if let Some(near) = reachable.or_else(|| found.iter().find(|c| c.id != x)) {
                self.force_link(near.id, x, 0)?;
                relinked += 1;
            }
            self.mark_reachable(x, &mut seen)?;
        }
        Ok(relinked)
    }

    /// Whether a link to `target` on `level` is sound: the target is live and has that level
    /// (every node has layer 0: no lookup of its upper lists there).
    fn sound_link(&self, target: u32, level: usize) -> Result<bool> {
        Ok(self.live.contains(target) && (level == 0 || self.level_of(target)? >= level))
    }

    /// `list` without `node` itself and without unsound links on `level`.
    fn sound_links(&self, node: u32, level: usize, list: &[u32]) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(list.len());
        for &n in list {
            if n != node && self.sound_link(n, level)? {
                out.push(n);
            }
        }
        Ok(out)
    }

    /// Replaces the unsound links of `node` on `level` (see `consolidate`).
    fn repair(&self, node: u32, level: usize) -> Result<()> {
        let mut list = Vec::new();
        self.links(node, level, &mut list)?;
        let sound = self.sound_links(node, level, &list)?;
        if sound.len() == list.len() {
            return Ok(());
        }
        let mut pool: HashSet<u32> = sound.into_iter().collect();
        // FreshDiskANN's pool: N(node) ∪ N(dead). (Adding the neighbours of the live
        // neighbours too cost about 32 lists and 1,000 distances per repaired node, most of
        // a bulk delete's time, for the neighbourhood the beam search below finds anyway.)
        let mut theirs = Vec::new();
        for &dead in list
            .iter()
            .filter(|&&n| n != node && !self.live.contains(n) && self.routable.contains(n))
        {
            self.links(dead, level, &mut theirs)?;
            pool.extend(self.sound_links(node, level, &theirs)?);
        }
        // Where many neighbours died, that pool is thin, and repeated consolidations then
        // lose recall a little each time. A beam search from the node itself, as an insert
        // runs, finds the neighbourhood a fresh build would see.
        let base = self.vectors.vector(node).to_f32();
        let base = &*base;
        let start = [super::Cand { d: 0.0, id: node }];
        let (ef, accept) = (2 * self.max_links(level), |n| {
            n != node && self.live.contains(n)
        });
        let found = self.with_scratch(|s| match &self.quantized {
            // Layer 0 holds almost all of the distances: walk it on codes, re-ranked
            // exactly, as an insert does; the links are still chosen on exact distances.
            Some(quantized) if level == 0 => {
                self.search_codes(s, quantized, base, Start::Nodes(&start), ef, ef, accept)
            }
            _ => self.search_layer_exact(s, base, &start, ef, level, accept),
        })?;
        pool.extend(self.sound_links(
            node,
            level,
            &found.iter().map(|c| c.id).collect::<Vec<_>>(),
        )?);
        let mut cands = self.by_distance(node, pool);
        cands.truncate(self.params.ef_construction.max(self.max_links(level)));
        let kept = self.select(&cands, self.max_links(level), None);
        self.update_links(node, level, |l| {
            l.clear();
            l.extend(kept.iter().map(|c| c.id));
            true
        })?;
        // As an insert does, give each new neighbour the link back: HNSW navigates on
        // (mostly) bidirectional links, and a repair that only rewrote out-lists would
        // leave the repaired region harder to enter than a fresh build.
        for c in kept.iter().filter(|c| !list.contains(&c.id)) {
            self.add_link(c.id, node, c.d, level)?;
        }
        Ok(())
    }

    /// Checks the graph over slots `0..high_water`. Appends a line per integrity problem
    /// (an entry point missing, dead or not on the top level; upper lists on a node not
    /// in the graph). Returns the counts of stale links (to slots not in the graph, or to a
    /// node not on that level: skipped by searches, removed by consolidation) and of live
    /// nodes no search can reach from the entry point (by links on any level): matters of
    /// search quality. A read-only view (`view`) judges ids by the files as the writer
    /// has grown them: a list may link to a node newer than the view (stale, not damage).
    pub fn check(
        &self,
        high_water: u32,
        view: bool,
        problems: &mut Vec<String>,
    ) -> Result<(usize, usize)> {
        let mut stale = 0;
        let mut list = Vec::new();
        let upper: HashMap<u32, std::sync::Arc<UpperNode>> =
            self.upper.nodes()?.into_iter().collect();
        let top = upper.values().map(|u| u.level()).max().unwrap_or(0);
        let live: Vec<u32> = (0..high_water).filter(|&n| self.live.contains(n)).collect();
        match *self.entry.read() {
            None if !live.is_empty() => problems.push("no entry point but live nodes exist".into()),
            None => {}
            Some(e) => {
                if !self.routable.contains(e.node) {
                    problems.push(format!("entry point {} is not in the graph", e.node));
                }
                if e.level != top || upper.get(&e.node).map_or(0, |u| u.level()) != e.level {
                    problems.push(format!(
                        "entry point {} has level {} but the top level is {top}",
                        e.node, e.level
                    ));
                }
            }
        }
        // No write, and no crash in any durability mode, puts an id beyond the files'
        // capacity or the same id twice into a list: such a list is damage, not staleness.
        let capacity = match view {
            true => self.capacity().max(self.layer0.file().capacity_on_disk()?),
            false => self.capacity(),
        } as u32;
        let mut damaged = Vec::new();
        for n in (0..high_water).filter(|&n| self.routable.contains(n)) {
            self.links(n, 0, &mut list)?;
            let mut sorted = list.clone();
            sorted.sort_unstable();
            if list.iter().any(|&t| t >= capacity) || sorted.windows(2).any(|w| w[0] == w[1]) {
                damaged.push(n);
            }
            stale += list
                .iter()
                .filter(|&&t| t >= high_water || t == n || !self.routable.contains(t))
                .count();
        }
        if let Some(first) = damaged.first() {
            problems.push(format!(
                "{} layer-0 lists hold ids beyond the capacity or an id twice (first: node {first}): graph0 is damaged",
                damaged.len()
            ));
        }
        for (&n, u) in upper.iter() {
            if !self.routable.contains(n) {
                problems.push(format!("node {n} has upper lists but is not in the graph"));
            }
            for (i, l) in u.lists.iter().enumerate() {
                let on_level = |t: u32| {
                    upper.get(&t).is_some_and(|tu| tu.level() > i) && self.routable.contains(t)
                };
                stale += l.lock().iter().filter(|&&t| !on_level(t)).count();
            }
        }
        drop(upper);
        if let Some(e) = *self.entry.read() {
            let mut seen = vec![false; high_water as usize];
            self.mark_reachable(e.node, &mut seen)?;
            return Ok((stale, live.iter().filter(|&&n| !seen[n as usize]).count()));
        }
        Ok((stale, 0))
    }
}
