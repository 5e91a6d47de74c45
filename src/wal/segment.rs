//! Log segments: the files `wal/<first LSN, 20 digits>.log`, each a 32-byte header (magic
//! `HNSWDBWL`, version, dim, index uid, crc32) followed by frames (`frame`). Appending,
//! group-committed fsyncs, reading every segment back, and cutting a torn tail off. They
//! know records and bytes, not what they mean (`record` gives them meaning).

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Condvar, Mutex};

use super::frame::{self, Record};
use crate::error::{Error, IoContext, Result};
use crate::failpoints;

const MAGIC: &[u8; 8] = b"HNSWDBWL";
/// Version of the log format: 2 adds a crc over each frame's header, 3 the LSN up to which
/// the log was durable when the frame was appended (see `frame`), 4 the keyed record
/// kinds of string-id indexes (`record`; frames as in 3). A build that reads only up to
/// 3 refuses such a log as newer instead of failing on a kind it does not know.
pub const WAL_VERSION: u32 = 4;
/// Bytes of a segment header.
pub const SEGMENT_HEADER: usize = 32;
/// A segment is closed (synced) and a new one started past this size.
const SEGMENT_BYTES: u64 = 64 << 20;

/// Identity a segment header must carry to belong to this index.
#[derive(Clone, Copy, Debug)]
pub struct WalIdentity {
    /// Vector dimension.
    pub dim: u32,
    /// Index uid (as in the page-file headers).
    pub index_uid: u64,
}

fn segment_header(id: WalIdentity, first_lsn: u64) -> [u8; SEGMENT_HEADER] {
    let mut b = [0u8; SEGMENT_HEADER];
    b[0..8].copy_from_slice(MAGIC);
    b[8..12].copy_from_slice(&WAL_VERSION.to_le_bytes());
    b[12..16].copy_from_slice(&id.dim.to_le_bytes());
    b[16..24].copy_from_slice(&id.index_uid.to_le_bytes());
    // Bytes 24..28: low 32 bits of the first LSN, a cross-check of the file name.
    b[24..28].copy_from_slice(&(first_lsn as u32).to_le_bytes());
    let crc = crc32fast::hash(&b[..28]);
    b[28..32].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Checks a segment header; returns the segment's format version.
fn check_header(h: &[u8], id: WalIdentity, path: &Path) -> Result<u32> {
    if &h[0..8] != MAGIC {
        return Err(Error::corrupt(path, "not a write-ahead-log segment"));
    }
    let version = u32::from_le_bytes(h[8..12].try_into().expect("4 bytes"));
    if version > WAL_VERSION {
        return Err(Error::UnsupportedVersion {
            path: path.to_path_buf(),
            found: version,
            supported: WAL_VERSION,
        });
    }
    if version == 0 {
        return Err(Error::corrupt(path, "segment format version 0"));
    }
    if crc32fast::hash(&h[..28]) != u32::from_le_bytes(h[28..32].try_into().expect("4 bytes")) {
        return Err(Error::corrupt(path, "segment header checksum mismatch"));
    }
    if u32::from_le_bytes(h[12..16].try_into().expect("4 bytes")) != id.dim
        || u64::from_le_bytes(h[16..24].try_into().expect("8 bytes")) != id.index_uid
    {
        return Err(Error::corrupt(path, "segment belongs to another index"));
    }
    Ok(version)
}

fn segment_name(first_lsn: u64) -> String {
    format!("{first_lsn:020}.log")
}

/// Lists the segment files of `dir` in LSN order.
fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".log")) else {
            continue;
        };
        let Ok(first) = stem.parse::<u64>() else {
            continue;
        };
        out.push((first, entry.path()));
    }
    out.sort();
    Ok(out)
}

/// A place in the log: a segment and a byte offset in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    /// The segment file.
    pub segment: PathBuf,
    /// Byte offset from the start of the file.
    pub offset: u64,
}

/// What reading the log found. Reading changes nothing; `cut` drops what should go.
pub struct Scan {
    /// Every valid record with LSN ≥ the one asked for, in order, with where it starts.
    pub records: Vec<(Record, Position)>,
    /// Where the valid log ends, if anything follows it (a torn tail, or with salvage the
    /// damage and all after it): the place to `cut` before appending.
    pub tail: Option<Position>,
    /// The LSN appends to the log as read would continue at: one past the last valid
    /// record (before filtering), or the first LSN of a last segment that holds none.
    /// `None` if there is no segment.
    pub next_lsn: Option<u64>,
}

