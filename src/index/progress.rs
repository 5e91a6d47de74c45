//! Progress of the long operations (a large batch insert, compaction, backup): a hook the
//! caller passes, told `(done, total)` as the work goes. Reports are throttled to about a
//! hundred per operation, so a hook that takes a lock (Python's GIL) or draws a bar costs
//! nothing next to the work.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

/// Told how far an operation has come: `done` of `total` units (rows for inserts and
/// compaction, bytes for a backup). Called once at the start (`done` 0), then as the work
/// goes (at most about a hundred times), and with `done == total` at the end of an
/// operation that succeeded. Calls may come from any of the operation's threads, one at a
/// time, with `done` never going down (a backup that must retry its copy starts a new
/// count). Any `Fn(u64, u64) + Sync` closure is one.
pub trait Progress: Sync {
    /// `done` of `total` units.
    fn report(&self, done: u64, total: u64);
}

impl<F: Fn(u64, u64) + Sync> Progress for F {
    fn report(&self, done: u64, total: u64) {
        self(done, total)
    }
}

/// The hook of callers that want no reports.
pub(super) const QUIET: &dyn Progress = &|_: u64, _: u64| {};

/// Counts one operation's units (from any thread) and reports each hundredth of them.
pub(super) struct Tally<'a> {
    progress: &'a dyn Progress,
    total: u64,
    step: u64,
    done: AtomicU64,
    /// The last `done` reported: held while reporting, so reports never cross.
    reported: Mutex<u64>,
}

impl<'a> Tally<'a> {
    /// Starts counting `total` units: reports `(0, total)`.
    pub(super) fn start(progress: &'a dyn Progress, total: u64) -> Tally<'a> {
        progress.report(0, total);
        Tally {
            progress,
            total,
            step: (total / 100).max(1),
            done: AtomicU64::new(0),
            reported: Mutex::new(0),
        }
    }

    /// Counts `n` more units done (more than `total` count as `total`: a backup's files
    /// may grow while they are copied).
    pub(super) fn add(&self, n: u64) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        if done / self.step != (done - n) / self.step {
            self.report(done.min(self.total));
        }
    }

    /// The operation succeeded: reports `(total, total)` unless it was the last report.
    pub(super) fn finish(&self) {
        self.report(self.total);
    }

    fn report(&self, done: u64) {
        let mut reported = self.reported.lock();
        if done > *reported {
            *reported = done;
            self.progress.report(done, self.total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_start_hundredths_and_end_in_order() {
        let seen = Mutex::new(Vec::new());
        let hook = |done: u64, total: u64| seen.lock().push((done, total));
        let tally = Tally::start(&hook, 1000);
        crate::parallel::parallel_for(1000, 4, |_| tally.add(1));
        tally.finish();
        let seen = seen.into_inner();
        assert_eq!(seen.first(), Some(&(0, 1000)));
        assert_eq!(seen.last(), Some(&(1000, 1000)));
        assert!(seen.len() <= 102, "{} reports", seen.len());
        assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "{seen:?}");
    }

    #[test]
    fn an_empty_operation_reports_its_start_only() {
        let seen = Mutex::new(Vec::new());
        let hook = |done: u64, total: u64| seen.lock().push((done, total));
        Tally::start(&hook, 0).finish();
        assert_eq!(seen.into_inner(), [(0, 0)]);
    }
}
