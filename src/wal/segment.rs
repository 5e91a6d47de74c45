//! Log segments: files of crc32-framed records, appended to and read back. They know
//! records and bytes, not what they mean (`record` gives them meaning).
//!
//! Segment `wal/<first LSN, 20 digits>.log`:
//! a 32-byte header (magic `HNSWDBWL`, version, dim, index uid, crc32), then records
//! `len u32 | lsn u64 | kind u8 | payload | crc32 u32`, where `len` counts lsn + kind +
//! payload and the crc covers len, lsn, kind and payload. See `docs/format.md`.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::error::{Error, IoContext, Result};
use crate::failpoints;

const MAGIC: &[u8; 8] = b"HNSWDBWL";
/// Version of the log format.
pub const WAL_VERSION: u32 = 1;
/// Bytes of a segment header.
pub const SEGMENT_HEADER: usize = 32;
/// Frame bytes around a payload: len (4) + lsn (8) + kind (1) + crc (4).
pub const FRAME_OVERHEAD: usize = 17;
/// Largest payload accepted when reading (a corrupt length must not allocate gigabytes).
const MAX_PAYLOAD: usize = 1 << 30;
/// A segment is closed (synced) and a new one started past this size.
const SEGMENT_BYTES: u64 = 64 << 20;

/// One decoded record.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// Log sequence number.
    pub lsn: u64,
    /// Record kind (meaning given by the caller).
    pub kind: u8,
    /// Payload bytes.
    pub payload: Vec<u8>,
}

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

fn segment_name(first_lsn: u64) -> String {
    format!("{first_lsn:020}.log")
}