/// Reads every record with LSN ≥ `from_lsn`, changing nothing. A torn tail of the last
/// segment is reported in `tail`; damage anywhere (a bad frame with a valid one after it,
/// in any segment, or a bad frame in a segment that is not the last) is `Error::Corrupt`,
/// unless `salvage`, which keeps the valid prefix and reports everything after the damage
/// in `tail`.
pub fn read_all(dir: &Path, id: WalIdentity, from_lsn: u64, salvage: bool) -> Result<Scan> {
    let segs = segments(dir)?;
    // A checkpoint drops only segments wholly before it, so the log must start at or
    // before the checkpoint's LSN: a later start means records are missing (a damaged
    // metadata file that fell back to an older checkpoint, say).
    if let Some((first, path)) = segs.first()
        && *first > from_lsn
    {
        return Err(Error::corrupt(
            path,
            format!(
                "the log starts at LSN {first}, but the checkpoint needs the records from {from_lsn} on"
            ),
        ));
    }
    let mut records: Vec<(Record, Position)> = Vec::new();
    let mut next_lsn = None;
    let mut last_lsn: Option<u64> = None;
    for (i, (first_lsn, path)) in segs.iter().enumerate() {
        let bytes = std::fs::read(path).at(path)?;
        let last_segment = i + 1 == segs.len();
        next_lsn = next_lsn.max(Some(*first_lsn));
        if bytes.len() < SEGMENT_HEADER {
            // Created but never completely written (a crash right after the rotation): no
            // record was ever in it. Only the last segment can be in that state.
            if last_segment || salvage {
                let tail = (!bytes.is_empty() || !last_segment).then(|| Position {
                    segment: path.clone(),
                    offset: 0,
                });
                return Ok(Scan {
                    records,
                    tail,
                    next_lsn,
                });
            }
            return Err(Error::corrupt(path, "segment shorter than its header"));
        }
        let version = check_header(&bytes[..SEGMENT_HEADER], id, path)?;
        if u32::from_le_bytes(bytes[24..28].try_into().expect("4 bytes")) != *first_lsn as u32 {
            return Err(Error::corrupt(
                path,
                "segment header and file name disagree on its first LSN",
            ));
        }
        let frames = frame::scan(&bytes[SEGMENT_HEADER..], version, *first_lsn, path)?;
        if let Some((r, _)) = frames.records.first()
            && r.lsn != *first_lsn
        {
            return Err(Error::corrupt(
                path,
                format!("segment of LSN {first_lsn} on starts with record {}", r.lsn),
            ));
        }
        if let (Some(prev), Some((first, _))) = (last_lsn, frames.records.first())
            && first.lsn != prev + 1
        {
            return Err(Error::corrupt(
                path,
                format!("segment starts at LSN {} after {prev}", first.lsn),
            ));
        }
        if let Some((r, _)) = frames.records.last() {
            last_lsn = Some(r.lsn);
            next_lsn = Some(r.lsn + 1);
        }
        records.extend(
            frames
                .records
                .into_iter()
                .filter(|(r, _)| r.lsn >= from_lsn)
                .map(|(r, at)| {
                    let offset = (SEGMENT_HEADER + at) as u64;
                    let segment = path.clone();
                    (r, Position { segment, offset })
                }),
        );
        let end = SEGMENT_HEADER + frames.end;
        if end < bytes.len() {
            let torn = !frames.damaged && last_segment;
            if !torn && !salvage {
                return Err(Error::corrupt(
                    path,
                    format!(
                        "damaged record at byte {end} with valid data after it (open with \
                         salvage to keep the records before it)"
                    ),
                ));
            }
            let tail = Position {
                segment: path.clone(),
                offset: end as u64,
            };
            return Ok(Scan {
                records,
                tail: Some(tail),
                next_lsn,
            });
        }
    }
    Ok(Scan {
        records,
        tail: None,
        next_lsn,
    })
}

/// The start of the log's first segment, if any: cutting there drops the whole log.
pub fn start(dir: &Path) -> Result<Option<Position>> {
    Ok(segments(dir)?
        .into_iter()
        .next()
        .map(|(_, segment)| Position { segment, offset: 0 }))
}

