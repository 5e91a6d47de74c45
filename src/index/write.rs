//! The write path. Every write follows one order: plan it (validate, choose slots and
//! levels) → append its record to the log → apply it to the slot ledger → make the record
//! durable (per the durability mode) → apply it to the graph and pages → return. Replay
//! on open applies the same records through the same functions.

use std::collections::{HashMap, HashSet};

use parking_lot::{MutexGuard, RwLockReadGuard, RwLockWriteGuard};
use rand::{RngExt, SeedableRng, rngs::StdRng};

use super::checkpoint::{MISFITS_DUE, codes_outgrown};
use super::payload::Encoded;
use super::progress::{Progress, QUIET, Tally};
use super::slots::Slots;
use super::{Durability, Index};
use crate::error::{Error, Result};
use crate::filter::decode_payload;
use crate::graph::Graph;
use crate::limits::check_batch;
use crate::parallel::try_parallel_for;
use crate::store::{Meta, State};
use crate::wal::{Op, Placed, Wal};

/// A batch's rows as stored, its payloads serialised and the number of declared fields
/// they were checked against (see `Index::checked_batch`).
type CheckedBatch = (Vec<Vec<f32>>, Encoded, usize);

/// Who the rows of a batch write are: ids the caller chose (an integer-id index), or
/// keys (a string-id index), whose ids the write looks up or assigns under the ledger's
/// lock.
#[derive(Clone, Copy)]
pub(super) enum Names<'a> {
    Ids(&'a [u64]),
    Keys(&'a [String]),
}

impl Names<'_> {
    fn len(&self) -> usize {
        match self {
            Names::Ids(ids) => ids.len(),
            Names::Keys(keys) => keys.len(),
        }
    }
}

/// Levels are capped so a level fits the metadata's u8 and a freak draw cannot build a
/// tower of empty layers.
pub(super) const MAX_LEVEL: usize = 32;

/// The write ledger: in-memory bookkeeping of writes, the state as of the last checkpoint
/// plus every logged write since. Changed only under its mutex, in log order.
pub(super) struct Ledger {
    /// Every slot's state (the one owner of a slot's life).
    pub(super) slots: Slots,
    /// Generation of the last checkpoint (`State::generation`).
    pub(super) generation: u64,
    pub(super) level_draws: u64,
    pub(super) rng: StdRng,
    /// External id → slot (None: deleted) since the last checkpoint.
    pub(super) ids: HashMap<u64, Option<u32>>,
    /// Generation of the code file in use (0: none).
    pub(super) codes_generation: u64,
    /// Live vectors when its quantiser was trained.
    pub(super) codes_trained_live: u64,
    /// Vectors written (inserted or replacing others) since the codes in use were last
    /// checked against the data (`codes_outgrown`) or the index opened: not persisted,
    /// so that an open (whose replay checkpoints) never waits for a check.
    pub(super) written_since_check: u64,
    /// Whether the last check found the codes in use outgrown (`codes_outgrown`): the
    /// next checkpoint retrains them.
    pub(super) codes_outgrown: bool,
    /// External id → its payload (None: removed) since the last checkpoint.
    pub(super) payloads: HashMap<u64, Option<Vec<u8>>>,
    /// Whether the index has string ids: every placed item then carries its key.
    pub(super) keyed: bool,
    /// One past the highest id ever bound to a key (`State::next_id`).
    pub(super) next_id: u64,
    /// Key → its id (None: unbound) since the last checkpoint.
    pub(super) keys: HashMap<String, Option<u64>>,
    /// Id → its key (None: unbound) since the last checkpoint.
    pub(super) key_of: HashMap<u64, Option<String>>,
}

/// A key bound to (`true`) or unbound from (`false`) an id by one operation.
type KeyChange = (String, u64, bool);

impl Ledger {
    /// The ledger as of a checkpoint: its state, free and tombstoned slots, the seed of
    /// the level generator (continued where the checkpoint left it), and whether ids are
    /// bound to keys.
    pub(super) fn at_checkpoint(
        state: &State,
        free: Vec<u32>,
        tombstones: Vec<u32>,
        seed: u64,
        keyed: bool,
    ) -> Ledger {
        Ledger {
            slots: Slots::at_checkpoint(state, free, tombstones),
            generation: state.generation,
            level_draws: state.level_draws,
            rng: StdRng::seed_from_u64(seed ^ state.level_draws.rotate_left(32)),
            ids: HashMap::new(),
            codes_generation: state.codes_generation,
            codes_trained_live: state.codes_trained_live,
            written_since_check: 0,
            codes_outgrown: false,
            payloads: HashMap::new(),
            keyed,
            next_id: state.next_id,
            keys: HashMap::new(),
            key_of: HashMap::new(),
        }
    }

    /// The id `key` is bound to, counting changes since the last checkpoint.
    pub(super) fn id_of_key(&self, meta: &Meta, key: &str) -> Result<Option<u64>> {
        match self.keys.get(key) {
            Some(&id) => Ok(id),
            None => meta.key_id(key),
        }
    }

