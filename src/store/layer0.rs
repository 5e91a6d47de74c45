//! Layer-0 adjacency: record `i` holds node `i`'s up to `M0` neighbour ids (u32) in a
//! fixed-stride slot of the `graph0` page file.
//!
//! Two record layouts exist (`docs/format.md`, "graph0 records"). Format version 2 stores
//! each id plus one and ends a short list with a zero: no count word, so a record is
//! exactly `4 * M0` bytes (M = 16: two cache lines instead of three; M <= 8: one), and a
//! zeroed record, as a new or grown file holds, reads as an empty list. Version 1 files
//! keep their count-prefixed layout and are read and written in it.
//!
//! Records are read and written through atomics so that searches may run, without locks,
//! beside inserts that rewrite lists: a reader may see a mix of an old and a new list, but
//! every id it sees is one that was written there, hence a valid node. Ids are stored with
//! Release and loaded with Acquire, so a reader that sees a new id also sees the vector the
//! writer stored before linking it.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use super::page::{FORMAT_VERSION, FileIdentity, FileKind, PageFile, SLOT_ALIGN};
use crate::error::Result;

/// The last format version whose records start with a neighbour count.
const LAST_COUNTED_VERSION: u32 = 1;

/// How a file's records are laid out, from its format version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// Version 1: count `c`, then `M0` ids of which the first `c` are meaningful.
    Counted,
    /// Version 2 on: `M0` words of id + 1, the first zero (if any) ending the list.
    Terminated,
}

impl Layout {
    fn of(version: u32) -> Layout {
        if version <= LAST_COUNTED_VERSION {
            Layout::Counted
        } else {
            Layout::Terminated
        }
    }

    /// Meaningful bytes per record.
    fn record_bytes(self, m0: usize) -> usize {
        match self {
            Layout::Counted => 4 + 4 * m0,
            Layout::Terminated => 4 * m0,
        }
    }

    /// Bytes per record rounded up to whole cache lines.
    fn stride(self, m0: usize) -> usize {
        self.record_bytes(m0).div_ceil(SLOT_ALIGN) * SLOT_ALIGN
    }
}

/// Bytes per layer-0 record of `m0` links in files this version writes.
pub(crate) fn record_stride(m0: usize) -> usize {
    Layout::of(FORMAT_VERSION).stride(m0)
}

/// Typed access to the `graph0` file.
pub struct Layer0 {
    file: PageFile,
    m0: usize,
    layout: Layout,
}

impl Layer0 {
    /// Creates the file for `capacity` records of up to `m0` neighbours.
    pub fn create(
        path: &Path,
        identity: FileIdentity,
        m0: usize,
        capacity: usize,
    ) -> Result<Layer0> {
        let layout = Layout::of(FORMAT_VERSION);
        let file = PageFile::create_typed(
            path,
            FileKind::Graph0,
            identity,
            m0 as u32,
            layout.stride(m0),
            capacity,
        )?;
        Ok(Layer0 { file, m0, layout })
    }

    /// Opens the file; the caller checks the header against the metadata.
    pub fn open(path: &Path, read_only: bool) -> Result<Layer0> {
        let file = PageFile::open_typed(path, FileKind::Graph0, read_only, |h| {
            let m0 = h.max_neighbours as usize;
            (m0 > 0).then(|| Layout::of(h.version).stride(m0))
        })?;
        let h = file.header();
        let (m0, layout) = (h.max_neighbours as usize, Layout::of(h.version));
        Ok(Layer0 { file, m0, layout })
    }

    /// The underlying page file.
    pub fn file(&self) -> &PageFile {
        &self.file
    }

    /// Mutable page file (to grow it).
    pub fn file_mut(&mut self) -> &mut PageFile {
        &mut self.file
    }

    /// Maximum neighbours per record.
    pub fn m0(&self) -> usize {
        self.m0
    }

    #[inline(always)]
    fn record(&self, i: u32) -> &[AtomicU32] {
        let p = self.file.slot_ptr(i as usize) as *const AtomicU32;
        let words = self.layout.record_bytes(self.m0) / 4;
        // SAFETY: the record's `words` u32s lie within the slot (stride >= record_bytes,
        // checked on open), the slot is 64-byte aligned so each u32 is 4-aligned,
        // AtomicU32 has u32's layout, and the mapping outlives `&self`. All access to
        // records goes through these atomics.
        unsafe { std::slice::from_raw_parts(p, words) }
    }

