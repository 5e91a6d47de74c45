//! The typed page file: one header page, then `capacity` slots of `stride` bytes,
//! memory-mapped. It knows nothing of vectors or graphs; `vectors`, `layer0` and `codes`
//! give the slots their meaning. The byte layout is documented in `docs/format.md`.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use memmap2::{MmapOptions, MmapRaw};

use crate::error::{Error, IoContext, Result};
use crate::failpoints;

/// Size of the header page; slots start at this offset, so slot 0 is page-aligned.
pub const HEADER_PAGE: usize = 4096;
/// Bytes of the header that carry meaning (the rest of the page is zero).
pub const HEADER_LEN: usize = 128;
/// Current on-disk format version, written into every new page file. A file with a larger
/// version is refused; every smaller one is read: version 1 differs in its `graph0` record
/// layout (see `layer0`), versions 1 and 2 in their `vectors` slots, which end with a
/// checksum from version 3 on (see `vectors`).
pub const FORMAT_VERSION: u32 = 3;
/// Slots are aligned to this many bytes so that SIMD loads of a slot are aligned.
pub const SLOT_ALIGN: usize = 64;

const CRC_OFFSET: usize = HEADER_LEN - 4;

/// Which page file a header belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// `vectors`: the vector arena.
    Vectors,
    /// `vectors` of an index storing f16 (`Storage::F16`).
    HalfVectors,
    /// `vectors` of an index storing bfloat16 (`Storage::BF16`).
    Bf16Vectors,
    /// `graph0`: layer-0 adjacency.
    Graph0,
    /// `codes.N`: 8-bit quantised copies of the vectors, for graph walks.
    Codes,
    /// `codes.N` of an index routed on RaBitQ: 1-bit codes and two scalars per vector.
    BitCodes,
    /// `codes.N` of an index routed on extended RaBitQ: 2..8 bit planes and three scalars
    /// per vector.
    MultiBitCodes,
}

impl FileKind {
    /// The 8-byte magic that opens the file.
    pub fn magic(self) -> &'static [u8; 8] {
        match self {
            FileKind::Vectors => b"HNSWDBVC",
            FileKind::HalfVectors => b"HNSWDBVH",
            FileKind::Bf16Vectors => b"HNSWDBVB",
            FileKind::Graph0 => b"HNSWDBG0",
            FileKind::Codes => b"HNSWDBQ8",
            FileKind::BitCodes => b"HNSWDBQ1",
            FileKind::MultiBitCodes => b"HNSWDBQB",
        }
    }

    /// The element type code its header carries: 1 = f32, 2 = u32, 3 = u8, 4 = RaBitQ
    /// code, 5 = f16, 6 = multi-bit RaBitQ code, 7 = bf16.
    pub fn elem_type(self) -> u32 {
        match self {
            FileKind::Vectors => 1,
            FileKind::HalfVectors => 5,
            FileKind::Bf16Vectors => 7,
            FileKind::Graph0 => 2,
            FileKind::Codes => 3,
            FileKind::BitCodes => 4,
            FileKind::MultiBitCodes => 6,
        }
    }

    /// What its slot stride is a multiple of: a cache line, except for RaBitQ codes,
    /// which are read whole and exist to be small (72 bytes at 384-d, not 128).
    pub fn slot_align(self) -> usize {
        match self {
            FileKind::BitCodes | FileKind::MultiBitCodes => 8,
            _ => SLOT_ALIGN,
        }
    }

    /// Its name in error messages.
    fn name(self) -> &'static str {
        match self {
            FileKind::Vectors => "vectors",
            FileKind::HalfVectors => "f16 vectors",
            FileKind::Bf16Vectors => "bf16 vectors",
            FileKind::Graph0 => "graph0",
            FileKind::Codes => "codes",
            FileKind::BitCodes => "bit codes",
            FileKind::MultiBitCodes => "multi-bit codes",
        }
    }
}