    /// The key `id` is bound to, counting changes since the last checkpoint.
    pub(super) fn key_of(&self, meta: &Meta, id: u64) -> Result<Option<String>> {
        Ok(self.keys_of(meta, &[id])?.pop().flatten())
    }

    /// The keys `ids` are bound to, in order, counting changes since the last
    /// checkpoint; the others are read from the metadata together.
    pub(super) fn keys_of(&self, meta: &Meta, ids: &[u64]) -> Result<Vec<Option<String>>> {
        let stored: Vec<u64> = ids
            .iter()
            .copied()
            .filter(|id| !self.key_of.contains_key(id))
            .collect();
        let mut stored = meta.keys_of(&stored)?.into_iter();
        Ok(ids
            .iter()
            .map(|id| match self.key_of.get(id) {
                Some(key) => key.clone(),
                None => stored.next().flatten(),
            })
            .collect())
    }

    /// The payload of `id`, counting changes since the last checkpoint.
    pub(super) fn payload_of(&self, meta: &Meta, id: u64) -> Result<Option<Vec<u8>>> {
        match self.payloads.get(&id) {
            Some(payload) => Ok(payload.clone()),
            None => meta.payload(id),
        }
    }

    /// The slot of `id`, counting changes since the last checkpoint. A slot the metadata
    /// maps an id to must be live in the ledger: anything else is damage, caught here
    /// before the slot is used.
    pub(super) fn slot_of(&self, meta: &Meta, id: u64) -> Result<Option<u32>> {
        match self.ids.get(&id) {
            Some(&slot) => Ok(slot),
            None => Ok(self.slots_of(meta, &[id])?[0]),
        }
    }

    /// `slot_of` each of `ids`, in their order, the metadata read once for those the
    /// ledger does not hold.
    pub(super) fn slots_of(&self, meta: &Meta, ids: &[u64]) -> Result<Vec<Option<u32>>> {
        let unknown: Vec<u64> = (ids.iter().copied())
            .filter(|id| !self.ids.contains_key(id))
            .collect();
        let mut stored = meta.lookup_many(&unknown)?.into_iter();
        (ids.iter())
            .map(|id| match self.ids.get(id) {
                Some(&slot) => Ok(slot),
                None => match stored.next().flatten() {
                    Some(slot) if !self.slots.is_live(slot) => Err(Error::corrupt(
                        meta.path(),
                        format!("id {id} maps to slot {slot}, which holds no live vector"),
                    )),
                    found => Ok(found),
                },
            })
            .collect()
    }

    /// Applies `op` to the ledger. Returns the slots it tombstones. Fails (changing
    /// nothing) if `op` does not fit the current state, which for a planned write is a bug
    /// and for a replayed one a damaged log.
    pub(super) fn apply(
        &mut self,
        meta: &Meta,
        dim: usize,
        op: &Op,
    ) -> std::result::Result<Vec<u32>, String> {
        // Check everything first so that a bad record changes nothing.
        let old = self.replaced_slots(meta, op)?;
        let key_changes = self.key_changes(meta, op)?;
        let placed: &[Placed] = match op {
            Op::Insert(items) | Op::Upsert(items) => items,
            Op::Delete(_) | Op::SetPayloads(_) => &[],
        };
        let mut slots = HashSet::new();
        for it in placed {
            if !slots.insert(it.slot) || !self.slots.can_take(it.slot) || it.vector.len() != dim {
                return Err(format!("slot {} of id {} is not available", it.slot, it.id));
            }
        }
        self.written_since_check += placed.len() as u64;
        for it in placed {
            self.slots.take(it.slot)?;
            self.ids.insert(it.id, Some(it.slot));
            // No payload: a new id has none, a replaced id keeps its own.
            if let Some(payload) = &it.payload {
                self.payloads.insert(it.id, Some(payload.clone()));
            }
        }
        for &slot in &old {
            self.slots.tombstone(slot);
        }
        match op {
            Op::Insert(_) | Op::Upsert(_) => {}
            Op::Delete(ids) => {
                for id in ids {
                    self.ids.insert(*id, None);
                    self.payloads.insert(*id, None);
                }
            }
            Op::SetPayloads(items) => {
                for (id, payload) in items {
                    self.payloads.insert(*id, payload.clone());
                }
            }
        }
        for (key, id, bound) in key_changes {
            if bound {
                self.next_id = self.next_id.max(id + 1);
                self.key_of.insert(id, Some(key.clone()));
                self.keys.insert(key, Some(id));
            } else {
                self.key_of.insert(id, None);
                self.keys.insert(key, None);
            }
        }
        Ok(old)
    }

