//! Damages one file of a valid index directory as the input says (which file, where, and
//! with which bytes: written over, or the file cut there), then runs every call on it: any
//! error is fine, a panic or a crash is a bug.
#![no_main]

use hnswdb_fuzz::{copy_dir, exercise, files, template};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let [which, how, a, b, c, d, patch @ ..] = input else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("idx");
    copy_dir(template(), &dir);
    let all = files(&dir);
    let file = &all[*which as usize % all.len()];
    let mut bytes = std::fs::read(file).unwrap();
    let at = u32::from_le_bytes([*a, *b, *c, *d]) as usize % (bytes.len() + 1);
    if how & 1 == 0 {
        let end = (at + patch.len()).min(bytes.len());
        bytes[at..end].copy_from_slice(&patch[..end - at]);
    } else {
        bytes.truncate(at);
        bytes.extend_from_slice(patch);
    }
    std::fs::write(file, &bytes).unwrap();
    exercise(&dir);
});
