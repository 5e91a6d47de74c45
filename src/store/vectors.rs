//! The vector arena: slot `i` holds the vector of internal node `i` (f32, or f16 / bf16 in
//! an index created with `Storage::F16` / `Storage::BF16`), then its external id (the
//! label), then (format
//! version 3 on) a crc32 of both, so that a damaged vector or label is caught before it
//! is returned. Vectors are read in place through bytemuck casts, never copied.

use std::path::Path;

use super::page::{FileIdentity, FileKind, PageFile, RowFile, SLOT_ALIGN};
use crate::distance::{Row, Storage, bf16, f16};
use crate::error::Result;

const LABEL_BYTES: usize = 8;
const CRC_BYTES: usize = 4;
/// The first format version whose slots end with a checksum.
const FIRST_CHECKSUMMED: u32 = 3;

/// Bytes per vector slot in format `version` for components of `B` bytes: the vector,
/// the 8-byte label, the checksum (from version 3), rounded up to 64.
fn stride_for<const B: usize>(dim: usize, version: u32) -> usize {
    let crc = if version >= FIRST_CHECKSUMMED {
        CRC_BYTES
    } else {
        0
    };
    (dim * B + LABEL_BYTES + crc).div_ceil(SLOT_ALIGN) * SLOT_ALIGN
}

/// The file kind and slot stride of each storage.
fn layout(storage: Storage) -> (FileKind, fn(usize, u32) -> usize) {
    match storage {
        Storage::F32 => (FileKind::Vectors, stride_for::<4>),
        Storage::F16 => (FileKind::HalfVectors, stride_for::<2>),
        Storage::BF16 => (FileKind::Bf16Vectors, stride_for::<2>),
    }
}

/// Bytes per vector slot of `storage` in files this version writes.
pub(crate) fn slot_stride(dim: usize, storage: Storage) -> usize {
    layout(storage).1(dim, super::page::FORMAT_VERSION)
}

/// Typed access to the `vectors` file.
pub struct Vectors {
    file: PageFile,
    dim: usize,
    storage: Storage,
    /// Bytes of a stored vector (`dim` components).
    vector_bytes: usize,
    /// Whether slots carry a checksum (files of format version 3 on).
    checksummed: bool,
}

impl Vectors {
    /// Creates the file for `capacity` vectors stored as `storage`.
    pub fn create(
        path: &Path,
        identity: FileIdentity,
        capacity: usize,
        storage: Storage,
    ) -> Result<Vectors> {
        let (kind, stride) = layout(storage);
        let RowFile { file, dim } = RowFile::create(path, kind, identity, capacity, stride)?;
        Ok(Vectors::typed(file, dim, storage))
    }

    /// Opens the file, which must hold vectors stored as `storage` (read-only: see
    /// `PageFile::open`); the caller checks the header against the metadata.
    pub fn open(path: &Path, read_only: bool, storage: Storage) -> Result<Vectors> {
        let (kind, stride) = layout(storage);
        let RowFile { file, dim } = RowFile::open(path, kind, read_only, stride)?;
        Ok(Vectors::typed(file, dim, storage))
    }

