//! `verify`: the whole-index check, O(n). Every cross-reference between the metadata,
//! the ledger, the page files and the graph is checked both ways.

use std::collections::HashSet;

use super::{Index, VerifyReport};
use crate::distance::Metric;
use crate::error::Result;
use crate::filter::decode_payload;

impl Index {
    /// Checks the whole index: id maps both ways (metadata ↔ slot labels), slot states,
    /// vectors finite, every link in range and into the graph, the entry point, that
    /// every live node is reachable from it, and that every payload reads back. Reads
    /// every page: O(n).
    pub fn verify(&self) -> Result<VerifyReport> {
        let graph = self.graph.read();
        let p = self.ledger.lock();
        let mut problems = Vec::new();
        let ids = self.id_map(&p)?;
        if ids.len() as u64 != p.slots.live() {
            problems.push(format!(
                "{} ids are mapped but {} vectors are counted live",
                ids.len(),
                p.slots.live()
            ));
        }
        let mut mapped = HashSet::with_capacity(ids.len());
        for &(id, slot) in &ids {
            if slot >= p.slots.high_water() || !graph.is_live(slot) {
                problems.push(format!("id {id} maps to slot {slot}, which is not live"));
                continue;
            }
            if !mapped.insert(slot) {
                problems.push(format!("slot {slot} is mapped by two ids"));
            }
            if !graph.vectors().intact(slot) {
                problems.push(format!(
                    "slot {slot} (id {id}) fails its checksum: its vector or id is damaged"
                ));
                continue;
            }
            let label = graph.vectors().label(slot);
            if label != id {
                problems.push(format!(
                    "id {id} maps to slot {slot}, whose label is {label}"
                ));
            }
            let v = graph.vectors().vector(slot).to_f32();
            if v.iter().any(|x| !x.is_finite()) {
                problems.push(format!("vector of id {id} holds NaN or infinity"));
            } else if self.config.metric == Metric::Cosine {
                // Rounding each component to the storage moves the norm by as much.
                let tolerance = 1e-3f32.max(1.25 * self.config.storage.rounding());
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                if (norm - 1.0).abs() > tolerance {
                    problems.push(format!("vector of id {id} has norm {norm} under cosine"));
                }
            }
            if let Some(q) = graph.quantized()
                && !q.matches(slot, &v)
            {
                problems.push(format!(
                    "codes of id {id} (slot {slot}) in {} do not encode its vector",
                    q.codes.file().path().display()
                ));
            }
            if let Some(q) = graph.quantized()
                && !q.marks_misfit(slot, &v)
            {
                problems.push(format!(
                    "id {id} (slot {slot}): the codes do not fit its vector, and it is not marked a misfit"
                ));
            }
        }
        for slot in 0..p.slots.high_water() {
            let free = p.slots.is_free(slot);
            let tomb = p.slots.is_tombstone(slot);
            if free && tomb {
                problems.push(format!("slot {slot} is both free and deleted"));
            }
            if graph.is_live(slot) != (!free && !tomb) {
                problems.push(format!(
                    "slot {slot}: live flag disagrees with the free and deleted sets"
                ));
            }
            if graph.is_live(slot) && !mapped.contains(&slot) {
                problems.push(format!("live slot {slot} has no id"));
            }
        }
        self.check_bindings(&p, &ids, &mut problems)?;
        self.each_payload(&p, |id, bytes| {
            if decode_payload(bytes).is_none() {
                problems.push(format!(
                    "payload of id {id} is not a JSON object within the payload limits"
                ));
            }
            Ok(())
        })?;
        let (stale_links, unreachable) =
            graph.check(p.slots.high_water(), self.wal.is_none(), &mut problems)?;
        Ok(VerifyReport {
            problems,
            unreachable,
            stale_links,
            live: p.slots.live(),
            tombstones: p.slots.tombstones().len(),
            free: p.slots.free_count(),
        })
    }
}
