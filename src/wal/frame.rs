//! Record frames: their bytes, and reading a segment's frames back while telling a torn
//! tail (the end of a write that power loss cut short: never acknowledged, dropped) from
//! damage (bytes changed after they were written: `Error::Corrupt`).
//!
//! Version 3 frame (`docs/format.md`): `len u32 | lsn u64 | kind u8 | durable_lsn u64 |
//! header crc u32 | payload | crc u32`, where `len` counts lsn + kind + durable_lsn +
//! payload, the header crc covers the first 21 bytes and the crc everything before it.
//! The header crc is what makes a damaged length field detectable: without it a length
//! flipped larger reads as a record running past the end of the file, exactly like a torn
//! write. `durable_lsn` (every record below it was fsynced when this one was appended) is
//! what tells a hole that unsynced writeback left before later records (torn) from damage
//! to a record that was durable. Versions 1 (no header crc) and 2 (no `durable_lsn`) are
//! still read, in logs written before version 3.

use std::path::Path;

use crate::error::{Error, Result};

/// Frame bytes around a payload in version 3: len (4) + lsn (8) + kind (1) + durable_lsn
/// (8) + header crc (4) + crc (4).
pub const FRAME_OVERHEAD: usize = 29;
/// Largest payload a frame may carry. Writers split larger writes into several records
/// (see `record`), so a reader can refuse anything longer as damage without ever
/// allocating for a corrupt length.
pub const MAX_PAYLOAD: usize = 1 << 30;

/// Where a frame's fields lie in a log format version.
struct Layout {
    /// Bytes before the payload.
    header: usize,
    /// Bytes `len` counts besides the payload (lsn, kind, and from version 3 durable_lsn).
    fixed: usize,
    /// Whether the header ends with a crc of the bytes before it (from version 2).
    header_crc: bool,
}

fn layout(version: u32) -> Layout {
    match version {
        1 => Layout {
            header: 13,
            fixed: 9,
            header_crc: false,
        },
        2 => Layout {
            header: 17,
            fixed: 9,
            header_crc: true,
        },
        _ => Layout {
            header: 25,
            fixed: 17,
            header_crc: true,
        },
    }
}

/// One decoded record.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// Log sequence number.
    pub lsn: u64,
    /// Record kind (meaning given by `record`).
    pub kind: u8,
    /// Every record with a smaller LSN had been fsynced when this one was appended (0 in
    /// versions 1 and 2, which do not say).
    pub durable_lsn: u64,
    /// Payload bytes.
    pub payload: Vec<u8>,
}

