//! `ActiveQueues`: the queues of a worker that are not paused, so its claims skip the
//! paused ones. The store's paused set is re-read at most once per poll interval (at
//! least 50 ms apart), so every worker of a store stops claiming from a paused queue
//! within one poll interval, and starts again as soon after a resume.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::store::Store;

/// The shortest interval between two reads of the paused set.
const MIN_REFRESH: Duration = Duration::from_millis(50);

struct State {
    /// When the paused set was last read (`None`: never).
    read_at: Option<Instant>,
    /// The worker's queues not paused at that read.
    active: Arc<[String]>,
    /// Whether that read failed (so the next failure is not logged again).
    failing: bool,
}

/// A worker's queues minus the paused ones, cached for a poll interval.
pub(crate) struct ActiveQueues {
    store: Arc<dyn Store>,
    queues: Arc<[String]>,
    every: Duration,
    state: Mutex<State>,
}

impl ActiveQueues {
    pub(crate) fn new(store: Arc<dyn Store>, queues: Arc<[String]>, poll: Duration) -> Self {
        Self {
            store,
            state: Mutex::new(State {
                read_at: None,
                active: queues.clone(),
                failing: false,
            }),
            queues,
            every: poll.max(MIN_REFRESH),
        }
    }

    /// How long a worker whose queues are all paused waits before it looks again.
    pub(crate) fn refresh_interval(&self) -> Duration {
        self.every
    }

    /// The queues to claim from now (empty: every one is paused). When the store
    /// cannot say which queues are paused, the last answer stands (at first: none).
    pub(crate) async fn get(&self) -> Arc<[String]> {
        {
            let state = self.lock();
            if state.read_at.is_some_and(|at| at.elapsed() < self.every) {
                return state.active.clone();
            }
        }
        let read = self.store.paused_queues().await;
        let mut state = self.lock();
        state.read_at = Some(Instant::now());
        match read {
            Ok(paused) => {
                if state.failing {
                    state.failing = false;
                    tracing::info!("reading the paused queues works again");
                }
                let active: Vec<String> = self
                    .queues
                    .iter()
                    .filter(|q| !paused.contains(q))
                    .cloned()
                    .collect();
                if active[..] != state.active[..] {
                    let paused: Vec<&str> = self
                        .queues
                        .iter()
                        .filter(|q| !active.contains(q))
                        .map(String::as_str)
                        .collect();
                    if paused.is_empty() {
                        tracing::info!(
                            target: "spikard_tasks::worker",
                            "no queue of this worker is paused now; claiming from all"
                        );
                    } else {
                        tracing::info!(
                            target: "spikard_tasks::worker",
                            paused = paused.join(",").as_str(),
                            "queues paused; claiming only from the others"
                        );
                    }
                    state.active = active.into();
                }
            }
            Err(e) if state.failing => {
                tracing::debug!(error = %e, "reading the paused queues failed");
            }
            Err(e) => {
                state.failing = true;
                tracing::warn!(error = %e, "reading the paused queues failed; claiming as before");
            }
        }
        state.active.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}
