//! Compaction: give back the space deletes left behind. Slots freed by deletes are reused
//! by later inserts, but the files never shrink; `compact` rebuilds the index from its
//! live vectors into dense files and swaps the new directory for the old one in one step.
//!
//! The writer lock (redb's lock on `meta.redb`) covers the directory's contents from the
//! first byte read to the moment the compacted index is open under the directory's name:
//! the old index stays open (locked) until after the exchange, and the new metadata is
//! opened (locked) before it. A lock is on the file, not its name, so each moves with its
//! directory: another process that opens the index meanwhile gets `Error::Locked`
//! whichever directory it finds, never an unlocked index whose writes the swap would lose.

use std::path::{Path, PathBuf};

use super::open::sync_dir;
use super::progress::{Progress, QUIET, Tally};
use super::{Index, IndexOptions};
use crate::error::{Error, IoContext, Result};
use crate::store::meta::META_FILE_NAME;
use crate::store::{IdKind, Meta};

/// What a compaction did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compaction {
    /// Live vectors (the same before and after).
    pub live: u64,
    /// Bytes of the index directory before.
    pub bytes_before: u64,
    /// Bytes after.
    pub bytes_after: u64,
}

/// Vectors read and inserted per batch while rebuilding.
const BATCH: usize = 10_000;

impl Index {
    /// Rebuilds the index from its live vectors into dense files (a fresh graph: as good
    /// as a new build of the same vectors), then exchanges the new directory for the old
    /// one atomically (Linux `renameat2(RENAME_EXCHANGE)`) and reopens it.
    ///
    /// It takes the index by value: nothing else writes meanwhile, in this process or
    /// another (the writer lock is held throughout: see the module's documentation).
    /// Readers in other processes keep their views of the old files (still mapped, never
    /// truncated) until they refresh. A crash at any point leaves the old index or the new
    /// one, both whole, plus at worst a `.NAME.compacting-*` directory beside it to delete.
    /// An error after the exchange (the reopen failed) leaves the compacted index in place.
    /// The compacted index runs with this one's `ef` and threads.
    pub fn compact(self) -> Result<(Index, Compaction)> {
        self.compact_progress(QUIET)
    }

    /// `compact`, telling `progress` how many live vectors the rebuild has copied.
    pub fn compact_progress(self, progress: &dyn Progress) -> Result<(Index, Compaction)> {
        self.swap_compacted(|index, staging| index.rebuild(staging, progress))
    }

    /// Writes a compacted copy of this index into a staging directory with `write` (which
    /// leaves it closed and verified), then exchanges it for this one and opens it: the
    /// one path by which a compacted index, rebuilt or relocated, takes the old one's place.
    pub(super) fn swap_compacted(
        mut self,
        write: impl FnOnce(&Index, &Path) -> Result<()>,
    ) -> Result<(Index, Compaction)> {
        self.writable_log()?;
        let dir = self.dir.clone();
        let bytes_before = dir_bytes(&dir)?;
        let staging = Staging::beside(&dir, "compacting")?;
        write(&self, staging.path())?;
        // The copy's files were synced, but not every entry naming them (a code file
        // made after the directory was created): the exchange must not publish a name
        // that power loss could take back.
        sync_dir(staging.path())?;
        // The old index whole and durable under its name: a crash before the exchange
        // leaves it with every write. Nothing can have been written since the copy read
        // it: the index is owned here, and its lock keeps other processes out.
        self.flush()?;
        let live = self.len();
        // Its ef and threads as they are now, not as it was opened with.
        let open_options = self.open_options();
        let locked = Meta::open(
            &staging.path().join(META_FILE_NAME),
            open_options.meta_cache_bytes(),
            false,
        )?;
        // From the exchange on, this index's files are under the staging name: it must
        // not touch them by path again (a checkpoint would write `dir/wal`, now the new
        // index's). It keeps only its lock until the new index is open.
        self.retire();
        exchange(staging.path(), &dir)?;
        sync_dir(staging.parent())?;
        let (mut meta, config, state) = locked;
        meta.renamed(dir.join(META_FILE_NAME));
        let reopened = Index::open_from(&dir, &open_options, None, (meta, config, state))?;
        drop(self);
        // The old files, now under the staging name, go with it.
        drop(staging);
        let bytes_after = dir_bytes(&dir)?;
        Ok((
            reopened,
            Compaction {
                live,
                bytes_before,
                bytes_after,
            },
        ))
    }

