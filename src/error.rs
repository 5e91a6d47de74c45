//! The one error type of the crate.

use std::io;
use std::path::{Path, PathBuf};

/// Everything that can go wrong in hnswdb. Bad input is rejected before anything is written,
/// so an error never leaves the index half-changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A vector's length differs from the index dimension.
    #[error("vector has dimension {got}, the index expects {expected}")]
    DimensionMismatch {
        /// The index dimension.
        expected: usize,
        /// The length that was given.
        got: usize,
    },
    /// A vector holds NaN or an infinity.
    #[error("vector component {position} is {value}: NaN and infinite values are rejected")]
    NonFinite {
        /// Index of the first bad component.
        position: usize,
        /// Its value.
        value: f32,
    },
    /// A vector whose distances would overflow f32 (components around 1e19 and above).
    #[error("vector is out of range: {0}")]
    InvalidVector(String),
    /// An all-zero vector cannot be normalised for the cosine metric.
    #[error("an all-zero vector has no direction and cannot be used with the cosine metric")]
    ZeroVector,
    /// An id named twice in one call, or `insert` of an id that is already present.
    #[error(
        "id {0} is named twice in one call, or inserted while already in the index (an upsert replaces a vector)"
    )]
    DuplicateId(u64),
    /// An operation named an id that is not present.
    #[error("id {0} is not in the index")]
    UnknownId(u64),

    /// A key of a string-id index that is empty or longer than `limits::MAX_KEY_BYTES`.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// A key named twice in one call, or `insert_keys` of a key that is already present.
    #[error(
        "key {0:?} is named twice in one call, or inserted while already in the index (an upsert replaces a vector)"
    )]
    DuplicateKey(String),
    /// An operation named a key that is not present.
    #[error("key {0:?} is not in the index")]
    UnknownKey(String),
    /// An operation for the other kind of id: a keyed write on an integer-id index, or
    /// an insert under an integer id into a string-id index (whose ids the index assigns).
    #[error("{0}")]
    IdKind(String),

    /// A payload that is not a JSON object, too large, or whose indexed field has the
    /// wrong type.
    #[error("invalid payload: {0}")]
    InvalidPayload(String),

    /// A filter that compares an indexed field with a value of the wrong type, bounds a
    /// range with something else than a number, or is not a filter at all.
    #[error("invalid filter: {0}")]
    InvalidFilter(String),
    /// An option out of range (M, ef, dimension...).
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// A file is damaged, foreign or inconsistent with the rest of the index.
    #[error("corrupt index file {path}: {reason}")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A file written by a newer hnswdb.
    #[error("{path} has format version {found}; this build reads versions up to {supported}")]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: u32,
        /// The newest version this build understands.
        supported: u32,
    },
    /// Another process (or another `Index` in this one) has the index open for writing.
    #[error("index at {0} is locked: another writer has it open")]
    Locked(PathBuf),
    /// `Index::create` on a directory that already holds an index.
    #[error("{0} already holds an index")]
    AlreadyExists(PathBuf),
    /// `Index::open` on a directory that holds no index.
    #[error("no index at {0}")]
    NotFound(PathBuf),
    /// The disk is full. Nothing was acknowledged that was not written.
    #[error("disk full while writing {path}")]
    DiskFull {
        /// The file being written.
        path: PathBuf,
    },
    /// Any other I/O failure.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The metadata database (redb) failed.
    #[error("metadata database: {0}")]
    Meta(String),
    /// A write failed after its record reached the log (e.g. the log's fsync failed), so
    /// whether it happened is unknown until the log is replayed: writes are refused until
    /// the index is reopened.
    #[error("an earlier write, sync or commit failed; reopen the index to recover")]
    Poisoned,
    /// A read-only view met a slot the writer has reused (or is writing) since the view
    /// was taken: `Index::refresh` and ask again.
    #[error("the index changed under this read-only view ({0}); refresh it")]
    Stale(String),
    /// A read-only view's directory now holds an index of another configuration (not a
    /// compaction of the one it viewed, which `refresh` follows): open it anew.
    #[error("{0} now holds another index; open it anew")]
    Replaced(PathBuf),
    /// A read-only open of an index whose writer crashed: its metadata needs a repair,
    /// which is a write. Open it once for writing (which recovers it), then read-only.
    #[error("index at {0} needs recovery after a crash: open it for writing once")]
    NeedsRecovery(PathBuf),
    /// A write (or checkpoint) on an index opened read-only.
    #[error("the index was opened read-only")]
    ReadOnly,
    /// The index holds the maximum number of slots (2^32 - 1).
    #[error("index is full: at most 4294967295 vectors")]
    Capacity,
}

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with the path it concerns, classifying a full disk.
    pub(crate) fn io(path: &Path, source: io::Error) -> Error {
        if source.kind() == io::ErrorKind::StorageFull || source.raw_os_error() == Some(28) {
            Error::DiskFull {
                path: path.to_path_buf(),
            }
        } else {
            Error::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    }

    pub(crate) fn corrupt(path: &Path, reason: impl Into<String>) -> Error {
        Error::Corrupt {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}

/// Extension to attach a path to `io::Result`s.
pub(crate) trait IoContext<T> {
    fn at(self, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
