//! `Registry`: this worker's row in the store's worker registry
//! ([`OpsStore::register_worker`](crate::store::OpsStore::register_worker)), so
//! operators see it in `TaskQueueClient::workers`. Registered when the worker starts,
//! beaten on every lease-heartbeat tick with the jobs it holds, removed after its drain.
//! The registry is for reading only: a failure is logged (a WARNING once per episode)
//! and never stops the worker.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::WorkerOptions;
use crate::error::CoreResult;
use crate::store::{Store, WorkerInfo};
use crate::time::duration_ms;

/// This worker's registry row and the store it lives in.
pub(crate) struct Registry {
    store: Arc<dyn Store>,
    info: Mutex<WorkerInfo>,
    /// Whether the last registry write failed (so the next failure is not logged again).
    failing: AtomicBool,
}

impl Registry {
    pub(crate) fn new(store: Arc<dyn Store>, options: &WorkerOptions) -> Self {
        let info = WorkerInfo {
            name: options.name.clone(),
            host: options.host.clone(),
            pid: std::process::id(),
            queues: options.queues.clone(),
            concurrency: u32::try_from(options.concurrency).unwrap_or(u32::MAX),
            started_at_ms: 0,
            heartbeat_at_ms: 0,
            heartbeat_interval_ms: duration_ms(options.heartbeat).max(1),
            jobs_held: 0,
            version: env!("CARGO_PKG_VERSION").to_owned(),
        };
        Self {
            store,
            info: Mutex::new(info),
            failing: AtomicBool::new(false),
        }
    }

    /// Records the starting worker (its start and first heartbeat: now).
    pub(crate) async fn register(&self) {
        let now = self.store.now_ms();
        let info = self.update(|info| {
            info.started_at_ms = now;
            info.heartbeat_at_ms = now;
        });
        let result = self.store.register_worker(&info).await;
        self.note("registering the worker", result);
    }

    /// A heartbeat: now, holding `held` jobs.
    pub(crate) async fn beat(&self, held: usize) {
        let now = self.store.now_ms();
        let info = self.update(|info| {
            info.heartbeat_at_ms = now;
            info.jobs_held = u32::try_from(held).unwrap_or(u32::MAX);
        });
        let result = self.store.beat_worker(&info).await;
        self.note("the worker's registry heartbeat", result);
    }

    /// Removes the stopped worker's row.
    pub(crate) async fn remove(&self) {
        let name = self.update(|_| {}).name;
        let result = self.store.remove_worker(&name).await;
        self.note("removing the worker from the registry", result);
    }

    fn update(&self, change: impl FnOnce(&mut WorkerInfo)) -> WorkerInfo {
        let mut info = self.info.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut info);
        info.clone()
    }

    /// Logs a failure (WARNING the first time in a row, then DEBUG) and a recovery.
    fn note(&self, what: &str, result: CoreResult<()>) {
        match result {
            Ok(()) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("{what} works again");
                }
            }
            Err(e) => {
                if self.failing.swap(true, Ordering::Relaxed) {
                    tracing::debug!(error = %e, "{what} failed");
                } else {
                    tracing::warn!(error = %e, "{what} failed (the worker keeps running; it may be missing from the list of workers)");
                }
            }
        }
    }
}
