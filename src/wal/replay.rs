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
    /// Where a later read of the records from `next_lsn` on may start (see `read`).
    pub resume: Option<Position>,
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
/// `Error::Corrupt` unless `salvage` (see `segment::read_from`); a record that does not
/// decode is `Error::Corrupt`. Given `resume` (the `resume` of an earlier read, whose
/// `next_lsn` is `checkpoint_lsn` here), only the log after it is read.
pub fn read(
    dir: &Path,
    identity: WalIdentity,
    checkpoint_lsn: u64,
    salvage: bool,
    resume: Option<&Position>,
) -> Result<Replay> {
    let scan = segment::read_from(dir, identity, checkpoint_lsn, salvage, resume)?;
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
    let (mut tail, next_lsn, mut resume) = match group {
        Some((_, lsn, at)) => (Some(at.clone()), lsn, Some(at)),
        None => (scan.tail, scan.next_lsn.unwrap_or(checkpoint_lsn), scan.end),
    };
    if next_lsn < checkpoint_lsn {
        // The log ends before the checkpoint: power loss came between a checkpoint's
        // commit and its dropping of the log, and took the log's unsynced end. Everything
        // left is in the checkpoint; appending at its LSN to the segment would leave a gap
        // in the segment's LSNs, so the whole log goes, as the checkpoint would have
        // dropped it.
        tail = segment::start(dir)?;
        resume = None;
    }
    Ok(Replay {
        ops,
        next_lsn: next_lsn.max(checkpoint_lsn),
        resume,
        tail,
        dir: dir.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::segment::Wal;

    const ID: WalIdentity = WalIdentity {
        dim: 2,
        index_uid: 5,
    };

    #[test]
    fn a_log_that_ends_before_the_checkpoint_is_dropped_whole() {
        // Records 0 to 4, never synced, in the checkpoint (LSN 5), whose crash kept the
        // log; power loss then cut it after record 2.
        let d = tempfile::tempdir().unwrap();
        let wal = Wal::open(d.path(), ID, 0).unwrap();
        for i in 0..5u8 {
            wal.append(&[(1, vec![i; 9])]).unwrap();
        }
        drop(wal);
        let seg = std::fs::read_dir(d.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let bytes = std::fs::read(&seg).unwrap();
        std::fs::write(&seg, &bytes[..bytes.len() - 2 * 38 - 7]).unwrap();
        let replay = read(d.path(), ID, 5, false, None).unwrap();
        assert!(replay.ops.is_empty());
        assert_eq!(replay.next_lsn, 5);
        assert!(replay.finish().unwrap() > 0);
        // Appends start a segment at the checkpoint's LSN, not a gap in the old one.
        let wal = Wal::open(d.path(), ID, 5).unwrap();
        assert_eq!(wal.append(&[(1, vec![9; 9])]).unwrap(), 5);
        wal.sync_all().unwrap();
        let scan = segment::read_all(d.path(), ID, 5, false).unwrap();
        assert_eq!(scan.records.len(), 1);
        assert_eq!((scan.records[0].0.lsn, scan.tail), (5, None));
    }
}
