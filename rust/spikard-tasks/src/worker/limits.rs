//! `WorkerLimits`: the stored limits that bound a worker's claims (those of the tasks it
//! runs and of its queues), re-read at most once per poll interval (at least 50 ms
//! apart) like the paused set, so a limit set or removed anywhere applies to every
//! worker within a poll interval. With none, the worker claims as if flow control did
//! not exist (the plain claim, no extra work).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::WorkerOptions;
use crate::store::{Limit, LimitScope, Store};

/// The shortest interval between two reads of the limits.
const MIN_REFRESH: Duration = Duration::from_millis(50);

struct State {
    read_at: Option<Instant>,
    limits: Arc<[Limit]>,
    failing: bool,
}

/// A worker's limits, cached for a poll interval.
pub(crate) struct WorkerLimits {
    store: Arc<dyn Store>,
    queues: Vec<String>,
    /// The tasks whose limits apply (`None`: every task's).
    tasks: Option<Vec<String>>,
    every: Duration,
    state: Mutex<State>,
}

impl WorkerLimits {
    pub(crate) fn new(store: Arc<dyn Store>, options: &WorkerOptions) -> Self {
        let tasks = (!options.task_limits.is_empty())
            .then(|| options.task_limits.iter().map(|l| l.name.clone()).collect());
        Self {
            store,
            queues: options.queues.clone(),
            tasks,
            every: options.poll_interval.max(MIN_REFRESH),
            state: Mutex::new(State {
                read_at: None,
                limits: Arc::from(Vec::new()),
                failing: false,
            }),
        }
    }

    fn applies(&self, limit: &Limit) -> bool {
        match limit.scope {
            LimitScope::Queue => self.queues.contains(&limit.name),
            LimitScope::Task => self.tasks.as_ref().is_none_or(|t| t.contains(&limit.name)),
        }
    }

    /// The limits the next claim must respect. When the store cannot say, the last
    /// answer stands.
    pub(crate) async fn get(&self) -> Arc<[Limit]> {
        {
            let state = self.lock();
            if state.read_at.is_some_and(|at| at.elapsed() < self.every) {
                return state.limits.clone();
            }
        }
        let read = self.store.limits(false).await;
        let mut state = self.lock();
        state.read_at = Some(Instant::now());
        match read {
            Ok(all) => {
                state.failing = false;
                let limits: Vec<Limit> = all
                    .into_iter()
                    .map(|s| s.limit)
                    .filter(|l| self.applies(l))
                    .collect();
                if limits[..] != state.limits[..] {
                    let names: Vec<String> = limits.iter().map(Limit::key).collect();
                    tracing::info!(
                        target: "spikard_tasks::worker",
                        limits = names.join(",").as_str(),
                        "limits of this worker's claims changed"
                    );
                    state.limits = limits.into();
                }
            }
            Err(e) if state.failing => tracing::debug!(error = %e, "reading the limits failed"),
            Err(e) => {
                state.failing = true;
                tracing::warn!(error = %e, "reading the limits failed; claiming as before");
            }
        }
        state.limits.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}