    /// Appends node `i`'s neighbours to `out` (which is not cleared).
    #[inline]
    pub fn read_into(&self, i: u32, out: &mut Vec<u32>) {
        let r = self.record(i);
        match self.layout {
            Layout::Terminated => {
                // Copy all M0 words, cut at the end mark, then undo the + 1 (a word read
                // once, so a racing writer cannot put a zero among the kept ones).
                let start = out.len();
                out.extend(r.iter().map(|w| w.load(Ordering::Acquire)));
                let n = out[start..].iter().position(|&w| w == 0);
                out.truncate(start + n.unwrap_or(self.m0));
                for id in &mut out[start..] {
                    *id -= 1;
                }
            }
            Layout::Counted => {
                let n = (r[0].load(Ordering::Acquire) as usize).min(self.m0);
                out.extend(r[1..=n].iter().map(|x| x.load(Ordering::Acquire)));
            }
        }
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
        match self.layout {
            Layout::Terminated => {
                // Ids first, then the terminator: a reader racing this write sees new ids,
                // then either the end or words of an older list (ids too, or zero).
                for (word, &id) in r.iter().zip(ids) {
                    debug_assert!(id < u32::MAX, "slot {id} has no id + 1");
                    word.store(id + 1, Ordering::Release);
                }
                if let Some(end) = r.get(ids.len()) {
                    end.store(0, Ordering::Release);
                }
            }
            Layout::Counted => {
                for (slot, &id) in r[1..].iter().zip(ids) {
                    slot.store(id, Ordering::Release);
                }
                r[0].store(ids.len() as u32, Ordering::Release);
            }
        }
    }

    /// Starts reading record `i` from disk without waiting (see `PageFile::will_need`).
    pub fn will_need(&self, i: u32) {
        self.file.will_need(i as usize);
    }

    /// Starts loading record `i` into the CPU cache (no effect on correctness).
    #[inline(always)]
    pub fn prefetch(&self, i: u32) {
        crate::prefetch::lines(
            self.file.slot_ptr(i as usize),
            self.layout.record_bytes(self.m0),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `graph0` file of `capacity` records written in `version`'s layout.
    fn layer0(dir: &Path, version: u32, m0: usize, capacity: usize) -> Layer0 {
        let path = dir.join(format!("graph0.v{version}"));
        let header = super::super::page::Header {
            kind: FileKind::Graph0,
            version,
            dim: 4,
            elem_type: FileKind::Graph0.elem_type(),
            metric: 1,
            max_neighbours: m0 as u32,
            stride: Layout::of(version).stride(m0) as u64,
            capacity: capacity as u64,
            index_uid: 7,
        };
        drop(PageFile::create(&path, header).unwrap());
        Layer0::open(&path, false).unwrap()
    }

    fn read(l: &Layer0, i: u32) -> Vec<u32> {
        let mut out = Vec::new();
        l.read_into(i, &mut out);
        out
    }

    #[test]
    fn both_layouts_round_trip_lists_of_every_length() {
        let dir = tempfile::tempdir().unwrap();
        for version in [1, FORMAT_VERSION] {
            let m0 = 32;
            let l = layer0(dir.path(), version, m0, 4);
            // A record never written (zeroed, as after create or grow) is an empty list.
            assert_eq!(read(&l, 3), Vec::<u32>::new(), "version {version}");
            // Growing and shrinking lists, slot 0 among the ids (stored as 1 in v2).
            for len in [m0, 0, 5, m0 - 1, 1, m0, 3] {
                let ids: Vec<u32> = (0..len as u32).map(|j| j * 3).collect();
                l.write(1, &ids);
                assert_eq!(read(&l, 1), ids, "version {version}, {len} ids");
            }
            // Neighbouring records are untouched.
            assert!(read(&l, 0).is_empty() && read(&l, 2).is_empty());
        }
    }

    #[test]
    fn terminated_records_fill_whole_cache_lines() {
        assert_eq!(Layout::Terminated.stride(32), 128); // M = 16: two lines
        assert_eq!(Layout::Terminated.stride(16), 64); // M = 8: one line
        assert_eq!(Layout::Counted.stride(32), 192);
        assert_eq!(Layout::Counted.stride(16), 128);
    }
}
