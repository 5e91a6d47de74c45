//! Test instrumentation, compiled in only with the `failpoints` feature (as fjall gates its
//! whitebox hooks): release builds carry no hook and no global lock on the sync path.
//!
//! The power-loss test needs to know the moments at which a file reached stable storage
//! (fsync of a log segment, msync of a page file, commit of the metadata) so that it can
//! keep a copy of each file as of its last sync and later mix it with newer contents. The
//! group-commit test makes a log fsync fail.

use std::path::Path;

#[cfg(feature = "failpoints")]
mod observer {
    use std::path::Path;

    use parking_lot::{Mutex, RwLock};

    /// Called with a file's path and, when only a prefix of it is known durable (a log
    /// segment being appended to), that prefix's length.
    pub type Observer = Box<dyn Fn(&Path, Option<u64>) + Send + Sync>;

    pub static OBSERVER: RwLock<Option<Observer>> = RwLock::new(None);

    /// Asked before each sync with the file's path: true makes the sync fail.
    pub type Failure = Box<dyn Fn(&Path) -> bool + Send + Sync>;

    pub static FAILURE: RwLock<Option<Failure>> = RwLock::new(None);

    /// Run by the next log fsync of a segment under the given directory, which then fails.
    pub type LogFailure = (std::path::PathBuf, Box<dyn FnOnce() + Send>);

    pub static FAIL_LOG_SYNC: Mutex<Option<LogFailure>> = Mutex::new(None);
}

/// Makes the next fsync of a log segment under `dir` fail with an I/O error, after running
/// `before` (say, to hold it until other writers wait on it). Process-wide, once.
#[cfg(feature = "failpoints")]
pub fn fail_next_log_sync(dir: &Path, before: Box<dyn FnOnce() + Send>) {
    *observer::FAIL_LOG_SYNC.lock() = Some((dir.to_path_buf(), before));
}

/// Called before the fsync of log segment `path`: the injected failure, if one is due.
#[inline(always)]
pub(crate) fn log_sync(path: &Path) -> std::io::Result<()> {
    #[cfg(feature = "failpoints")]
    {
        let mut armed = observer::FAIL_LOG_SYNC.lock();
        if armed.as_ref().is_some_and(|(dir, _)| path.starts_with(dir)) {
            let (_, before) = armed.take().expect("armed");
            drop(armed);
            before();
            return Err(std::io::Error::other("injected log fsync failure"));
        }
    }
    #[cfg(not(feature = "failpoints"))]
    let _ = path;
    Ok(())
}

/// Installs (or, with `None`, removes) a function called each time a file has been made
/// durable. Process-wide.
#[cfg(feature = "failpoints")]
pub fn set_sync_observer(observer: Option<observer::Observer>) {
    *observer::OBSERVER.write() = observer;
}

/// Installs (or, with `None`, removes) a function asked before each sync of a file (a page
/// file's msync and fsync, a log segment's fsync, a metadata commit): when it returns true,
/// that sync fails with an injected `EIO` instead of running. Process-wide.
#[cfg(feature = "failpoints")]
pub fn set_sync_failure(failure: Option<observer::Failure>) {
    *observer::FAILURE.write() = failure;
}

/// Called before a sync of `path`: the injected failure, if the test hook asks for one.
#[inline(always)]
pub(crate) fn before_sync(path: &Path) -> std::io::Result<()> {
    #[cfg(feature = "failpoints")]
    if let Some(fail) = &*observer::FAILURE.read()
        && fail(path)
    {
        return Err(std::io::Error::from_raw_os_error(libc::EIO));
    }
    #[cfg(not(feature = "failpoints"))]
    let _ = path;
    Ok(())
}

/// Seals `meta` (an index's `meta.redb`) as it is now, as a writer does when it closes
/// (`docs/format.md`, `meta.seal`): damage made before is then invisible to the seal, so
/// that the damage census and the fuzzer reach the opens that trust the file.
#[cfg(feature = "failpoints")]
pub fn seal_metadata(meta: &Path) {
    crate::store::meta_check::seal(meta);
}

/// Reports that `path` was just made durable (up to `len` bytes, if given).
#[inline(always)]
pub(crate) fn synced(path: &Path, len: Option<u64>) {
    #[cfg(feature = "failpoints")]
    if let Some(f) = &*observer::OBSERVER.read() {
        f(path, len);
    }
    #[cfg(not(feature = "failpoints"))]
    let _ = (path, len);
}
