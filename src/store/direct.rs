//! Direct, parallel reads of page-file slots: `O_DIRECT` (around the page cache), a batch
//! of slots read with all its reads in flight: one io_uring submission from the searching
//! thread, or, where the kernel refuses io_uring, a small pool of threads doing `pread`s
//! (a batch of 16 took about twice as long that way here: a wake-up and a hand-off per
//! read).
//!
//! For an index far larger than its memory budget: a page-cache read under a memory cap
//! first has to reclaim a page, and that reclaim, not the disk, becomes the cost (on this
//! machine a cold re-rank through the page cache took 2.5 ms per query under a 25 MiB
//! cap and 0.6 ms without one). Reads that skip the page cache cost only the disk.
//!
//! The bytes come from the disk, not from the page cache: only slots whose pages are
//! known to be on disk as they are in memory (written before the last sync) may be read
//! this way; the caller keeps track.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

use io_uring::{IoUring, opcode, types};
use parking_lot::{Condvar, Mutex};

/// `O_DIRECT` transfers must be aligned to the logical block size; a page covers every
/// device this runs on. Buffers are always aligned to it.
const ALIGN: usize = 4096;

/// The smallest logical block size: where the device takes transfers of it (probed at
/// open), a vector is read in 512-byte sectors instead of whole pages. A 1,600-byte f32
/// row of 384-d then costs 2,048 or 2,560 bytes instead of 4,096, or 8,192 for the
/// two rows in five that straddle a page boundary.
const SECTOR: usize = 512;

/// A buffer of `len` bytes aligned to `ALIGN`.
struct Aligned {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the buffer is plain memory owned by this value; moving it between threads is
// as safe as moving a Vec<u8>.
unsafe impl Send for Aligned {}

impl Aligned {
    fn new(len: usize) -> Aligned {
        let layout =
            std::alloc::Layout::from_size_align(len.max(ALIGN), ALIGN).expect("valid layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        Aligned { ptr, len }
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` points at `len` initialised (zeroed, then read into) bytes owned
        // by `self`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, and `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        let layout =
            std::alloc::Layout::from_size_align(self.len.max(ALIGN), ALIGN).expect("valid layout");
        // SAFETY: allocated in `new` with this very layout.
        unsafe { std::alloc::dealloc(self.ptr, layout) };
    }
}

/// One slot as read: its bytes are `bytes()[start..start + len]`.
pub struct SlotRead {
    buf: Aligned,
    start: usize,
    len: usize,
    ok: bool,
}

impl SlotRead {
    /// The slot's bytes, or `None` if the read failed (the caller falls back to the
    /// mapping, which reports the error properly).
    pub fn bytes(&self) -> Option<&[u8]> {
        self.ok
            .then(|| &self.buf.bytes()[self.start..self.start + self.len])
    }
}

/// One read: the aligned span starting at `offset`, of which the first `need` bytes must
/// arrive (the slot's end; the file's end may fall inside the span).
struct Job {
    offset: u64,
    need: usize,
    buf: Aligned,
}

/// How reads are put in flight.
enum Engine {
    /// io_uring: the searching thread submits the whole batch to a ring of its own and
    /// waits once for all of it.
    Ring,
    /// A pool of threads each doing one `pread` at a time (where io_uring is refused:
    /// old kernels, sandboxes that filter it).
    Threads(Pool),
}

/// The pool and the file it reads.
pub struct DirectReads {
    file: Arc<File>,
    engine: Engine,
    /// The transfer unit: `SECTOR` where the device takes it, else `ALIGN`.
    unit: usize,
}

/// Entries per ring: a batch larger than this is read in rounds.
const RING_ENTRIES: u32 = 64;

thread_local! {
    /// This thread's ring, made on its first batch; `None` inside if io_uring refused it.
    static RING: RefCell<Option<Option<IoUring>>> = const { RefCell::new(None) };
}

impl DirectReads {
    /// Opens `path` for direct reads, by io_uring where the kernel allows it, else with
    /// `threads` reader threads. Fails where the file system has no `O_DIRECT` (tmpfs,
    /// for one): callers then read through the mapping.
    pub fn open(path: &Path, threads: usize) -> std::io::Result<DirectReads> {
        DirectReads::open_with(path, threads, true)
    }

