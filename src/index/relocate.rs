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
use crate::error::{Error, Result};
use crate::graph::{Dense, Graph, Quantized, Relocated};
use crate::store::meta::META_FILE_NAME;
use crate::store::{Changes, CodeKind, Codes, Config, Layer0, Meta, State, Vectors, codes};

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
        let high_water = p.slots.high_water();
        let order = graph.locality_order(high_water);
        if order.len() as u64 != p.slots.live() {
            let why = format!(
                "{} live nodes, {} counted live",
                order.len(),
                p.slots.live()
            );
            return Err(Error::corrupt(&self.dir, why));
        }
        build(staging, &options)?;
        let cache = self.options.meta_cache_bytes();
        let (meta, config, _) = Meta::open(&staging.join(META_FILE_NAME), cache, false)?;
        let relocated = copy_pages(&graph, &order, high_water, staging, &config)?;
        let live = order.len() as u32;
        let state = State {
            high_water: live,
            live: live as u64,
            entry: relocated.entry,
            checkpoint_lsn: 0,
            level_draws: p.level_draws,
            codes_generation: graph.quantized().is_some() as u64,
            codes_trained_live: p.codes_trained_live,
            codes_misfits: graph.quantized().map_or(0, |q| q.trained_misfits()),
            // The copy's codes are generation 1, their misfits those of these codes.
            misfits_generation: graph.quantized().is_some_and(|q| q.misfits_known()) as u64,
            generation: 1,
            next_id: p.next_id,
        };
        commit_copy(&self.meta(), &meta, relocated, &state, graph.quantized())?;
        drop((meta, graph, p));
        let copy = Index::open_with(staging, &self.open_options())?;
        check_copy(copy, live as u64)
    }
}

/// Copies the pages of the nodes of `order` into the files `build` made in `staging` (and
/// a code file, generation 1, if the graph walks on codes), synced.
fn copy_pages(
    graph: &Graph,
    order: &[u32],
    high_water: u32,
    staging: &Path,
    config: &Config,
) -> Result<Relocated> {
    let vectors = Vectors::open(&staging.join(VECTORS_FILE), false, config.storage)?;
    let layer0 = Layer0::open(&staging.join(GRAPH0_FILE), false)?;
    let codes = match graph.quantized() {
        None => None,
        Some(_) => Some(Codes::create(
            &staging.join(codes::file_name(1)),
            CodeKind::of(config.routing),
            config.file_identity(),
            order.len().max(1),
        )?),
    };
    let dense = Dense {
        vectors: &vectors,
        layer0: &layer0,
        codes: codes.as_ref(),
    };
    let relocated = graph.relocate(order, high_water, &dense)?;
    vectors.file().sync()?;
    layer0.file().sync()?;
    if let Some(c) = &codes {
        c.file().sync()?;
    }
    Ok(relocated)
}

/// Commits to the copy's metadata `meta` every id (at its new slot), payload and key of
/// the old metadata, the relocated upper lists, and `state`.
fn commit_copy(
    old: &Meta,
    meta: &Meta,
    relocated: Relocated,
    state: &State,
    codes: Option<&Quantized>,
) -> Result<()> {
    let new_slot = |slot: u32| match relocated.new_of.get(slot as usize) {
        Some(&new) if new != u32::MAX => Ok(Some(new)),
        _ => Err(Error::corrupt(
            old.path(),
            format!("an id names slot {slot}, which is not live"),
        )),
    };
    let ids = old
        .all_ids()?
        .into_iter()
        .map(|(id, slot)| Ok((id, new_slot(slot)?)))
        .collect::<Result<HashMap<_, _>>>()?;
    let mut payloads = HashMap::new();
    old.for_each_payload(|id, bytes| {
        payloads.insert(id, Some(bytes.to_vec()));
        Ok(())
    })?;
    let (keys, key_of) = old.all_keys()?;
    // The codes are copied, so their misfits are the same vectors at their new slots.
    let misfits = codes.and_then(|q| q.misfit_slots()).map(|old| {
        let new_of = |s: u32| relocated.new_of.get(s as usize).copied();
        let mut slots: Vec<u32> = (old.into_iter())
            .filter_map(new_of)
            .filter(|&new| new != u32::MAX)
            .collect();
        slots.sort_unstable();
        slots
    });
    let upper: Vec<_> = relocated
        .upper
        .into_iter()
        .map(|(node, lists)| (node, Some(lists)))
        .collect();
    meta.commit(&Changes {
        ids: &ids,
        slots: &HashMap::new(),
        upper: &upper,
        state,
        quantizer: codes.map(|q| &q.quantizer),
        misfits: misfits.as_deref(),
        payloads: &payloads,
        keys: &keys.into_iter().map(|(k, id)| (k, Some(id))).collect(),
        key_of: &key_of.into_iter().map(|(id, k)| (id, Some(k))).collect(),
    })
}
