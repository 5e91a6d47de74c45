//! Data operations on the ids a payload filter admits, or on a list of ids: count and
//! list them, read their records, delete them, merge into or replace their payloads.
//! A read runs under one view (the graph's read lock, which every delete and payload
//! change needs exclusively); a write evaluates its filter and logs its record under the
//! same locks, so that it is one atomic write of exactly the ids matching at that moment.

use std::collections::HashSet;

use parking_lot::{MutexGuard, RwLockWriteGuard};
use roaring::RoaringBitmap;
use serde_json::{Map, Value};

use super::Index;
use super::write::Ledger;
use crate::error::{Error, Result};
use crate::filter::{Filter, MAX_JSON_DEPTH, decode_payload, deeper_than, encode_payload};
use crate::graph::Graph;
use crate::limits::{check_batch, check_batch_payload_bytes};
use crate::wal::Op;

/// A stored id with what a read asked for of it (see [`Index::records`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// The id.
    pub id: u64,
    /// Its payload, when asked for and it has one.
    pub payload: Option<Value>,
    /// Its stored vector (unit length under cosine), when asked for.
    pub vector: Option<Vec<f32>>,
}

/// `patch` merged into the payload `old` at the top level: each of its keys replaces
/// `old`'s, a key set to null removes it. A null patch removes the payload.
fn merged(old: Option<Map<String, Value>>, patch: &Value) -> Result<Value> {
    match patch {
        Value::Null => Ok(Value::Null),
        Value::Object(patch) => {
            let mut out = old.unwrap_or_default();
            for (key, value) in patch {
                if value.is_null() {
                    out.remove(key);
                } else {
                    out.insert(key.clone(), value.clone());
                }
            }
            Ok(Value::Object(out))
        }
        other => Err(Error::InvalidPayload(format!(
            "a payload is a JSON object, not {other}"
        ))),
    }
}

impl Index {
    /// Live vectors, or those whose payload `filter` admits.
    pub fn count(&self, filter: Option<&Filter>) -> Result<u64> {
        self.follow()?;
        let Some(filter) = filter else {
            return Ok(self.len());
        };
        let graph = self.graph.read();
        Ok(self.ids_of_slots(&graph, &*self.admitted(filter)?)?.len() as u64)
    }

    /// Every live id whose payload `filter` admits, ascending.
    pub fn ids_where(&self, filter: &Filter) -> Result<Vec<u64>> {
        self.follow()?;
        let graph = self.graph.read();
        self.ids_of_slots(&graph, &*self.admitted(filter)?)
    }

    /// The ids in `slots` whose vectors searches can see (an insert in flight has
    /// mapped its slots before it writes them), ascending.
    pub(super) fn ids_of_slots(&self, graph: &Graph, slots: &RoaringBitmap) -> Result<Vec<u64>> {
        let mut ids = Vec::with_capacity(slots.len() as usize);
        for slot in slots.iter().filter(|&s| graph.is_live(s)) {
            self.check_intact(graph, slot)?;
            ids.push(graph.vectors().label(slot));
        }
        ids.sort_unstable();
        Ok(ids)
    }

    /// The records of `ids` in their order, each with its payload and vector if asked
    /// for, read under one view; an absent id is left out.
    pub fn records(&self, ids: &[u64], payload: bool, vector: bool) -> Result<Vec<Record>> {
        self.follow()?;
        let graph = self.graph.read();
        let p = self.ledger.lock();
        let meta = self.meta();
        let mut out = Vec::with_capacity(ids.len());
        for (&id, slot) in ids.iter().zip(p.slots_of(&meta, ids)?) {
            let Some(slot) = slot.filter(|&s| graph.is_live(s)) else {
                continue;
            };
            out.push(Record {
                id,
                payload: if payload {
                    self.decoded(id, p.payload_of(&meta, id)?)?
                } else {
                    None
                },
                vector: if vector {
                    Some(self.vector_at(&graph, id, slot)?)
                } else {
                    None
                },
            });
        }
        Ok(out)
    }

    /// Deletes every id whose payload `filter` admits, as one logged write (the filter
    /// is evaluated under the write's locks: exactly the ids matching then). Returns how
    /// many were deleted.
    pub fn delete_where(&self, filter: &Filter) -> Result<u64> {
        self.writable_log()?;
        let graph = self.graph.write();
        let p = self.ledger.lock();
        let slots = self.admitted_locked(&p, filter)?;
        let ids = self.ids_of_slots(&graph, &slots)?;
        self.delete_locked(graph, p, ids)
    }

