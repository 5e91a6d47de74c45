//! A minimal scoped thread pool for batch work.

use std::sync::atomic::{AtomicUsize, Ordering};

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