/// Encodes one version-3 frame.
pub fn encode(lsn: u64, kind: u8, durable_lsn: u64, payload: &[u8]) -> Vec<u8> {
    debug_assert!(payload.len() <= MAX_PAYLOAD && durable_lsn <= lsn);
    let len = (17 + payload.len()) as u32;
    let mut out = Vec::with_capacity(FRAME_OVERHEAD + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&lsn.to_le_bytes());
    out.push(kind);
    out.extend_from_slice(&durable_lsn.to_le_bytes());
    let header_crc = crc32fast::hash(&out);
    out.extend_from_slice(&header_crc.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Result of decoding the frame at the start of some bytes.
enum Frame {
    /// A valid record and its total length in bytes.
    Ok(Record, usize),
    /// The bytes end before the frame does, and nothing read so far is wrong: the frame
    /// may be a torn write.
    Short,
    /// Something checked is wrong (a checksum, an impossible length or durable LSN).
    Bad,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Decodes the frame at the start of `bytes`, written in log format `version`. From
/// version 2 the header crc is checked before the length is trusted; version 1 has none.
/// The payload of a record before LSN `keep_from` is checked but not copied (left empty):
/// a replay reads past the records its checkpoint holds.
fn decode(bytes: &[u8], version: u32, keep_from: u64) -> Frame {
    let l = layout(version);
    let trusted_from = if l.header_crc { l.header } else { 4 };
    if bytes.len() < trusted_from {
        return Frame::Short;
    }
    if l.header_crc && crc32fast::hash(&bytes[..l.header - 4]) != u32_at(bytes, l.header - 4) {
        return Frame::Bad;
    }
    let len = u32_at(bytes, 0) as usize;
    if !(l.fixed..=MAX_PAYLOAD + l.fixed).contains(&len) {
        return Frame::Bad;
    }
    // `len` counts the fixed fields and the payload; the payload ends where the crc begins.
    let total = l.header + (len - l.fixed) + 4;
    if bytes.len() < total {
        return Frame::Short;
    }
    if crc32fast::hash(&bytes[..total - 4]) != u32_at(bytes, total - 4) {
        return Frame::Bad;
    }
    let lsn = u64_at(bytes, 4);
    let durable_lsn = if version >= 3 { u64_at(bytes, 13) } else { 0 };
    if durable_lsn > lsn {
        // No writer stamps a record as appended after its own sync.
        return Frame::Bad;
    }
    Frame::Ok(
        Record {
            lsn,
            kind: bytes[12],
            durable_lsn,
            payload: match lsn >= keep_from {
                true => bytes[l.header..total - 4].to_vec(),
                false => Vec::new(),
            },
        },
        total,
    )
}

/// What a segment's bytes hold.
pub struct Frames {
    /// Every valid record with its byte offset, in order.
    pub records: Vec<(Record, usize)>,
    /// Where valid data ends (the segment's length if nothing follows it).
    pub end: usize,
    /// What follows `end`, if anything: `false` for a torn tail, `true` for damage (see
    /// `damage_follows`).
    pub damaged: bool,
}

/// Reads the frames of a segment body (the bytes after its header, or after a place in
/// it) written in format `version`, whose first record is `first_lsn`, checking that LSNs
/// are consecutive. Payloads of records before `keep_from` are left empty.
pub fn scan(
    body: &[u8],
    version: u32,
    first_lsn: u64,
    keep_from: u64,
    path: &Path,
) -> Result<Frames> {
    let mut records: Vec<(Record, usize)> = Vec::new();
    let mut at = 0;
    while at < body.len() {
        let (record, n) = match decode(&body[at..], version, keep_from) {
            Frame::Ok(r, n) => (r, n),
            Frame::Short | Frame::Bad => {
                let last = records.last().map(|(r, _)| r.lsn);
                let damaged = damage_follows(body, at, last, first_lsn, version);
                return Ok(Frames {
                    records,
                    end: at,
                    damaged,
                });
            }
        };
        if let Some((prev, _)) = records.last()
            && record.lsn != prev.lsn + 1
        {
            return Err(Error::corrupt(
                path,
                format!("LSN {} follows {}", record.lsn, prev.lsn),
            ));
        }
        records.push((record, at));
        at += n;
    }
    Ok(Frames {
        records,
        end: at,
        damaged: false,
    })
}

/// Whether the bad frame at offset `at` (after record `last`, if any) is damage rather
/// than a torn write.
///
/// Versions 1 and 2: damage iff a valid frame follows it, as a write that power loss tore
/// was taken to be the last thing in a log. That holds only if the log reaches the disk in
/// order, which the page cache does not promise between fsyncs: a later page can be
/// written back before an earlier one. Version 3: damage iff a later valid frame says
/// (`durable_lsn`) that the bad frame's record had been fsynced before it was appended.
/// Otherwise nothing from the bad frame on was ever known durable, whatever writeback
/// left of it: a torn tail, valid frames in it included.
fn damage_follows(body: &[u8], at: usize, last: Option<u64>, first_lsn: u64, version: u32) -> bool {
    let next = last.map_or(first_lsn, |l| l + 1);
    match version {
        // Version 1's search tries only the LSNs after the last good record (see
        // `frames_after`): with none before the bad frame it has nothing to look for.
        1 if last.is_none() => false,
        1 | 2 => frames_after(body, at, next, version).next().is_some(),
        _ => frames_after(body, at, next, version).any(|r| r.durable_lsn > next),
    }
}

/// The valid frames with an LSN of `next` or more that start after offset `at`: searched
/// for byte by byte (a bad frame's length cannot be trusted; the header crc makes each try
/// cheap), then from each one found on by its length.
fn frames_after(body: &[u8], at: usize, next: u64, version: u32) -> impl Iterator<Item = Record> {
    let mut start = at + 1;
    std::iter::from_fn(move || {
        while start < body.len() {
            let rest = &body[start..];
            // Version 1 frames have no header crc, so a try costs a crc over the whole
            // claimed length: only offsets whose LSN is one of the next few are tried.
            if version < 2 && (rest.len() < 12 || !(next..next + 16).contains(&u64_at(rest, 4))) {
                start += 1;
                continue;
            }
            // Only whether and what follows matters here, not the payloads.
            match decode(rest, version, u64::MAX) {
                Frame::Ok(r, n) if r.lsn >= next => {
                    start += n;
                    return Some(r);
                }
                _ => start += 1,
            }
        }
        None
    })
}

/// A version-2 frame of kind 1, as logs written before version 3 hold them.
#[cfg(test)]
pub fn encode_v2(lsn: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&((9 + payload.len()) as u32).to_le_bytes());
    out.extend_from_slice(&lsn.to_le_bytes());
    out.push(1);
    let header_crc = crc32fast::hash(&out);
    out.extend_from_slice(&header_crc.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` frames from LSN 0, each stamped durable up to `durable(lsn)`.
    fn body_stamped(n: u64, durable: impl Fn(u64) -> u64) -> (Vec<u8>, Vec<usize>) {
        let (mut out, mut starts) = (Vec::new(), Vec::new());
        for lsn in 0..n {
            starts.push(out.len());
            out.extend(encode(
                lsn,
                1,
                durable(lsn),
                &vec![lsn as u8; 10 + lsn as usize],
            ));
        }
        (out, starts)
    }

    /// Frames as a log fsynced after each one (`Durability::Immediate`) holds them.
    fn body(n: u64) -> (Vec<u8>, Vec<usize>) {
        body_stamped(n, |lsn| lsn)
    }

    #[test]
    fn frames_round_trip() {
        let (b, starts) = body(4);
        let f = scan(&b, 3, 0, 0, Path::new("x")).unwrap();
        assert_eq!(f.records.len(), 4);
        assert_eq!(f.records[2].1, starts[2]);
        assert_eq!(f.records[3].0.payload, vec![3u8; 13]);
        assert_eq!(f.records[3].0.durable_lsn, 3);
        assert_eq!((f.end, f.damaged), (b.len(), false));
    }

    #[test]
    fn a_cut_anywhere_in_the_last_frame_is_a_torn_tail() {
        let (b, starts) = body(3);
        for cut in starts[2]..b.len() {
            let f = scan(&b[..cut], 3, 0, 0, Path::new("x")).unwrap();
            assert_eq!(
                (f.records.len(), f.end, f.damaged),
                (2, starts[2], false),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn any_flipped_byte_before_the_last_durable_frame_is_damage() {
        let (b, starts) = body(4);
        // Every byte of frames 0..3, the length fields included: a flipped length used to
        // read as a record running past the end, i.e. as a torn tail.
        for at in 0..starts[3] {
            let mut d = b.clone();
            d[at] ^= 0x40;
            let f = scan(&d, 3, 0, 0, Path::new("x")).unwrap();
            assert!(f.damaged, "flip at byte {at} taken for a torn tail");
            assert!(f.records.len() < 4);
        }
    }

    #[test]
    fn a_hole_before_records_never_synced_is_a_torn_tail() {
        // Appended without a sync in between (`Durability::None`): writeback may have
        // stored records 3 and 4 but not the page holding record 2.
        let (mut b, starts) = body_stamped(5, |_| 0);
        b[starts[2] + 5..starts[3] - 2].fill(0);
        let f = scan(&b, 3, 0, 0, Path::new("x")).unwrap();
        assert_eq!((f.records.len(), f.end, f.damaged), (2, starts[2], false));
        // Records 0 to 1 were synced before 2 to 4 were appended: still a hole in what
        // was never durable.
        let (mut b, starts) = body_stamped(5, |lsn| lsn.min(2));
        b[starts[2]..starts[4]].fill(0);
        let f = scan(&b, 3, 0, 0, Path::new("x")).unwrap();
        assert_eq!((f.records.len(), f.end, f.damaged), (2, starts[2], false));
        // From the very first record of the segment.
        let (mut b, _) = body_stamped(5, |_| 0);
        b[..8].fill(0);
        let f = scan(&b, 3, 0, 0, Path::new("x")).unwrap();
        assert_eq!((f.records.len(), f.end, f.damaged), (0, 0, false));
    }

    #[test]
    fn a_hole_before_a_record_appended_after_its_sync_is_damage() {
        // Record 4 was appended after records up to 2 were synced (a Periodic tick, say):
        // record 2 was durable, so a hole in it is damage, not writeback order.
        let (mut b, starts) = body_stamped(5, |lsn| if lsn == 4 { 3 } else { 0 });
        b[starts[2] + 5..starts[3] - 2].fill(0);
        let f = scan(&b, 3, 0, 0, Path::new("x")).unwrap();
        assert_eq!((f.records.len(), f.end, f.damaged), (2, starts[2], true));
        // A hole in record 3, which record 4's stamp does not cover, is torn.
        let (mut b, _) = body_stamped(5, |lsn| if lsn == 4 { 3 } else { 0 });
        b[starts[3] + 5] ^= 1;
        let f = scan(&b, 3, 0, 0, Path::new("x")).unwrap();
        assert_eq!((f.records.len(), f.damaged), (3, false));
    }

    #[test]
    fn a_record_stamped_durable_past_itself_is_bad() {
        let b = encode(7, 1, 8, b"x");
        let f = scan(&b, 3, 7, 0, Path::new("x")).unwrap();
        assert_eq!((f.records.len(), f.end), (0, 0));
    }

    #[test]
    fn version_2_frames_are_still_read_with_their_rule() {
        let mut b: Vec<u8> = (0..4).flat_map(|lsn| encode_v2(lsn, &[7; 10])).collect();
        let f = scan(&b, 2, 0, 0, Path::new("x")).unwrap();
        assert_eq!(f.records.len(), 4);
        assert_eq!(f.records[1].0.payload, vec![7; 10]);
        // Version 2 does not say what was durable: any valid frame after a bad one
        // makes it damage.
        b[31 + 20] ^= 1;
        let f = scan(&b, 2, 0, 0, Path::new("x")).unwrap();
        assert_eq!((f.records.len(), f.damaged), (1, true));
    }

    /// A version-1 frame, as logs written before version 2 hold them.
    fn encode_v1(lsn: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&((9 + payload.len()) as u32).to_le_bytes());
        out.extend_from_slice(&lsn.to_le_bytes());
        out.push(1);
        out.extend_from_slice(payload);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    #[test]
    fn version_1_frames_are_still_read() {
        let mut b: Vec<u8> = (5..9)
            .flat_map(|lsn| encode_v1(lsn, &[lsn as u8; 7]))
            .collect();
        let f = scan(&b, 1, 5, 0, Path::new("x")).unwrap();
        assert_eq!(
            f.records.iter().map(|(r, _)| r.lsn).collect::<Vec<_>>(),
            [5, 6, 7, 8]
        );
        // A torn last frame, and a damaged payload with valid frames after it.
        let f = scan(&b[..b.len() - 3], 1, 5, 0, Path::new("x")).unwrap();
        assert_eq!((f.records.len(), f.damaged), (3, false));
        b[20] ^= 1;
        let f = scan(&b, 1, 5, 0, Path::new("x")).unwrap();
        assert_eq!(
            (f.records.len(), f.damaged),
            (0, false),
            "no LSN before the damage"
        );
        b[20] ^= 1;
        let frame1 = 24; // 17 bytes of frame + 7 of payload
        b[frame1 + 15] ^= 1; // in its payload

        let f = scan(&b, 1, 5, 0, Path::new("x")).unwrap();
        assert_eq!((f.records.len(), f.damaged), (1, true));
    }
}
