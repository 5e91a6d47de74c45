//! Logged operations: what a write-ahead-log record means, and its byte encoding.
//!
//! A record carries every decision the write made (slots, levels, the normalised vector),
//! so that replaying it re-applies exactly that write: recovery never re-decides. The
//! index applies replayed records through the same functions as its live write path.
//!
//! Payloads (little-endian):
//! - `INSERT` (kind 1): `count u32`, then per item `id u64, slot u32, level u8, dim × f32`;
//! - `UPSERT` (kind 2): one item as above (the id's old slot is tombstoned);
//! - `DELETE` (kind 3): `count u32`, then `count × id u64`.

/// Record kind of an insert batch.
pub const KIND_INSERT: u8 = 1;
/// Record kind of an upsert.
pub const KIND_UPSERT: u8 = 2;
/// Record kind of a delete batch.
pub const KIND_DELETE: u8 = 3;

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
}

/// One logged write.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Insert new ids.
    Insert(Vec<Placed>),
    /// Replace an existing id's vector (new slot; the old one is tombstoned).
    Upsert(Placed),
    /// Delete ids.
    Delete(Vec<u64>),
}

impl Op {
    /// The record kind and payload.
    pub fn encode(&self) -> (u8, Vec<u8>) {
        let mut out = Vec::new();
        let put = |out: &mut Vec<u8>, p: &Placed| {
            out.extend_from_slice(&p.id.to_le_bytes());
            out.extend_from_slice(&p.slot.to_le_bytes());
            out.push(p.level);
            out.extend_from_slice(bytemuck::cast_slice(&p.vector));
        };
        match self {
            Op::Insert(items) => {
                out.extend_from_slice(&(items.len() as u32).to_le_bytes());
                items.iter().for_each(|p| put(&mut out, p));
                (KIND_INSERT, out)
            }
            Op::Upsert(p) => {
                put(&mut out, p);
                (KIND_UPSERT, out)
            }
            Op::Delete(ids) => {
                out.extend_from_slice(&(ids.len() as u32).to_le_bytes());
                ids.iter()
                    .for_each(|id| out.extend_from_slice(&id.to_le_bytes()));
                (KIND_DELETE, out)
            }
        }
    }

    /// Decodes a payload written by `encode` for vectors of `dim` floats. Any other bytes
    /// give an error message, never a panic.
    pub fn decode(kind: u8, payload: &[u8], dim: usize) -> Result<Op, String> {
        let mut r = Reader { bytes: payload };
        let op = match kind {
            KIND_INSERT => {
                let n = r.u32()? as usize;
                let item_bytes = 13 + 4 * dim;
                if n == 0 || n.checked_mul(item_bytes) != Some(r.bytes.len()) {
                    return Err(format!(
                        "insert record of {n} items has {} payload bytes",
                        payload.len()
                    ));
                }
                Op::Insert((0..n).map(|_| r.placed(dim)).collect::<Result<_, _>>()?)
            }
            KIND_UPSERT => Op::Upsert(r.placed(dim)?),
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
    fn placed(&mut self, dim: usize) -> Result<Placed, String> {
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
        Ok(Placed {
            id,
            slot,
            level,
            vector,
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
        };
        for op in [
            Op::Insert(vec![p(1), p(2)]),
            Op::Upsert(p(3)),
            Op::Delete(vec![4, 5, 6]),
        ] {
            let (kind, bytes) = op.encode();
            assert_eq!(Op::decode(kind, &bytes, 3).unwrap(), op);
            assert!(Op::decode(kind, &bytes[..bytes.len() - 1], 3).is_err());
            if !matches!(op, Op::Delete(_)) {
                assert!(
                    Op::decode(kind, &bytes, 4).is_err(),
                    "vectors of the wrong dimension"
                );
            }
        }
        assert!(Op::decode(9, &[], 3).is_err());
    }
}
