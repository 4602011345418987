//! Counters a worker keeps while it runs.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::job::Completion;

/// Live counters of one worker.
#[derive(Debug, Default)]
pub struct WorkerStats {
    succeeded: AtomicU64,
    retried: AtomicU64,
    failed: AtomicU64,
    cancelled: AtomicU64,
}

/// A snapshot of [`WorkerStats`], plus what shutdown released.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WorkerReport {
    /// Attempts that succeeded.
    pub succeeded: u64,
    /// Attempts that failed and were scheduled again.
    pub retried: u64,
    /// Jobs that failed for good.
    pub failed: u64,
    /// Jobs that ended cancelled.
    pub cancelled: u64,
    /// Jobs still running when the drain timeout passed, put back in the queue.
    pub released: u64,
}

impl WorkerStats {
    pub(crate) fn record(&self, completion: &Completion) {
        let counter = match completion {
            Completion::Succeeded(_) => &self.succeeded,
            Completion::Retry { .. } => &self.retried,
            Completion::Failed(_) => &self.failed,
            Completion::Cancelled { .. } => &self.cancelled,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> WorkerReport {
        WorkerReport {
            succeeded: self.succeeded.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            cancelled: self.cancelled.load(Ordering::Relaxed),
            released: 0,
        }
    }
}
