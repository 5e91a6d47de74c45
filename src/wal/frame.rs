//! Record frames: their bytes, and reading a segment's frames back while telling a torn
//! tail (the end of a write that power loss cut short: never acknowledged, dropped) from
//! damage (bytes changed after they were written: `Error::Corrupt`).
//!
//! Version 2 frame (`docs/format.md`): `len u32 | lsn u64 | kind u8 | header crc u32 |
//! payload | crc u32`, where `len` counts lsn + kind + payload, the header crc covers the
//! first 13 bytes and the crc everything before it. The header crc is what makes a
//! damaged length field detectable: without it a length flipped larger reads as a record
//! running past the end of the file, exactly like a torn write. Version 1 frames (no
//! header crc) are still read, in logs written before version 2.

use std::path::Path;

use crate::error::{Error, Result};

/// Frame bytes around a payload in version 2: len (4) + lsn (8) + kind (1) + header crc
/// (4) + crc (4).
pub const FRAME_OVERHEAD: usize = 21;
/// Bytes of a version-2 frame header (len, lsn, kind, header crc).
const HEADER: usize = 17;
/// Bytes of a version-1 frame header (len, lsn, kind: no header crc).
const HEADER_V1: usize = 13;
/// Largest payload a frame may carry. Writers split larger writes into several records
/// (see `record`), so a reader can refuse anything longer as damage without ever
/// allocating for a corrupt length.
pub const MAX_PAYLOAD: usize = 1 << 30;

/// One decoded record.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// Log sequence number.
    pub lsn: u64,
    /// Record kind (meaning given by `record`).
    pub kind: u8,
    /// Payload bytes.
    pub payload: Vec<u8>,
}

