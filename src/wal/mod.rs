//! The write-ahead log, all of it: record frames and telling a torn tail from damage
//! (`frame`), segment files (`segment`), what a record means and its encoding (`record`),
//! and reading them back for recovery (`replay`). See `docs/format.md` for the bytes.

mod frame;
mod record;
mod replay;
mod segment;

pub(crate) use record::{Op, Placed};
pub(crate) use replay::{Replay, read as read_for_replay};
pub(crate) use segment::{Position, Wal, WalIdentity};
