//! Logged operations: what a write-ahead-log record means, and its byte encoding.
//!
//! A record carries every decision the write made (slots, levels, the normalised vector),
//! so that replaying it re-applies exactly that write: recovery never re-decides. The
//! index applies replayed records through the same functions as its live write path.
//!
//! Payloads (little-endian):
//! - `INSERT` (kind 1): `count u32`, then per item `id u64, slot u32, level u8, dim × f32`;
//! - `UPSERT` (kind 2, written by builds before `UPSERT_BATCH`): one item as above (the
//!   id's old slot is tombstoned);
//! - `DELETE` (kind 3): `count u32`, then `count × id u64`;
//! - `INSERT_PART` (kind 4): as `INSERT`, for an insert too large for one record: its items
//!   go into parts of at most `PART_BYTES`, the last of which is an `INSERT`. Replay
//!   applies the parts with the `INSERT` that ends them, as one write; parts that no
//!   `INSERT` ends (a crash while the group was written) were never acknowledged and are
//!   dropped with the torn tail;
//! - `UPSERT_BATCH` (kind 5): as `INSERT`, but each id may exist (its old slot is then
//!   tombstoned); `UPSERT_PART` (kind 6) splits it as `INSERT_PART` splits an insert.
//! - `INSERT_P`, `INSERT_P_PART`, `UPSERT_P`, `UPSERT_P_PART` (kinds 7–10): kinds 1, 4, 5
//!   and 6 for batches that carry payloads: each item is followed by `payload_len u32`
//!   and that many bytes of JSON (`u32::MAX`: no payload; an upserted id then keeps the
//!   one it has);
//! - `PAYLOADS` (kind 11): `count u32`, then per item `id u64, payload_len u32` and the
//!   bytes (`u32::MAX`: the id's payload is removed). Sets the payloads of present ids.
//! - `INSERT_K`, `INSERT_K_PART`, `UPSERT_K`, `UPSERT_K_PART` (kinds 12–15, log version 4):
//!   kinds 7–10 for the batches of a string-id index: each item's payload is followed by
//!   `key_len u16` and that many bytes of UTF-8, the key the item's id is bound to. The
//!   binding travels in the record that writes the vector, so no crash can separate
//!   them; a delete (kind 3) unbinds the keys of the ids it deletes.

use crate::limits::check_key;

/// Record kind of an insert batch (or of the last record of a split one).
pub const KIND_INSERT: u8 = 1;
/// Record kind of an upsert.
pub const KIND_UPSERT: u8 = 2;
/// Record kind of a delete batch.
pub const KIND_DELETE: u8 = 3;
/// Record kind of a part of a split insert batch, continued by the next record.
pub const KIND_INSERT_PART: u8 = 4;
/// Record kind of an upsert batch (or of the last record of a split one).
pub const KIND_UPSERT_BATCH: u8 = 5;
/// Record kind of a part of a split upsert batch.
pub const KIND_UPSERT_PART: u8 = 6;

/// Record kind of an insert batch with payloads (or the last record of a split one).
pub const KIND_INSERT_P: u8 = 7;
/// Record kind of a part of a split insert batch with payloads.
pub const KIND_INSERT_P_PART: u8 = 8;
/// Record kind of an upsert batch with payloads (or the last record of a split one).
pub const KIND_UPSERT_P: u8 = 9;
/// Record kind of a part of a split upsert batch with payloads.
pub const KIND_UPSERT_P_PART: u8 = 10;
/// Record kind of a payload change of present ids.
pub const KIND_PAYLOADS: u8 = 11;

/// Record kind of a keyed insert batch (or the last record of a split one).
pub const KIND_INSERT_K: u8 = 12;
/// Record kind of a part of a split keyed insert batch.
pub const KIND_INSERT_K_PART: u8 = 13;
/// Record kind of a keyed upsert batch (or the last record of a split one).
pub const KIND_UPSERT_K: u8 = 14;
/// Record kind of a part of a split keyed upsert batch.
pub const KIND_UPSERT_K_PART: u8 = 15;

/// `payload_len` of an item without a payload.
const NO_PAYLOAD: u32 = u32::MAX;