/// Encodes one version-2 frame.
pub fn encode(lsn: u64, kind: u8, payload: &[u8]) -> Vec<u8> {
    debug_assert!(payload.len() <= MAX_PAYLOAD);
    let len = (8 + 1 + payload.len()) as u32;
    let mut out = Vec::with_capacity(FRAME_OVERHEAD + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&lsn.to_le_bytes());
    out.push(kind);
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
    /// Something checked is wrong (a checksum, an impossible length).
    Bad,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// Decodes the frame at the start of `bytes`, written in log format `version`. Version 2
/// checks its header crc before it trusts the length; version 1 has none (its payload
/// starts right after the kind).
fn decode(bytes: &[u8], version: u32) -> Frame {
    let (header, trusted_from) = if version >= 2 {
        (HEADER, HEADER)
    } else {
        (HEADER_V1, 4)
    };
    if bytes.len() < trusted_from {
        return Frame::Short;
    }
    if version >= 2 && crc32fast::hash(&bytes[..13]) != u32_at(bytes, 13) {
        return Frame::Bad;
    }
    let len = u32_at(bytes, 0) as usize;
    if !(9..=MAX_PAYLOAD + 9).contains(&len) {
        return Frame::Bad;
    }
    // `len` counts lsn, kind and payload; the payload ends where the crc begins.
    let total = header + (len - 9) + 4;
    if bytes.len() < total {
        return Frame::Short;
    }
    if crc32fast::hash(&bytes[..total - 4]) != u32_at(bytes, total - 4) {
        return Frame::Bad;
    }
    Frame::Ok(
        Record {
            lsn: u64::from_le_bytes(bytes[4..12].try_into().expect("8 bytes")),
            kind: bytes[12],
            payload: bytes[header..total - 4].to_vec(),
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
    /// What follows `end`, if anything: `false` for a torn tail, `true` for damage (a bad
    /// frame followed by a valid one).
    pub damaged: bool,
}

/// Reads the frames of a segment body (the bytes after its header) written in format
/// `version`, checking that LSNs are consecutive.
pub fn scan(body: &[u8], version: u32, path: &Path) -> Result<Frames> {
    let mut records: Vec<(Record, usize)> = Vec::new();
    let mut at = 0;
    while at < body.len() {
        let (record, n) = match decode(&body[at..], version) {
            Frame::Ok(r, n) => (r, n),
            Frame::Short | Frame::Bad => {
                let last = records.last().map(|(r, _)| r.lsn);
                let damaged = valid_frame_after(body, at, last, version);
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

/// Whether a valid frame (with an LSN after `last`) starts anywhere after offset `at`: a
/// write that power loss tore is the last thing in a log, so anything valid after a bad
/// frame means the bad frame was damaged after it was written. Searches byte by byte, as
/// the bad frame's length cannot be trusted; the header crc makes each try cheap.
fn valid_frame_after(body: &[u8], at: usize, last: Option<u64>, version: u32) -> bool {
    (at + 1..body.len()).any(|start| {
        let rest = &body[start..];
        // Version 1 frames have no header crc, so a try costs a crc over the whole claimed
        // length: only offsets whose LSN is one of the next few are tried.
        if version < 2 {
            let Some(l) = last else { return false };
            if rest.len() < 12 {
                return false;
            }
            let lsn = u64::from_le_bytes(rest[4..12].try_into().expect("8 bytes"));
            if !(l + 1..=l + 16).contains(&lsn) {
                return false;
            }
        }
        match decode(rest, version) {
            Frame::Ok(r, _) => last.is_none_or(|l| r.lsn > l),
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(n: u64) -> (Vec<u8>, Vec<usize>) {
        let (mut out, mut starts) = (Vec::new(), Vec::new());
        for lsn in 0..n {
            starts.push(out.len());
            out.extend(encode(lsn, 1, &vec![lsn as u8; 10 + lsn as usize]));
        }
        (out, starts)
    }

    #[test]
    fn frames_round_trip() {
        let (b, starts) = body(4);
        let f = scan(&b, 2, Path::new("x")).unwrap();
        assert_eq!(f.records.len(), 4);
        assert_eq!(f.records[2].1, starts[2]);
        assert_eq!(f.records[3].0.payload, vec![3u8; 13]);
        assert_eq!((f.end, f.damaged), (b.len(), false));
    }

    #[test]
    fn a_cut_anywhere_in_the_last_frame_is_a_torn_tail() {
        let (b, starts) = body(3);
        for cut in starts[2]..b.len() {
            let f = scan(&b[..cut], 2, Path::new("x")).unwrap();
            assert_eq!(
                (f.records.len(), f.end, f.damaged),
                (2, starts[2], false),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn any_flipped_byte_before_the_last_frame_is_damage() {
        let (b, starts) = body(4);
        // Every byte of frames 0..3, the length fields included: a flipped length used to
        // read as a record running past the end, i.e. as a torn tail.
        for at in 0..starts[3] {
            let mut d = b.clone();
            d[at] ^= 0x40;
            let f = scan(&d, 2, Path::new("x")).unwrap();
            assert!(f.damaged, "flip at byte {at} taken for a torn tail");
            assert!(f.records.len() < 4);
        }
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
        let f = scan(&b, 1, Path::new("x")).unwrap();
        assert_eq!(
            f.records.iter().map(|(r, _)| r.lsn).collect::<Vec<_>>(),
            [5, 6, 7, 8]
        );
        // A torn last frame, and a damaged payload with valid frames after it.
        let f = scan(&b[..b.len() - 3], 1, Path::new("x")).unwrap();
        assert_eq!((f.records.len(), f.damaged), (3, false));
        b[20] ^= 1;
        let f = scan(&b, 1, Path::new("x")).unwrap();
        assert_eq!(
            (f.records.len(), f.damaged),
            (0, false),
            "no LSN before the damage"
        );
        b[20] ^= 1;
        let frame1 = 24; // 17 bytes of frame + 7 of payload
        b[frame1 + 15] ^= 1; // in its payload

        let f = scan(&b, 1, Path::new("x")).unwrap();
        assert_eq!((f.records.len(), f.damaged), (1, true));
    }
}