    /// Deletes those of `ids` that are present as one logged write, skipping absent
    /// ones (and repeats); returns how many were deleted.
    pub fn delete_batch_missing_ok(&self, ids: &[u64]) -> Result<u64> {
        self.writable_log()?;
        check_batch(ids.len())?;
        let graph = self.graph.write();
        let p = self.ledger.lock();
        let meta = self.meta();
        let mut seen = HashSet::with_capacity(ids.len());
        let mut present = Vec::with_capacity(ids.len());
        for (&id, slot) in ids.iter().zip(p.slots_of(&meta, ids)?) {
            if seen.insert(id) && slot.is_some() {
                present.push(id);
            }
        }
        self.delete_locked(graph, p, present)
    }

    /// Merges each of `patches` into the payload of the id at the same place in `ids`
    /// (top level: a key of the patch replaces the payload's, a key set to null removes
    /// it; a null patch removes the payload) as one logged write, all or nothing. The
    /// merge is resolved under the write's lock and the resulting payloads logged, so
    /// that replay reproduces it exactly. `UnknownId` if an id is absent.
    pub fn merge_payloads(&self, ids: &[u64], patches: &[Value]) -> Result<()> {
        if patches.len() != ids.len() {
            return Err(Error::InvalidPayload(format!(
                "{} payloads for {} ids",
                patches.len(),
                ids.len()
            )));
        }
        self.writable_log()?;
        check_batch(ids.len())?;
        let graph = self.graph.write();
        let p = self.ledger.lock();
        self.rewrite_payloads(graph, p, ids, |i| &patches[i], false)
    }

    /// Merges `payload` into (see `merge_payloads`), or with `replace` replaces, the
    /// payload of every id `filter` admits, as one logged write. Returns how many ids
    /// were updated.
    pub fn update_where(&self, filter: &Filter, payload: &Value, replace: bool) -> Result<u64> {
        self.writable_log()?;
        let graph = self.graph.write();
        let p = self.ledger.lock();
        let slots = self.admitted_locked(&p, filter)?;
        let ids = self.ids_of_slots(&graph, &slots)?;
        check_batch(ids.len())?;
        self.rewrite_payloads(graph, p, &ids, |_| payload, replace)?;
        Ok(ids.len() as u64)
    }

    /// Logs the payload of each of `ids` (present, none twice) that `patch(i)` makes of
    /// the payload it has: replaced by it with `replace`, else merged (see `merged`).
    /// Under the graph's write lock, as every payload change: a search evaluates its
    /// filter and walks under one read lock, so it never sees a change halfway.
    pub(super) fn rewrite_payloads<'a>(
        &self,
        graph: RwLockWriteGuard<'_, Graph>,
        p: MutexGuard<'_, Ledger>,
        ids: &[u64],
        patch: impl Fn(usize) -> &'a Value,
        replace: bool,
    ) -> Result<()> {
        let meta = self.meta();
        let specs = self.fields.read().specs.clone();
        let mut seen = HashSet::with_capacity(ids.len());
        let mut items = Vec::with_capacity(ids.len());
        for (i, &id) in ids.iter().enumerate() {
            // First: cloning or merging a deeper value would recurse without bound.
            if deeper_than(patch(i), MAX_JSON_DEPTH) {
                return Err(Error::InvalidPayload(format!(
                    "it nests arrays and objects more than {MAX_JSON_DEPTH} deep"
                )));
            }
            if !seen.insert(id) {
                return Err(Error::DuplicateId(id));
            }
            if p.slot_of(&meta, id)?.is_none() {
                return Err(Error::UnknownId(id));
            }
            let new = if replace {
                patch(i).clone()
            } else {
                let old = self.decoded(id, p.payload_of(&meta, id)?)?;
                merged(old.and_then(|v| v.as_object().cloned()), patch(i))?
            };
            let bytes = match new {
                Value::Null => None,
                new => Some(encode_payload(&new, &specs)?),
            };
            items.push((id, bytes));
        }
        // One log record carries them all (an insert's are split into parts instead).
        check_batch_payload_bytes(
            items
                .iter()
                .filter_map(|(_, b)| b.as_ref())
                .map(Vec::len)
                .sum(),
        )?;
        if items.is_empty() {
            return Ok(());
        }
        self.log(p, &Op::SetPayloads(items))?;
        drop(graph);
        self.maybe_checkpoint();
        Ok(())
    }

    /// A stored payload of `id` parsed (damage if it is not a JSON object).
    pub(super) fn decoded(&self, id: u64, bytes: Option<Vec<u8>>) -> Result<Option<Value>> {
        bytes
            .map(|b| {
                decode_payload(&b).map(Value::Object).ok_or_else(|| {
                    Error::corrupt(
                        self.meta().path(),
                        format!("payload of id {id} is not a JSON object"),
                    )
                })
            })
            .transpose()
    }
}
