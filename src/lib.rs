//! # hnswdb
//!
//! An embedded, disk-backed vector search engine: vectors stored under `u64` ids, answered
//! k-nearest-neighbour queries through an HNSW graph (Malkov & Yashunin, arXiv 1603.09320).
//!
//! Vectors and layer-0 adjacency live in fixed-stride memory-mapped page files, so opening
//! an index is O(1) and an index larger than RAM still answers; upper layers and metadata
//! live in [redb](https://docs.rs/redb). See `docs/format.md` for the on-disk format.
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

pub mod arena;
mod codes;
pub mod datasets;
pub mod distance;
mod error;
mod hnsw;
mod index;
mod layer0;
mod meta;
mod parallel;
mod prefetch;
mod recovery;
#[doc(hidden)]
pub mod testing;
mod vectors;
mod wal;

pub use distance::Metric;
pub use error::{Error, Result};
pub use index::{
    Durability, Index, IndexOptions, Neighbour, OpenOptions, Recovery, Stats, VerifyReport,
};
