//! Payloads (a JSON object per id, logged and checkpointed like vectors) and the field
//! index over them: declared fields, the lazily built bitmaps, and how each write changes
//! them.

use std::collections::HashMap;
use std::sync::Arc;

use roaring::RoaringBitmap;
use serde_json::{Map, Value};

use super::Index;
use super::progress::QUIET;
use super::write::Ledger;
use crate::error::{Error, Result};
use crate::filter::{
    FieldIndex, FieldKind, FieldSpec, Filter, MAX_FIELDS, check_fields, decode_payload,
    encode_payload,
};
use crate::limits::check_batch;
use crate::wal::Op;

/// The indexed fields and their index. The index is built on first use (an open stays
/// O(1)), then kept exact by every write; it is built and dropped only under the ledger's
/// lock, so a write (which holds that lock) sees it either built or not throughout.
pub(super) struct Fields {
    pub(super) specs: Vec<FieldSpec>,
    pub(super) index: Option<FieldIndex>,
}

/// The slot and payload each id a write touches has before it.
pub(super) type Before = HashMap<u64, (u32, Option<Map<String, Value>>)>;

/// Reads the field declarations stored in the metadata.
/// They are held to the limits a declaration is (`check_fields`): what could not have
/// been declared is damage.
pub(super) fn stored_fields(meta: &crate::store::Meta) -> Result<Vec<FieldSpec>> {
    let specs = meta
        .fields()?
        .into_iter()
        .map(|(name, code)| {
            let kind = FieldKind::from_code(code).ok_or_else(|| {
                Error::corrupt(
                    meta.path(),
                    format!("field {name:?} has unknown kind code {code}"),
                )
            })?;
            Ok(FieldSpec::new(name, kind))
        })
        .collect::<Result<Vec<_>>>()?;
    check_fields(&specs).map_err(|e| Error::corrupt(meta.path(), format!("stored fields: {e}")))?;
    Ok(specs)
}

/// Applies `op` (already applied to the ledger) to the field index; `before` is what
/// `Index::fields_before` returned for it.
pub(super) fn apply_to_fields(index: &mut FieldIndex, op: &Op, before: &Before) {
    let parsed = |bytes: Option<&Vec<u8>>| bytes.and_then(|b| decode_payload(b));
    match op {
        Op::Insert(items) => {
            for it in items {
                index.add(it.slot, parsed(it.payload.as_ref()).as_ref());
            }
        }
        Op::Upsert(items) => {
            for it in items {
                let old = before.get(&it.id);
                if let Some((slot, payload)) = old {
                    index.remove(*slot, payload.as_ref());
                }
                // Without a payload of its own, a replaced id keeps the one it had.
                let payload = parsed(it.payload.as_ref())
                    .or_else(|| old.and_then(|(_, payload)| payload.clone()));
                index.add(it.slot, payload.as_ref());
            }
        }
        Op::Delete(ids) => {
            for id in ids {
                if let Some((slot, payload)) = before.get(id) {
                    index.remove(*slot, payload.as_ref());
                }
            }
        }
        Op::SetPayloads(items) => {
            for (id, payload) in items {
                if let Some((slot, old)) = before.get(id) {
                    index.remove(*slot, old.as_ref());
                    index.add(*slot, parsed(payload.as_ref()).as_ref());
                }
            }
        }
    }
}

/// A batch's payloads serialised, one per row (`None`: the row has none), if it has any.
pub(super) type Encoded = Option<Vec<Option<Vec<u8>>>>;

impl Index {
    /// The indexed payload fields.
    pub fn fields(&self) -> Vec<FieldSpec> {
        self.fields.read().specs.clone()
    }

    /// Indexes one more payload field. Existing payloads are indexed on the next filtered
    /// search; one whose value for the field is not of the kind makes this an
    /// `InvalidPayload` error that changes nothing (the index would miss the value, and
    /// filters on the field answer less than before). New writes must match the kind.
    /// Reads every payload: O(n). Durable when it returns.
    pub fn create_field_index(&self, spec: FieldSpec) -> Result<()> {
        self.declare_field(spec, true)
    }

