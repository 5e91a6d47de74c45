//! Relocation: the graph copied, links and all, into dense page files, its live nodes
//! renumbered `0..live` in an order chosen for locality. Deletes leave holes among the
//! slots that only later inserts fill; a search over a half-emptied index touches twice
//! the pages per node it visits. Copying keeps the graph as it is (no re-insertion: O(n)
//! copies, not O(n log n) searches), so recall per `ef` stays what it was.

use std::collections::VecDeque;

use super::Graph;
use crate::error::{Error, Result};
use crate::store::{Codes, EntryPoint, Layer0, UpperLists, Vectors};

/// No new slot: the old slot is not live.
const NONE: u32 = u32::MAX;

/// The dense files a relocation writes into (created with room for every live node).
pub struct Dense<'a> {
    /// Vectors and their labels.
    pub vectors: &'a Vectors,
    /// Layer-0 lists.
    pub layer0: &'a Layer0,
    /// Codes, when the graph walks on codes (same quantiser: codes are copied).
    pub codes: Option<&'a Codes>,
}

/// What the metadata must record of a relocated graph.
pub struct Relocated {
    /// Old slot → new slot, for every live node (`u32::MAX` for the others).
    pub new_of: Vec<u32>,
    /// Upper lists of the relocated nodes that have any, by new slot.
    pub upper: Vec<(u32, UpperLists)>,
    /// The entry point, renumbered.
    pub entry: Option<EntryPoint>,
}

impl Graph {
    /// Live nodes in breadth-first order over layer 0 from the entry point (neighbours
    /// land near each other, so a walk's next hops share pages), then any live node the
    /// walk did not reach, in slot order. The caller holds the graph exclusively, after a
    /// consolidation (no tombstones: every link it follows is to a live node or skipped).
    pub fn locality_order(&self, high_water: u32) -> Vec<u32> {
        let mut seen = vec![false; high_water as usize];
        let mut order = Vec::new();
        let mut queue = VecDeque::new();
        let mut list = Vec::new();
        let starts = self
            .entry()
            .map(|e| e.node)
            .into_iter()
            .chain(0..high_water);
        for start in starts {
            queue.push_back(start);
            while let Some(n) = queue.pop_front() {
                if n >= high_water || seen[n as usize] || !self.is_live(n) {
                    continue;
                }
                seen[n as usize] = true;
                order.push(n);
                self.layer0.read_into(n, &mut list);
                queue.extend(list.drain(..));
            }
        }
        order
    }

    /// Copies the nodes of `order` (distinct live slots) into `dense`, node `order[i]`
    /// becoming slot `i`, with every list renumbered (links to nodes not copied are
    /// dropped). The files are written, not synced.
    pub fn relocate(&self, order: &[u32], high_water: u32, dense: &Dense<'_>) -> Result<Relocated> {
        let mut new_of = vec![NONE; high_water as usize];
        for (new, &old) in order.iter().enumerate() {
            new_of[old as usize] = new as u32;
        }
        let renumber = |list: &[u32]| -> Vec<u32> {
            list.iter()
                .filter_map(|&o| new_of.get(o as usize).copied().filter(|&n| n != NONE))
                .collect()
        };
        let mut list = Vec::new();
        let mut upper = Vec::new();
        for (new, &old) in order.iter().enumerate() {
            let new = new as u32;
            let vectors = &self.vectors;
            dense
                .vectors
                .write(new, &vectors.vector(old).to_f32(), vectors.label(old));
            if let (Some(codes), Some(q)) = (dense.codes, &self.quantized) {
                codes.write(new, q.codes.codes(old));
            }
            self.links(old, 0, &mut list)?;
            dense.layer0.write(new, &renumber(&list));
            let levels = self.level_of(old)?;
            if levels > 0 {
                let lists = (1..=levels)
                    .map(|level| {
                        self.links(old, level, &mut list)?;
                        Ok(renumber(&list))
                    })
                    .collect::<Result<UpperLists>>()?;
                upper.push((new, lists));
            }
        }
        let entry = match self.entry() {
            None => None,
            Some(e) => match new_of.get(e.node as usize) {
                Some(&node) if node != NONE => Some(EntryPoint { node, ..e }),
                _ => {
                    return Err(Error::corrupt(
                        self.vectors.file().path(),
                        format!("entry point {} is not a live node", e.node),
                    ));
                }
            },
        };
        Ok(Relocated {
            new_of,
            upper,
            entry,
        })
    }
}