/// Drops everything from `at` on: the rest of its segment (all of it, file included, at
/// offset 0) and every later segment. Returns the bytes dropped.
pub fn cut(dir: &Path, at: &Position) -> Result<u64> {
    let mut dropped = 0;
    for (_, path) in segments(dir)? {
        if path == at.segment && at.offset > 0 {
            let f = OpenOptions::new().write(true).open(&path).at(&path)?;
            dropped += f.metadata().at(&path)?.len().saturating_sub(at.offset);
            f.set_len(at.offset).at(&path)?;
            f.sync_all().at(&path)?;
        } else if path >= at.segment {
            dropped += std::fs::metadata(&path).map_or(0, |m| m.len());
            std::fs::remove_file(&path).at(&path)?;
        }
    }
    sync_dir(dir)?;
    Ok(dropped)
}

/// The bytes `cut(dir, at)` would drop, without dropping them.
pub fn bytes_after(dir: &Path, at: &Position) -> Result<u64> {
    let mut bytes = 0;
    for (_, path) in segments(dir)? {
        let len = std::fs::metadata(&path).at(&path)?.len();
        if path == at.segment {
            bytes += len.saturating_sub(at.offset);
        } else if path > at.segment {
            bytes += len;
        }
    }
    Ok(bytes)
}

struct Writer {
    file: File,
    path: PathBuf,
    /// Length of the current segment.
    len: u64,
    next_lsn: u64,
    /// Bytes appended since the last checkpoint.
    since_checkpoint: u64,
}

/// Why a log fsync failed: kept to give every writer that waited on it the same error.
#[derive(Clone)]
struct SyncFailure {
    path: PathBuf,
    kind: io::ErrorKind,
    message: String,
}

impl SyncFailure {
    fn new(path: &Path, e: &io::Error) -> SyncFailure {
        SyncFailure {
            path: path.to_path_buf(),
            kind: e.kind(),
            message: e.to_string(),
        }
    }

    fn error(&self) -> Error {
        Error::io(&self.path, io::Error::new(self.kind, self.message.clone()))
    }
}

/// Group commit: one writer at a time (the leader) fsyncs everything appended so far;
/// writers whose records its fsync will not cover wait for it, then one of them leads the
/// next. So N writers that append while an fsync runs share the next one.
#[derive(Default)]
struct Commit {
    /// An fsync is running.
    leading: bool,
    /// Set by a failed fsync, for good: the log is poisoned. Linux may drop the dirty
    /// pages a failed fsync could not write and report success to the next one, so no
    /// record that was not durable before the failure may ever be acknowledged.
    failed: Option<SyncFailure>,
}

/// The open log, for appending.
pub struct Wal {
    dir: PathBuf,
    id: WalIdentity,
    writer: Mutex<Writer>,
    /// Every record with LSN < `synced` is on stable storage. Each frame carries its
    /// value at append time (`frame`'s durable_lsn).
    synced: AtomicU64,
    commit: Mutex<Commit>,
    /// Signalled when an fsync ends (successfully or not).
    committed: Condvar,
}

