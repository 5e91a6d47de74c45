//! Hooks for crash-simulation tests; not part of the stable API.
//!
//! The power-loss test needs to know the moments at which a file reached stable storage
//! (fsync of a log segment, msync of a page file, commit of the metadata) so that it can
//! keep a copy of each file as of its last sync and later mix it with newer contents.

use std::path::Path;

use parking_lot::RwLock;

type Observer = Box<dyn Fn(&Path) + Send + Sync>;

static OBSERVER: RwLock<Option<Observer>> = RwLock::new(None);

/// Installs (or, with `None`, removes) a function called with a file's path each time that
/// file has been made durable. Process-wide.
pub fn set_sync_observer(observer: Option<Observer>) {
    *OBSERVER.write() = observer;
}

/// Reports that `path` was just made durable.
pub(crate) fn synced(path: &Path) {
    if let Some(f) = &*OBSERVER.read() {
        f(path);
    }
}