    /// `create_field_index`, checking the existing payloads against the kind if `check`
    /// (a compaction copies the fields of an index an older build may have declared over
    /// values of another kind, and must copy them as they are).
    pub(super) fn declare_field(&self, spec: FieldSpec, check: bool) -> Result<()> {
        spec.check()?;
        self.writable_log()?;
        let mut p = self.ledger.lock();
        let mut fields = self.fields.write();
        if let Some(have) = fields.specs.iter().find(|s| s.name == spec.name) {
            return if have.kind == spec.kind {
                Ok(())
            } else {
                Err(Error::InvalidOption(format!(
                    "field {:?} is already indexed as {}",
                    spec.name,
                    have.kind.name()
                )))
            };
        }
        if fields.specs.len() >= MAX_FIELDS {
            return Err(Error::InvalidOption(format!(
                "the index has {MAX_FIELDS} indexed fields, the most it may have"
            )));
        }
        if check {
            self.each_live_payload(&p, |id, _, payload| {
                FieldIndex::check(std::slice::from_ref(&spec), payload).map_err(|e| match e {
                    Error::InvalidPayload(why) => Error::InvalidPayload(format!(
                        "the payload of id {id}: {why} (not indexed)"
                    )),
                    e => e,
                })
            })?;
        }
        // A failed commit may or may not have reached the disk: as any failed commit, it
        // poisons the index (see `checkpoint_inner`).
        self.meta()
            .add_field(&spec.name, spec.kind.code(), p.generation + 1)
            .inspect_err(|e| self.poison.set(e))?;
        p.generation += 1;
        fields.specs.push(spec);
        // Rebuilt with the new field on next use.
        fields.index = None;
        Ok(())
    }

    /// The payload of `id` (`None` if it has none). `UnknownId` if `id` is absent.
    pub fn get_payload(&self, id: u64) -> Result<Option<Value>> {
        self.follow()?;
        let graph = self.graph.read();
        if self.visible_slot(&graph, id)?.is_none() {
            return Err(Error::UnknownId(id));
        }
        let bytes = self.ledger.lock().payload_of(&self.meta(), id)?;
        self.decoded(id, bytes)
    }

    /// Sets the payload of `id` (a JSON object; `Value::Null` removes it) as one durable
    /// write, replacing the one it has (see `merge_payloads` to merge into it).
    /// `UnknownId` if `id` is absent.
    pub fn set_payload(&self, id: u64, payload: &Value) -> Result<()> {
        self.set_payloads(&[id], std::slice::from_ref(payload))
    }

    /// Removes the payload of `id`.
    pub fn delete_payload(&self, id: u64) -> Result<()> {
        self.set_payload(id, &Value::Null)
    }

    /// Sets the payloads of `ids` (`Value::Null` removes one) as one durable write: all
    /// or nothing.
    pub fn set_payloads(&self, ids: &[u64], payloads: &[Value]) -> Result<()> {
        self.writable_log()?;
        check_batch(ids.len())?;
        if payloads.len() != ids.len() {
            return Err(Error::InvalidPayload(format!(
                "{} payloads for {} ids",
                payloads.len(),
                ids.len()
            )));
        }
        let graph = self.graph.write();
        let p = self.ledger.lock();
        self.rewrite_payloads(graph, p, ids, |i| &payloads[i], true)
    }

    /// Inserts `vector` under `id` with `payload` (a JSON object).
    pub fn insert_with_payload(&self, id: u64, vector: &[f32], payload: &Value) -> Result<()> {
        self.insert_batch_progress(
            &[id],
            vector,
            Some(std::slice::from_ref(payload)),
            self.threads(),
            QUIET,
        )
    }

    /// `insert_batch` with a payload per row (`Value::Null`: none), on `threads` threads:
    /// one durable write, all or nothing. A payload that is not a JSON object, is over
    /// `filter::MAX_PAYLOAD_BYTES`, or gives an indexed field a value of another kind
    /// rejects the batch (`Error::InvalidPayload`).
    pub fn insert_batch_with_payloads(
        &self,
        ids: &[u64],
        vectors: &[f32],
        payloads: &[Value],
        threads: usize,
    ) -> Result<()> {
        self.insert_batch_progress(ids, vectors, Some(payloads), threads, QUIET)
    }

    /// `upsert_batch` with a payload per row: a payload replaces the id's; `Value::Null`
    /// keeps the one it has (a new id then has none).
    pub fn upsert_batch_with_payloads(
        &self,
        ids: &[u64],
        vectors: &[f32],
        payloads: &[Value],
        threads: usize,
    ) -> Result<()> {
        self.upsert_batch_progress(ids, vectors, Some(payloads), threads, QUIET)
    }

    /// Checks and serialises one payload per id (`Value::Null`: none), against the
    /// declared fields, whose number it also returns.
    pub(super) fn encode_payloads(
        &self,
        n: usize,
        payloads: Option<&[Value]>,
    ) -> Result<(Encoded, usize)> {
        let specs = self.fields.read().specs.clone();
        let Some(payloads) = payloads else {
            return Ok((None, specs.len()));
        };
        if payloads.len() != n {
            return Err(Error::InvalidPayload(format!(
                "{} payloads for {n} ids",
                payloads.len()
            )));
        }
        let encoded = payloads
            .iter()
            .map(|p| match p {
                Value::Null => Ok(None),
                p => encode_payload(p, &specs).map(Some),
            })
            .collect::<Result<_>>()?;
        Ok((Some(encoded), specs.len()))
    }

