//! Arbitrary bytes patched into a valid index's `meta.redb` (redb's own structures, and
//! every value hnswdb stores there), then every call: any error is fine, a panic or a
//! crash is a bug.
//!
//! A patched file no longer matches its seal, so the writer's open has redb check every
//! page first. An input whose first byte is odd reseals the patched file (as a medium's
//! own decay, which no seal sees, would leave it), so that the path that trusts the file
//! stays fuzzed too: there redb may panic, which hnswdb must catch.
#![no_main]

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use hnswdb_fuzz::{copy_dir, exercise, template};
use libfuzzer_sys::fuzz_target;

/// Writes the seal hnswdb's writer would write for `meta` as it is (`docs/format.md`).
fn seal_as_is(meta: &Path) {
    let m = std::fs::metadata(meta).unwrap();
    let ns = |s: i64, n: i64| (s as i128 * 1_000_000_000 + n as i128) as u64;
    let fields = [
        m.ino(),
        m.len(),
        ns(m.mtime(), m.mtime_nsec()),
        ns(m.ctime(), m.ctime_nsec()),
    ];
    let mut seal: Vec<u8> = fields.iter().flat_map(|v| v.to_le_bytes()).collect();
    seal.extend(crc32fast::hash(&seal).to_le_bytes());
    std::fs::write(meta.with_extension("seal"), seal).unwrap();
}

fuzz_target!(|input: &[u8]| {
    let Some((&mode, patches)) = input.split_first() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("idx");
    copy_dir(template(), &dir);
    let path = dir.join("meta.redb");
    let mut bytes = std::fs::read(&path).unwrap();
    // The input is a list of patches: 4 bytes of offset, 1 of length, then the bytes.
    let mut rest = patches;
    while let [a, b, c, d, n, tail @ ..] = rest {
        let at = u32::from_le_bytes([*a, *b, *c, *d]) as usize % bytes.len();
        let n = (*n as usize).min(tail.len()).min(bytes.len() - at);
        bytes[at..at + n].copy_from_slice(&tail[..n]);
        rest = &tail[n..];
    }
    std::fs::write(&path, &bytes).unwrap();
    if mode % 2 == 1 {
        seal_as_is(&path);
    }
    exercise(&dir);
});