/// What every page file of one index carries in its header, so that a file of another
/// index (or of another dimension or metric) is never mixed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileIdentity {
    /// Vector dimension.
    pub dim: u32,
    /// Metric code.
    pub metric: u32,
    /// Random id shared by every file of the index.
    pub index_uid: u64,
}

/// The decoded header of a page file. Field meanings are given by the layer above; the
/// arena checks only what makes the file structurally usable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Which file this is.
    pub kind: FileKind,
    /// Format version the file was written with.
    pub version: u32,
    /// Vector dimension (both files carry it, so a mismatch is caught on open).
    pub dim: u32,
    /// Element type code: 1 = f32 (vectors), 2 = u32 (graph0), 3 = u8 (codes).
    pub elem_type: u32,
    /// Metric code (1 = l2, 2 = ip, 3 = cosine).
    pub metric: u32,
    /// Maximum neighbours per record (graph0: M0); 0 for vectors.
    pub max_neighbours: u32,
    /// Bytes per slot, a multiple of [`SLOT_ALIGN`].
    pub stride: u64,
    /// Number of slots the file holds.
    pub capacity: u64,
    /// Random id shared by every file of one index, so files of two indexes never mix.
    pub index_uid: u64,
}

impl Header {
    /// Encodes the header into its 128 on-disk bytes (little-endian, crc32 last).
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(self.kind.magic());
        b[8..12].copy_from_slice(&self.version.to_le_bytes());
        b[12..16].copy_from_slice(&(HEADER_PAGE as u32).to_le_bytes());
        b[16..20].copy_from_slice(&self.dim.to_le_bytes());
        b[20..24].copy_from_slice(&self.elem_type.to_le_bytes());
        b[24..28].copy_from_slice(&self.metric.to_le_bytes());
        b[28..32].copy_from_slice(&self.max_neighbours.to_le_bytes());
        b[32..40].copy_from_slice(&self.stride.to_le_bytes());
        b[40..48].copy_from_slice(&self.capacity.to_le_bytes());
        b[48..56].copy_from_slice(&self.index_uid.to_le_bytes());
        let crc = crc32fast::hash(&b[..CRC_OFFSET]);
        b[CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and checks a header read from a file of `file_len` bytes. Never panics,
    /// whatever the bytes: this is the function the header fuzz target drives.
    pub fn decode(bytes: &[u8], file_len: u64, path: &Path) -> Result<Header> {
        let corrupt = |why: &str| Error::corrupt(path, why);
        if bytes.len() < HEADER_LEN || file_len < HEADER_PAGE as u64 {
            return Err(corrupt("file is shorter than its header page"));
        }
        let kind = match &bytes[0..8] {
            m if m == FileKind::Vectors.magic() => FileKind::Vectors,
            m if m == FileKind::Graph0.magic() => FileKind::Graph0,
            m if m == FileKind::Codes.magic() => FileKind::Codes,
            m if m == FileKind::BitCodes.magic() => FileKind::BitCodes,
            m if m == FileKind::MultiBitCodes.magic() => FileKind::MultiBitCodes,
            m if m == FileKind::HalfVectors.magic() => FileKind::HalfVectors,
            m if m == FileKind::Bf16Vectors.magic() => FileKind::Bf16Vectors,
            _ => return Err(corrupt("bad magic: not an hnswdb page file")),
        };
        let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap());
        let version = u32_at(8);
        // The version is checked before the crc: a newer format may checksum differently,
        // and "too new" is the more useful message.
        if version > FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                path: path.to_path_buf(),
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        if version == 0 {
            return Err(corrupt("format version 0"));
        }
        let crc = u32_at(CRC_OFFSET);
        if crc32fast::hash(&bytes[..CRC_OFFSET]) != crc {
            return Err(corrupt("header checksum mismatch"));
        }
        if u32_at(12) as usize != HEADER_PAGE {
            return Err(corrupt("unexpected header page size"));
        }
        let header = Header {
            kind,
            version,
            dim: u32_at(16),
            elem_type: u32_at(20),
            metric: u32_at(24),
            max_neighbours: u32_at(28),
            stride: u64_at(32),
            capacity: u64_at(40),
            index_uid: u64_at(48),
        };
        if header.stride == 0
            || !header.stride.is_multiple_of(kind.slot_align() as u64)
            || header.stride > 1 << 24
        {
            return Err(corrupt("slot stride is zero, unaligned or absurd"));
        }
        let needed = header
            .stride
            .checked_mul(header.capacity)
            .and_then(|b| b.checked_add(HEADER_PAGE as u64))
            .ok_or_else(|| corrupt("capacity overflows"))?;
        if file_len < needed {
            return Err(corrupt(&format!(
                "truncated: header promises {needed} bytes, file has {file_len}"
            )));
        }
        Ok(header)
    }
}