impl Wal {
    /// Opens the log in `dir` (created if missing) to append after `next_lsn - 1`. The
    /// caller has cut any torn tail off (see `read_all`, `cut`). Appends go to the last
    /// segment if it is of the current format version, else to a new one.
    pub fn open(dir: &Path, id: WalIdentity, next_lsn: u64) -> Result<Wal> {
        std::fs::create_dir_all(dir).at(dir)?;
        let current = match segments(dir)?.pop() {
            Some((_, path)) => {
                let mut file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&path)
                    .at(&path)?;
                // What replay read may be in the page cache only (a crash under
                // `Durability::None`); frames appended from now on say that everything
                // before `next_lsn` is durable, so make it so.
                file.sync_data().at(&path)?;
                let len = file.metadata().at(&path)?.len();
                failpoints::synced(&path, Some(len));
                let mut header = [0u8; SEGMENT_HEADER];
                let readable = len >= SEGMENT_HEADER as u64
                    && std::io::Read::read_exact(&mut file, &mut header).is_ok();
                match readable.then(|| check_header(&header, id, &path)) {
                    Some(Ok(WAL_VERSION)) => Some((file, path, len)),
                    // Empty, or an older version: appends start a segment of their own.
                    _ => None,
                }
            }
            None => None,
        };
        let (mut file, path, len) = match current {
            Some(open) => open,
            None => Self::new_segment(dir, id, next_lsn)?,
        };
        file.seek(SeekFrom::End(0)).at(&path)?;
        Ok(Wal {
            dir: dir.to_path_buf(),
            id,
            writer: Mutex::new(Writer {
                file,
                path,
                len,
                next_lsn,
                since_checkpoint: 0,
            }),
            synced: AtomicU64::new(next_lsn),
            commit: Mutex::default(),
            committed: Condvar::new(),
        })
    }

    /// Creates segment `first_lsn` (replacing a file of that name: one only ever holds no
    /// record, as records of `first_lsn` and on are not written yet).
    fn new_segment(dir: &Path, id: WalIdentity, first_lsn: u64) -> Result<(File, PathBuf, u64)> {
        let path = dir.join(segment_name(first_lsn));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .at(&path)?;
        file.write_all(&segment_header(id, first_lsn)).at(&path)?;
        file.sync_all().at(&path)?;
        sync_dir(dir)?;
        failpoints::synced(&path, Some(SEGMENT_HEADER as u64));
        Ok((file, path, SEGMENT_HEADER as u64))
    }

    /// The LSN the next record will get.
    pub fn next_lsn(&self) -> u64 {
        self.writer.lock().next_lsn
    }

    /// Bytes appended since the last checkpoint.
    pub fn bytes_since_checkpoint(&self) -> u64 {
        self.writer.lock().since_checkpoint
    }

    /// Whether an fsync of the log has failed: appends are refused until a reopen.
    pub fn poisoned(&self) -> bool {
        self.commit.lock().failed.is_some()
    }

    /// Appends `records` (kind, payload) with consecutive LSNs, in one `write` to one
    /// segment, returning the last LSN. Not yet durable: see `sync_to`. On failure (a full
    /// disk) the segment is cut back to where it was: none of them is appended. After a
    /// failed fsync, `Error::Poisoned`.
    pub fn append(&self, records: &[(u8, Vec<u8>)]) -> Result<u64> {
        debug_assert!(!records.is_empty());
        let mut w = self.writer.lock();
        if self.poisoned() {
            return Err(Error::Poisoned);
        }
        if w.len >= SEGMENT_BYTES {
            // Close the full segment durably before starting the next, so that only the
            // last segment can ever have a torn tail.
            let synced = failpoints::before_sync(&w.path).and_then(|()| w.file.sync_all());
            if let Err(e) = synced {
                self.commit.lock().failed = Some(SyncFailure::new(&w.path, &e));
                return Err(Error::io(&w.path, e));
            }
            failpoints::synced(&w.path, Some(w.len));
            self.synced.fetch_max(w.next_lsn, Ordering::AcqRel);
            let (file, path, len) = Self::new_segment(&self.dir, self.id, w.next_lsn)?;
            *w = Writer {
                file,
                path,
                len,
                next_lsn: w.next_lsn,
                since_checkpoint: w.since_checkpoint,
            };
        }
        let first = w.next_lsn;
        // Read under the writer lock: no fsync can end between this read and the write
        // having covered less than it says.
        let durable = self.synced.load(Ordering::Acquire);
        let mut bytes = Vec::new();
        for (i, (kind, payload)) in records.iter().enumerate() {
            bytes.extend(frame::encode(first + i as u64, *kind, durable, payload));
        }
        if let Err(e) = w.file.write_all(&bytes) {
            let len = w.len;
            let _ = w.file.set_len(len);
            let _ = w.file.seek(SeekFrom::Start(len));
            return Err(Error::io(&w.path, e));
        }
        w.len += bytes.len() as u64;
        w.since_checkpoint += bytes.len() as u64;
        w.next_lsn += records.len() as u64;
        Ok(w.next_lsn - 1)
    }

    /// Makes every record up to `lsn` (appended already) durable. Concurrent callers
    /// share fsyncs (see `Commit`). If the fsync that was to cover `lsn` fails, every
    /// caller waiting on it gets its error, and so does every later call not covered
    /// before the failure.
    pub fn sync_to(&self, lsn: u64) -> Result<()> {
        if self.synced.load(Ordering::Acquire) > lsn {
            return Ok(());
        }
        let mut commit = self.commit.lock();
        loop {
            if self.synced.load(Ordering::Acquire) > lsn {
                return Ok(()); // another writer's fsync covered us
            }
            if let Some(failed) = &commit.failed {
                return Err(failed.error());
            }
            if !commit.leading {
                break;
            }
            self.committed.wait(&mut commit);
        }
        commit.leading = true;
        drop(commit);
        // Outside every lock: appends continue while the disk works, and join the next
        // group.
        let result = self.sync_appended();
        let mut commit = self.commit.lock();
        commit.leading = false;
        if let Err(failed) = &result {
            commit.failed = Some(failed.clone());
        }
        drop(commit);
        self.committed.notify_all();
        result.map_err(|failed| failed.error())
    }

    /// fsyncs the current segment, covering every record appended before it starts.
    fn sync_appended(&self) -> std::result::Result<(), SyncFailure> {
        let (file, path, upto, len) = {
            let w = self.writer.lock();
            let file = w
                .file
                .try_clone()
                .map_err(|e| SyncFailure::new(&w.path, &e))?;
            (file, w.path.clone(), w.next_lsn, w.len)
        };
        failpoints::log_sync(&path)
            .and_then(|()| failpoints::before_sync(&path))
            .and_then(|()| file.sync_data())
            .map_err(|e| SyncFailure::new(&path, &e))?;
        failpoints::synced(&path, Some(len));
        self.synced.fetch_max(upto, Ordering::AcqRel);
        Ok(())
    }

    /// Makes everything appended so far durable.
    pub fn sync_all(&self) -> Result<()> {
        let last = self.next_lsn();
        if last == 0 {
            return Ok(());
        }
        self.sync_to(last - 1)
    }

    /// After a checkpoint covering every LSN below `checkpoint_lsn`: starts a new segment
    /// and deletes the older ones.
    pub fn truncate_before(&self, checkpoint_lsn: u64) -> Result<()> {
        let mut w = self.writer.lock();
        debug_assert_eq!(
            w.next_lsn, checkpoint_lsn,
            "checkpoint must cover the whole log"
        );
        let (file, path, len) = Self::new_segment(&self.dir, self.id, w.next_lsn)?;
        *w = Writer {
            file,
            path: path.clone(),
            len,
            next_lsn: w.next_lsn,
            since_checkpoint: 0,
        };
        drop(w);
        for (_, old) in segments(&self.dir)? {
            if old != path {
                std::fs::remove_file(&old).at(&old)?;
            }
        }
        sync_dir(&self.dir)
    }
}

