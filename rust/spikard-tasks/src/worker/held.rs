//! `HeldJobs`: the jobs this worker holds, from claim until their outcome is stored.
//!
//! The heartbeat renews the leases of exactly these jobs. A job the store marked as
//! claimed by this worker without the worker knowing (the claim committed but its reply
//! was lost to a dropped connection) is therefore not renewed: its lease expires and
//! it is rescued like the job of a dead worker, instead of being held forever.

use std::collections::HashSet;
use std::sync::Mutex;

/// Ids of the jobs this worker holds.
#[derive(Default)]
pub(crate) struct HeldJobs(Mutex<HashSet<String>>);

impl HeldJobs {
    /// Records newly claimed jobs.
    pub(crate) fn add<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        if let Ok(mut held) = self.0.lock() {
            held.extend(ids.into_iter().map(str::to_owned));
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
            .map(|held| held.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::HeldJobs;

    #[test]
    fn add_remove_snapshot() {
        let held = HeldJobs::default();
        held.add(["a", "b"]);
        held.remove("a");
        held.remove("missing");
        assert_eq!(held.snapshot(), vec!["b".to_owned()]);
    }
}