/// An open page file.
pub struct PageFile {
    path: PathBuf,
    file: File,
    map: MmapRaw,
    header: Header,
    /// Opened read-only: mapped private, never grown, synced or written back.
    read_only: bool,
    /// Pinned in memory (`pin`): a growth pins the new mapping too.
    /// Slots pinned by `pin`, re-pinned after each growth.
    pinned: Option<usize>,
}

impl PageFile {
    /// Creates (or replaces) a page file with `header.capacity` zeroed slots and syncs it.
    pub fn create(path: &Path, header: Header) -> Result<PageFile> {
        debug_assert!((header.stride as usize).is_multiple_of(header.kind.slot_align()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .at(path)?;
        let len = HEADER_PAGE as u64 + header.stride * header.capacity;
        allocate(&file, len).at(path)?;
        let map = MmapOptions::new().map_raw(&file).at(path)?;
        let file = PageFile {
            path: path.to_path_buf(),
            file,
            map,
            header,
            read_only: false,
            pinned: None,
        };
        file.write_header();
        file.sync()?;
        Ok(file)
    }

    /// Opens a page file, checking magic, version, checksum, kind and length. Reads the
    /// header only: O(1) in the file size.
    ///
    /// `read_only` opens the file read-only and maps it private (copy-on-write): what is
    /// written to its slots (log records replayed into a reader's view) stays in this
    /// process's memory and never reaches the file, which a writer process may be changing
    /// meanwhile. Such a file never grows; it maps every slot its length holds.
    pub fn open(path: &Path, kind: FileKind, read_only: bool) -> Result<PageFile> {
        let file = match OpenOptions::new().read(true).write(!read_only).open(path) {
            // The metadata says an index is here, and every index has this file.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::corrupt(path, "a file of the index is missing"));
            }
            opened => opened.at(path)?,
        };
        let file_len = file.metadata().at(path)?.len();
        if file_len < HEADER_PAGE as u64 {
            return Err(Error::corrupt(path, "file is shorter than its header page"));
        }
        let map = if read_only {
            // SAFETY: a private mapping of a file we only read; other processes may change
            // the file, which is why every slot access goes through atomics or through
            // slots the writer does not change while they are live (see `graph`).
            MmapRaw::from(unsafe { MmapOptions::new().map_copy(&file) }.at(path)?)
        } else {
            MmapOptions::new().map_raw(&file).at(path)?
        };
        // SAFETY: the mapping is at least HEADER_PAGE bytes long (checked above) and
        // nothing else writes to it while we read the header.
        let bytes = unsafe { std::slice::from_raw_parts(map.as_ptr(), HEADER_LEN) };
        let mut header = Header::decode(bytes, file_len, path)?;
        if header.kind != kind {
            return Err(Error::corrupt(path, "file holds the wrong kind of pages"));
        }
        if read_only {
            // A writer grows the file (and syncs its length) before it logs a write to the
            // new slots, and rewrites the header after: the length is what counts.
            header.capacity = (file_len - HEADER_PAGE as u64) / header.stride;
        }
        Ok(PageFile {
            path: path.to_path_buf(),
            file,
            map,
            header,
            read_only,
            pinned: None,
        })
    }

    /// Creates a page file of `kind` for `capacity` slots of `stride` bytes.
    pub fn create_typed(
        path: &Path,
        kind: FileKind,
        identity: FileIdentity,
        max_neighbours: u32,
        stride: usize,
        capacity: usize,
    ) -> Result<PageFile> {
        PageFile::create(
            path,
            Header {
                kind,
                version: FORMAT_VERSION,
                dim: identity.dim,
                elem_type: kind.elem_type(),
                metric: identity.metric,
                max_neighbours,
                stride: stride as u64,
                capacity: capacity as u64,
                index_uid: identity.index_uid,
            },
        )
    }

    /// Opens a page file of `kind` and checks its element type and that its stride is
    /// `stride_for(header)` (`None`: the header's other fields are already absurd).
    pub fn open_typed(
        path: &Path,
        kind: FileKind,
        read_only: bool,
        stride_for: impl FnOnce(&Header) -> Option<usize>,
    ) -> Result<PageFile> {
        let file = PageFile::open(path, kind, read_only)?;
        let h = file.header();
        if h.dim == 0 || h.elem_type != kind.elem_type() || stride_for(h) != Some(h.stride as usize)
        {
            return Err(Error::corrupt(
                path,
                format!(
                    "{} header: bad dimension, element type, neighbour count or stride",
                    kind.name()
                ),
            ));
        }
        Ok(file)
    }

    /// Checks that the file belongs to the index of `identity` and holds at least
    /// `min_slots` slots (the metadata's high-water mark).
    pub fn check_identity(&self, identity: FileIdentity, min_slots: usize) -> Result<()> {
        let h = &self.header;
        if h.index_uid != identity.index_uid {
            return Err(Error::corrupt(&self.path, "file belongs to another index"));
        }
        if h.dim != identity.dim || h.metric != identity.metric {
            return Err(Error::corrupt(
                &self.path,
                "dimension or metric disagrees with the metadata",
            ));
        }
        if (h.capacity as usize) < min_slots {
            return Err(Error::corrupt(
                &self.path,
                "file holds fewer slots than the metadata uses",
            ));
        }
        Ok(())
    }

    /// Advises the kernel how the file will be read: all of it soon (`warm`), or in random
    /// order (no read-ahead: under memory pressure the page cache keeps only the pages
    /// searches touch). A failed hint changes nothing but speed, so its error is ignored.
    pub fn advise(&self, warm: bool) {
        let advice = if warm {
            memmap2::Advice::WillNeed
        } else {
            memmap2::Advice::Random
        };
        let _ = self.map.advise(advice);
    }

    /// Starts reading the pages of slot `i` from disk without waiting for them
    /// (`MADV_WILLNEED`): calling it for a batch of slots before touching any puts all
    /// their reads in flight at once, instead of one page fault after another. A hint:
    /// failure changes nothing but speed.
    pub fn will_need(&self, i: usize) {
        if i >= self.capacity() {
            return;
        }
        let page = 4096;
        let start = HEADER_PAGE + i * self.stride();
        let first = start / page * page;
        let end = (start + self.stride()).div_ceil(page) * page;
        let _ = self.map.advise_range(
            memmap2::Advice::WillNeed,
            first,
            end.min(self.map.len()) - first,
        );
    }

    /// Whether the header page and the first `slots` slots are all in memory now
    /// (`mincore`). False where the kernel cannot say.
    pub fn resident(&self, slots: usize) -> bool {
        all_resident(&self.map, self.span(slots))
    }

    /// Pins the header page and the first `slots` slots in memory (`mlock`), now and
    /// after each growth: the slots in use, not the capacity grown ahead of them, which
    /// nothing reads. Fails (changing nothing) where the process may not lock that much
    /// memory.
    pub fn pin(&mut self, slots: usize) -> std::io::Result<()> {
        lock_prefix(&self.map, self.span(slots))?;
        self.pinned = Some(slots);
        Ok(())
    }

    /// Bytes from the file's start to the end of slot `slots - 1` (the header page and
    /// the first `slots` slots): what `pin(slots)` keeps in memory.
    pub fn span(&self, slots: usize) -> usize {
        (HEADER_PAGE + slots.min(self.capacity()) * self.stride()).min(self.map.len())
    }

    /// Where slot `i` starts in the file.
    pub fn slot_offset(&self, i: usize) -> u64 {
        (HEADER_PAGE + i * self.stride()) as u64
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The header as last written.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.header.capacity as usize
    }

    /// Number of slots the file holds on disk now: more than `capacity` in a read-only
    /// view once the writer has grown the file.
    pub fn capacity_on_disk(&self) -> Result<usize> {
        let len = std::fs::metadata(&self.path)
            .map_err(|e| Error::io(&self.path, e))?
            .len() as usize;
        Ok(len.saturating_sub(HEADER_PAGE) / self.stride().max(1))
    }

    /// Bytes per slot.
    pub fn stride(&self) -> usize {
        self.header.stride as usize
    }

    /// Pointer to the first byte of slot `i`. Valid until the next `grow`.
    ///
    /// Panics if `i` is not below the capacity: callers validate every slot number that
    /// comes from a file before using it, so this check is the last line that keeps a
    /// slot number the validation missed from reading outside the mapping.
    #[inline(always)]
    pub fn slot_ptr(&self, i: usize) -> *mut u8 {
        assert!(
            i < self.capacity(),
            "slot {i} beyond capacity {}",
            self.capacity()
        );
        // SAFETY: `i < capacity` (asserted), and the mapping covers HEADER_PAGE +
        // capacity * stride bytes (checked on open, set on create and grow), so the offset
        // is in bounds.
        unsafe { self.map.as_mut_ptr().add(HEADER_PAGE + i * self.stride()) }
    }

    /// Grows the file to at least `min_capacity` slots, in large steps (x1.5, at least 1024
    /// slots) so that remaps are rare. Existing slots are never rewritten. All pointers from
    /// `slot_ptr` are invalidated: the caller holds exclusive access.
    pub fn grow(&mut self, min_capacity: usize) -> Result<()> {
        if min_capacity <= self.capacity() {
            return Ok(());
        }
        if self.read_only {
            return Err(Error::corrupt(
                &self.path,
                format!(
                    "slot {} is beyond the {} slots of the file",
                    min_capacity - 1,
                    self.capacity()
                ),
            ));
        }
        let new_cap = min_capacity
            .max(self.capacity() + self.capacity() / 2)
            .max(self.capacity() + 1024) as u64;
        let len = HEADER_PAGE as u64 + self.header.stride * new_cap;
        allocate(&self.file, len).at(&self.path)?;
        // The new length must be durable before a header claiming the new capacity can
        // reach the disk (the kernel writes the header page back whenever it likes):
        // otherwise power loss could leave a header promising more slots than the file has.
        failpoints::before_sync(&self.path).at(&self.path)?;
        self.file.sync_all().at(&self.path)?;
        failpoints::synced(&self.path, None);
        // The old mapping stays valid until replaced: an error here leaves the arena as it was.
        let map = MmapOptions::new().map_raw(&self.file).at(&self.path)?;
        self.map = map;
        if let Some(slots) = self.pinned {
            // Best effort: the index works unpinned, only slower under memory pressure.
            let _ = lock_prefix(&self.map, self.span(slots));
        }
        self.header.capacity = new_cap;
        self.write_header();
        Ok(())
    }

    /// Writes data and metadata to stable storage (msync, then fsync for the file length).
    pub fn sync(&self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        self.map.flush().at(&self.path)?;
        failpoints::before_sync(&self.path).at(&self.path)?;
        self.file.sync_all().at(&self.path)?;
        failpoints::synced(&self.path, None);
        Ok(())
    }

    fn write_header(&self) {
        let bytes = self.header.encode();
        // SAFETY: the mapping is at least HEADER_PAGE bytes; the header page is written only
        // here, by a caller with exclusive access (create, grow).
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.map.as_mut_ptr(), HEADER_LEN);
        }
    }
}