    /// The keys `op` binds and unbinds, once checked against the state: in a string-id
    /// index every written item carries a key (in an integer-id one none does), no key
    /// twice in the record, an inserted key unbound, an upserted key unbound or bound to
    /// the same id, whose key (if bound) it must be. A delete unbinds its ids' keys.
    fn key_changes(&self, meta: &Meta, op: &Op) -> std::result::Result<Vec<KeyChange>, String> {
        let text = |e: Error| e.to_string();
        let mut changes = Vec::new();
        let mut seen = HashSet::new();
        match op {
            Op::Insert(items) | Op::Upsert(items) => {
                for it in items {
                    let Some(key) = &it.key else {
                        if self.keyed {
                            return Err(format!("id {} has no key in a string-id index", it.id));
                        }
                        continue;
                    };
                    if !self.keyed {
                        return Err(format!("id {} has a key in an integer-id index", it.id));
                    }
                    if !seen.insert(key) {
                        return Err(format!("key {key:?} written twice in one record"));
                    }
                    let bound = self.id_of_key(meta, key).map_err(text)?;
                    let upsert = matches!(op, Op::Upsert(_));
                    let fits = match bound {
                        None => self.key_of(meta, it.id).map_err(text)?.is_none(),
                        Some(id) => upsert && id == it.id,
                    };
                    if !fits {
                        return Err(format!("key {key:?} cannot be bound to id {}", it.id));
                    }
                    changes.push((key.clone(), it.id, true));
                }
            }
            Op::Delete(ids) if self.keyed => {
                for &id in ids {
                    let key = self.key_of(meta, id).map_err(text)?;
                    changes.push((key.ok_or(format!("id {id} has no key"))?, id, false));
                }
            }
            Op::Delete(_) | Op::SetPayloads(_) => {}
        }
        Ok(changes)
    }

    /// The slots `op` tombstones (of the ids it replaces or deletes), once its ids are
    /// checked against the state: no id twice in the record, inserted ids absent,
    /// deleted and payload ids present.
    fn replaced_slots(&self, meta: &Meta, op: &Op) -> std::result::Result<Vec<u32>, String> {
        let (ids, what): (Vec<u64>, &str) = match op {
            Op::Insert(items) => (items.iter().map(|it| it.id).collect(), "inserted"),
            Op::Upsert(items) => (items.iter().map(|it| it.id).collect(), "upserted"),
            Op::Delete(ids) => (ids.clone(), "deleted"),
            Op::SetPayloads(items) => {
                (items.iter().map(|&(id, _)| id).collect(), "given a payload")
            }
        };
        let slots = self.slots_of(meta, &ids).map_err(|e| e.to_string())?;
        let mut seen = HashSet::new();
        let mut old = Vec::new();
        for (&id, slot) in ids.iter().zip(slots) {
            if !seen.insert(id) {
                return Err(format!("id {id} {what} twice in one record"));
            }
            match (op, slot) {
                (Op::Insert(_), Some(_)) => return Err(format!("insert of existing id {id}")),
                (Op::Delete(_), None) => return Err(format!("delete of unknown id {id}")),
                (Op::SetPayloads(_), None) => return Err(format!("payload of unknown id {id}")),
                (Op::Upsert(_) | Op::Delete(_), Some(slot)) => old.push(slot),
                _ => {}
            }
        }
        Ok(old)
    }

    /// A copy to try operations on (`apply`) without changing this ledger. Its level
    /// generator is not this one's: a trial applies logged operations, which carry their
    /// levels, and draws none.
    pub(super) fn trial(&self) -> Ledger {
        Ledger {
            slots: self.slots.clone(),
            generation: self.generation,
            level_draws: self.level_draws,
            rng: StdRng::seed_from_u64(0),
            ids: self.ids.clone(),
            codes_generation: self.codes_generation,
            codes_trained_live: self.codes_trained_live,
            written_since_check: self.written_since_check,
            codes_outgrown: self.codes_outgrown,
            payloads: self.payloads.clone(),
            keyed: self.keyed,
            next_id: self.next_id,
            keys: self.keys.clone(),
            key_of: self.key_of.clone(),
        }
    }

    pub(super) fn draw_level(&mut self, level_mult: f64) -> u8 {
        let r: f64 = self.rng.random();
        self.level_draws += 1;
        ((-(1.0 - r).ln() * level_mult) as usize).min(MAX_LEVEL) as u8
    }
}

impl Index {
    /// Logs `op`, applies it to the ledger, makes it durable per the mode and applies it to
    /// `graph` (whose lock the caller holds, read or write as `op` needs). A failure after
    /// the record reached the log poisons the index: whether the write happened is then
    /// only known once a reopen replays the log.
    fn log_and_apply(
        &self,
        graph: &Graph,
        p: MutexGuard<'_, Ledger>,
        op: &Op,
        threads: usize,
        progress: &dyn Progress,
    ) -> Result<()> {
        let old = self.log(p, op)?;
        let tally = Tally::start(progress, op.rows() as u64);
        apply_to_graph(graph, op, &old, Applier::Writer, threads, &tally)
            .inspect_err(|e| self.poison.set(e))?;
        tally.finish();
        Ok(())
    }

