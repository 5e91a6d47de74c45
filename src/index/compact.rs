//! Compaction: give back the space deletes left behind. Slots freed by deletes are reused
//! by later inserts, but the files never shrink; `compact` rebuilds the index from its
//! live vectors into dense files and swaps the new directory for the old one in one step.

use std::path::{Path, PathBuf};

use super::open::sync_dir;
use super::{Index, IndexOptions};
use crate::error::{Error, IoContext, Result};

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
    /// another (the old index stays locked until the exchange). Readers in other processes
    /// keep their views of the old files (still mapped, never truncated) until they
    /// refresh. A crash at any point leaves the old index or the new one, both whole, plus
    /// at worst a `.NAME.compacting-*` directory beside it to delete.
    pub fn compact(self) -> Result<(Index, Compaction)> {
        self.writable_log()?;
        let dir = self.dir.clone();
        let bytes_before = dir_bytes(&dir)?;
        let name = dir
            .file_name()
            .ok_or_else(|| Error::InvalidOption(format!("{} names no directory", dir.display())))?;
        let parent = dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let staging: PathBuf = parent.join(format!(
            ".{}.compacting-{:016x}",
            name.to_string_lossy(),
            rand::random::<u64>()
        ));
        let options = self.fields().into_iter().fold(
            IndexOptions::new(self.config.dim, self.config.metric)
                .m(self.config.m)
                .ef_construction(self.config.ef_construction)
                .seed(self.config.seed)
                .routing(self.config.routing)
                .storage(self.config.storage)
                .capacity(self.len().max(1) as usize)
                .threads(self.threads()),
            IndexOptions::field,
        );
        let rebuilt = (|| -> Result<()> {
            let fresh = Index::create(&staging, &options)?;
            let ids = self.ids()?;
            for chunk in ids.chunks(BATCH) {
                let mut rows = Vec::with_capacity(chunk.len() * self.config.dim);
                let mut payloads = Vec::with_capacity(chunk.len());
                for &id in chunk {
                    rows.extend_from_slice(&self.get(id)?);
                    payloads.push(self.get_payload(id)?.unwrap_or(serde_json::Value::Null));
                }
                fresh.insert_batch_with_payloads(chunk, &rows, &payloads, self.threads())?;
            }
            let report = fresh.verify()?;
            if !report.is_ok() || report.live != ids.len() as u64 {
                return Err(Error::corrupt(
                    &staging,
                    format!("the rebuilt index does not verify: {:?}", report.problems),
                ));
            }
            fresh.consolidate()?;
            fresh.close()
        })();
        if let Err(e) = rebuilt {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
        let live = self.len();
        let open_options = self.options.clone();
        // The old index must be closed (checkpointed, unlocked) before the exchange; its
        // log is then empty, so nothing written since the rebuild read it can be lost:
        // nothing was (the index is owned here).
        self.close()?;
        exchange(&staging, &dir)?;
        sync_dir(parent)?;
        // The old files now sit under the staging name.
        std::fs::remove_dir_all(&staging).at(&staging)?;
        let reopened = Index::open_with(&dir, &open_options)?;
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
fn dir_bytes(dir: &Path) -> Result<u64> {
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