/// A page file whose slots each hold one row of `dim` elements (the vectors, the codes):
/// what `Vectors` and `Codes` share.
pub struct RowFile {
    /// The page file.
    pub file: PageFile,
    /// Elements per row.
    pub dim: usize,
}

impl RowFile {
    /// Creates a file of `kind` for `capacity` rows of `identity.dim` elements, slots of
    /// `stride_for(dim, version)` bytes.
    pub fn create(
        path: &Path,
        kind: FileKind,
        identity: FileIdentity,
        capacity: usize,
        stride_for: impl Fn(usize, u32) -> usize,
    ) -> Result<RowFile> {
        let dim = identity.dim as usize;
        let stride = stride_for(dim, FORMAT_VERSION);
        let file = PageFile::create_typed(path, kind, identity, 0, stride, capacity)?;
        Ok(RowFile { file, dim })
    }

    /// Opens a file of `kind` whose slots must be `stride_for(dim, version)` bytes.
    pub fn open(
        path: &Path,
        kind: FileKind,
        read_only: bool,
        stride_for: impl Fn(usize, u32) -> usize,
    ) -> Result<RowFile> {
        let file = PageFile::open_typed(path, kind, read_only, |h| {
            Some(stride_for(h.dim as usize, h.version))
        })?;
        let dim = file.header().dim as usize;
        Ok(RowFile { file, dim })
    }
}

