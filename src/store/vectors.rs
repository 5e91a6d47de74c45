//! The vector arena: slot `i` holds the vector of internal node `i` followed by its external
//! id (the label). Vectors are read in place through bytemuck casts, never copied.

use std::path::Path;

use super::page::{FileIdentity, FileKind, PageFile, RowFile, SLOT_ALIGN};
use crate::error::Result;

const LABEL_BYTES: usize = 8;

/// Bytes per vector slot: the vector, the 8-byte label, rounded up to 64.
pub fn stride_for(dim: usize) -> usize {
    (dim * 4 + LABEL_BYTES).div_ceil(SLOT_ALIGN) * SLOT_ALIGN
}

/// Typed access to the `vectors` file.
pub struct Vectors {
    file: PageFile,
    dim: usize,
}

impl Vectors {
    /// Creates the file for `capacity` vectors.
    pub fn create(path: &Path, identity: FileIdentity, capacity: usize) -> Result<Vectors> {
        let RowFile { file, dim } =
            RowFile::create(path, FileKind::Vectors, identity, capacity, stride_for)?;
        Ok(Vectors { file, dim })
    }

    /// Opens the file; the caller checks the header against the metadata.
    pub fn open(path: &Path) -> Result<Vectors> {
        let RowFile { file, dim } = RowFile::open(path, FileKind::Vectors, stride_for)?;
        Ok(Vectors { file, dim })
    }

    /// The underlying page file.
    pub fn file(&self) -> &PageFile {
        &self.file
    }

    /// Mutable page file (to grow it).
    pub fn file_mut(&mut self) -> &mut PageFile {
        &mut self.file
    }

    /// The vector in slot `i`.
    #[inline(always)]
    pub fn vector(&self, i: u32) -> &[f32] {
        // SAFETY: slot_ptr points at `stride >= dim * 4` mapped bytes that live as long as
        // `&self` (remaps need `&mut self`). Concurrent writers only write slots that are not
        // live, which readers never read (see hnsw's liveness protocol).
        let bytes =
            unsafe { std::slice::from_raw_parts(self.file.slot_ptr(i as usize), self.dim * 4) };
        bytemuck::cast_slice(bytes)
    }

    /// The external id stored with slot `i`.
    #[inline]
    pub fn label(&self, i: u32) -> u64 {
        // SAFETY: the label's 8 bytes lie inside the slot (stride >= dim * 4 + 8).
        let bytes = unsafe {
            std::slice::from_raw_parts(
                self.file.slot_ptr(i as usize).add(self.dim * 4),
                LABEL_BYTES,
            )
        };
        u64::from_le_bytes(bytes.try_into().unwrap())
    }

    /// Writes vector and label into slot `i`. The caller guarantees no reader looks at
    /// slot `i` until it is published (made live) afterwards.
    pub fn write(&self, i: u32, v: &[f32], label: u64) {
        debug_assert_eq!(v.len(), self.dim);
        let p = self.file.slot_ptr(i as usize);
        // SAFETY: both copies stay within the slot (dim * 4 + 8 <= stride); slot `i` is not
        // live, so no reader holds a reference to these bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(v.as_ptr() as *const u8, p, self.dim * 4);
            std::ptr::copy_nonoverlapping(
                label.to_le_bytes().as_ptr(),
                p.add(self.dim * 4),
                LABEL_BYTES,
            );
        }
    }

    /// Starts loading the first cache lines of slot `i` (no effect on correctness).
    #[inline(always)]
    pub fn prefetch(&self, i: u32) {
        let p = self.file.slot_ptr(i as usize);
        crate::prefetch::lines(p, (self.dim * 4).min(4 * 64));
    }
}