    /// Logs `op`, applies it to the ledger (and to the field index, if built) and makes
    /// it durable per the mode.
    pub(super) fn log(&self, mut p: MutexGuard<'_, Ledger>, op: &Op) -> Result<Vec<u32>> {
        let wal = self.writable_log()?;
        // The field index is built and dropped only under the ledger's lock, which this
        // write holds: whether it exists cannot change until the write is applied.
        let before = if self.fields.read().index.is_some() {
            Some(self.fields_before(&p, op)?)
        } else {
            None
        };
        let lsn = wal.append(&op.encode())?;
        let old = match p.apply(&self.meta(), self.config.dim, op) {
            Ok(old) => old,
            Err(why) => {
                let e = Error::Meta(format!("internal error after logging: {why}"));
                self.poison.set(&e);
                return Err(e);
            }
        };
        if let Some(before) = before
            && let Some(index) = self.fields.write().index.as_mut()
        {
            super::payload::apply_to_fields(index, op, &before);
        }
        drop(p);
        if self.options.durability == Durability::Immediate
            && let Err(e) = wal.sync_to(lsn)
        {
            // The record may or may not be on disk: the outcome is unknown until a
            // reopen replays the log, so refuse further writes.
            self.poison.set(&e);
            return Err(e);
        }
        Ok(old)
    }

    /// The log, if the index may write now: not read-only, not poisoned (by a failed
    /// write here, or by a failed fsync of the log, the background one's included).
    pub(super) fn writable_log(&self) -> Result<&Wal> {
        let wal = self.wal.as_deref().ok_or(Error::ReadOnly)?;
        self.poison.check()?;
        if wal.poisoned() {
            return Err(Error::Poisoned);
        }
        Ok(wal)
    }

    /// A read lock on the graph together with the bookkeeping, such that the page files
    /// hold at least `needed(&pending)` slots; grows them (write lock) when not. Both
    /// guards are returned together so that no other writer can allocate in between.
    fn lock_with_room(
        &self,
        needed: impl Fn(&Ledger) -> usize,
    ) -> Result<(RwLockReadGuard<'_, Graph>, MutexGuard<'_, Ledger>)> {
        loop {
            let graph = self.graph.read();
            let pending = self.ledger.lock();
            let want = needed(&pending);
            if want <= graph.capacity() {
                return Ok((graph, pending));
            }
            drop(pending);
            drop(graph);
            self.graph.write().grow(want)?;
        }
    }

    /// The exclusive counterpart of `lock_with_room`.
    fn lock_exclusive_with_room(
        &self,
        extra: usize,
    ) -> Result<(RwLockWriteGuard<'_, Graph>, MutexGuard<'_, Ledger>)> {
        let mut graph = self.graph.write();
        let want = self.ledger.lock().slots.high_water() as usize + extra;
        graph.grow(want)?;
        let pending = self.ledger.lock();
        Ok((graph, pending))
    }

    /// Checks the rows of a batch (`n` of them, each as `insert` checks a vector) and
    /// returns them as stored.
    fn prepare_rows(&self, n: usize, vectors: &[f32]) -> Result<Vec<Vec<f32>>> {
        let dim = self.config.dim;
        if vectors.len() != n * dim {
            return Err(Error::DimensionMismatch {
                expected: dim,
                got: vectors.len().checked_div(n).unwrap_or(vectors.len()),
            });
        }
        vectors
            .chunks_exact(dim)
            .map(|v| self.prepare_write(v))
            .collect()
    }

    /// Chooses a slot (free ones first) and a level for each row: the decisions a write's
    /// record carries. `keys` and `payloads`, if any, go one per row.
    fn place(
        &self,
        p: &mut Ledger,
        ids: &[u64],
        keys: Option<Vec<String>>,
        rows: Vec<Vec<f32>>,
        payloads: Option<Vec<Option<Vec<u8>>>>,
    ) -> Result<Vec<Placed>> {
        if p.slots.high_water() as u64 + ids.len() as u64 >= u32::MAX as u64 {
            return Err(Error::Capacity);
        }
        let slots = p.slots.plan(ids.len());
        let mut payloads = payloads.map(Vec::into_iter);
        let mut keys = keys.map(Vec::into_iter);
        Ok(ids
            .iter()
            .zip(rows)
            .zip(slots)
            .map(|((&id, vector), slot)| Placed {
                id,
                slot,
                level: p.draw_level(self.config.level_mult),
                vector,
                payload: payloads.as_mut().and_then(Iterator::next).flatten(),
                key: keys.as_mut().and_then(Iterator::next),
            })
            .collect())
    }

