//! Storage: typed page files (vectors, layer-0 records, SQ8 codes) and the redb metadata.
//! Pages know slots and bytes, never what a graph does with them; the layers above
//! (`graph`, `index`) give slots their meaning.

pub(crate) mod codes;
pub(crate) mod direct;
pub(crate) mod layer0;
pub(crate) mod meta;
pub(crate) mod meta_check;
pub mod page;
pub(crate) mod readers;
pub(crate) mod vectors;

pub(crate) use codes::{CodeKind, Codes};
pub(crate) use direct::DirectReads;
pub(crate) use layer0::Layer0;
pub use meta::IdKind;
pub(crate) use meta::{Changes, Config, EntryPoint, Meta, SlotState, State, UpperLists};
pub use page::FileIdentity;
pub(crate) use readers::{ReaderTable, Registration};
pub(crate) use vectors::Vectors;
