//! Layer-0 adjacency: record `i` holds node `i`'s neighbour count and up to `M0` neighbour
//! ids (u32), in a fixed-stride slot of the `graph0` page file.
//!
//! Records are read and written through atomics so that searches may run, without locks,
//! beside inserts that rewrite lists: a reader may see a mix of an old and a new list, but
//! every id it sees is one that was written there, hence a valid node. Ids are stored with
//! Release and loaded with Acquire, so a reader that sees a new id also sees the vector the
//! writer stored before linking it.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::arena::{Arena, FORMAT_VERSION, FileKind, Header, SLOT_ALIGN};
use crate::error::Result;

const ELEM_U32: u32 = 2;

/// Bytes per record: count + `m0` ids, rounded up to 64 (one cache line when M0 <= 15).
pub fn stride_for(m0: usize) -> usize {
    (4 + 4 * m0).div_ceil(SLOT_ALIGN) * SLOT_ALIGN
}

/// Typed access to the `graph0` file.
pub struct Layer0 {
    arena: Arena,
    m0: usize,
}

impl Layer0 {
    /// Creates the file for `capacity` records of up to `m0` neighbours.
    pub fn create(
        path: &Path,
        dim: usize,
        metric: u32,
        m0: usize,
        uid: u64,
        capacity: usize,
    ) -> Result<Layer0> {
        let header = Header {
            kind: FileKind::Graph0,
            version: FORMAT_VERSION,
            dim: dim as u32,
            elem_type: ELEM_U32,
            metric,
            max_neighbours: m0 as u32,
            stride: stride_for(m0) as u64,
            capacity: capacity as u64,
            index_uid: uid,
        };
        Ok(Layer0 {
            arena: Arena::create(path, header)?,
            m0,
        })
    }

    /// Opens the file; the caller checks the header against the metadata.
    pub fn open(path: &Path) -> Result<Layer0> {
        let arena = Arena::open(path, FileKind::Graph0)?;
        let h = arena.header();
        let m0 = h.max_neighbours as usize;
        if m0 == 0 || h.elem_type != ELEM_U32 || h.stride as usize != stride_for(m0) {
            return Err(crate::Error::corrupt(
                path,
                "graph0 header: bad M0, element type or stride",
            ));
        }
        Ok(Layer0 { arena, m0 })
    }

    /// The underlying page file.
    pub fn arena(&self) -> &Arena {
        &self.arena
    }

    /// Mutable page file (to grow it).
    pub fn arena_mut(&mut self) -> &mut Arena {
        &mut self.arena
    }

    /// Maximum neighbours per record.
    pub fn m0(&self) -> usize {
        self.m0
    }

    #[inline(always)]
    fn record(&self, i: u32) -> &[AtomicU32] {
        let p = self.arena.slot_ptr(i as usize) as *const AtomicU32;
        // SAFETY: the record holds 1 + m0 u32s within the slot (stride >= 4 + 4 * m0), the
        // slot is 64-byte aligned so each u32 is 4-aligned, AtomicU32 has u32's layout, and
        // the mapping outlives `&self`. All access to records goes through these atomics.
        unsafe { std::slice::from_raw_parts(p, 1 + self.m0) }
    }

    /// Appends node `i`'s neighbours to `out` (which is not cleared).
    #[inline]
    pub fn read_into(&self, i: u32, out: &mut Vec<u32>) {
        let r = self.record(i);
        let n = (r[0].load(Ordering::Acquire) as usize).min(self.m0);
        out.extend(r[1..=n].iter().map(|x| x.load(Ordering::Acquire)));
    }

    /// Replaces node `i`'s neighbour list. The caller holds node `i`'s lock.
    pub fn write(&self, i: u32, ids: &[u32]) {
        debug_assert!(
            ids.len() <= self.m0,
            "{} neighbours > M0 {}",
            ids.len(),
            self.m0
        );
        let r = self.record(i);
        for (slot, &id) in r[1..].iter().zip(ids) {
            slot.store(id, Ordering::Release);
        }
        r[0].store(ids.len() as u32, Ordering::Release);
    }

    /// Starts loading record `i`.
    #[inline(always)]
    pub fn prefetch(&self, i: u32) {
        crate::prefetch::lines(self.arena.slot_ptr(i as usize), 4 + 4 * self.m0);
    }
}