/// Payload bytes per record above which an insert is split into parts: far below what a
/// frame can carry (1 GiB), so that no write builds a frame a reader would refuse.
const PART_BYTES: usize = 64 << 20;

/// A vector with the slot and level its write chose.
#[derive(Clone, Debug, PartialEq)]
pub struct Placed {
    /// External id.
    pub id: u64,
    /// Slot it goes to.
    pub slot: u32,
    /// Its HNSW level.
    pub level: u8,
    /// The vector as stored (normalised under cosine).
    pub vector: Vec<f32>,
    /// Its payload (serialised JSON object), if the write gave one.
    pub payload: Option<Vec<u8>>,
    /// The key `id` is bound to, in a string-id index (`None` in an integer-id one).
    pub key: Option<String>,
}

impl Placed {
    fn encoded_len(&self) -> usize {
        13 + 4 * self.vector.len()
            + self.payload.as_ref().map_or(0, |p| 4 + p.len())
            + self.key.as_ref().map_or(0, |k| 2 + k.len())
    }
}

/// How a batch's items are encoded: what follows each vector.
#[derive(Clone, Copy, PartialEq)]
enum Form {
    /// Nothing (kinds 1, 4, 5, 6).
    Plain,
    /// A payload (kinds 7–10).
    Payloads,
    /// A payload and a key (kinds 12–15).
    Keyed,
}

impl Form {
    /// Bytes each item takes besides `Placed::encoded_len`: the `payload_len` of an
    /// item without a payload.
    fn extra(self, p: &Placed) -> usize {
        match self {
            Form::Plain => 0,
            Form::Payloads | Form::Keyed => 4 * usize::from(p.payload.is_none()),
        }
    }
}

/// One logged write.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Insert new ids.
    Insert(Vec<Placed>),
    /// Insert or replace each id: a new slot each, and a replaced id's old slot is
    /// tombstoned.
    Upsert(Vec<Placed>),
    /// Delete ids (and their payloads).
    Delete(Vec<u64>),
    /// Set (`Some`) or remove (`None`) the payloads of present ids.
    SetPayloads(Vec<(u64, Option<Vec<u8>>)>),
}

impl Op {
    /// The records (kind, payload) that log this operation: one, or for an insert of more
    /// than `PART_BYTES` several (`INSERT_PART`s then an `INSERT`).
    pub fn encode(&self) -> Vec<(u8, Vec<u8>)> {
        match self {
            Op::Insert(items) => match form_of(items) {
                Form::Keyed => batch(items, KIND_INSERT_K, KIND_INSERT_K_PART, Form::Keyed),
                Form::Payloads => batch(items, KIND_INSERT_P, KIND_INSERT_P_PART, Form::Payloads),
                Form::Plain => batch(items, KIND_INSERT, KIND_INSERT_PART, Form::Plain),
            },
            Op::Upsert(items) => match form_of(items) {
                Form::Keyed => batch(items, KIND_UPSERT_K, KIND_UPSERT_K_PART, Form::Keyed),
                Form::Payloads => batch(items, KIND_UPSERT_P, KIND_UPSERT_P_PART, Form::Payloads),
                Form::Plain => batch(items, KIND_UPSERT_BATCH, KIND_UPSERT_PART, Form::Plain),
            },
            Op::SetPayloads(items) => {
                let mut out = Vec::new();
                out.extend_from_slice(&(items.len() as u32).to_le_bytes());
                for (id, payload) in items {
                    out.extend_from_slice(&id.to_le_bytes());
                    put_payload(&mut out, payload.as_deref());
                }
                vec![(KIND_PAYLOADS, out)]
            }
            Op::Delete(ids) => {
                let mut out = Vec::with_capacity(4 + 8 * ids.len());
                out.extend_from_slice(&(ids.len() as u32).to_le_bytes());
                ids.iter()
                    .for_each(|id| out.extend_from_slice(&id.to_le_bytes()));
                vec![(KIND_DELETE, out)]
            }
        }
    }

