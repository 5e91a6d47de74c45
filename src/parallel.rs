//! A minimal scoped thread pool for batch work.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use parking_lot::Mutex;

use crate::error::Result;

/// Runs `f(0..n)` on up to `threads` scoped threads, handing out indexes one at a time so
/// that uneven work balances itself.
pub fn parallel_for(n: usize, threads: usize, f: impl Fn(usize) + Sync) {
    let threads = threads.clamp(1, n.max(1));
    if threads == 1 {
        (0..n).for_each(f);
        return;
    }
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    f(i);
                }
            });
        }
    });
}

/// `parallel_for` over a fallible `f`: stops handing out work at the first error and
/// returns it (one of them, if several threads fail at once).
pub fn try_parallel_for(
    n: usize,
    threads: usize,
    f: impl Fn(usize) -> Result<()> + Sync,
) -> Result<()> {
    let failed = AtomicBool::new(false);
    let first = Mutex::new(None);
    parallel_for(n, threads, |i| {
        if failed.load(Ordering::Relaxed) {
            return;
        }
        if let Err(e) = f(i) {
            failed.store(true, Ordering::Relaxed);
            first.lock().get_or_insert(e);
        }
    });
    first.into_inner().map_or(Ok(()), Err)
}