/// Encodes one record frame.
pub fn encode(lsn: u64, kind: u8, payload: &[u8]) -> Vec<u8> {
    let len = (8 + 1 + payload.len()) as u32;
    let mut out = Vec::with_capacity(FRAME_OVERHEAD + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&lsn.to_le_bytes());
    out.push(kind);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Result of decoding the frame at the start of `bytes`.
enum Frame {
    /// A valid record and its total length in bytes.
    Ok(Record, usize),
    /// The bytes end before the frame does (a torn write).
    Short,
    /// The frame is complete but its checksum or length is wrong; `usize` is its length if
    /// the length field is plausible (so the next frame can be looked at).
    Bad(Option<usize>),
}

fn decode(bytes: &[u8]) -> Frame {
    if bytes.len() < 4 {
        return Frame::Short;
    }
    let len = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
    if !(9..=MAX_PAYLOAD + 9).contains(&len) {
        return Frame::Bad(None);
    }
    let total = 4 + len + 4;
    if bytes.len() < total {
        return Frame::Short;
    }
    let crc = u32::from_le_bytes(bytes[4 + len..total].try_into().unwrap());
    if crc32fast::hash(&bytes[..4 + len]) != crc {
        return Frame::Bad(Some(total));
    }
    let lsn = u64::from_le_bytes(bytes[4..12].try_into().unwrap());
    Frame::Ok(
        Record {
            lsn,
            kind: bytes[12],
            payload: bytes[13..4 + len].to_vec(),
        },
        total,
    )
}

/// What reading the log found.
pub struct Scan {
    /// Every valid record, in order.
    pub records: Vec<Record>,
    /// Bytes dropped from the end of the last segment (a torn or corrupt tail).
    pub truncated_bytes: u64,
    /// One past the last valid LSN seen, if any record was seen (before filtering).
    pub next_lsn: Option<u64>,
}

/// Reads bytes as one segment (header checked), returning its records, the byte offset
/// where valid data ends, and whether what follows is a torn tail (true) or a corrupt
/// record followed by valid data (false, with the offset of the bad record).
fn scan_segment(bytes: &[u8], id: WalIdentity, path: &Path) -> Result<(Vec<Record>, usize, bool)> {
    if bytes.len() < SEGMENT_HEADER {
        // A segment created but never completely written: nothing in it was acknowledged.
        return Ok((Vec::new(), 0, true));
    }
    let h = &bytes[..SEGMENT_HEADER];
    if &h[0..8] != MAGIC {
        return Err(Error::corrupt(path, "not a write-ahead-log segment"));
    }
    let version = u32::from_le_bytes(h[8..12].try_into().unwrap());
    if version > WAL_VERSION {
        return Err(Error::UnsupportedVersion {
            path: path.to_path_buf(),
            found: version,
            supported: WAL_VERSION,
        });
    }
    if crc32fast::hash(&h[..28]) != u32::from_le_bytes(h[28..32].try_into().unwrap()) {
        return Err(Error::corrupt(path, "segment header checksum mismatch"));
    }
    if u32::from_le_bytes(h[12..16].try_into().unwrap()) != id.dim
        || u64::from_le_bytes(h[16..24].try_into().unwrap()) != id.index_uid
    {
        return Err(Error::corrupt(path, "segment belongs to another index"));
    }
    let mut records = Vec::new();
    let mut at = SEGMENT_HEADER;
    while at < bytes.len() {
        match decode(&bytes[at..]) {
            Frame::Ok(r, n) => {
                if let Some(prev) = records.last().map(|p: &Record| p.lsn)
                    && r.lsn != prev + 1
                {
                    return Err(Error::corrupt(
                        path,
                        format!("LSN {} follows {prev}", r.lsn),
                    ));
                }
                records.push(r);
                at += n;
            }
            Frame::Short => return Ok((records, at, true)),
            Frame::Bad(len) => {
                // A bad frame followed by a valid one whose LSN continues the sequence is
                // damage in the middle of the log, not a torn tail.
                let expected = records.last().map(|r| r.lsn + 2);
                let followed = len.is_some_and(|n| match decode(&bytes[at + n..]) {
                    Frame::Ok(next, _) => expected.is_none_or(|e| next.lsn == e),
                    _ => false,
                });
                return Ok((records, at, !followed));
            }
        }
    }
    Ok((records, at, true))
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

/// Reads every record with LSN ≥ `from_lsn`. A torn tail of the last segment is cut off
/// (the file is truncated, unless `read_only`); damage anywhere else is an error, unless
/// `salvage`, which keeps the valid prefix and drops everything after the damage.
pub fn read_all(
    dir: &Path,
    id: WalIdentity,
    from_lsn: u64,
    salvage: bool,
    read_only: bool,
) -> Result<Scan> {
    let segs = segments(dir)?;
    let mut records = Vec::new();
    let mut truncated_bytes = 0;
    let mut next_lsn = None;
    for (i, (_, path)) in segs.iter().enumerate() {
        let bytes = std::fs::read(path).at(path)?;
        let (mut recs, valid_end, torn) = scan_segment(&bytes, id, path)?;
        let last = i + 1 == segs.len();
        if valid_end < bytes.len() {
            let tolerated = salvage || (last && torn);
            if !tolerated {
                return Err(Error::corrupt(
                    path,
                    format!(
                        "damaged record at byte {valid_end} with valid data after it (open with salvage to keep the records before it)"
                    ),
                ));
            }
            truncated_bytes += (bytes.len() - valid_end) as u64;
            if !read_only {
                let f = OpenOptions::new().write(true).open(path).at(path)?;
                f.set_len(valid_end as u64).at(path)?;
                f.sync_all().at(path)?;
            }
        }
        if let (Some(prev), Some(first)) = (
            records.last().map(|r: &Record| r.lsn),
            recs.first().map(|r| r.lsn),
        ) && first != prev + 1
        {
            return Err(Error::corrupt(
                path,
                format!("segment starts at LSN {first} after {prev}"),
            ));
        }
        if let Some(r) = recs.last() {
            next_lsn = Some(r.lsn + 1);
        }
        recs.retain(|r| r.lsn >= from_lsn);
        records.extend(recs);
        if valid_end < bytes.len() && !last {
            // Salvaged: later segments are beyond the damage, so they are dropped too.
            for (_, later) in &segs[i + 1..] {
                truncated_bytes += std::fs::metadata(later).map_or(0, |m| m.len());
                if !read_only {
                    std::fs::remove_file(later).at(later)?;
                }
            }
            break;
        }
    }
    Ok(Scan {
        records,
        truncated_bytes,
        next_lsn,
    })
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

/// The open log, for appending.
pub struct Wal {
    dir: PathBuf,
    id: WalIdentity,
    writer: Mutex<Writer>,
    /// Every record with LSN < `synced` is on stable storage.
    synced: AtomicU64,
    /// Serialises fsyncs; writers that arrive while one runs share the next (group commit).
    sync_lock: Mutex<()>,
}

impl Wal {
    /// Opens the log in `dir` (created if missing) to append after `next_lsn - 1`.
    pub fn open(dir: &Path, id: WalIdentity, next_lsn: u64) -> Result<Wal> {
        std::fs::create_dir_all(dir).at(dir)?;
        let last = segments(dir)?.pop();
        let (file, path, len) = match last {
            Some((_, path)) => {
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&path)
                    .at(&path)?;
                let len = file.metadata().at(&path)?.len();
                if len < SEGMENT_HEADER as u64 {
                    // Torn at creation: rewrite its header.
                    file.set_len(0).at(&path)?;
                    let mut f = file;
                    f.write_all(&segment_header(id, next_lsn)).at(&path)?;
                    (f, path, SEGMENT_HEADER as u64)
                } else {
                    (file, path, len)
                }
            }
            None => Self::new_segment(dir, id, next_lsn)?,
        };
        let mut file = file;
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
            sync_lock: Mutex::new(()),
        })
    }

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

    /// Appends a record (one `write`), returning its LSN. Not yet durable: see `sync_to`.
    /// On failure (a full disk) the segment is cut back to where it was: nothing is half
    /// appended.
    pub fn append(&self, kind: u8, payload: &[u8]) -> Result<u64> {
        let mut w = self.writer.lock();
        if w.len >= SEGMENT_BYTES {
            // Close the full segment durably before starting the next, so that only the
            // last segment can ever have a torn tail.
            w.file.sync_all().at(&w.path)?;
            failpoints::synced(&w.path, Some(w.len));
            let (file, path, len) = Self::new_segment(&self.dir, self.id, w.next_lsn)?;
            *w = Writer {
                file,
                path,
                len,
                next_lsn: w.next_lsn,
                since_checkpoint: w.since_checkpoint,
            };
        }
        let lsn = w.next_lsn;
        let frame = encode(lsn, kind, payload);
        if let Err(e) = w.file.write_all(&frame) {
            let len = w.len;
            let _ = w.file.set_len(len);
            let _ = w.file.seek(SeekFrom::Start(len));
            return Err(Error::io(&w.path, e));
        }
        w.len += frame.len() as u64;
        w.since_checkpoint += frame.len() as u64;
        w.next_lsn += 1;
        Ok(lsn)
    }

    /// Makes every record up to `lsn` durable. Concurrent callers share one fsync.
    pub fn sync_to(&self, lsn: u64) -> Result<()> {
        if self.synced.load(Ordering::Acquire) > lsn {
            return Ok(());
        }
        let _one_at_a_time = self.sync_lock.lock();
        if self.synced.load(Ordering::Acquire) > lsn {
            return Ok(()); // another writer's fsync covered us
        }
        let (file, path, upto, len) = {
            let w = self.writer.lock();
            (
                w.file.try_clone().at(&w.path)?,
                w.path.clone(),
                w.next_lsn,
                w.len,
            )
        };
        // fsync outside the writer lock: appends continue while the disk works.
        file.sync_data().at(&path)?;
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

    const ID: WalIdentity = WalIdentity {
        dim: 4,
        index_uid: 9,
    };

    fn write(dir: &Path, n: u64) -> Wal {
        let wal = Wal::open(dir, ID, 0).unwrap();
        for i in 0..n {
            wal.append(1, &vec![i as u8; 10 + i as usize]).unwrap();
        }
        wal.sync_all().unwrap();
        wal
    }

    fn only_segment(dir: &Path) -> PathBuf {
        segments(dir).unwrap().pop().unwrap().1
    }

    #[test]
    fn records_round_trip() {
        let d = tempfile::tempdir().unwrap();
        drop(write(d.path(), 5));
        let scan = read_all(d.path(), ID, 0, false, false).unwrap();
        assert_eq!(scan.records.len(), 5);
        assert_eq!(scan.records[3].payload, vec![3u8; 13]);
        assert_eq!(
            read_all(d.path(), ID, 3, false, false)
                .unwrap()
                .records
                .len(),
            2
        );
    }

    #[test]
    fn torn_tail_is_truncated_at_every_length() {
        let d = tempfile::tempdir().unwrap();
        drop(write(d.path(), 3));
        let seg = only_segment(d.path());
        let full = std::fs::read(&seg).unwrap();
        let third_starts = full.len() - (FRAME_OVERHEAD + 12);
        for cut in third_starts..full.len() {
            std::fs::write(&seg, &full[..cut]).unwrap();
            let scan = read_all(d.path(), ID, 0, false, false).unwrap();
            assert_eq!(scan.records.len(), 2, "cut at {cut}");
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
        let mut bytes = std::fs::read(&seg).unwrap();
        let record1 = SEGMENT_HEADER + FRAME_OVERHEAD + 10;
        bytes[record1 + 15] ^= 0xff; // inside record 1's payload
        std::fs::write(&seg, &bytes).unwrap();
        assert!(matches!(
            read_all(d.path(), ID, 0, false, true),
            Err(Error::Corrupt { .. })
        ));
        let scan = read_all(d.path(), ID, 0, true, false).unwrap();
        assert_eq!(scan.records.len(), 1);
    }

    #[test]
    fn foreign_segment_is_refused() {
        let d = tempfile::tempdir().unwrap();
        drop(write(d.path(), 1));
        let other = WalIdentity {
            dim: 4,
            index_uid: 10,
        };
        assert!(matches!(
            read_all(d.path(), other, 0, false, true),
            Err(Error::Corrupt { .. })
        ));
    }

    #[test]
    fn checkpoint_drops_old_segments() {
        let d = tempfile::tempdir().unwrap();
        let wal = write(d.path(), 3);
        wal.truncate_before(3).unwrap();
        wal.append(1, b"after").unwrap();
        wal.sync_all().unwrap();
        let scan = read_all(d.path(), ID, 3, false, false).unwrap();
        assert_eq!(scan.records.len(), 1);
        assert_eq!(scan.records[0].lsn, 3);
        assert_eq!(segments(d.path()).unwrap().len(), 1);
    }
}