    /// Every payload the operation sets or removes: (id, bytes or `None`).
    pub fn payloads(&self) -> Box<dyn Iterator<Item = (u64, Option<&[u8]>)> + '_> {
        match self {
            Op::Insert(items) | Op::Upsert(items) => Box::new(
                items
                    .iter()
                    .filter(|p| p.payload.is_some())
                    .map(|p| (p.id, p.payload.as_deref())),
            ),
            Op::SetPayloads(items) => Box::new(items.iter().map(|(id, p)| (*id, p.as_deref()))),
            Op::Delete(_) => Box::new(std::iter::empty()),
        }
    }

    /// The slots the page files must hold for this operation to apply: one past the
    /// highest slot it writes.
    pub fn slots_needed(&self) -> usize {
        match self {
            Op::Insert(items) | Op::Upsert(items) => {
                items.iter().map(|p| p.slot as usize + 1).max().unwrap_or(0)
            }
            Op::Delete(_) | Op::SetPayloads(_) => 0,
        }
    }

    /// Decodes a payload written by `encode` for vectors of `dim` floats (an
    /// `INSERT_PART` decodes to the insert of its items). Any other bytes give an error
    /// message, never a panic.
    pub fn decode(kind: u8, payload: &[u8], dim: usize) -> Result<Op, String> {
        let mut r = Reader { bytes: payload };
        let op = match kind {
            KIND_INSERT | KIND_INSERT_PART => Op::Insert(r.items(dim)?),
            KIND_UPSERT => Op::Upsert(vec![r.placed(dim, Form::Plain)?]),
            KIND_UPSERT_BATCH | KIND_UPSERT_PART => Op::Upsert(r.items(dim)?),
            KIND_INSERT_P | KIND_INSERT_P_PART => Op::Insert(r.items_with(dim, Form::Payloads)?),
            KIND_UPSERT_P | KIND_UPSERT_P_PART => Op::Upsert(r.items_with(dim, Form::Payloads)?),
            KIND_INSERT_K | KIND_INSERT_K_PART => Op::Insert(r.items_with(dim, Form::Keyed)?),
            KIND_UPSERT_K | KIND_UPSERT_K_PART => Op::Upsert(r.items_with(dim, Form::Keyed)?),
            KIND_PAYLOADS => {
                let n = r.u32()? as usize;
                // At least 12 bytes an item: a count beyond that is damage, not a size
                // to allocate.
                if n == 0 || n > r.bytes.len() / 12 {
                    return Err(format!(
                        "payload record of {n} items has {} bytes",
                        r.bytes.len()
                    ));
                }
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push((r.u64()?, r.payload()?));
                }
                Op::SetPayloads(items)
            }
            KIND_DELETE => {
                let n = r.u32()? as usize;
                if n == 0 || n.checked_mul(8) != Some(r.bytes.len()) {
                    return Err(format!(
                        "delete record of {n} ids has {} payload bytes",
                        payload.len()
                    ));
                }
                Op::Delete((0..n).map(|_| r.u64()).collect::<Result<_, _>>()?)
            }
            other => return Err(format!("unknown record kind {other}")),
        };
        if !r.bytes.is_empty() {
            return Err("trailing bytes after the record".into());
        }
        Ok(op)
    }
}

/// The encoding a batch needs: keyed if its items carry keys (all of them do in a
/// string-id index), else with payloads if any has one.
fn form_of(items: &[Placed]) -> Form {
    if items.iter().any(|p| p.key.is_some()) {
        Form::Keyed
    } else if items.iter().any(|p| p.payload.is_some()) {
        Form::Payloads
    } else {
        Form::Plain
    }
}

/// The records of a batch of placed vectors: one of `final_kind`, or, past `PART_BYTES`,
/// parts of `part_kind` then one of `final_kind`, their items encoded in `form`.
fn batch(items: &[Placed], final_kind: u8, part_kind: u8, form: Form) -> Vec<(u8, Vec<u8>)> {
    // Cut the batch where a part would pass PART_BYTES (every part holds one item at
    // least).
    let mut parts = Vec::new();
    let (mut start, mut bytes) = (0, 4);
    for (i, p) in items.iter().enumerate() {
        let len = p.encoded_len() + form.extra(p);
        if i > start && bytes + len > PART_BYTES {
            parts.push(&items[start..i]);
            (start, bytes) = (i, 4);
        }
        bytes += len;
    }
    parts.push(&items[start..]);
    let n = parts.len();
    parts
        .into_iter()
        .enumerate()
        .map(|(i, part)| {
            let kind = if i + 1 == n { final_kind } else { part_kind };
            let mut out =
                Vec::with_capacity(4 + part.iter().map(Placed::encoded_len).sum::<usize>());
            out.extend_from_slice(&(part.len() as u32).to_le_bytes());
            for p in part {
                put(&mut out, p);
                if form != Form::Plain {
                    put_payload(&mut out, p.payload.as_deref());
                }
                if form == Form::Keyed {
                    // Checked on the way in: at most MAX_KEY_BYTES, far below u16::MAX.
                    let key = p.key.as_deref().unwrap_or_default();
                    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
                    out.extend_from_slice(key.as_bytes());
                }
            }
            (kind, out)
        })
        .collect()
}

