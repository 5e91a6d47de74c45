//! Recovery's reading side: the records written since a checkpoint, decoded into the
//! operations they log, in log order. Applying them is the index's job.

use std::path::Path;

use super::record::Op;
use super::segment::{self, WalIdentity};
use crate::error::{Error, Result};

/// What reading the log for recovery found.
pub struct Replay {
    /// Every operation logged at or after the checkpoint's LSN, with its LSN, in order.
    pub ops: Vec<(u64, Op)>,
    /// Bytes of torn (or, with salvage, damaged) tail that were dropped.
    pub truncated_bytes: u64,
    /// The LSN the next record will get.
    pub next_lsn: u64,
}

/// Reads the log in `dir` from `checkpoint_lsn` on and decodes each record for vectors of
/// `identity.dim` floats. A torn tail is dropped (and cut off the file unless
/// `read_only`); damage before it is `Error::Corrupt` unless `salvage` (see
/// `segment::read_all`); a record that does not decode is `Error::Corrupt`.
pub fn read(
    dir: &Path,
    identity: WalIdentity,
    checkpoint_lsn: u64,
    salvage: bool,
    read_only: bool,
) -> Result<Replay> {
    let scan = segment::read_all(dir, identity, checkpoint_lsn, salvage, read_only)?;
    let ops = scan
        .records
        .into_iter()
        .map(|r| {
            let op = Op::decode(r.kind, &r.payload, identity.dim as usize)
                .map_err(|why| Error::corrupt(dir, format!("log record {}: {why}", r.lsn)))?;
            Ok((r.lsn, op))
        })
        .collect::<Result<_>>()?;
    Ok(Replay {
        ops,
        truncated_bytes: scan.truncated_bytes,
        next_lsn: scan.next_lsn.unwrap_or(0).max(checkpoint_lsn),
    })
}