    /// The slot and payload of each id `op` replaces, deletes or re-labels, before it.
    pub(super) fn fields_before(&self, p: &Ledger, op: &Op) -> Result<Before> {
        let ids: Vec<u64> = match op {
            Op::Insert(_) => return Ok(Before::new()),
            Op::Upsert(items) => items.iter().map(|it| it.id).collect(),
            Op::Delete(ids) => ids.clone(),
            Op::SetPayloads(items) => items.iter().map(|(id, _)| *id).collect(),
        };
        let meta = self.meta();
        let mut before = Before::with_capacity(ids.len());
        for id in ids {
            if let Some(slot) = p.slot_of(&meta, id)? {
                let payload = p.payload_of(&meta, id)?.and_then(|b| decode_payload(&b));
                before.insert(id, (slot, payload));
            }
        }
        Ok(before)
    }

    /// The live slots `filter` admits: by the field index, and for the fields it does
    /// not index by a scan of every live payload. Either way the answer is kept until
    /// the next write.
    pub(super) fn admitted(&self, filter: &Filter) -> Result<Arc<RoaringBitmap>> {
        let fields = self.fields.read();
        if let Some(index) = &fields.index {
            if let Some(hit) = index.cached(filter)? {
                return Ok(hit);
            }
            if filter.unindexed(&fields.specs).is_empty() {
                return index.eval_cached(filter, None);
            }
        }
        drop(fields);
        // The scan reads payloads as of the ledger, which must not change meanwhile.
        self.admitted_locked(&self.ledger.lock(), filter)
    }

    /// `admitted` for a caller holding the ledger's lock `p`.
    pub(super) fn admitted_locked(
        &self,
        p: &Ledger,
        filter: &Filter,
    ) -> Result<Arc<RoaringBitmap>> {
        filter.check_depth()?;
        if self.fields.read().index.is_none() {
            let mut fields = self.fields.write();
            if fields.index.is_none() {
                fields.index = Some(self.build_field_index(p, &fields.specs)?);
            }
        }
        // Built and dropped only under the ledger's lock, which the caller holds.
        let fields = self.fields.read();
        let index = fields.index.as_ref().expect("built above");
        if let Some(hit) = index.cached(filter)? {
            return Ok(hit);
        }
        let unindexed = filter.unindexed(&fields.specs);
        if unindexed.is_empty() {
            return index.eval_cached(filter, None);
        }
        let mut scan = FieldIndex::scan(&unindexed);
        self.each_live_payload(p, |_, slot, payload| {
            scan.add(slot, payload);
            Ok(())
        })?;
        index.eval_cached(filter, Some(&scan))
    }

    /// The field index of the current state: every live slot, and the fields of every
    /// payload (checkpointed ones from the metadata, newer ones from the ledger).
    fn build_field_index(&self, p: &Ledger, specs: &[FieldSpec]) -> Result<FieldIndex> {
        let mut index = FieldIndex::new(specs);
        for (_, slot) in self.id_map(p)? {
            index.add(slot, None);
        }
        self.each_live_payload(p, |_, slot, payload| {
            index.add(slot, Some(payload));
            Ok(())
        })?;
        Ok(index)
    }

    /// Calls `f` with the id, slot and payload of every live id that has one, until it
    /// fails.
    fn each_live_payload(
        &self,
        p: &Ledger,
        mut f: impl FnMut(u64, u32, &Map<String, Value>) -> Result<()>,
    ) -> Result<()> {
        let meta = self.meta();
        let slots: HashMap<u64, u32> = self.id_map(p)?.into_iter().collect();
        self.each_payload(p, |id, bytes| {
            if let Some(&slot) = slots.get(&id) {
                let payload = decode_payload(bytes).ok_or_else(|| {
                    Error::corrupt(
                        meta.path(),
                        format!("payload of id {id} is not a JSON object"),
                    )
                })?;
                f(id, slot, &payload)?;
            }
            Ok(())
        })
    }

    /// Calls `f` with every payload of the current state: checkpointed ones from the
    /// metadata, newer ones from the ledger.
    pub(super) fn each_payload(
        &self,
        p: &Ledger,
        mut f: impl FnMut(u64, &[u8]) -> Result<()>,
    ) -> Result<()> {
        self.meta().for_each_payload(|id, bytes| {
            if p.payloads.contains_key(&id) {
                return Ok(()); // changed since the checkpoint: the ledger has it
            }
            f(id, bytes)
        })?;
        for (&id, payload) in &p.payloads {
            if let Some(bytes) = payload {
                f(id, bytes)?;
            }
        }
        Ok(())
    }
}