    /// What every batch write checks before it takes a lock: the index may write, the
    /// names are of the index's kind, every row is a valid vector (returned as stored)
    /// and every payload a valid one (returned serialised). `None` for an empty batch,
    /// which writes nothing.
    fn checked_batch(
        &self,
        names: Names<'_>,
        vectors: &[f32],
        payloads: Option<&[serde_json::Value]>,
    ) -> Result<Option<CheckedBatch>> {
        self.writable_log()?;
        let n = names.len();
        check_batch(n)?;
        self.check_names(names)?;
        let rows = self.prepare_rows(n, vectors)?;
        let (payloads, fields) = self.encode_payloads(n, payloads)?;
        Ok((n > 0).then_some((rows, payloads, fields)))
    }

    /// The payloads of a batch, `encoded` against `fields` declared fields, checked again
    /// if a field was declared since: `create_field_index` checks the stored payloads
    /// under the ledger, which the caller now holds, and a payload checked before that
    /// declaration would escape both checks (and the field's index).
    fn as_declared(
        &self,
        given: Option<&[serde_json::Value]>,
        encoded: Encoded,
        fields: usize,
    ) -> Result<Encoded> {
        match self.fields.read().specs.len() == fields {
            true => Ok(encoded),
            false => Ok(self.encode_payloads(given.map_or(0, <[_]>::len), given)?.0),
        }
    }

    /// Inserts `vector` under `id`. Fails with `DuplicateId` if `id` is present.
    pub fn insert(&self, id: u64, vector: &[f32]) -> Result<()> {
        self.insert_batch(&[id], vector)
    }

    /// Inserts `ids.len()` vectors laid out row after row in `vectors`, on the index's
    /// worker threads, as one logged write: all or nothing. A bad vector or a duplicate id
    /// rejects the whole batch before anything is written. Searches may run meanwhile.
    pub fn insert_batch(&self, ids: &[u64], vectors: &[f32]) -> Result<()> {
        self.insert_batch_threads(ids, vectors, self.threads())
    }

    /// `insert_batch` on `threads` threads (at least one) for this call only: the index's
    /// default (`set_threads`) is left as it is.
    pub fn insert_batch_threads(&self, ids: &[u64], vectors: &[f32], threads: usize) -> Result<()> {
        self.insert_batch_progress(ids, vectors, None, threads, QUIET)
    }

    /// `insert_batch_threads` of rows with payloads (`payloads[i]` for `ids[i]`; see
    /// `insert_batch_with_payloads`), telling `progress` how many rows are in the graph as
    /// they go in (once the batch is logged: see [`Progress`]).
    pub fn insert_batch_progress(
        &self,
        ids: &[u64],
        vectors: &[f32],
        payloads: Option<&[serde_json::Value]>,
        threads: usize,
        progress: &dyn Progress,
    ) -> Result<()> {
        self.insert_named(Names::Ids(ids), vectors, payloads, threads, progress)
    }

    /// Inserts the rows of `names` (ids, or keys given ids here), all new.
    pub(super) fn insert_named(
        &self,
        names: Names<'_>,
        vectors: &[f32],
        payloads: Option<&[serde_json::Value]>,
        threads: usize,
        progress: &dyn Progress,
    ) -> Result<()> {
        let Some((rows, encoded, fields)) = self.checked_batch(names, vectors, payloads)? else {
            return Ok(());
        };
        self.train_ahead(&rows)?;
        let n = names.len();
        // Room for the worst case (no free slot reused): the batch must not remap midway.
        let (graph, mut p) = self.lock_with_room(|p| p.slots.high_water() as usize + n)?;
        let meta = self.meta();
        let (ids, keys) = match names {
            Names::Ids(ids) => {
                let mut seen = HashSet::with_capacity(n);
                for (&id, slot) in ids.iter().zip(p.slots_of(&meta, ids)?) {
                    if !seen.insert(id) || slot.is_some() {
                        return Err(Error::DuplicateId(id));
                    }
                }
                (ids.to_vec(), None)
            }
            Names::Keys(keys) => {
                for key in keys {
                    if p.id_of_key(&meta, key)?.is_some() {
                        return Err(Error::DuplicateKey(key.clone()));
                    }
                }
                (
                    (p.next_id..p.next_id + n as u64).collect(),
                    Some(keys.to_vec()),
                )
            }
        };
        let payloads = self.as_declared(payloads, encoded, fields)?;
        let items = self.place(&mut p, &ids, keys, rows, payloads)?;
        let op = Op::Insert(items);
        self.log_and_apply(&graph, p, &op, threads.max(1), progress)?;
        drop(graph);
        self.maybe_checkpoint();
        Ok(())
    }

    /// Replaces the vector of `id`, or inserts it if absent, as one logged write. Searches
    /// see the old vector or the new one, never both or neither.
    pub fn upsert(&self, id: u64, vector: &[f32]) -> Result<()> {
        self.upsert_batch(&[id], vector)
    }

    /// Inserts or replaces each of `ids` (rows of `vectors`, as `insert_batch` takes them)
    /// as one logged write: all or nothing, whatever other writers do meanwhile. A bad
    /// vector or a repeated id rejects the whole batch before anything is written.
    pub fn upsert_batch(&self, ids: &[u64], vectors: &[f32]) -> Result<()> {
        self.upsert_batch_threads(ids, vectors, self.threads())
    }

