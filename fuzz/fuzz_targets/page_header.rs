//! Opens arbitrary bytes as a `vectors` and as a `graph0` page file: a typed error or a
//! valid header, never a panic.
#![no_main]

use hnswdb::store::page::{FileKind, Header, PageFile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    // Random bytes almost never carry a valid magic and checksum; for inputs whose first
    // byte is odd, write both in so that the checks behind them are exercised too.
    let mut data = input.to_vec();
    if data.len() >= 128 && data[0] & 1 == 1 {
        let magic: &[u8; 8] = if data[1] & 1 == 0 {
            b"HNSWDBVC"
        } else {
            b"HNSWDBG0"
        };
        data[..8].copy_from_slice(magic);
        let crc = crc32fast::hash(&data[..124]);
        data[124..128].copy_from_slice(&crc.to_le_bytes());
    }
    let data = &data[..];
    // The pure decoder, with the real length and with lengths around the header page.
    let path = std::path::Path::new("fuzz-input");
    for len in [data.len() as u64, 4096, 4096 + 64, u64::MAX] {
        if let Ok(h) = Header::decode(data, len, path) {
            // A header that decodes must describe a file no longer than the one claimed.
            assert!(h.stride.saturating_mul(h.capacity).saturating_add(4096) <= len);
        }
    }
    // The real open path: mmap of a file holding these bytes.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pages");
    std::fs::write(&file, data).unwrap();
    for kind in [FileKind::Vectors, FileKind::Graph0, FileKind::Codes] {
        let _ = PageFile::open(&file, kind, false);
        let _ = PageFile::open(&file, kind, true);
    }
});
