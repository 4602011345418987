//! `HeldJobs`: the jobs this worker holds, from claim until their outcome is stored.
//!
//! The heartbeat renews the leases of exactly these jobs. A job the store marked as
//! claimed by this worker without the worker knowing (the claim committed but its reply
//! was lost to a dropped connection) is therefore not renewed: its lease expires and
//! it is rescued like the job of a dead worker, instead of being held forever. The
//! queue of each is kept for per-queue concurrency (`WorkerOptions::queue_concurrency`).

use std::collections::HashMap;
use std::sync::Mutex;

/// Ids of the jobs this worker holds, with their queues.
#[derive(Default)]
pub(crate) struct HeldJobs(Mutex<HashMap<String, String>>);

impl HeldJobs {
    /// Records newly claimed jobs: `(id, queue)`.
    pub(crate) fn add<'a>(&self, jobs: impl IntoIterator<Item = (&'a str, &'a str)>) {
        if let Ok(mut held) = self.0.lock() {
            held.extend(jobs.into_iter().map(|(id, q)| (id.to_owned(), q.to_owned())));
        }
    }

    /// Forgets a job whose outcome is stored (or that was released).
    pub(crate) fn remove(&self, id: &str) {
        if let Ok(mut held) = self.0.lock() {
            held.remove(id);
        }
    }

    /// The ids held right now.
    pub(crate) fn snapshot(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|held| held.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// How many held jobs are of `queue`.
    pub(crate) fn in_queue(&self, queue: &str) -> usize {
        self.0
            .lock()
            .map(|held| held.values().filter(|q| *q == queue).count())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::HeldJobs;

    #[test]
    fn add_remove_snapshot() {
        let held = HeldJobs::default();
        held.add([("a", "q"), ("b", "q"), ("c", "r")]);
        held.remove("a");
        held.remove("missing");
        let mut ids = held.snapshot();
        ids.sort();
        assert_eq!(ids, ["b", "c"]);
        assert_eq!((held.in_queue("q"), held.in_queue("r"), held.in_queue("s")), (1, 1, 0));
    }
}
