//! What the directory fuzz targets share: a small valid index to damage, and a run of
//! every read and write call on whatever the damage left. Any call may return an error;
//! none may panic or crash (libFuzzer reports both).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use hnswdb::{Index, IndexOptions, Metric, OpenOptions};

/// The template: a checkpointed index with SQ8 codes, deletes, and acknowledged writes in
/// its log after the checkpoint, as a crash leaves it. Built once per process.
pub fn template() -> &'static Path {
    static T: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, dir) = T.get_or_init(|| {
        let root = tempfile::tempdir().unwrap();
        let live = root.path().join("live");
        let opts = IndexOptions::new(4, Metric::L2)
            .m(4)
            .ef_construction(16)
            .quantize_after(16)
            .threads(1);
        let index = Index::create(&live, &opts).unwrap();
        let ids: Vec<u64> = (0..60).collect();
        let rows: Vec<f32> = (0..240).map(|i| ((i * 7) % 23) as f32).collect();
        index.insert_batch(&ids, &rows).unwrap();
        index.delete_batch(&[3, 9, 27]).unwrap();
        index.checkpoint().unwrap();
        index.insert(100, &[1.0, 2.0, 3.0, 4.0]).unwrap();
        index.upsert(5, &[4.0, 3.0, 2.0, 1.0]).unwrap();
        index.delete(7).unwrap();
        let copy = root.path().join("template");
        copy_dir(&live, &copy);
        (root, copy)
    });
    dir
}

/// Copies a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The files of an index directory, its log segments included, in a fixed order.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    out.extend(
        std::fs::read_dir(dir.join("wal"))
            .unwrap()
            .map(|e| e.unwrap().path()),
    );
    out.retain(|p| p.is_file());
    out.sort();
    out
}

/// libFuzzer's panic hook aborts at every panic, even one the code under test catches.
/// hnswdb catches, by design, the panics redb raises on some damaged files (they become
/// `Error::Corrupt`); only a panic that escapes hnswdb is a bug. So the hook is replaced
/// by one that reports and lets the panic unwind: one that escapes the call still reaches
/// `fuzz_target!`'s catch, which aborts, and libFuzzer records the crash.
fn contain_panics_as_hnswdb_does() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::panic::set_hook(Box::new(|info| eprintln!("panic: {info}"))));
}

/// Runs every call on the index in `dir`, ignoring their errors.
pub fn exercise(dir: &Path) {
    contain_panics_as_hnswdb_does();
    let index = match Index::open(dir) {
        Ok(index) => index,
        Err(_) => match Index::open_with(dir, &OpenOptions::default().salvage(true)) {
            Ok(index) => index,
            Err(_) => return,
        },
    };
    let _ = index.verify();
    let _ = index.stats();
    if let Ok(ids) = index.ids() {
        for id in ids {
            let _ = index.get(id);
        }
    }
    for q in [[0.0, 0.0, 0.0, 0.0], [5.0, 1.0, 9.0, 2.0]] {
        let _ = index.search(&q, 5);
        let _ = index.search_filtered(&q, 5, 16, |id| id % 2 == 0);
    }
    let _ = index.insert(1000, &[1.0, 1.0, 1.0, 1.0]);
    let _ = index.delete(1);
    let _ = index.consolidate();
    drop(index);
    if let Ok(again) = Index::open(dir) {
        let _ = again.verify();
    }
}
