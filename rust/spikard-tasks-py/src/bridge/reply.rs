//! `ReplySlot`: the reply handle through which an `async def` handler running on the
//! event loop reports its attempt's outcome back to the waiting worker (not the engine's
//! stored outcome, `spikard_tasks::Completion`).

use std::sync::Mutex;

use pyo3::prelude::*;
use spikard_tasks::TaskOutcome;
use tokio::sync::oneshot;

use super::outcome::{error_outcome, value_outcome};
use super::BridgeState;
use std::sync::Arc;

/// Called once from the event loop with the coroutine's value or exception.
#[pyclass(frozen, module = "spikard_tasks._native")]
pub struct ReplySlot {
    reply: Mutex<Option<oneshot::Sender<TaskOutcome>>>,
    job_id: String,
    state: Arc<BridgeState>,
}

impl ReplySlot {
    pub(crate) fn new(
        reply: oneshot::Sender<TaskOutcome>,
        job_id: String,
        state: Arc<BridgeState>,
    ) -> Self {
        Self {
            reply: Mutex::new(Some(reply)),
            job_id,
            state,
        }
    }

    pub(crate) fn finish(&self, outcome: TaskOutcome) {
        // Take the reply before forgetting the future: `is_finished` then tells the
        // submitting thread whether it must forget the future it is about to track.
        let reply = self.reply.lock().ok().and_then(|mut r| r.take());
        self.state.forget_async(&self.job_id);
        if let Some(reply) = reply {
            let _ = reply.send(outcome);
        }
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.reply.lock().map(|r| r.is_none()).unwrap_or(true)
    }
}

impl Drop for ReplySlot {
    fn drop(&mut self) {
        // Never leave the awaiting worker without an answer.
        if !self.is_finished() {
            self.finish(TaskOutcome::fail(
                "WorkerError: the handler bridge lost this attempt before it reported an outcome",
            ));
        }
    }
}

/// Runs `make` and answers with its outcome; a panic in it still answers (a failed
/// attempt naming the panic), so the worker never waits forever.
fn guarded(slot: &ReplySlot, make: impl FnOnce() -> TaskOutcome) {
    let outcome =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(make)).unwrap_or_else(|panic| {
            let text = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            TaskOutcome::fail(format!(
                "PanicException: a panic in the handler bridge: {text}"
            ))
        });
    slot.finish(outcome);
}

#[pymethods]
impl ReplySlot {
    /// The coroutine returned `value`.
    fn ok(&self, value: &Bound<'_, PyAny>) {
        guarded(self, || value_outcome(value));
    }

    /// The coroutine raised `exc` (including `asyncio.CancelledError`).
    fn error(&self, exc: &Bound<'_, PyAny>) {
        let requested = self.state.is_cancel_requested(&self.job_id);
        guarded(self, || {
            error_outcome(exc.py(), PyErr::from_value(exc.clone()), requested)
        });
    }
}
