//! The FFI bridge: Python callables as a [`TaskHandler`].
//!
//! tokio threads never touch the interpreter. A job travels on a channel to one of a
//! few dedicated Python threads, which attach to the interpreter once and detach while
//! they wait for work. Sync handlers run right there; `async def` handlers are
//! submitted to the worker's asyncio loop thread and report through a [`ReplySlot`].
//! Either way the outcome returns to the awaiting tokio task on a oneshot channel.

mod outcome;
mod reply;
mod threads;
mod work_queue;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pyo3::prelude::*;
use spikard_tasks::{ClaimedJob, TaskHandler, TaskOutcome};
use tokio::sync::oneshot;

pub use reply::ReplySlot;
pub use threads::{AsyncLoop, JobContextVar, PythonThreads};

/// One registered task: the callable and whether it is a coroutine function.
pub struct HandlerEntry {
    /// The callable (function, bound method or instance with `__call__`).
    pub func: Py<PyAny>,
    /// True for `async def` handlers.
    pub is_async: bool,
}

/// What the Python threads are asked to do.
// `Run` is a claimed job's size (a few hundred bytes): moved once per attempt through
// the work queue, not worth a box of its own.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Work {
    /// Run one attempt and reply with its outcome.
    Run {
        job: ClaimedJob,
        entry: Arc<HandlerEntry>,
        reply: oneshot::Sender<TaskOutcome>,
    },
    /// Cancel the `async def` attempt of this job, if it is running.
    Cancel { job_id: String },
}

/// State shared by the handler, the Python threads and reply slots.
#[derive(Default)]
pub struct BridgeState {
    /// Jobs whose cancellation was requested while running.
    cancel_requested: Mutex<HashSet<String>>,
    /// Handles (with a thread-safe `cancel()`) of running `async def` attempts, by job id.
    running_async: Mutex<HashMap<String, Py<PyAny>>>,
    /// Sync attempts running right now, by job id and attempt; `true` once abandoned
    /// after its timeout (a replacement thread took its place, and the thread running it
    /// retires when the handler finally returns).
    running_sync: Mutex<HashMap<(String, u32), bool>>,
}

impl BridgeState {
    fn is_cancel_requested(&self, id: &str) -> bool {
        self.cancel_requested
            .lock()
            .map(|s| s.contains(id))
            .unwrap_or(false)
    }

    fn take_cancel_request(&self, id: &str) -> bool {
        self.cancel_requested
            .lock()
            .map(|mut s| s.remove(id))
            .unwrap_or(false)
    }

    fn sync_started(&self, id: &str, attempt: u32) {
        if let Ok(mut m) = self.running_sync.lock() {
            m.insert((id.to_owned(), attempt), false);
        }
    }

    /// The attempt returned; true if it had been abandoned (its thread must retire).
    fn sync_finished(&self, id: &str, attempt: u32) -> bool {
        self.running_sync
            .lock()
            .ok()
            .and_then(|mut m| m.remove(&(id.to_owned(), attempt)))
            .unwrap_or(false)
    }

    /// Marks the running (not yet abandoned) sync attempt of job `id` abandoned; false
    /// if none runs (it returned meanwhile, or the handler is `async def`). Earlier
    /// attempts of the same job may still be stuck in abandoned threads.
    fn abandon_sync(&self, id: &str) -> bool {
        let Ok(mut m) = self.running_sync.lock() else {
            return false;
        };
        match m
            .iter_mut()
            .find(|((job, _), abandoned)| job == id && !**abandoned)
        {
            Some((_, abandoned)) => {
                *abandoned = true;
                true
            }
            None => false,
        }
    }

    fn track_async(&self, id: String, fut: Py<PyAny>) {
        if let Ok(mut m) = self.running_async.lock() {
            m.insert(id, fut);
        }
    }

    fn forget_async(&self, id: &str) -> Option<Py<PyAny>> {
        self.running_async
            .lock()
            .ok()
            .and_then(|mut m| m.remove(id))
    }
}

/// Python callables, by task name, as the engine's [`TaskHandler`].
pub struct PyTaskHandler {
    handlers: HashMap<String, Arc<HandlerEntry>>,
    threads: Arc<PythonThreads>,
    state: Arc<BridgeState>,
}

impl PyTaskHandler {
    /// Wraps `handlers`, run on `threads`.
    pub fn new(
        handlers: HashMap<String, Arc<HandlerEntry>>,
        threads: Arc<PythonThreads>,
        state: Arc<BridgeState>,
    ) -> Self {
        Self {
            handlers,
            threads,
            state,
        }
    }
}

#[async_trait]
impl TaskHandler for PyTaskHandler {
    async fn handle(&self, job: ClaimedJob) -> TaskOutcome {
        let Some(entry) = self.handlers.get(&job.task).cloned() else {
            return TaskOutcome::Fail {
                error: format!(
                    "UnknownTask: no handler for task {:?} is registered in this worker",
                    job.task
                ),
                traceback: None,
                retryable: false,
            };
        };
        let id = job.id.clone();
        let (reply, rx) = oneshot::channel();
        if !self.threads.send(Work::Run { job, entry, reply }) {
            return TaskOutcome::fail("WorkerStopped: the worker's Python threads have stopped");
        }
        let outcome = rx.await;
        let requested = self.state.take_cancel_request(&id);
        match outcome {
            Ok(outcome) => outcome,
            Err(_) if requested => TaskOutcome::Cancel {
                reason: Some("cancelled by request".into()),
            },
            Err(_) => TaskOutcome::fail(
                "WorkerError: the handler bridge dropped this attempt before it reported an outcome",
            ),
        }
    }

    fn timed_out(&self, job_id: &str) {
        if self.state.abandon_sync(job_id) {
            // A sync handler cannot be interrupted: abandon its thread, keep the pool size.
            self.threads.replace_abandoned();
        }
        self.threads.send(Work::Cancel {
            job_id: job_id.to_owned(),
        });
    }

    fn unavailable(&self) -> Option<String> {
        self.threads.unavailable()
    }

    fn cancel_requested(&self, job_id: &str) {
        if let Ok(mut s) = self.state.cancel_requested.lock() {
            s.insert(job_id.to_owned());
        }
        self.threads.send(Work::Cancel {
            job_id: job_id.to_owned(),
        });
    }
}