    /// `upsert_batch` on `threads` threads (at least one) for this call only.
    pub fn upsert_batch_threads(&self, ids: &[u64], vectors: &[f32], threads: usize) -> Result<()> {
        self.upsert_batch_progress(ids, vectors, None, threads, QUIET)
    }

    /// `upsert_batch_threads` of rows with payloads (see `upsert_batch_with_payloads`),
    /// reporting to `progress` as `insert_batch_progress` does.
    pub fn upsert_batch_progress(
        &self,
        ids: &[u64],
        vectors: &[f32],
        payloads: Option<&[serde_json::Value]>,
        threads: usize,
        progress: &dyn Progress,
    ) -> Result<()> {
        self.upsert_named(Names::Ids(ids), vectors, payloads, threads, progress)
    }

    /// Inserts or replaces the rows of `names` (ids, or keys: a bound key keeps its id,
    /// a new one is given one here).
    pub(super) fn upsert_named(
        &self,
        names: Names<'_>,
        vectors: &[f32],
        payloads: Option<&[serde_json::Value]>,
        threads: usize,
        progress: &dyn Progress,
    ) -> Result<()> {
        let Some((rows, encoded, fields)) = self.checked_batch(names, vectors, payloads)? else {
            return Ok(());
        };
        if let Names::Ids(ids) = names {
            let mut seen = HashSet::with_capacity(ids.len());
            if let Some(&twice) = ids.iter().find(|&&id| !seen.insert(id)) {
                return Err(Error::DuplicateId(twice));
            }
        }
        self.train_ahead(&rows)?;
        // Exclusive: replaced slots are tombstoned in log order relative to other writes.
        let (graph, mut p) = self.lock_exclusive_with_room(names.len())?;
        let meta = self.meta();
        let (ids, keys) = match names {
            Names::Ids(ids) => (ids.to_vec(), None),
            Names::Keys(keys) => {
                let mut next = p.next_id;
                let mut ids = Vec::with_capacity(keys.len());
                for key in keys {
                    ids.push(match p.id_of_key(&meta, key)? {
                        Some(id) => id,
                        None => {
                            next += 1;
                            next - 1
                        }
                    });
                }
                (ids, Some(keys.to_vec()))
            }
        };
        // Plan before logging: a mapping the metadata holds for one of the ids must be
        // sound, or the record would not apply.
        p.slots_of(&meta, &ids)?;
        let payloads = self.as_declared(payloads, encoded, fields)?;
        let items = self.place(&mut p, &ids, keys, rows, payloads)?;
        self.log_and_apply(&graph, p, &Op::Upsert(items), threads.max(1), progress)?;
        drop(graph);
        self.maybe_checkpoint();
        Ok(())
    }

    /// Deletes `id`: it leaves search results at once. Fails with `UnknownId` if absent.
    pub fn delete(&self, id: u64) -> Result<()> {
        self.delete_batch(&[id])
    }

    /// Deletes every id of `ids` as one logged write: all or nothing (an unknown id,
    /// `UnknownId`, or a repeated one, `DuplicateId`, rejects the whole batch). The graph is repaired around the deleted
    /// nodes by the next consolidation (see `docs/durability.md`), after which their slots
    /// are reused. In a string-id index the ids' keys are unbound by the same write.
    pub fn delete_batch(&self, ids: &[u64]) -> Result<()> {
        self.writable_log()?;
        check_batch(ids.len())?;
        if ids.is_empty() {
            return Ok(());
        }
        let graph = self.graph.write();
        let p = self.ledger.lock();
        let meta = self.meta();
        let mut seen = HashSet::with_capacity(ids.len());
        for (&id, slot) in ids.iter().zip(p.slots_of(&meta, ids)?) {
            if !seen.insert(id) {
                return Err(Error::DuplicateId(id));
            }
            if slot.is_none() {
                return Err(Error::UnknownId(id));
            }
        }
        self.delete_locked(graph, p, ids.to_vec()).map(drop)
    }

    /// Deletes `ids` (present, none twice: checked under these locks) as one logged
    /// write; returns how many.
    pub(super) fn delete_locked(
        &self,
        graph: RwLockWriteGuard<'_, Graph>,
        p: MutexGuard<'_, Ledger>,
        ids: Vec<u64>,
    ) -> Result<u64> {
        check_batch(ids.len())?;
        if ids.is_empty() {
            return Ok(0);
        }
        let n = ids.len() as u64;
        self.log_and_apply(&graph, p, &Op::Delete(ids), self.threads(), QUIET)?;
        drop(graph);
        self.maybe_checkpoint();
        Ok(n)
    }

    /// Deleted nodes are consolidated once they are this large a share of the graph:
    /// often enough that each repair has few dead neighbours to route around, rarely
    /// enough that the O(n) pass is amortised over many deletes.
    pub(super) fn consolidation_due(p: &Ledger) -> bool {
        let t = p.slots.tombstones().len() as u64;
        t > 0 && t * 20 >= p.slots.live() + t
    }

