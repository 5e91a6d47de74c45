//! The code file `codes.N`: slot `i` holds the SQ8 or RaBitQ code of the vector in slot
//! `i` of the vector arena, so that a graph walk reads a fraction of the bytes. Derived data: every code can be recomputed from its vector and the quantiser,
//! which is what makes a generation of it safe to replace (see `docs/format.md`).

use std::path::{Path, PathBuf};

use super::page::{FileIdentity, FileKind, PageFile, RowFile, SLOT_ALIGN};
use crate::distance::{RaBitQ, Routing};
use crate::error::Result;

/// What a code file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeKind {
    /// SQ8: one byte per component.
    Sq8,
    /// RaBitQ with this many bits (1..=8) per component of the padded dimension, then
    /// its scalars.
    RaBitQ(u8),
}

impl CodeKind {
    /// The codes an index of `routing` walks on.
    pub fn of(routing: Routing) -> CodeKind {
        match routing.rabitq_bits() {
            None => CodeKind::Sq8,
            Some(bits) => CodeKind::RaBitQ(bits),
        }
    }

    fn file_kind(self) -> FileKind {
        match self {
            CodeKind::Sq8 => FileKind::Codes,
            CodeKind::RaBitQ(1) => FileKind::BitCodes,
            CodeKind::RaBitQ(_) => FileKind::MultiBitCodes,
        }
    }

    /// Bytes of one code of a `dim`-dimensional vector.
    pub fn code_bytes(self, dim: usize) -> usize {
        match self {
            CodeKind::Sq8 => dim,
            CodeKind::RaBitQ(bits) => RaBitQ::code_bytes(dim, bits),
        }
    }

    /// Bytes per code slot (the same in every version): SQ8 codes rounded up to 64, RaBitQ
    /// codes only to 8, not to a cache line: that tier exists to be small (72 bytes at
    /// 384-d, where 128 would be 78% more). The stride of a file differs with its bits, so
    /// a file opened with other bits than it was written with is refused.
    pub(crate) fn stride(self, dim: usize) -> usize {
        match self {
            CodeKind::Sq8 => dim.max(1).div_ceil(SLOT_ALIGN) * SLOT_ALIGN,
            CodeKind::RaBitQ(_) => self.code_bytes(dim.max(1)).div_ceil(8) * 8,
        }
    }
}

/// The file name of code generation `generation` in an index directory.
pub fn file_name(generation: u64) -> String {
    format!("codes.{generation}")
}

/// The generations of code files present in `dir` (any of them may be stale).
pub fn generations_in(dir: &Path) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let generation = name.strip_prefix("codes.")?.parse().ok()?;
            Some((generation, e.path()))
        })
        .collect()
}

/// Typed access to a code file.
pub struct Codes {
    file: PageFile,
    /// Bytes per code.
    len: usize,
}

impl Codes {
    /// Creates the file for `capacity` codes of `kind`.
    pub fn create(
        path: &Path,
        kind: CodeKind,
        identity: FileIdentity,
        capacity: usize,
    ) -> Result<Codes> {
        let RowFile { file, dim } =
            RowFile::create(path, kind.file_kind(), identity, capacity, |dim, _| {
                kind.stride(dim)
            })?;
        Ok(Codes {
            file,
            len: kind.code_bytes(dim),
        })
    }

    /// Opens the file (read-only: see `PageFile::open`), which must hold codes of
    /// `kind`; the caller checks the header against the metadata.
    pub fn open(path: &Path, kind: CodeKind, read_only: bool) -> Result<Codes> {
        let RowFile { file, dim } =
            RowFile::open(path, kind.file_kind(), read_only, |dim, _| kind.stride(dim))?;
        Ok(Codes {
            file,
            len: kind.code_bytes(dim),
        })
    }

    /// The underlying page file.
    pub fn file(&self) -> &PageFile {
        &self.file
    }

    /// Mutable page file (to grow it).
    pub fn file_mut(&mut self) -> &mut PageFile {
        &mut self.file
    }

    /// The codes in slot `i`.
    #[inline(always)]
    pub fn codes(&self, i: u32) -> &[u8] {
        // SAFETY: slot_ptr points at `stride >= dim` mapped bytes that live as long as
        // `&self` (remaps need `&mut self`); writers only write slots no reader reads (the
        // same liveness protocol as the vector arena).
        unsafe { std::slice::from_raw_parts(self.file.slot_ptr(i as usize), self.len) }
    }

    /// Writes the codes of slot `i` (not yet readable by searches, as for vectors).
    pub fn write(&self, i: u32, codes: &[u8]) {
        debug_assert_eq!(codes.len(), self.len);
        // SAFETY: `len <= stride` bytes inside slot `i`, which no reader holds.
        unsafe {
            std::ptr::copy_nonoverlapping(codes.as_ptr(), self.file.slot_ptr(i as usize), self.len);
        }
    }

    /// Starts reading slot `i` from disk without waiting (see `PageFile::will_need`).
    pub fn will_need(&self, i: u32) {
        self.file.will_need(i as usize);
    }

    /// Starts loading slot `i` (no effect on correctness).
    #[inline(always)]
    pub fn prefetch(&self, i: u32) {
        crate::prefetch::lines(self.file.slot_ptr(i as usize), self.len);
    }
}
