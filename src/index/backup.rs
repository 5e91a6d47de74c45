//! Hot backup: a copy of the index as of one moment, taken while writers keep writing.
//!
//! The copy is what a crash at that moment would leave: the metadata as of the latest
//! checkpoint, the page files (any mix of pages from before and after, which recovery is
//! built to accept), and the log copied last, so that every write whose effects reached
//! the copied pages is in the copied log. A checkpoint during the copy would break that
//! (the metadata would be older than the log), so the copy is retried when one happens.
//! The copy is then opened once for writing, which recovers it exactly as after a crash,
//! verified, and closed: the backup is a clean, checkpointed index.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::Index;
use super::compact::{Staging, dir_bytes};
use super::open::publish;
use super::progress::{Progress, QUIET, Tally};
use crate::error::{Error, IoContext, Result};
use crate::store::meta::META_FILE_NAME;
use crate::store::readers::READERS_FILE;

/// How often a backup retries after a checkpoint ran during its copy.
const ATTEMPTS: usize = 8;

impl Index {
    /// Copies the index, as of one moment while writes continue, into `dest` (which must
    /// not exist, nor lie inside the index's directory), and checks the copy: it opens on
    /// its own and verifies. Returns the bytes copied. Writers are held up only while the
    /// metadata (a few pages) is copied.
    ///
    /// The copy is built in a directory of its own beside `dest` and renamed onto it
    /// whole; any failure removes it, and its errors name the files under `dest`.
    pub fn backup(&self, dest: impl AsRef<Path>) -> Result<u64> {
        self.backup_progress(dest, QUIET)
    }

    /// `backup`, telling `progress` how many bytes of the index it has copied (a copy
    /// that straddled a checkpoint starts again from 0).
    pub fn backup_progress(&self, dest: impl AsRef<Path>, progress: &dyn Progress) -> Result<u64> {
        let dest = dest.as_ref();
        if dest.exists() {
            return Err(Error::AlreadyExists(dest.to_path_buf()));
        }
        self.refuse_inside(dest)?;
        let staging = Staging::beside(dest, "backup")?;
        let bytes = self
            .backup_into(staging.path(), progress)
            .map_err(|e| renamed(e, staging.path(), dest))?;
        publish(staging.path(), dest, staging.parent())?;
        Ok(bytes)
    }

    /// Copies the index into `staging` until a copy straddles no checkpoint, then
    /// recovers it as after a crash, verifies it and leaves it checkpointed.
    fn backup_into(&self, staging: &Path, progress: &dyn Progress) -> Result<u64> {
        for _ in 0..ATTEMPTS {
            if staging.exists() {
                std::fs::remove_dir_all(staging).at(staging)?;
            }
            let before = self.meta().latest_generation()?;
            let tally = Tally::start(progress, self.bytes_to_copy()?);
            let bytes = self.copy_files(staging, &tally)?;
            if self.meta().latest_generation()? != before {
                continue; // a checkpoint ran meanwhile: the copy may straddle it
            }
            let copy = Index::open(staging)?;
            let report = copy.verify()?;
            if !report.is_ok() {
                return Err(Error::corrupt(
                    staging,
                    format!("the backup does not verify: {}", report.problems.join("; ")),
                ));
            }
            copy.close()?;
            tally.finish();
            return Ok(bytes);
        }
        Err(Error::Meta(format!(
            "backup: the index checkpointed during each of {ATTEMPTS} copies; try again when it writes less"
        )))
    }

    /// The bytes a copy takes as the files are now (they may change while copied:
    /// `Tally` clamps): all but the reader table's.
    fn bytes_to_copy(&self) -> Result<u64> {
        let readers = std::fs::metadata(self.dir.join(READERS_FILE)).map_or(0, |m| m.len());
        Ok(dir_bytes(&self.dir)?.saturating_sub(readers))
    }

    /// A destination inside the index's directory would be copied into itself (and its
    /// debris would then be part of the index): refused before anything is written.
    fn refuse_inside(&self, dest: &Path) -> Result<()> {
        let source = self.dir.canonicalize().at(&self.dir)?;
        // `dest` does not exist: where it would be is where its nearest ancestor is.
        let place = dest
            .ancestors()
            .find_map(|a| match a.as_os_str().is_empty() {
                true => Path::new(".").canonicalize().ok(),
                false => a.canonicalize().ok(),
            });
        match place {
            Some(place) if place.starts_with(&source) => Err(Error::InvalidOption(format!(
                "the backup destination {} is inside the index directory {}",
                dest.display(),
                self.dir.display()
            ))),
            _ => Ok(()),
        }
    }

    /// Copies the metadata (holding off checkpoints meanwhile), then the page files, then
    /// the log, into `to`. Returns the bytes copied.
    fn copy_files(&self, to: &Path, tally: &Tally<'_>) -> Result<u64> {
        std::fs::create_dir_all(to.join("wal")).at(to)?;
        let mut bytes = 0;
        {
            // A checkpoint (the only writer of meta.redb) holds the ledger throughout.
            let _no_checkpoint = self.ledger.lock();
            bytes += copy(
                &self.dir.join(META_FILE_NAME),
                &to.join(META_FILE_NAME),
                tally,
            )?;
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
            bytes += copy(&page, &to.join(page.file_name().expect("a file")), tally)?;
        }
        let wal = self.dir.join("wal");
        let mut segments: Vec<PathBuf> = std::fs::read_dir(&wal)
            .at(&wal)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        segments.sort();
        for seg in segments {
            let target = to.join("wal").join(seg.file_name().expect("a file"));
            bytes += copy(&seg, &target, tally)?;
        }
        Ok(bytes)
    }
}

/// Copies one file; a file that vanished meanwhile (a stale `codes.N` removed, a log
/// segment dropped by a checkpoint) copies as nothing: the checkpoint check catches what
/// matters. A read error names `from`, a write error (a full disk, say) `to`. Counts the
/// bytes in `tally` as they go.
fn copy(from: &Path, to: &Path, tally: &Tally<'_>) -> Result<u64> {
    let mut source = match std::fs::File::open(from) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(from, e)),
    };
    let mut target = std::fs::File::create(to).at(to)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0;
    loop {
        let n = source.read(&mut buf).at(from)?;
        if n == 0 {
            return Ok(bytes);
        }
        target.write_all(&buf[..n]).at(to)?;
        bytes += n as u64;
        tally.add(n as u64);
    }
}

/// `e` with a path under `staging` named under `dest` instead: the staging directory is
/// gone by the time the caller reads the error, and `dest` is the name it knows.
fn renamed(e: Error, staging: &Path, dest: &Path) -> Error {
    let moved = |path: PathBuf| match path.strip_prefix(staging) {
        Ok(rest) => dest.join(rest),
        Err(_) => path,
    };
    match e {
        Error::Io { path, source } => Error::Io {
            path: moved(path),
            source,
        },
        Error::DiskFull { path } => Error::DiskFull { path: moved(path) },
        Error::Corrupt { path, reason } => Error::Corrupt {
            path: moved(path),
            reason,
        },
        e => e,
    }
}
