//! # hnswdb
//!
//! An embedded, disk-backed vector search engine: vectors stored under `u64` ids, answered
//! k-nearest-neighbour queries through an HNSW graph (Malkov & Yashunin, arXiv 1603.09320).
//!
//! Vectors and layer-0 adjacency live in fixed-stride memory-mapped page files, so opening
//! an index is O(1) and an index larger than RAM still answers; upper layers and metadata
//! live in [redb](https://docs.rs/redb). See `docs/format.md` for the on-disk format.
//!
//! The modules follow a write's way down, each knowing only the ones beneath it:
//! `index` (the public face, write path, checkpoint, verify) → `wal` (log segments,
//! records, replay) → `graph` (search, insert, repair, upper layers) → `store` (typed page
//! files and redb metadata). `distance` kernels see slices only.
//!
//! ```
//! use hnswdb::{Index, IndexOptions, Metric};
//! let dir = tempfile::tempdir()?;
//! let index = Index::create(dir.path(), &IndexOptions::new(4, Metric::Cosine).m(16))?;
//! index.insert_batch(&[1, 2, 3], &[
//!     1.0, 0.0, 0.0, 0.0,
//!     0.0, 1.0, 0.0, 0.0,
//!     0.7, 0.7, 0.0, 0.0,
//! ])?;
//! index.close()?;
//! let index = Index::open(dir.path())?;
//! let hits = index.search(&[1.0, 0.1, 0.0, 0.0], 2)?;
//! assert_eq!(hits[0].id, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod distance;
mod error;
#[cfg(feature = "failpoints")]
pub mod failpoints;
#[cfg(not(feature = "failpoints"))]
mod failpoints;
pub mod filter;
mod graph;
mod index;
pub mod limits;
mod parallel;
mod prefetch;
pub mod store;
mod wal;

pub use distance::{Metric, Routing, Storage, bf16, f16};
pub use error::{Error, Result};
pub use filter::{FieldKind, FieldSpec, Filter};
pub use index::{
    Compaction, Durability, Explain, Hit, Index, IndexOptions, Neighbour, OpenOptions, Plan,
    Progress, Query, Record, Recovery, Residency, Stats, Tuning, VerifyReport,
};
/// Payloads are `serde_json` values; re-exported so that callers use the same version.
pub use serde_json;
pub use store::IdKind;