    /// Runs a checkpoint if one is due. Called after a write has succeeded: that write is
    /// durable in the log whatever happens here, so a failed checkpoint (a full disk, say)
    /// must not turn it into an error. The checkpoint is retried at the next write, and
    /// `flush`/`close` report failures.
    pub(super) fn maybe_checkpoint(&self) {
        let Some(wal) = self.wal.as_deref() else {
            return;
        };
        let due = wal.bytes_since_checkpoint() >= self.options.checkpoint_bytes
            || Self::consolidation_due(&self.ledger.lock())
            || {
                // Graph before bookkeeping: the lock order of every other path.
                let graph = self.graph.read();
                let mut p = self.ledger.lock();
                self.training_due(&p, &graph, MISFITS_DUE) || codes_outgrown(&graph, &mut p)
            };
        if due {
            let _ = self.checkpoint();
        }
    }
}

/// Who applies a write to the graph.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Applier {
    /// The writer, as it writes.
    Writer,
    /// The writer's open, replaying its log (`Graph::insert`'s `recovering`).
    Recovery,
    /// A read-only view, replaying the writer's log over pages the writer shares with it:
    /// a row the writer has already inserted there is adopted (`Graph::adopt`).
    View,
}

/// Applies `op` to the graph (after `Ledger::apply` returned `old`), inserting on
/// `threads` threads and counting each row in `tally`.
fn apply_to_graph(
    graph: &Graph,
    op: &Op,
    old: &[u32],
    by: Applier,
    threads: usize,
    tally: &Tally<'_>,
) -> Result<()> {
    match op {
        Op::Insert(items) | Op::Upsert(items) => try_parallel_for(items.len(), threads, |i| {
            let it = &items[i];
            let (slot, level) = (it.slot, it.level as usize);
            if by != Applier::View || !graph.adopt(slot, level, &it.vector, it.id)? {
                let recovering = by != Applier::Writer;
                graph.insert(slot, level, &it.vector, it.id, recovering)?;
            }
            tally.add(1);
            Ok(())
        })?,
        Op::Delete(_) | Op::SetPayloads(_) => {}
    }
    for &slot in old {
        graph.tombstone(slot);
    }
    Ok(())
}

/// How many of `ops` (read from the log by a read-only view) the writer has already
/// applied to the pages it shares with the view, counting from the first: the view
/// applies those and leaves the rest for its next refresh (`Graph::adoptable`).
/// The view then adopts them in this order (one thread): only the first of an empty
/// view's may be without links.
pub(super) fn applied_prefix(graph: &Graph, ops: &[(u64, Op)]) -> Result<usize> {
    let mut first = graph.entry().is_none();
    for (i, (_, op)) in ops.iter().enumerate() {
        if let Op::Insert(items) | Op::Upsert(items) = op {
            for it in items {
                let slot_known = (it.slot as usize) < graph.capacity();
                if !slot_known || !graph.adoptable(it.slot, &it.vector, it.id, first)? {
                    return Ok(i);
                }
                first = false;
            }
        }
    }
    Ok(ops.len())
}

