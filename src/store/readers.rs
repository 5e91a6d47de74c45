//! The reader table: which metadata generations the read-only views of an index, in any
//! process, still work on — so that the writer reuses a freed slot only once no view can
//! still read its old content (LMDB's reader table, the same idea).
//!
//! The file `readers` in the index directory (format in `docs/format.md`) is a header and
//! `ENTRIES` entries of 8 bytes, each a little-endian generation. An entry means something
//! only while some open file description holds an OFD write lock on its 8 bytes: a view
//! registers by locking a free entry, and its lock goes away with it — when it is dropped,
//! or when its process dies, however it dies — so a dead reader never holds the writer
//! back. The writer finds the held entries with `F_OFD_GETLK` and reads their generations.
//!
//! A view locks its entry and writes 0 (older than every generation: the writer reuses
//! nothing meanwhile) *before* it reads the metadata, then writes the generation it read.
//! A writer that reads an entry between the lock and the first write sees an older view's
//! generation, which is no newer than the one the new view is about to read: never a
//! reason to reuse too early.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// File name of the reader table in an index directory.
pub const READERS_FILE: &str = "readers";
const MAGIC: &[u8; 8] = b"HNSWDBRT";
const VERSION: u32 = 1;
const HEADER: u64 = 16;
/// Views that can be registered at once, in all processes together.
pub const ENTRIES: u64 = 4096;
const ENTRY: u64 = 8;

fn header() -> [u8; HEADER as usize] {
    let mut h = [0u8; HEADER as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(ENTRIES as u32).to_le_bytes());
    h
}

/// Opens (creating it if absent) the reader table of the index in `dir`. A missing or
/// damaged header is rewritten: entries only count while locked, and a rewrite never
/// touches them. A table of a newer version is refused.
fn open_table(dir: &Path) -> Result<(File, PathBuf)> {
    let path = dir.join(READERS_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    let mut found = [0u8; HEADER as usize];
    let read = file
        .read_at(&mut found, 0)
        .map_err(|e| Error::io(&path, e))?;
    if read == found.len() && &found[..8] == MAGIC {
        let version = u32::from_le_bytes(found[8..12].try_into().expect("4 bytes"));
        if version > VERSION {
            return Err(Error::corrupt(
                &path,
                format!("reader table version {version} is newer than this build's {VERSION}"),
            ));
        }
    }
    if found != header() {
        // Concurrent openers write the same bytes.
        file.write_all_at(&header(), 0)
            .map_err(|e| Error::io(&path, e))?;
    }
    let len = HEADER + ENTRIES * ENTRY;
    if file.metadata().map_err(|e| Error::io(&path, e))?.len() < len {
        file.set_len(len).map_err(|e| Error::io(&path, e))?;
    }
    Ok((file, path))
}

fn entry_lock(kind: libc::c_short, entry: u64) -> libc::flock {
    // SAFETY: flock is a plain C struct for which all-zero bytes are a valid value.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = (HEADER + entry * ENTRY) as libc::off_t;
    lock.l_len = ENTRY as libc::off_t;
    lock
}

/// A registered view's entry in the reader table: released when dropped.
#[derive(Debug)]
pub struct Registration {
    file: File,
    path: PathBuf,
    offset: u64,
}

impl Registration {
    /// Registers a view of the index in `dir` as working on generation 0 (holding back
    /// every freed slot) until `set` names its generation.
    ///
    /// `Ok(None)` when the directory is on a read-only file system: no writer can run
    /// there either, so there is nothing to hold back.
    pub fn register(dir: &Path) -> Result<Option<Registration>> {
        let (file, path) = match open_table(dir) {
            Ok(opened) => opened,
            Err(Error::Io { source, .. }) if source.raw_os_error() == Some(libc::EROFS) => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        for entry in 0..ENTRIES {
            let lock = entry_lock(libc::F_WRLCK as libc::c_short, entry);
            // SAFETY: a valid descriptor and a valid flock for the duration of the call.
            let taken = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &lock) };
            if taken == 0 {
                let registration = Registration {
                    file,
                    path,
                    offset: HEADER + entry * ENTRY,
                };
                registration.set(0)?;
                return Ok(Some(registration));
            }
            let err = std::io::Error::last_os_error();
            if !matches!(err.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) {
                return Err(Error::io(&path, err));
            }
        }
        Err(Error::InvalidOption(format!(
            "{}: {ENTRIES} read-only views are open already",
            path.display()
        )))
    }

    /// Records that the view now works on `generation`.
    pub fn set(&self, generation: u64) -> Result<()> {
        self.file
            .write_all_at(&generation.to_le_bytes(), self.offset)
            .map_err(|e| Error::io(&self.path, e))
    }
}

