//! Recovery's reading side: the records written since a checkpoint, decoded into the
//! operations they log, in log order, with the parts of a split insert joined again.
//! Reading changes nothing; `Replay::finish` cuts the torn tail off once the caller has
//! applied the operations (an open that fails must leave every byte as it was).

use std::path::{Path, PathBuf};

use super::record::{Op, final_of};
use super::segment::{self, Position, WalIdentity};
use crate::error::{Error, Result};

/// What reading the log for recovery found.
pub struct Replay {
    /// Every operation logged at or after the checkpoint's LSN, with the LSN of its last
    /// record, in order.
    pub ops: Vec<(u64, Op)>,
    /// The LSN the next record will get.
    pub next_lsn: u64,
    /// Where the log to keep ends, if anything follows it: a torn tail, the parts of an
    /// insert that no final record completed, or (with salvage) damage and what follows.
    tail: Option<Position>,
    dir: PathBuf,
}

impl Replay {
    /// Bytes after the log to keep (what `finish` drops).
    pub fn tail_bytes(&self) -> Result<u64> {
        match &self.tail {
            Some(at) => segment::bytes_after(&self.dir, at),
            None => Ok(0),
        }
    }

    /// Cuts the tail off, so that appends continue the valid log. Returns the bytes cut.
    pub fn finish(self) -> Result<u64> {
        match &self.tail {
            Some(at) => segment::cut(&self.dir, at),
            None => Ok(0),
        }
    }
}

/// Reads the log in `dir` from `checkpoint_lsn` on and decodes each record for vectors of
/// `identity.dim` floats. A torn tail is left for `finish`; damage before it is
/// `Error::Corrupt` unless `salvage` (see `segment::read_all`); a record that does not
/// decode is `Error::Corrupt`.
pub fn read(
    dir: &Path,
    identity: WalIdentity,
    checkpoint_lsn: u64,
    salvage: bool,
) -> Result<Replay> {
    let scan = segment::read_all(dir, identity, checkpoint_lsn, salvage)?;
    let dim = identity.dim as usize;
    let mut ops = Vec::new();
    // Items of the parts read so far, the kind of record that will end them, and the LSN
    // and place of the first part.
    let mut parts: Vec<_> = Vec::new();
    let mut group: Option<(u8, u64, Position)> = None;
    for (record, at) in scan.records {
        let bad = |why: String| Error::corrupt(dir, format!("log record {}: {why}", record.lsn));
        let op = Op::decode(record.kind, &record.payload, dim).map_err(bad)?;
        if let Some(final_kind) = final_of(record.kind) {
            if group.as_ref().is_some_and(|(k, _, _)| *k != final_kind) {
                return Err(bad("parts of two kinds of batch".into()));
            }
            let (Op::Insert(items) | Op::Upsert(items)) = op else {
                unreachable!("a part decodes to a batch")
            };
            parts.extend(items);
            group.get_or_insert((final_kind, record.lsn, at));
            continue;
        }
        let op = match (op, group.take()) {
            (op, None) => op,
            (Op::Insert(items), Some((final_kind, ..))) if final_kind == record.kind => {
                parts.extend(items);
                Op::Insert(std::mem::take(&mut parts))
            }
            (Op::Upsert(items), Some((final_kind, ..))) if final_kind == record.kind => {
                parts.extend(items);
                Op::Upsert(std::mem::take(&mut parts))
            }
            _ => return Err(bad("batch parts followed by another kind of record".into())),
        };
        ops.push((record.lsn, op));
    }
    // Parts that nothing completed: the batch was never acknowledged. They go with the
    // tail, which then starts at the first of them, and appends reuse their LSNs.
    let (tail, next_lsn) = match group {
        Some((_, lsn, at)) => (Some(at), lsn),
        None => (scan.tail, scan.next_lsn.unwrap_or(0)),
    };
    Ok(Replay {
        ops,
        next_lsn: next_lsn.max(checkpoint_lsn),
        tail,
        dir: dir.to_path_buf(),
    })
}
