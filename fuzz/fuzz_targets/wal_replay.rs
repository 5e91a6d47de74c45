//! Opens an index whose log holds arbitrary bytes: a typed error, or an index that opens
//! and passes `verify`; never a panic.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use hnswdb::{Index, IndexOptions, Metric};
use libfuzzer_sys::fuzz_target;

/// A small index, built once; each input runs on a copy of it.
fn template() -> &'static (tempfile::TempDir, PathBuf, Vec<u8>, u64) {
    static T: OnceLock<(tempfile::TempDir, PathBuf, Vec<u8>, u64)> = OnceLock::new();
    T.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let idx = dir.path().join("idx");
        let index = Index::create(&idx, &IndexOptions::new(2, Metric::L2).threads(1)).unwrap();
        let ids: Vec<u64> = (0..20).collect();
        let rows: Vec<f32> = (0..40).map(|i| (i % 7) as f32).collect();
        index.insert_batch(&ids, &rows).unwrap();
        index.close().unwrap();
        let segment = std::fs::read_dir(idx.join("wal"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let header = std::fs::read(&segment).unwrap()[..32].to_vec();
        let first_lsn: u64 = segment
            .file_stem()
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        (dir, idx, header, first_lsn)
    })
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.join("wal")).unwrap();
    for name in ["vectors", "graph0", "meta.redb"] {
        std::fs::copy(from.join(name), to.join(name)).unwrap();
    }
}

fuzz_target!(|input: &[u8]| {
    let (_keep, idx, header, first_lsn) = template();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("idx");
    copy_dir(idx, &dir);
    let mut log = header.clone();
    if input.first().is_some_and(|b| b & 1 == 1) {
        // Frame the input as version-3 records with valid lengths, LSNs and checksums, so that the
        // decoder and replay see arbitrary payloads, not just checksum failures.
        let mut lsn = *first_lsn;
        for chunk in input[1..].chunks(29) {
            let Some((&kind, payload)) = chunk.split_first() else {
                continue;
            };
            let mut frame = Vec::new();
            frame.extend_from_slice(&(17 + payload.len() as u32).to_le_bytes());
            frame.extend_from_slice(&lsn.to_le_bytes());
            // Kinds 1..=4 are records (4: part of a split insert); 0 is none.
            frame.push(kind % 5);
            // The high bits of the kind byte say how much of the log was durable.
            let durable = (*first_lsn + (kind >> 3) as u64).min(lsn);
            frame.extend_from_slice(&durable.to_le_bytes());
            let header_crc = crc32fast::hash(&frame);
            frame.extend_from_slice(&header_crc.to_le_bytes());
            frame.extend_from_slice(payload);
            let crc = crc32fast::hash(&frame);
            frame.extend_from_slice(&crc.to_le_bytes());
            log.extend_from_slice(&frame);
            lsn += 1;
        }
    } else {
        log.extend_from_slice(input);
    }
    std::fs::write(dir.join("wal").join(format!("{first_lsn:020}.log")), &log).unwrap();
    if let Ok(index) = Index::open(&dir) {
        let report = index.verify().unwrap();
        assert!(
            report.is_ok(),
            "replayed log left problems: {:?}",
            report.problems
        );
    }
});
