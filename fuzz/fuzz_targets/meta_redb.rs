//! Arbitrary bytes patched into a valid index's `meta.redb` (redb's own structures, and
//! every value hnswdb stores there), then every call: any error is fine, a panic or a
//! crash is a bug.
//!
//! A patched file no longer matches its seal, so the writer's open has redb check every
//! page first. An input whose first byte is odd reseals the patched file (as a medium's
//! own decay, which no seal sees, would leave it), so that the path that trusts the file
//! stays fuzzed too: there redb may panic, which hnswdb must catch.
#![no_main]

use hnswdb_fuzz::{copy_dir, exercise, template};
use libfuzzer_sys::fuzz_target;

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
        hnswdb::failpoints::seal_metadata(&path);
    }
    exercise(&dir);
});