/// Locks the first `len` bytes of `map` in memory as they are first touched
/// (`mlock2(MLOCK_ONFAULT)`), and starts reading all of them in the background
/// (`MADV_WILLNEED`). A plain `mlock` reads the whole prefix before it returns: an open
/// under a budget then waited for every pinned byte to come from disk (130 MB of codes
/// and lists at 1 M × 384), where a search needs only the pages its walk touches.
fn lock_prefix(map: &MmapRaw, len: usize) -> std::io::Result<()> {
    let len = len.min(map.len());
    // SAFETY: `[ptr, ptr + len)` lies inside the live mapping (callers pass at most its
    // length); locking changes only whether the pages stay resident, never their contents.
    let r = unsafe { lock_on_fault(map.as_ptr().cast(), len) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // A hint: failure changes nothing but how soon the pages arrive.
    let _ = map.advise_range(memmap2::Advice::WillNeed, 0, len);
    Ok(())
}

/// Whether the first `len` bytes of `map` are all in memory (`mincore`).
#[cfg(unix)]
fn all_resident(map: &MmapRaw, len: usize) -> bool {
    let len = len.min(map.len());
    let mut pages = vec![0u8; len.div_ceil(page_size())];
    // SAFETY: `[ptr, ptr + len)` lies inside the live mapping, which starts on a page
    // boundary; `pages` holds one byte per page of that range, as mincore writes.
    let r = unsafe { libc::mincore(map.as_mut_ptr().cast(), len, pages.as_mut_ptr().cast()) };
    r == 0 && pages.iter().all(|p| p & 1 == 1)
}

#[cfg(not(unix))]
fn all_resident(_: &MmapRaw, _: usize) -> bool {
    false
}

#[cfg(unix)]
fn page_size() -> usize {
    // SAFETY: sysconf reads no memory of ours.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096).max(1)
}

/// `mlock2(addr, len, MLOCK_ONFAULT)` (Linux 4.4; the libc crate names the flag on
/// Android only).
///
/// # Safety
/// `[addr, addr + len)` must lie inside a live mapping.
#[cfg(target_os = "linux")]
unsafe fn lock_on_fault(addr: *const libc::c_void, len: usize) -> libc::c_int {
    const MLOCK_ONFAULT: libc::c_uint = 1;
    // SAFETY: the caller's range; mlock2 reads no memory.
    unsafe { libc::mlock2(addr, len, MLOCK_ONFAULT) }
}

/// `mlock` where there is no `MLOCK_ONFAULT`: it reads the whole range before returning.
///
/// # Safety
/// `[addr, addr + len)` must lie inside a live mapping.
#[cfg(not(target_os = "linux"))]
unsafe fn lock_on_fault(addr: *const libc::c_void, len: usize) -> libc::c_int {
    // SAFETY: the caller's range; mlock reads no memory.
    unsafe { libc::mlock(addr, len) }
}

/// Extends `file` to `len` bytes with disk blocks actually allocated. A sparse file (plain
/// `set_len`) would report a full disk only when a page of the mapping is first written
/// back or touched, as SIGBUS, killing the process; allocating up front turns it into an
/// error here, before anything is logged.
fn allocate(file: &File, len: u64) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let current = file.metadata()?.len();
        if len > current {
            // SAFETY: posix_fallocate reads only its integer arguments; the descriptor is
            // valid for the lifetime of `file`.
            let rc = unsafe {
                libc::posix_fallocate(
                    file.as_raw_fd(),
                    current as libc::off_t,
                    (len - current) as libc::off_t,
                )
            };
            match rc {
                0 => return Ok(()),
                // Filesystems without fallocate: fall back to a sparse extension.
                libc::EOPNOTSUPP | libc::EINVAL => {}
                err => return Err(std::io::Error::from_raw_os_error(err)),
            }
        }
    }
    file.set_len(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(cap: u64) -> Header {
        Header {
            kind: FileKind::Vectors,
            version: FORMAT_VERSION,
            dim: 4,
            elem_type: 1,
            metric: 1,
            max_neighbours: 0,
            stride: 64,
            capacity: cap,
            index_uid: 42,
        }
    }

    #[test]
    fn header_round_trips() {
        let h = header(10);
        let bytes = h.encode();
        let len = HEADER_PAGE as u64 + 640;
        assert_eq!(Header::decode(&bytes, len, Path::new("x")).unwrap(), h);
    }

    #[test]
    fn header_errors_are_typed() {
        let h = header(10);
        let len = HEADER_PAGE as u64 + 640;
        let mut b = h.encode();
        b[0] = b'X';
        assert!(matches!(
            Header::decode(&b, len, Path::new("x")),
            Err(Error::Corrupt { .. })
        ));
        let mut b = h.encode();
        b[20] ^= 1;
        assert!(matches!(
            Header::decode(&b, len, Path::new("x")),
            Err(Error::Corrupt { .. })
        ));
        let mut newer = h.clone();
        newer.version = FORMAT_VERSION + 1;
        assert!(matches!(
            Header::decode(&newer.encode(), len, Path::new("x")),
            Err(Error::UnsupportedVersion { .. })
        ));
        assert!(matches!(
            Header::decode(&h.encode(), len - 1, Path::new("x")),
            Err(Error::Corrupt { .. })
        ));
    }

    #[test]
    fn written_pages_are_reported_resident() {
        let dir = tempfile::tempdir().unwrap();
        let a = PageFile::create(&dir.path().join("f"), header(64)).unwrap();
        for i in 0..64 {
            // SAFETY: slot i is in bounds and this test is the only user.
            unsafe { *a.slot_ptr(i) = 1 };
        }
        // Written a moment ago, so in memory.
        assert!(a.resident(64));
    }

    #[test]
    fn grow_keeps_slots_and_header() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let mut a = PageFile::create(&p, header(2)).unwrap();
        // SAFETY: slot 1 is in bounds and this test is the only user.
        unsafe { *a.slot_ptr(1) = 7 };
        a.grow(5000).unwrap();
        assert!(a.capacity() >= 5000);
        // SAFETY: as above.
        assert_eq!(unsafe { *a.slot_ptr(1) }, 7);
        a.sync().unwrap();
        drop(a);
        let b = PageFile::open(&p, FileKind::Vectors, false).unwrap();
        assert!(b.capacity() >= 5000);
        assert!(matches!(
            PageFile::open(&p, FileKind::Graph0, false),
            Err(Error::Corrupt { .. })
        ));
    }
}