/// The writer's side of the table.
#[derive(Debug)]
pub struct ReaderTable {
    file: File,
    path: PathBuf,
}

impl ReaderTable {
    /// Opens (or creates) the reader table of the index in `dir`.
    pub fn open(dir: &Path) -> Result<ReaderTable> {
        let (file, path) = open_table(dir)?;
        Ok(ReaderTable { file, path })
    }

    /// The oldest generation a registered view works on, or `None` if none is registered.
    pub fn oldest(&self) -> Result<Option<u64>> {
        let mut oldest: Option<u64> = None;
        let mut entry = 0;
        while entry < ENTRIES {
            let mut lock = entry_lock(libc::F_WRLCK as libc::c_short, entry);
            lock.l_len = ((ENTRIES - entry) * ENTRY) as libc::off_t;
            // SAFETY: a valid descriptor and a valid flock the call may write into.
            let r = unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_OFD_GETLK, &mut lock) };
            if r != 0 {
                return Err(Error::io(&self.path, std::io::Error::last_os_error()));
            }
            if lock.l_type == libc::F_UNLCK as libc::c_short {
                break;
            }
            // The first held entry at or after `entry`.
            let held = (lock.l_start as u64).saturating_sub(HEADER) / ENTRY;
            let mut bytes = [0u8; 8];
            self.file
                .read_exact_at(&mut bytes, HEADER + held * ENTRY)
                .map_err(|e| Error::io(&self.path, e))?;
            let generation = u64::from_le_bytes(bytes);
            oldest = Some(oldest.map_or(generation, |o| o.min(generation)));
            entry = held.max(entry) + 1;
        }
        Ok(oldest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_registered_view_counts_until_it_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let table = ReaderTable::open(dir.path()).unwrap();
        assert_eq!(table.oldest().unwrap(), None);
        let a = Registration::register(dir.path()).unwrap().unwrap();
        assert_eq!(
            table.oldest().unwrap(),
            Some(0),
            "registered, generation not yet set"
        );
        a.set(7).unwrap();
        let b = Registration::register(dir.path()).unwrap().unwrap();
        b.set(9).unwrap();
        assert_eq!(table.oldest().unwrap(), Some(7));
        drop(a);
        assert_eq!(table.oldest().unwrap(), Some(9));
        drop(b);
        assert_eq!(table.oldest().unwrap(), None);
    }

    #[test]
    fn a_damaged_header_is_rewritten_and_a_newer_version_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(READERS_FILE), b"garbage").unwrap();
        let table = ReaderTable::open(dir.path()).unwrap();
        let a = Registration::register(dir.path()).unwrap().unwrap();
        a.set(3).unwrap();
        assert_eq!(table.oldest().unwrap(), Some(3));
        let mut newer = header();
        newer[8..12].copy_from_slice(&(VERSION + 1).to_le_bytes());
        std::fs::write(dir.path().join(READERS_FILE), newer).unwrap();
        assert!(matches!(
            ReaderTable::open(dir.path()),
            Err(Error::Corrupt { .. })
        ));
    }

    #[test]
    fn a_reader_in_a_killed_process_holds_nothing() {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let table = ReaderTable::open(dir.path()).unwrap();
        let path = dir.path().join(READERS_FILE);
        // A child process locks entry 0 (a POSIX lock: OFD locks see it) and is killed
        // without releasing it.
        let Ok(mut child) = std::process::Command::new("python3")
            .arg("-c")
            .arg(format!(
                "import fcntl,os,sys,time\nf=os.open('{}',os.O_RDWR)\n\
                 fcntl.lockf(f,fcntl.LOCK_EX|fcntl.LOCK_NB,8,{HEADER},0)\n\
                 print('locked',flush=True)\ntime.sleep(60)",
                path.display()
            ))
            .stdout(std::process::Stdio::piped())
            .spawn()
        else {
            eprintln!("no python3: skipped");
            return;
        };
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "locked");
        assert_eq!(table.oldest().unwrap(), Some(0), "the child's entry counts");
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(table.oldest().unwrap(), None, "a dead reader holds nothing");
    }
}