    /// `open`, choosing the engine: io_uring if `ring` and the kernel allows it, else a
    /// pool of `threads` (tests run both).
    fn open_with(path: &Path, threads: usize, ring: bool) -> std::io::Result<DirectReads> {
        let file = Arc::new(
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_DIRECT)
                .open(path)?,
        );
        // Probe: some file systems accept the flag and fail the first read.
        let mut probe = Aligned::new(ALIGN);
        file.read_at(probe.bytes_mut(), 0)?;
        // A device with 4 KiB logical blocks refuses this (EINVAL).
        let unit = match file.read_at(&mut probe.bytes_mut()[..SECTOR], SECTOR as u64) {
            Ok(_) => SECTOR,
            Err(_) => ALIGN,
        };
        let mut reads = DirectReads {
            file,
            engine: Engine::Ring,
            unit,
        };
        if ring {
            let mut probe = vec![Job {
                offset: 0,
                need: ALIGN,
                buf: Aligned::new(ALIGN),
            }];
            if reads.ring_read(&mut probe) == [true] {
                return Ok(reads);
            }
        }
        reads.engine = Engine::Threads(Pool::new(&reads.file, threads));
        Ok(reads)
    }

    /// Whether reads go through io_uring.
    #[cfg(test)]
    fn uses_ring(&self) -> bool {
        matches!(self.engine, Engine::Ring)
    }

    /// Reads the `len` bytes at each of `offsets`, all at once; one result per offset.
    pub fn read(&self, offsets: &[u64], len: usize) -> Vec<SlotRead> {
        let mut starts = Vec::with_capacity(offsets.len());
        let mut jobs: Vec<Job> = offsets
            .iter()
            .map(|&offset| {
                let unit = self.unit as u64;
                let first = offset / unit * unit;
                let start = (offset - first) as usize;
                starts.push(start);
                Job {
                    offset: first,
                    need: start + len,
                    buf: Aligned::new((start + len).div_ceil(self.unit) * self.unit),
                }
            })
            .collect();
        let ok = match &self.engine {
            Engine::Ring => self.ring_read(&mut jobs),
            Engine::Threads(pool) => pool.read(&mut jobs),
        };
        jobs.into_iter()
            .zip(ok)
            .zip(starts)
            .map(|((job, ok), start)| SlotRead {
                buf: job.buf,
                start,
                len,
                ok,
            })
            .collect()
    }