/// Re-applies the logged write `op` (ending at record `lsn` of the log in `wal_dir`)
/// during recovery or a read-only view's catching up (`view`), through the same steps as
/// a live write. A record that does not fit the state is a damaged log: `Error::Corrupt`.
#[allow(clippy::too_many_arguments)] // the parts of an index before it is assembled
pub(super) fn replay(
    graph: &mut Graph,
    ledger: &mut Ledger,
    meta: &Meta,
    dim: usize,
    threads: usize,
    lsn: u64,
    op: &Op,
    wal_dir: &std::path::Path,
    view: bool,
) -> Result<()> {
    let bad = |why: String| Error::corrupt(wal_dir, format!("log record {lsn}: {why}"));
    // A payload that is not a JSON object was never written by this code: the record is
    // damaged (its checksum notwithstanding), and must not reach the field index.
    if let Some(id) = op
        .payloads()
        .find(|(_, p)| p.is_some_and(|b| decode_payload(b).is_none()))
    {
        return Err(bad(format!("payload of id {} is not a JSON object", id.0)));
    }
    graph.grow(op.slots_needed())?;
    let old = ledger.apply(meta, dim, op).map_err(bad)?;
    // A view adopts in the order `applied_prefix` checked: one thread.
    let (by, threads) = match view {
        true => (Applier::View, 1),
        false => (Applier::Recovery, threads),
    };
    apply_to_graph(graph, op, &old, by, threads, &Tally::start(QUIET, 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{IndexOptions, Metric};

    #[test]
    fn levels_continue_where_the_checkpoint_left_them() {
        let mut a = Ledger::at_checkpoint(&State::default(), Vec::new(), Vec::new(), 7, false);
        let first: Vec<u8> = (0..50).map(|_| a.draw_level(1.0 / 16f64.ln())).collect();
        let state = State {
            level_draws: a.level_draws,
            ..State::default()
        };
        let mut b = Ledger::at_checkpoint(&state, Vec::new(), Vec::new(), 7, false);
        let next: Vec<u8> = (0..50).map(|_| b.draw_level(1.0 / 16f64.ln())).collect();
        assert_ne!(
            first, next,
            "a reopened index draws new levels, not the same ones"
        );
        assert!(first.iter().chain(&next).all(|&l| l as usize <= MAX_LEVEL));
    }

    fn placed(id: u64, slot: u32) -> Placed {
        Placed {
            id,
            slot,
            level: 0,
            vector: vec![id as f32, 1.0],
            payload: None,
            key: None,
        }
    }

    #[test]
    fn a_record_that_does_not_fit_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::create(dir.path(), &IndexOptions::new(2, Metric::L2)).unwrap();
        index.insert_batch(&[1, 2], &[1.0, 1.0, 2.0, 1.0]).unwrap();
        let mut p = index.ledger.lock();
        let before = (
            p.slots.high_water(),
            p.slots.live(),
            p.ids.clone(),
            p.slots.changed().clone(),
        );
        let unfit = [
            Op::Insert(vec![placed(3, 2), placed(1, 3)]), // id 1 exists
            Op::Insert(vec![placed(3, 0)]),               // slot 0 is taken
            Op::Insert(vec![placed(3, 2), placed(4, 2)]), // one slot twice
            Op::Upsert(vec![placed(1, 2), placed(1, 3)]), // one id twice
            Op::Delete(vec![2, 2]),                       // twice in one record
            Op::Delete(vec![1, 5]),                       // unknown id
            Op::SetPayloads(vec![(5, None)]),             // unknown id
            Op::SetPayloads(vec![(1, None), (1, None)]),  // twice in one record
        ];
        for op in &unfit {
            assert!(
                p.apply(&index.meta(), 2, op).is_err(),
                "{op:?} was accepted"
            );
            assert_eq!(
                (
                    p.slots.high_water(),
                    p.slots.live(),
                    p.ids.clone(),
                    p.slots.changed().clone()
                ),
                before,
                "{op:?} changed the ledger"
            );
        }
        // And a record that fits is applied: the upsert tombstones the old slot.
        let old = p
            .apply(&index.meta(), 2, &Op::Upsert(vec![placed(1, 2)]))
            .unwrap();
        assert_eq!(old, [0]);
        assert!(p.slots.is_tombstone(0));
        assert_eq!(p.ids.get(&1), Some(&Some(2)));
    }

    #[test]
    fn a_keyed_record_that_does_not_fit_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let options = IndexOptions::new(2, Metric::L2).id_kind(crate::IdKind::Str);
        let index = Index::create(dir.path(), &options).unwrap();
        index
            .insert_keys(&["a", "b"], &[1.0, 1.0, 2.0, 1.0], None)
            .unwrap();
        let (a, b) = (
            index.resolve_key("a").unwrap().unwrap(),
            index.resolve_key("b").unwrap().unwrap(),
        );
        let keyed = |id, slot, key: &str| Placed {
            key: Some(key.to_string()),
            ..placed(id, slot)
        };
        let mut p = index.ledger.lock();
        let before = (p.keys.clone(), p.key_of.clone(), p.next_id, p.slots.live());
        let unfit = [
            Op::Insert(vec![placed(7, 2)]),                       // no key
            Op::Insert(vec![keyed(7, 2, "a")]),                   // "a" is bound
            Op::Insert(vec![keyed(7, 2, "c"), keyed(8, 3, "c")]), // a key twice
            Op::Upsert(vec![keyed(b, 2, "a")]),                   // "a" is a's
            Op::Upsert(vec![keyed(a, 2, "c")]),                   // a is bound to "a"
        ];
        for op in &unfit {
            assert!(
                p.apply(&index.meta(), 2, op).is_err(),
                "{op:?} was accepted"
            );
            let now = (p.keys.clone(), p.key_of.clone(), p.next_id, p.slots.live());
            assert_eq!(now, before, "{op:?} changed the ledger");
        }
        // A key on an integer-id index is refused as well.
        p.keyed = false;
        assert!(
            p.apply(&index.meta(), 2, &Op::Insert(vec![keyed(7, 2, "c")]))
                .is_err()
        );
        p.keyed = true;
        // A delete unbinds: the key may then go to a new id.
        p.apply(&index.meta(), 2, &Op::Delete(vec![a])).unwrap();
        assert_eq!(p.id_of_key(&index.meta(), "a").unwrap(), None);
        p.apply(&index.meta(), 2, &Op::Insert(vec![keyed(9, 2, "a")]))
            .unwrap();
        assert_eq!(p.id_of_key(&index.meta(), "a").unwrap(), Some(9));
        assert_eq!(p.next_id, 10);
    }
}