fn put_payload(out: &mut Vec<u8>, payload: Option<&[u8]>) {
    match payload {
        Some(bytes) => {
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(bytes);
        }
        None => out.extend_from_slice(&NO_PAYLOAD.to_le_bytes()),
    }
}

/// The record kind that ends a group of parts of `kind`, if `kind` is a part.
pub fn final_of(kind: u8) -> Option<u8> {
    match kind {
        KIND_INSERT_PART => Some(KIND_INSERT),
        KIND_UPSERT_PART => Some(KIND_UPSERT_BATCH),
        KIND_INSERT_P_PART => Some(KIND_INSERT_P),
        KIND_UPSERT_P_PART => Some(KIND_UPSERT_P),
        KIND_INSERT_K_PART => Some(KIND_INSERT_K),
        KIND_UPSERT_K_PART => Some(KIND_UPSERT_K),
        _ => None,
    }
}

fn put(out: &mut Vec<u8>, p: &Placed) {
    out.extend_from_slice(&p.id.to_le_bytes());
    out.extend_from_slice(&p.slot.to_le_bytes());
    out.push(p.level);
    out.extend_from_slice(bytemuck::cast_slice(&p.vector));
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.bytes.len() < n {
            return Err("record payload ends early".into());
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    /// `count u32` then that many placed vectors, exactly filling the payload.
    fn items(&mut self, dim: usize) -> Result<Vec<Placed>, String> {
        let n = self.u32()? as usize;
        let item_bytes = 13 + 4 * dim;
        if n == 0 || n.checked_mul(item_bytes) != Some(self.bytes.len()) {
            return Err(format!(
                "record of {n} items has {} bytes of items",
                self.bytes.len()
            ));
        }
        (0..n).map(|_| self.placed(dim, Form::Plain)).collect()
    }

    /// `count u32` then that many placed vectors, each with its payload (and key).
    fn items_with(&mut self, dim: usize, form: Form) -> Result<Vec<Placed>, String> {
        let n = self.u32()? as usize;
        let min_bytes = 17 + 4 * dim + if form == Form::Keyed { 3 } else { 0 };
        if n == 0 || n > self.bytes.len() / min_bytes {
            return Err(format!(
                "record of {n} items has {} bytes of items",
                self.bytes.len()
            ));
        }
        (0..n).map(|_| self.placed(dim, form)).collect()
    }

    /// `key_len u16` and a key of that many bytes of UTF-8, within the key limits.
    fn key(&mut self) -> Result<String, String> {
        let len = u16::from_le_bytes(self.take(2)?.try_into().unwrap()) as usize;
        let key =
            std::str::from_utf8(self.take(len)?).map_err(|_| "a key is not UTF-8".to_string())?;
        check_key(key).map_err(|e| e.to_string())?;
        Ok(key.to_string())
    }

    /// `payload_len u32` and the bytes, or none.
    fn payload(&mut self) -> Result<Option<Vec<u8>>, String> {
        match self.u32()? {
            NO_PAYLOAD => Ok(None),
            len => Ok(Some(self.take(len as usize)?.to_vec())),
        }
    }

    fn placed(&mut self, dim: usize, form: Form) -> Result<Placed, String> {
        let id = self.u64()?;
        let slot = self.u32()?;
        let level = self.take(1)?[0];
        if slot == u32::MAX {
            return Err("slot out of range".into());
        }
        let vector: Vec<f32> = self
            .take(4 * dim)?
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        if vector.iter().any(|x| !x.is_finite()) {
            return Err(format!("vector of id {id} holds NaN or infinity"));
        }
        let payload = match form {
            Form::Plain => None,
            Form::Payloads | Form::Keyed => self.payload()?,
        };
        let key = match form {
            Form::Keyed => Some(self.key()?),
            Form::Plain | Form::Payloads => None,
        };
        Ok(Placed {
            id,
            slot,
            level,
            vector,
            payload,
            key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_round_trip() {
        let p = |id| Placed {
            id,
            slot: id as u32 * 2,
            level: 1,
            vector: vec![1.0, -2.0, 0.5],
            payload: None,
            key: None,
        };
        let with = |id, json: &str| Placed {
            payload: Some(json.as_bytes().to_vec()),
            ..p(id)
        };
        let keyed = |id, key: &str, json: Option<&str>| Placed {
            payload: json.map(|j| j.as_bytes().to_vec()),
            key: Some(key.to_string()),
            ..p(id)
        };
        for op in [
            Op::Insert(vec![p(1), p(2)]),
            Op::Upsert(vec![p(3)]),
            Op::Upsert(vec![p(3), p(4)]),
            Op::Delete(vec![4, 5, 6]),
            Op::Insert(vec![with(1, "{}"), p(2)]),
            Op::Upsert(vec![p(3), with(4, r#"{"a":1}"#)]),
            Op::SetPayloads(vec![(4, Some(b"{}".to_vec())), (5, None)]),
            Op::Insert(vec![keyed(1, "a", None), keyed(2, "ключ", Some("{}"))]),
            Op::Upsert(vec![keyed(3, "c", Some(r#"{"a":1}"#))]),
        ] {
            let records = op.encode();
            assert_eq!(records.len(), 1);
            let (kind, bytes) = &records[0];
            assert_eq!(Op::decode(*kind, bytes, 3).unwrap(), op);
            assert!(Op::decode(*kind, &bytes[..bytes.len() - 1], 3).is_err());
            if !matches!(op, Op::Delete(_) | Op::SetPayloads(_)) {
                assert!(
                    Op::decode(*kind, bytes, 4).is_err(),
                    "vectors of the wrong dimension"
                );
            }
        }
        assert!(Op::decode(16, &[], 3).is_err());
    }

    #[test]
    fn keys_are_held_to_their_limits_when_read_back() {
        let item = |key: &str| Placed {
            id: 1,
            slot: 0,
            level: 0,
            vector: vec![1.0],
            payload: None,
            key: Some(key.to_string()),
        };
        for bad in ["", &"k".repeat(crate::limits::MAX_KEY_BYTES + 1)] {
            let records = Op::Insert(vec![item(bad)]).encode();
            assert!(Op::decode(records[0].0, &records[0].1, 1).is_err());
        }
        // A key that is not UTF-8.
        let mut records = Op::Insert(vec![item("ab")]).encode();
        let bytes = &mut records[0].1;
        let last = bytes.len() - 1;
        bytes[last] = 0xff;
        assert!(Op::decode(records[0].0, &records[0].1, 1).is_err());
    }

    #[test]
    fn a_large_insert_is_split_into_parts_ending_in_an_insert() {
        let dim = 4096; // 16 KiB a vector: PART_BYTES holds about 4,090 of them
        let items: Vec<Placed> = (0..10_000)
            .map(|i| Placed {
                id: i,
                slot: i as u32,
                level: 0,
                vector: vec![i as f32; dim],
                // Payloads of varied sizes: parts are cut by bytes, not by item count.
                payload: (i % 3 == 0).then(|| vec![b'x'; (i % 1000) as usize]),
                key: None,
            })
            .collect();
        let records = Op::Insert(items.clone()).encode();
        let kinds: Vec<u8> = records.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            kinds,
            [KIND_INSERT_P_PART, KIND_INSERT_P_PART, KIND_INSERT_P]
        );
        assert!(records.iter().all(|(_, p)| p.len() <= PART_BYTES));
        let mut decoded = Vec::new();
        for (kind, payload) in &records {
            let Op::Insert(part) = Op::decode(*kind, payload, dim).unwrap() else {
                panic!("a part decodes to an insert");
            };
            decoded.extend(part);
        }
        assert_eq!(decoded, items);
    }
}