    /// Builds a closed, verified copy of the live vectors, payloads and keys in `staging`. The
    /// field indexes are added after the payloads, unchecked: an index whose fields an
    /// older build declared may hold payloads with values of another kind in them, which
    /// an index created with the fields, or `create_field_index` now, would refuse.
    fn rebuild(&self, staging: &Path, progress: &dyn Progress) -> Result<()> {
        let fresh = Index::create(staging, &self.options_for_copy())?;
        let ids = self.ids()?;
        let tally = Tally::start(progress, ids.len() as u64);
        for chunk in ids.chunks(BATCH) {
            let mut rows = Vec::with_capacity(chunk.len() * self.config.dim);
            let mut payloads = Vec::with_capacity(chunk.len());
            for &id in chunk {
                rows.extend_from_slice(&self.get(id)?);
                payloads.push(self.get_payload(id)?.unwrap_or(serde_json::Value::Null));
            }
            match self.config.id_kind {
                IdKind::Int => {
                    fresh.insert_batch_with_payloads(chunk, &rows, &payloads, self.threads())?
                }
                // Each key goes with its vector and payload; the new index numbers them
                // afresh (ids of a string-id index are its own business).
                IdKind::Str => {
                    let keys = chunk
                        .iter()
                        .map(|&id| {
                            self.key_of(id)?.ok_or_else(|| {
                                Error::corrupt(&self.dir, format!("live id {id} has no key"))
                            })
                        })
                        .collect::<Result<Vec<String>>>()?;
                    fresh.insert_keys(&keys, &rows, Some(&payloads))?
                }
            }
            tally.add(chunk.len() as u64);
        }
        for spec in self.fields() {
            fresh.declare_field(spec, false)?;
        }
        check_copy(fresh, ids.len() as u64)?;
        tally.finish();
        Ok(())
    }

    /// This index's construction options (not its fields), sized for its live vectors:
    /// what a compacted copy of it is created with.
    pub(super) fn options_for_copy(&self) -> IndexOptions {
        IndexOptions::new(self.config.dim, self.config.metric)
            .m(self.config.m)
            .ef_construction(self.config.ef_construction)
            .seed(self.config.seed)
            .routing(self.config.routing)
            .storage(self.config.storage)
            .id_kind(self.config.id_kind)
            .capacity(self.len().max(1) as usize)
            .threads(self.threads())
    }

    /// Leaves the index as a holder of its lock only: dropping it then releases the lock
    /// and writes nothing (no checkpoint, no log).
    fn retire(&mut self) {
        self.wal = None;
        self._syncer = None;
    }
}

/// A directory beside another, named for one operation (`.NAME.WHAT-RANDOM`, so that
/// operations never share one) and removed with everything in it when dropped: no
/// failure leaves it behind.
pub(super) struct Staging {
    path: PathBuf,
    parent: PathBuf,
}

impl Staging {
    /// Names (does not create) a staging directory beside `dir`.
    pub(super) fn beside(dir: &Path, what: &str) -> Result<Staging> {
        let name = dir
            .file_name()
            .ok_or_else(|| Error::InvalidOption(format!("{} names no directory", dir.display())))?;
        let parent = dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let path = parent.join(format!(
            ".{}.{what}-{:016x}",
            name.to_string_lossy(),
            rand::random::<u64>()
        ));
        Ok(Staging { path, parent })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// The directory that holds both.
    pub(super) fn parent(&self) -> &Path {
        &self.parent
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        // Best effort: absent if never created or already renamed away.
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Checks a compacted copy whole (`verify`) with `live` vectors, consolidates it (every
/// link to a live node, every live node reachable) and closes it.
pub(super) fn check_copy(copy: Index, live: u64) -> Result<()> {
    let report = copy.verify()?;
    if !report.is_ok() || report.live != live {
        return Err(Error::corrupt(
            &copy.dir,
            format!(
                "the compacted copy does not verify ({} live, {live} expected): {:?}",
                report.live, report.problems
            ),
        ));
    }
    copy.consolidate()?;
    copy.close()
}

/// Swaps two directory entries in one atomic step.
fn exchange(a: &Path, b: &Path) -> Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let ca = CString::new(a.as_os_str().as_bytes())
            .map_err(|_| Error::InvalidOption(format!("{} holds a NUL byte", a.display())))?;
        let cb = CString::new(b.as_os_str().as_bytes())
            .map_err(|_| Error::InvalidOption(format!("{} holds a NUL byte", b.display())))?;
        // SAFETY: both pointers are NUL-terminated strings that outlive the call, which
        // reads them only; AT_FDCWD resolves relative paths as the process does.
        let rc = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                ca.as_ptr(),
                libc::AT_FDCWD,
                cb.as_ptr(),
                libc::RENAME_EXCHANGE,
            )
        };
        if rc != 0 {
            return Err(Error::io(b, std::io::Error::last_os_error()));
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (a, b);
        Err(Error::InvalidOption(
            "compaction needs an atomic directory exchange (Linux renameat2)".into(),
        ))
    }
}

/// Bytes of the files in `dir` and its `wal/`.
pub(super) fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for sub in [dir.to_path_buf(), dir.join("wal")] {
        for entry in std::fs::read_dir(&sub).at(&sub)? {
            let meta = entry.at(&sub)?.metadata().at(&sub)?;
            if meta.is_file() {
                total += meta.len();
            }
        }
    }
    Ok(total)
}
