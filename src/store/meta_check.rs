//! Keeping a damaged `meta.redb` away from redb's panics (issue 23).
//!
//! redb trusts the pages of a file it shut down cleanly: a page damaged since then can
//! make it panic (an `unreachable!()` on a page type it does not know, for one) instead of
//! returning an error. Its integrity check (every page's checksum, on open) turns such
//! damage into `StorageError::Corrupted`, but reads the whole file. So the writer seals
//! the file after each of its commits and on close: `meta.seal` records the file's inode,
//! length, mtime and ctime. A writable open whose file no longer matches its seal (it was
//! changed, copied or restored by anything but hnswdb) runs the check; any other open
//! stays O(1) in the file's size. A wrong seal costs one check, never a refusal.
//!
//! Whatever still panics inside redb (damage the seal cannot see, or read-only opens,
//! which cannot run the check) is caught by [`catch`], quietly: see there.

use std::cell::{Cell, RefCell};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The seal's file, beside `meta.redb`.
fn seal_path(meta: &Path) -> PathBuf {
    meta.with_extension("seal")
}

/// What a seal records of `meta`: (inode, length, mtime ns, ctime ns) with a crc32.
fn stamp(meta: &Path) -> Option<[u8; 36]> {
    let m = std::fs::metadata(meta).ok()?;
    let ns = |s: i64, n: i64| (s as i128 * 1_000_000_000 + n as i128) as u64;
    let fields = [
        m.ino(),
        m.len(),
        ns(m.mtime(), m.mtime_nsec()),
        ns(m.ctime(), m.ctime_nsec()),
    ];
    let mut out = [0u8; 36];
    for (chunk, v) in out.chunks_exact_mut(8).zip(fields) {
        chunk.copy_from_slice(&v.to_le_bytes());
    }
    let crc = crc32fast::hash(&out[..32]);
    out[32..].copy_from_slice(&crc.to_le_bytes());
    Some(out)
}

/// Whether `meta` may have changed since hnswdb last sealed it: no seal, a damaged one, or
/// one of another state of the file.
pub(crate) fn suspect(meta: &Path) -> bool {
    let seal = std::fs::read(seal_path(meta)).ok();
    seal.is_none_or(|s| stamp(meta).is_none_or(|now| s != now))
}

/// Records the file's state as hnswdb leaves it. Not synced, and errors are dropped: a
/// seal lost or stale makes the next writable open check the file, nothing worse.
pub(crate) fn seal(meta: &Path) {
    if let Some(now) = stamp(meta) {
        let _ = std::fs::write(seal_path(meta), now);
    }
}

thread_local! {
    /// Set while this thread runs a call under [`catch`].
    static CATCHING: Cell<bool> = const { Cell::new(false) };
    /// Where and why redb panicked, recorded by the hook for [`catch`].
    static CAUGHT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs, once per process, a panic hook in front of whatever hook was in place. It
/// keeps quiet about a panic raised inside redb on a thread in [`catch`] (recording it for
/// the error instead) and hands every other panic to the previous hook. The hook is
/// process-global, which is why it is a filter and never swapped in and out around a call:
/// a swap would race with other threads' panics and with each other. An application that
/// sets its own hook later replaces this one: redb's panics then reach that hook, and are
/// still caught.
fn install_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let at = info.location().filter(|l| in_redb(l.file()));
            match at {
                Some(at) if CATCHING.get() => {
                    let why = info
                        .payload()
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| info.payload().downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    let file = at.file();
                    let short = &file[file.find("redb-").unwrap_or(0)..];
                    CAUGHT.set(Some(format!("{why} at {short}:{}", at.line())));
                }
                _ => previous(info),
            }
        }));
    });
}

/// Whether a panic's source file is redb's.
fn in_redb(file: &str) -> bool {
    file.contains("/redb-") || file.starts_with("redb-")
}

/// Runs `f`. A panic raised inside redb returns `Err` with where and why, without a word
/// on stderr; any other panic (hnswdb's own, or a caller's callback) unwinds on, as it
/// is a bug and not damage. Under `panic = "abort"` nothing can be caught: the process
/// aborts at redb's panic.
pub(crate) fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    install_hook();
    let outer = CATCHING.replace(true);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CATCHING.set(outer);
    result.map_err(|panic| match CAUGHT.take() {
        Some(why) => why,
        None => std::panic::resume_unwind(panic),
    })
}
