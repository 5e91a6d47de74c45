//! The vector arena: slot `i` holds the vector of internal node `i`, then its external id
//! (the label), then (format version 3 on) a crc32 of both, so that a damaged vector or
//! label is caught before it is returned. Vectors are read in place through bytemuck
//! casts, never copied.

use std::path::Path;

use super::page::{FileIdentity, FileKind, PageFile, RowFile, SLOT_ALIGN};
use crate::error::Result;

const LABEL_BYTES: usize = 8;
const CRC_BYTES: usize = 4;
/// The first format version whose slots end with a checksum.
const FIRST_CHECKSUMMED: u32 = 3;

/// Bytes per vector slot in format `version`: the vector, the 8-byte label, the checksum
/// (from version 3), rounded up to 64.
pub fn stride_for(dim: usize, version: u32) -> usize {
    let crc = if version >= FIRST_CHECKSUMMED {
        CRC_BYTES
    } else {
        0
    };
    (dim * 4 + LABEL_BYTES + crc).div_ceil(SLOT_ALIGN) * SLOT_ALIGN
}

/// Typed access to the `vectors` file.
pub struct Vectors {
    file: PageFile,
    dim: usize,
    /// Whether slots carry a checksum (files of format version 3 on).
    checksummed: bool,
}

impl Vectors {
    /// Creates the file for `capacity` vectors.
    pub fn create(path: &Path, identity: FileIdentity, capacity: usize) -> Result<Vectors> {
        let RowFile { file, dim } =
            RowFile::create(path, FileKind::Vectors, identity, capacity, stride_for)?;
        Ok(Vectors::typed(file, dim))
    }

    /// Opens the file (read-only: see `PageFile::open`); the caller checks the header
    /// against the metadata.
    pub fn open(path: &Path, read_only: bool) -> Result<Vectors> {
        let RowFile { file, dim } = RowFile::open(path, FileKind::Vectors, read_only, stride_for)?;
        Ok(Vectors::typed(file, dim))
    }

    fn typed(file: PageFile, dim: usize) -> Vectors {
        let checksummed = file.header().version >= FIRST_CHECKSUMMED;
        Vectors {
            file,
            dim,
            checksummed,
        }
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

    /// The bytes of slot `i` that its checksum covers (vector and label).
    fn covered(&self, i: u32) -> &[u8] {
        // SAFETY: the vector and label lie inside the slot (stride >= dim * 4 + 8); see
        // `vector` for why no writer changes a slot while it is read.
        unsafe {
            std::slice::from_raw_parts(self.file.slot_ptr(i as usize), self.dim * 4 + LABEL_BYTES)
        }
    }

    /// Bytes of a slot a direct read must cover: vector, label and checksum.
    pub fn slot_bytes(&self) -> usize {
        self.dim * 4 + LABEL_BYTES + if self.checksummed { CRC_BYTES } else { 0 }
    }

    /// The vector and label in a slot's bytes read from disk (`slot_bytes` of them), or
    /// `None` if they fail their checksum.
    pub fn parse_slot<'a>(&self, bytes: &'a [u8]) -> Option<(&'a [f32], u64)> {
        let covered = &bytes[..self.dim * 4 + LABEL_BYTES];
        if self.checksummed {
            let stored = &bytes[covered.len()..covered.len() + CRC_BYTES];
            if crc32fast::hash(covered).to_le_bytes() != stored {
                return None;
            }
        }
        let label = u64::from_le_bytes(covered[self.dim * 4..].try_into().ok()?);
        // Slots start at multiples of 64 in the file and the buffer is page aligned, so
        // the floats are aligned; bytemuck checks it anyway.
        let vector = bytemuck::try_cast_slice(&covered[..self.dim * 4]).ok()?;
        Some((vector, label))
    }

    /// Whether slot `i` holds what was written there: its checksum matches its vector and
    /// label (always true for files older than checksums).
    pub fn intact(&self, i: u32) -> bool {
        if !self.checksummed {
            return true;
        }
        let covered = self.covered(i);
        // SAFETY: the checksum's 4 bytes follow the label inside the slot (stride >=
        // dim * 4 + 12 in checksummed files).
        let stored = unsafe {
            std::slice::from_raw_parts(self.file.slot_ptr(i as usize).add(covered.len()), CRC_BYTES)
        };
        crc32fast::hash(covered).to_le_bytes() == stored
    }

    /// Writes vector, label and checksum into slot `i`. The caller guarantees no reader
    /// looks at slot `i` until it is published (made live) afterwards.
    pub fn write(&self, i: u32, v: &[f32], label: u64) {
        debug_assert_eq!(v.len(), self.dim);
        let p = self.file.slot_ptr(i as usize);
        // SAFETY: every copy stays within the slot (dim * 4 + 8, + 4 when checksummed, <=
        // stride); slot `i` is not live, so no reader holds a reference to these bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(v.as_ptr() as *const u8, p, self.dim * 4);
            std::ptr::copy_nonoverlapping(
                label.to_le_bytes().as_ptr(),
                p.add(self.dim * 4),
                LABEL_BYTES,
            );
        }
        if self.checksummed {
            let crc = crc32fast::hash(self.covered(i)).to_le_bytes();
            // SAFETY: as above: the 4 bytes after the label, inside the slot.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    crc.as_ptr(),
                    p.add(self.dim * 4 + LABEL_BYTES),
                    CRC_BYTES,
                )
            };
        }
    }

    /// Starts reading slot `i` from disk without waiting (see `PageFile::will_need`).
    pub fn will_need(&self, i: u32) {
        self.file.will_need(i as usize);
    }

    /// Starts loading slot `i` into the CPU cache (no effect on correctness).
    #[inline(always)]
    pub fn prefetch(&self, i: u32) {
        let p = self.file.slot_ptr(i as usize);
        crate::prefetch::lines(p, (self.dim * 4).min(4 * 64));
    }
}
