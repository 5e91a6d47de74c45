//! Relocating compaction: the live rows copied densely, graph and all, into a staging
//! directory that then takes the index's place exactly as `compact`'s rebuild does (see
//! `compact`: the writer lock held throughout, one atomic exchange, old or new whole after
//! a crash at any instant).
//!
//! Why a copy beside the index rather than moving rows within its files: a row moved in
//! place overwrites a slot that the metadata, the log and every reader's view still name
//! for another vector, so a crash mid-move would need an undo log of its own, and readers
//! would need a new protocol. A copy needs neither; it costs, for a moment, the disk of a
//! second (smaller: live rows only) index.
//!
//! `close` relocates by itself once the slots freed by deletes pass
//! [`OpenOptions::relocate_above`](super::OpenOptions::relocate_above) of the high-water
//! mark: an index emptied by deletes becomes dense again with no `compact` asked for.

use std::collections::HashMap;
use std::path::Path;

use super::compact::check_copy;
use super::open::{GRAPH0_FILE, VECTORS_FILE, build};
use super::{Compaction, Index};
use crate::distance::Routing;
use crate::error::{Error, Result};
use crate::graph::Dense;
use crate::store::meta::META_FILE_NAME;
use crate::store::{Changes, CodeKind, Codes, Layer0, Meta, State, Vectors, codes};

/// Below this high-water mark `close` never relocates: the holes of a small index cost
/// little, and its slots are reused by the next inserts anyway.
pub(super) const RELOCATE_MIN_SLOTS: u32 = 1024;

impl Index {
    /// Compacts by relocation: consolidates, then copies the live vectors, their codes and
    /// their graph links (renumbered) into dense files, in breadth-first order over layer 0
    /// from the entry point, and exchanges the copy for this index as [`Index::compact`]
    /// does, with the same guarantees. O(n) copies: no vector is re-inserted, so the graph
    /// (and recall at a given `ef`) is the one this index had. Ids, keys, payloads and
    /// indexed fields stay as they are. `close` runs it when enough slots are free (see
    /// [`OpenOptions::relocate_above`](super::OpenOptions::relocate_above)).
    pub fn relocate(self) -> Result<(Index, Compaction)> {
        self.swap_compacted(|index, staging| index.relocate_into(staging))
    }

    /// Whether `close` should relocate: a writable index whose free and deleted slots
    /// exceed the configured fraction of its high-water mark.
    pub(super) fn relocation_due(&self) -> bool {
        let fraction = self.options.relocate_above;
        let p = self.ledger.lock();
        let high_water = p.slots.high_water();
        let holes = high_water as u64 - p.slots.live();
        self.wal.is_some()
            && high_water >= RELOCATE_MIN_SLOTS
            && fraction < 1.0
            && holes as f64 > fraction * high_water as f64
    }

    /// Writes the relocated copy of this index into `staging`, closed and verified.
    fn relocate_into(&self, staging: &Path) -> Result<()> {
        // Afterwards no node is tombstoned and every link leads to a live node (or is
        // dropped by the copy), so the copy needs no free or deleted slot at all.
        self.consolidate()?;
        // Before the locks below: it asks the ledger for the live count.
        let mut options = self.options_for_copy();
        for spec in self.fields() {
            options = options.field(spec);
        }
        let graph = self.graph.read();
        let p = self.ledger.lock();
        let old_meta = self.meta();
        let high_water = p.slots.high_water();
        let order = graph.locality_order(high_water);
        if order.len() as u64 != p.slots.live() {
            return Err(Error::corrupt(
                &self.dir,
                format!(
                    "{} live nodes, {} counted live",
                    order.len(),
                    p.slots.live()
                ),
            ));
        }
        build(staging, &options)?;
        let (meta, config, _) = Meta::open(&staging.join(META_FILE_NAME), 1 << 20, false)?;
        let vectors = Vectors::open(&staging.join(VECTORS_FILE), false, config.storage)?;
        let layer0 = Layer0::open(&staging.join(GRAPH0_FILE), false)?;
        let code_file = match graph.quantized() {
            None => None,
            Some(_) => {
                let kind = match config.routing {
                    Routing::Sq8 => CodeKind::Sq8,
                    Routing::RaBitQ => CodeKind::RaBitQ,
                };
                let path = staging.join(codes::file_name(1));
                let capacity = order.len().max(1);
                Some(Codes::create(
                    &path,
                    kind,
                    config.file_identity(),
                    capacity,
                )?)
            }
        };
        let dense = Dense {
            vectors: &vectors,
            layer0: &layer0,
            codes: code_file.as_ref(),
        };
        let relocated = graph.relocate(&order, high_water, &dense)?;
        vectors.file().sync()?;
        layer0.file().sync()?;
        if let Some(c) = &code_file {
            c.file().sync()?;
        }
        let new_slot = |slot: u32| match relocated.new_of.get(slot as usize) {
            Some(&new) if new != u32::MAX => Ok(Some(new)),
            _ => Err(Error::corrupt(
                old_meta.path(),
                format!("an id names slot {slot}, which is not live"),
            )),
        };
        let ids = old_meta
            .all_ids()?
            .into_iter()
            .map(|(id, slot)| Ok((id, new_slot(slot)?)))
            .collect::<Result<HashMap<_, _>>>()?;
        let mut payloads = HashMap::new();
        old_meta.for_each_payload(|id, bytes| {
            payloads.insert(id, Some(bytes.to_vec()));
            Ok(())
        })?;
        let (keys, key_of) = old_meta.all_keys()?;
        let upper: Vec<_> = relocated
            .upper
            .into_iter()
            .map(|(node, lists)| (node, Some(lists)))
            .collect();
        let live = order.len() as u32;
        let state = State {
            high_water: live,
            live: live as u64,
            entry: relocated.entry,
            checkpoint_lsn: 0,
            level_draws: p.level_draws,
            codes_generation: code_file.is_some() as u64,
            codes_trained_live: p.codes_trained_live,
            generation: 1,
            next_id: p.next_id,
        };
        meta.commit(&Changes {
            ids: &ids,
            slots: &HashMap::new(),
            upper: &upper,
            state: &state,
            quantizer: graph.quantized().map(|q| &q.quantizer),
            payloads: &payloads,
            keys: &keys.into_iter().map(|(k, id)| (k, Some(id))).collect(),
            key_of: &key_of.into_iter().map(|(id, k)| (id, Some(k))).collect(),
        })?;
        drop((meta, vectors, layer0, code_file, graph, p));
        let copy = Index::open_with(staging, &self.open_options())?;
        check_copy(copy, live as u64)
    }
}