    /// Reads `jobs` through this thread's ring, `RING_ENTRIES` at a time, all of a round
    /// in flight together; whether each covered its slot. A failure of the ring itself
    /// fails the reads (the caller reads those slots through the mapping).
    fn ring_read(&self, jobs: &mut [Job]) -> Vec<bool> {
        let mut ok = vec![false; jobs.len()];
        RING.with(|cell| {
            let mut cell = cell.borrow_mut();
            let slot = cell.get_or_insert_with(|| IoUring::new(RING_ENTRIES).ok());
            let Some(ring) = slot else { return };
            let fd = types::Fd(self.file.as_raw_fd());
            for (round, chunk) in jobs.chunks_mut(RING_ENTRIES as usize).enumerate() {
                let base = round * RING_ENTRIES as usize;
                for (i, job) in chunk.iter_mut().enumerate() {
                    let read = opcode::Read::new(fd, job.buf.ptr, job.buf.len as u32)
                        .offset(job.offset)
                        .build()
                        .user_data(i as u64);
                    // SAFETY: the buffer stays alive and untouched until the read's
                    // completion is reaped below (or is leaked if the ring fails), and
                    // the ring is empty at the start of each round, so the push fits.
                    unsafe { ring.submission().push(&read) }.expect("a round fits the ring");
                }
                let mut pending = chunk.len();
                while pending > 0 {
                    match ring.submit_and_wait(1) {
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(_) => {
                            // Reads may still be in flight into these buffers: leak them
                            // rather than free memory the kernel could still write, and
                            // drop the ring (the next batch makes a new one).
                            for job in chunk.iter_mut() {
                                std::mem::forget(std::mem::replace(&mut job.buf, Aligned::new(0)));
                            }
                            cell.take();
                            return;
                        }
                    }
                    for done in ring.completion() {
                        let i = done.user_data() as usize;
                        ok[base + i] =
                            usize::try_from(done.result()).is_ok_and(|n| n >= chunk[i].need);
                        pending -= 1;
                    }
                }
            }
        });
        ok
    }
}

/// A finished read: the buffer and whether it covered the slot.
type Done = Option<(Aligned, bool)>;

/// One batch's jobs handed to the pool: their results in order, and how many are still
/// running.
struct Batch {
    state: Mutex<(Vec<Done>, usize)>,
    finished: Condvar,
}

struct PoolJob {
    job: Job,
    done: Arc<Batch>,
    index: usize,
}

struct Shared {
    jobs: Mutex<(VecDeque<PoolJob>, bool)>,
    ready: Condvar,
}

/// Reader threads, each doing one `pread` at a time.
struct Pool {
    shared: Arc<Shared>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Pool {
    fn new(file: &Arc<File>, threads: usize) -> Pool {
        let shared = Arc::new(Shared {
            jobs: Mutex::new((VecDeque::new(), false)),
            ready: Condvar::new(),
        });
        let workers = (0..threads.max(1))
            .map(|_| {
                let shared = shared.clone();
                let file = file.clone();
                std::thread::spawn(move || worker(&shared, &file))
            })
            .collect();
        Pool { shared, workers }
    }

    /// Runs `jobs` on the pool, all queued at once; whether each covered its slot.
    fn read(&self, jobs: &mut [Job]) -> Vec<bool> {
        let batch = Arc::new(Batch {
            state: Mutex::new(((0..jobs.len()).map(|_| None).collect(), jobs.len())),
            finished: Condvar::new(),
        });
        {
            let mut queue = self.shared.jobs.lock();
            for (index, job) in jobs.iter_mut().enumerate() {
                queue.0.push_back(PoolJob {
                    job: std::mem::replace(
                        job,
                        Job {
                            offset: 0,
                            need: 0,
                            buf: Aligned::new(0),
                        },
                    ),
                    done: batch.clone(),
                    index,
                });
            }
        }
        self.shared.ready.notify_all();
        let mut state = batch.state.lock();
        while state.1 > 0 {
            batch.finished.wait(&mut state);
        }
        std::mem::take(&mut state.0)
            .into_iter()
            .zip(jobs.iter_mut())
            .map(|(done, job)| {
                let (buf, ok) = done.expect("every job reports");
                job.buf = buf;
                ok
            })
            .collect()
    }
}

fn worker(shared: &Shared, file: &File) {
    loop {
        let mut item = {
            let mut jobs = shared.jobs.lock();
            loop {
                if let Some(item) = jobs.0.pop_front() {
                    break item;
                }
                if jobs.1 {
                    return;
                }
                shared.ready.wait(&mut jobs);
            }
        };
        let need = item.job.need;
        let ok = file
            .read_at(item.job.buf.bytes_mut(), item.job.offset)
            .is_ok_and(|n| n >= need);
        let mut state = item.done.state.lock();
        state.0[item.index] = Some((item.job.buf, ok));
        state.1 -= 1;
        if state.1 == 0 {
            item.done.finished.notify_all();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.jobs.lock().1 = true;
        self.shared.ready.notify_all();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_return_the_bytes_at_each_offset_or_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..40_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        for (ring, unit) in [
            (true, SECTOR),
            (true, ALIGN),
            (false, SECTOR),
            (false, ALIGN),
        ] {
            let Ok(mut reads) = DirectReads::open_with(&path, 4, ring) else {
                eprintln!("no O_DIRECT on this file system: nothing to test");
                return;
            };
            if ring && !reads.uses_ring() {
                eprintln!("io_uring refused here: only the thread pool is tested");
            }
            if unit < reads.unit {
                eprintln!("this device refuses {unit}-byte transfers");
                continue;
            }
            reads.unit = unit;
            // Offsets inside pages, straddling them, one whose slot passes the file's
            // end, and more than a ring holds (read in rounds).
            let mut offsets = vec![0u64, 100, 4090, 8192, 30_000, 39_990];
            offsets.extend((0..150u64).map(|i| i * 251 % 38_000));
            let got = reads.read(&offsets, 1600);
            assert_eq!(got.len(), offsets.len());
            for (r, &o) in got.iter().zip(&offsets) {
                let o = o as usize;
                match r.bytes() {
                    Some(b) => assert_eq!(b, &data[o..o + 1600]),
                    None => assert!(o + 1600 > data.len(), "offset {o} failed ({ring}, {unit})"),
                }
            }
            assert!(got[5].bytes().is_none());
        }
    }
}
