//! Hot backup: a copy of the index as of one moment, taken while writers keep writing.
//!
//! The copy is what a crash at that moment would leave: the metadata as of the latest
//! checkpoint, the page files (any mix of pages from before and after, which recovery is
//! built to accept), and the log copied last, so that every write whose effects reached
//! the copied pages is in the copied log. A checkpoint during the copy would break that
//! (the metadata would be older than the log), so the copy is retried when one happens.
//! The copy is then opened once for writing, which recovers it exactly as after a crash,
//! verified, and closed: the backup is a clean, checkpointed index.

use std::path::{Path, PathBuf};

use super::Index;
use crate::error::{Error, IoContext, Result};
use crate::store::meta::META_FILE_NAME;
use crate::store::readers::READERS_FILE;

/// How often a backup retries after a checkpoint ran during its copy.
const ATTEMPTS: usize = 8;

impl Index {
    /// Copies the index, as of one moment while writes continue, into `dest` (which must
    /// not exist), and checks the copy: it opens on its own and verifies. Returns the
    /// bytes copied. Writers are held up only while the metadata (a few pages) is copied.
    pub fn backup(&self, dest: impl AsRef<Path>) -> Result<u64> {
        let dest = dest.as_ref();
        if dest.exists() {
            return Err(Error::AlreadyExists(dest.to_path_buf()));
        }
        let staging = dest.with_extension("backup-in-progress");
        for _ in 0..ATTEMPTS {
            if staging.exists() {
                std::fs::remove_dir_all(&staging).at(&staging)?;
            }
            let before = self.meta().latest_generation()?;
            let bytes = self.copy_files(&staging)?;
            if self.meta().latest_generation()? != before {
                continue; // a checkpoint ran meanwhile: the copy may straddle it
            }
            // Recover the copy as after a crash, check it, and leave it checkpointed.
            let copy = Index::open(&staging)?;
            let report = copy.verify()?;
            if !report.is_ok() {
                return Err(Error::corrupt(
                    &staging,
                    format!("the backup does not verify: {}", report.problems.join("; ")),
                ));
            }
            copy.close()?;
            std::fs::rename(&staging, dest).at(dest)?;
            return Ok(bytes);
        }
        Err(Error::Meta(format!(
            "backup: the index checkpointed during each of {ATTEMPTS} copies; try again when it writes less"
        )))
    }

    /// Copies the metadata (holding off checkpoints meanwhile), then the page files, then
    /// the log, into `to`. Returns the bytes copied.
    fn copy_files(&self, to: &Path) -> Result<u64> {
        std::fs::create_dir_all(to.join("wal")).at(to)?;
        let mut bytes = 0;
        {
            // A checkpoint (the only writer of meta.redb) holds the ledger throughout.
            let _no_checkpoint = self.ledger.lock();
            bytes += copy(&self.dir.join(META_FILE_NAME), &to.join(META_FILE_NAME))?;
        }
        let mut pages: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .at(&self.dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            // The reader table describes this directory's readers, not the copy's.
            .filter(|p| {
                p.is_file()
                    && p.file_name()
                        .is_some_and(|n| n != META_FILE_NAME && n != READERS_FILE)
            })
            .collect();
        pages.sort();
        for page in pages {
            bytes += copy(&page, &to.join(page.file_name().expect("a file")))?;
        }
        let wal = self.dir.join("wal");
        let mut segments: Vec<PathBuf> = std::fs::read_dir(&wal)
            .at(&wal)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        segments.sort();
        for seg in segments {
            bytes += copy(&seg, &to.join("wal").join(seg.file_name().expect("a file")))?;
        }
        Ok(bytes)
    }
}

/// Copies one file; a file that vanished meanwhile (a stale `codes.N` removed, a log
/// segment dropped by a checkpoint) copies as nothing: the checkpoint check catches what
/// matters.
fn copy(from: &Path, to: &Path) -> Result<u64> {
    match std::fs::copy(from, to) {
        Ok(n) => Ok(n),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(Error::io(from, e)),
    }
}