/// fsyncs a directory so that file creations and deletions in it are durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::frame::FRAME_OVERHEAD;

    const ID: WalIdentity = WalIdentity {
        dim: 4,
        index_uid: 9,
    };

    /// A log of `n` records from LSN 0, each synced before the next is appended (as under
    /// `Durability::Immediate`), or with one sync at the end only (`Durability::None`).
    fn write_with(dir: &Path, n: u64, sync_each: bool) -> Wal {
        let wal = Wal::open(dir, ID, 0).unwrap();
        for i in 0..n {
            let lsn = wal.append(&[(1, vec![i as u8; 10 + i as usize])]).unwrap();
            if sync_each {
                wal.sync_to(lsn).unwrap();
            }
        }
        wal.sync_all().unwrap();
        wal
    }

    fn write(dir: &Path, n: u64) -> Wal {
        write_with(dir, n, true)
    }

    /// Where record `k` of a log written by `write` starts.
    fn record_at(k: usize) -> usize {
        SEGMENT_HEADER + (0..k).map(|i| FRAME_OVERHEAD + 10 + i).sum::<usize>()
    }

    fn only_segment(dir: &Path) -> PathBuf {
        segments(dir).unwrap().pop().unwrap().1
    }

    fn payloads(scan: &Scan) -> Vec<usize> {
        scan.records.iter().map(|(r, _)| r.payload.len()).collect()
    }

    #[test]
    fn records_round_trip() {
        let d = tempfile::tempdir().unwrap();
        drop(write(d.path(), 5));
        let scan = read_all(d.path(), ID, 0, false).unwrap();
        assert_eq!(payloads(&scan), [10, 11, 12, 13, 14]);
        assert_eq!(scan.records[3].0.payload, vec![3u8; 13]);
        assert_eq!(scan.tail, None);
        assert_eq!(read_all(d.path(), ID, 3, false).unwrap().records.len(), 2);
    }

    #[test]
    fn a_torn_tail_is_reported_and_cut_only_when_asked() {
        let d = tempfile::tempdir().unwrap();
        drop(write(d.path(), 3));
        let seg = only_segment(d.path());
        let full = std::fs::read(&seg).unwrap();
        let third_starts = full.len() - (FRAME_OVERHEAD + 12);
        for cut_at in third_starts + 1..full.len() {
            std::fs::write(&seg, &full[..cut_at]).unwrap();
            let scan = read_all(d.path(), ID, 0, false).unwrap();
            assert_eq!(scan.records.len(), 2, "cut at {cut_at}");
            let tail = scan.tail.expect("a torn tail");
            assert_eq!(tail.offset as usize, third_starts);
            // Reading changed nothing; cutting drops exactly the torn bytes.
            assert_eq!(std::fs::metadata(&seg).unwrap().len() as usize, cut_at);
            assert_eq!(
                cut(d.path(), &tail).unwrap() as usize,
                cut_at - third_starts
            );
            assert_eq!(
                std::fs::metadata(&seg).unwrap().len() as usize,
                third_starts
            );
        }
    }

    #[test]
    fn damage_in_the_middle_is_an_error_unless_salvaged() {
        let d = tempfile::tempdir().unwrap();
        drop(write(d.path(), 4));
        let seg = only_segment(d.path());
        let clean = std::fs::read(&seg).unwrap();
        let record1 = record_at(1);
        // A byte of record 1's payload, and its length field (which version 1 of the
        // format took for a torn tail, dropping records 1 to 3).
        for at in [record1 + 20, record1, record1 + 1] {
            let mut bytes = clean.clone();
            bytes[at] ^= 0x10;
            std::fs::write(&seg, &bytes).unwrap();
            assert!(
                matches!(read_all(d.path(), ID, 0, false), Err(Error::Corrupt { .. })),
                "flip at {at}"
            );
            let scan = read_all(d.path(), ID, 0, true).unwrap();
            assert_eq!(scan.records.len(), 1);
            assert_eq!(scan.tail.unwrap().offset as usize, record1);
        }
    }

    #[test]
    fn foreign_and_newer_segments_are_refused() {
        let d = tempfile::tempdir().unwrap();
        drop(write(d.path(), 1));
        let other = WalIdentity {
            dim: 4,
            index_uid: 10,
        };
        assert!(matches!(
            read_all(d.path(), other, 0, false),
            Err(Error::Corrupt { .. })
        ));
        let seg = only_segment(d.path());
        let mut bytes = std::fs::read(&seg).unwrap();
        bytes[8] = WAL_VERSION as u8 + 1;
        let crc = crc32fast::hash(&bytes[..28]);
        bytes[28..32].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&seg, &bytes).unwrap();
        assert!(matches!(
            read_all(d.path(), ID, 0, false),
            Err(Error::UnsupportedVersion { found, .. }) if found == WAL_VERSION + 1
        ));
    }

    #[test]
    fn a_group_of_records_is_appended_whole() {
        let d = tempfile::tempdir().unwrap();
        let wal = write(d.path(), 2);
        let last = wal
            .append(&[(4, vec![1; 5]), (4, vec![2; 5]), (1, vec![3; 5])])
            .unwrap();
        assert_eq!(last, 4);
        wal.sync_all().unwrap();
        let scan = read_all(d.path(), ID, 0, false).unwrap();
        let kinds: Vec<u8> = scan.records.iter().map(|(r, _)| r.kind).collect();
        assert_eq!(kinds, [1, 1, 4, 4, 1]);
    }

    #[test]
    fn a_hole_in_records_never_synced_is_a_torn_tail_and_appends_continue_before_it() {
        let d = tempfile::tempdir().unwrap();
        drop(write_with(d.path(), 6, false));
        let seg = only_segment(d.path());
        let mut bytes = std::fs::read(&seg).unwrap();
        // Records 2 and 3 zeroed, 4 and 5 intact: writeback stored a later page first.
        let (hole, after) = (record_at(2), record_at(4));
        bytes[hole..after].fill(0);
        std::fs::write(&seg, &bytes).unwrap();
        let scan = read_all(d.path(), ID, 0, false).unwrap();
        assert_eq!(payloads(&scan), [10, 11], "nothing after the hole");
        assert_eq!(scan.next_lsn, Some(2));
        let tail = scan.tail.expect("a torn tail");
        assert_eq!(tail.offset as usize, hole);
        assert_eq!(cut(d.path(), &tail).unwrap() as usize, bytes.len() - hole);
        // The next writer reuses LSN 2 on: the records that had it are gone for good.
        let wal = Wal::open(d.path(), ID, 2).unwrap();
        assert_eq!(wal.append(&[(1, vec![7; 3])]).unwrap(), 2);
        wal.sync_all().unwrap();
        let scan = read_all(d.path(), ID, 0, false).unwrap();
        assert_eq!(payloads(&scan), [10, 11, 3]);
        assert_eq!(scan.tail, None);
    }

    #[test]
    fn a_hole_before_a_record_written_after_its_sync_is_corrupt() {
        let d = tempfile::tempdir().unwrap();
        drop(write(d.path(), 6));
        let seg = only_segment(d.path());
        let mut bytes = std::fs::read(&seg).unwrap();
        bytes[record_at(2)..record_at(4)].fill(0);
        std::fs::write(&seg, &bytes).unwrap();
        assert!(matches!(
            read_all(d.path(), ID, 0, false),
            Err(Error::Corrupt { .. })
        ));
        let scan = read_all(d.path(), ID, 0, true).unwrap();
        assert_eq!(payloads(&scan), [10, 11]);
    }

    #[test]
    fn a_reopened_log_is_synced_before_it_says_so() {
        // Written with no sync at all, then reopened: the new writer's frames say
        // everything before them is durable, which the open makes true. A hole in the old
        // records is then damage.
        let d = tempfile::tempdir().unwrap();
        let wal = Wal::open(d.path(), ID, 0).unwrap();
        for i in 0..3 {
            wal.append(&[(1, vec![i; 10 + i as usize])]).unwrap();
        }
        drop(wal);
        let wal = Wal::open(d.path(), ID, 3).unwrap();
        wal.append(&[(1, vec![3; 13])]).unwrap();
        drop(wal);
        let seg = only_segment(d.path());
        let mut bytes = std::fs::read(&seg).unwrap();
        bytes[record_at(1) + 3] ^= 1;
        std::fs::write(&seg, &bytes).unwrap();
        assert!(matches!(
            read_all(d.path(), ID, 0, false),
            Err(Error::Corrupt { .. })
        ));
    }

    #[test]
    fn concurrent_writers_are_all_durable() {
        let d = tempfile::tempdir().unwrap();
        let wal = Wal::open(d.path(), ID, 0).unwrap();
        let acked = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for t in 0..8u8 {
                let (wal, acked) = (&wal, &acked);
                s.spawn(move || {
                    for i in 0..50u8 {
                        let lsn = wal.append(&[(1, vec![t, i])]).unwrap();
                        wal.sync_to(lsn).unwrap();
                        assert!(wal.synced.load(Ordering::Acquire) > lsn);
                        acked.lock().push(lsn);
                    }
                });
            }
        });
        let mut acked = acked.into_inner();
        acked.sort();
        assert_eq!(acked, (0..400).collect::<Vec<u64>>());
        drop(wal);
        assert_eq!(read_all(d.path(), ID, 0, false).unwrap().records.len(), 400);
    }

    #[test]
    fn a_version_2_log_is_read_and_continued_in_a_version_3_segment() {
        let d = tempfile::tempdir().unwrap();
        let mut bytes = segment_header(ID, 0).to_vec();
        bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
        let crc = crc32fast::hash(&bytes[..28]);
        bytes[28..32].copy_from_slice(&crc.to_le_bytes());
        for lsn in 0..3 {
            bytes.extend(frame::encode_v2(lsn, &[lsn as u8; 10]));
        }
        std::fs::write(d.path().join(segment_name(0)), &bytes).unwrap();
        let wal = Wal::open(d.path(), ID, 3).unwrap();
        assert_eq!(wal.append(&[(1, vec![3; 4])]).unwrap(), 3);
        wal.sync_all().unwrap();
        assert_eq!(segments(d.path()).unwrap().len(), 2, "a segment of its own");
        let scan = read_all(d.path(), ID, 0, false).unwrap();
        assert_eq!(payloads(&scan), [10, 10, 10, 4]);
        assert_eq!(scan.tail, None);
    }

    #[test]
    fn checkpoint_drops_old_segments() {
        let d = tempfile::tempdir().unwrap();
        let wal = write(d.path(), 3);
        wal.truncate_before(3).unwrap();
        wal.append(&[(1, b"after".to_vec())]).unwrap();
        wal.sync_all().unwrap();
        let scan = read_all(d.path(), ID, 3, false).unwrap();
        assert_eq!(scan.records.len(), 1);
        assert_eq!(scan.records[0].0.lsn, 3);
        assert_eq!(segments(d.path()).unwrap().len(), 1);
    }
}