    fn typed(file: PageFile, dim: usize, storage: Storage) -> Vectors {
        let checksummed = file.header().version >= FIRST_CHECKSUMMED;
        Vectors {
            file,
            dim,
            storage,
            vector_bytes: dim * storage.bytes(),
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

    /// The vector in slot `i`, as stored.
    #[inline(always)]
    pub fn vector(&self, i: u32) -> Row<'_> {
        // SAFETY: slot_ptr points at `stride >= vector_bytes` mapped bytes that live as
        // long as `&self` (remaps need `&mut self`). Concurrent writers only write slots
        // that are not live, which readers never read (see hnsw's liveness protocol).
        let bytes = unsafe {
            std::slice::from_raw_parts(self.file.slot_ptr(i as usize), self.vector_bytes)
        };
        self.row(bytes)
    }

    /// The row in a stored vector's bytes (slots start at multiples of 64, so the casts
    /// are aligned).
    #[inline(always)]
    fn row<'a>(&self, bytes: &'a [u8]) -> Row<'a> {
        match self.storage {
            Storage::F32 => Row::F32(bytemuck::cast_slice(bytes)),
            Storage::F16 => Row::F16(bytemuck::cast_slice(bytes)),
            Storage::BF16 => Row::BF16(bytemuck::cast_slice(bytes)),
        }
    }

    /// The external id stored with slot `i`.
    #[inline]
    pub fn label(&self, i: u32) -> u64 {
        // SAFETY: the label's 8 bytes lie inside the slot (stride >= vector_bytes + 8).
        let bytes = unsafe {
            std::slice::from_raw_parts(
                self.file.slot_ptr(i as usize).add(self.vector_bytes),
                LABEL_BYTES,
            )
        };
        u64::from_le_bytes(bytes.try_into().unwrap())
    }

    /// The bytes of slot `i` that its checksum covers (vector and label).
    fn covered(&self, i: u32) -> &[u8] {
        // SAFETY: the vector and label lie inside the slot (stride >= vector_bytes + 8);
        // see `vector` for why no writer changes a slot while it is read.
        unsafe {
            std::slice::from_raw_parts(
                self.file.slot_ptr(i as usize),
                self.vector_bytes + LABEL_BYTES,
            )
        }
    }

    /// Bytes of a slot a direct read must cover: vector, label and checksum.
    pub fn slot_bytes(&self) -> usize {
        self.vector_bytes + LABEL_BYTES + if self.checksummed { CRC_BYTES } else { 0 }
    }

    /// The vector and label in a slot's bytes read from disk (`slot_bytes` of them), or
    /// `None` if they fail their checksum.
    pub fn parse_slot<'a>(&self, bytes: &'a [u8]) -> Option<(Row<'a>, u64)> {
        let covered = &bytes[..self.vector_bytes + LABEL_BYTES];
        if self.checksummed {
            let stored = &bytes[covered.len()..covered.len() + CRC_BYTES];
            if crc32fast::hash(covered).to_le_bytes() != stored {
                return None;
            }
        }
        let label = u64::from_le_bytes(covered[self.vector_bytes..].try_into().ok()?);
        // Slots start at multiples of 64 in the file and the buffer is page aligned, so
        // the components are aligned; checked anyway, as these bytes came from a read.
        let vector = &covered[..self.vector_bytes];
        if vector.as_ptr().align_offset(self.storage.bytes()) != 0 {
            return None;
        }
        Some((self.row(vector), label))
    }

    /// Whether slot `i` holds what was written there: its checksum matches its vector and
    /// label (always true for files older than checksums).
    pub fn intact(&self, i: u32) -> bool {
        if !self.checksummed {
            return true;
        }
        let covered = self.covered(i);
        // SAFETY: the checksum's 4 bytes follow the label inside the slot (stride >=
        // vector_bytes + 12 in checksummed files).
        let stored = unsafe {
            std::slice::from_raw_parts(self.file.slot_ptr(i as usize).add(covered.len()), CRC_BYTES)
        };
        crc32fast::hash(covered).to_le_bytes() == stored
    }

    /// Whether slot `i` holds, intact, what `write(i, v, label)` stores: a read-only view
    /// asks it of the slots the writer has filled since the view's checkpoint.
    pub fn holds(&self, i: u32, v: &[f32], label: u64) -> bool {
        if !self.intact(i) || self.label(i) != label {
            return false;
        }
        match self.vector(i) {
            Row::F32(row) => row.iter().zip(v).all(|(a, b)| a.to_bits() == b.to_bits()),
            Row::F16(row) => row.iter().zip(v).all(|(a, &b)| *a == f16::from_f32(b)),
            Row::BF16(row) => row.iter().zip(v).all(|(a, &b)| *a == bf16::from_f32(b)),
        }
    }

    /// Writes vector, label and checksum into slot `i` (the vector converted to the
    /// storage's type, rounding to nearest even: f16 components must be within its range,
    /// which writers check).
    /// The caller guarantees no reader looks at slot `i` until it is published (made
    /// live) afterwards.
    pub fn write(&self, i: u32, v: &[f32], label: u64) {
        debug_assert_eq!(v.len(), self.dim);
        let p = self.file.slot_ptr(i as usize);
        let halves: Vec<u16>;
        let bytes: &[u8] = match self.storage {
            Storage::F32 => bytemuck::cast_slice(v),
            Storage::F16 => {
                halves = v.iter().map(|&x| f16::from_f32(x).to_bits()).collect();
                bytemuck::cast_slice(&halves)
            }
            Storage::BF16 => {
                halves = v.iter().map(|&x| bf16::from_f32(x).to_bits()).collect();
                bytemuck::cast_slice(&halves)
            }
        };
        debug_assert_eq!(bytes.len(), self.vector_bytes);
        // SAFETY: every copy stays within the slot (vector_bytes + 8, + 4 when
        // checksummed, <= stride); slot `i` is not live, so no reader holds a reference
        // to these bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, self.vector_bytes);
            std::ptr::copy_nonoverlapping(
                label.to_le_bytes().as_ptr(),
                p.add(self.vector_bytes),
                LABEL_BYTES,
            );
        }
        if self.checksummed {
            let crc = crc32fast::hash(self.covered(i)).to_le_bytes();
            // SAFETY: as above: the 4 bytes after the label, inside the slot.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    crc.as_ptr(),
                    p.add(self.vector_bytes + LABEL_BYTES),
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
        crate::prefetch::lines(p, self.vector_bytes.min(4 * 64));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_read_back_and_parse_as_written_in_either_storage() {
        let dir = tempfile::tempdir().unwrap();
        let identity = FileIdentity {
            dim: 5,
            metric: 1,
            index_uid: 7,
        };
        let v = [0.1f32, -2.5, 3.0e4, 1.0e-3, 0.0];
        for storage in [Storage::F32, Storage::F16, Storage::BF16] {
            let path = dir.path().join(storage.name());
            let vectors = Vectors::create(&path, identity, 4, storage).unwrap();
            vectors.write(2, &v, 99);
            let stored = vectors.vector(2).to_f32().into_owned();
            match storage {
                Storage::F32 => assert_eq!(stored, v),
                Storage::F16 => {
                    let want: Vec<f32> = v.iter().map(|&x| f16::from_f32(x).to_f32()).collect();
                    assert_eq!(stored, want);
                }
                Storage::BF16 => {
                    let want: Vec<f32> = v.iter().map(|&x| bf16::from_f32(x).to_f32()).collect();
                    assert_eq!(stored, want);
                }
            }
            assert_eq!(vectors.label(2), 99);
            assert!(vectors.intact(2));
            // What a direct read of the slot gets: the same vector and label; a damaged
            // byte fails the checksum.
            let start = vectors.file().slot_offset(2) as usize;
            let bytes = std::fs::read(&path).unwrap()[start..start + vectors.slot_bytes()].to_vec();
            let (row, label) = vectors.parse_slot(&bytes).unwrap();
            assert_eq!(row.to_f32().into_owned(), stored);
            assert_eq!(label, 99);
            let mut damaged = bytes.clone();
            damaged[1] ^= 0x10;
            assert!(vectors.parse_slot(&damaged).is_none());
        }
    }
}
