//! The `TaskHandler` boundary: the only thing a host language implements.
//!
//! It mirrors the ADR's `MessageHandler`: a handler gets a job's JSON arguments and
//! returns a [`TaskOutcome`]. No apalis type crosses this boundary.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::job::ClaimedJob;

/// What a handler decided for one attempt.
#[derive(Clone, Debug, PartialEq)]
pub enum TaskOutcome {
    /// Done; the value is stored as the job's result.
    Success(Value),
    /// Run again after `after` (counts as an attempt).
    Retry {
        /// Delay before the next attempt.
        after: Duration,
        /// Why, for the attempt's error entry.
        reason: Option<String>,
    },
    /// The attempt failed; the queue's backoff decides whether and when it runs again.
    Fail {
        /// Error text (`"ExcType: message"`).
        error: String,
        /// Formatted traceback, if any.
        traceback: Option<String>,
        /// False for errors that no retry can fix (e.g. an unknown task).
        retryable: bool,
    },
    /// Stop: the job ends cancelled, no more attempts.
    Cancel {
        /// Why.
        reason: Option<String>,
    },
}

impl TaskOutcome {
    /// A retryable failure without traceback.
    pub fn fail(error: impl Into<String>) -> Self {
        Self::Fail {
            error: error.into(),
            traceback: None,
            retryable: true,
        }
    }
}

/// Runs jobs. Implemented by bindings (Python callables) and by Rust users.
///
/// Implement it with the [`async_trait`](https://docs.rs/async-trait) attribute (or use
/// [`FnHandler`] for a closure), then pass it to [`spawn_worker`](crate::spawn_worker):
///
/// ```
/// use async_trait::async_trait;
/// use serde_json::json;
/// use spikard_tasks::{ClaimedJob, TaskHandler, TaskOutcome};
///
/// struct Handler;
///
/// #[async_trait]
/// impl TaskHandler for Handler {
///     async fn handle(&self, job: ClaimedJob) -> TaskOutcome {
///         match job.task.as_str() {
///             "echo" => TaskOutcome::Success(json!({ "args": job.args })),
///             // Retryable: the queue's backoff decides when the next attempt runs.
///             "flaky" if job.attempt == 1 => TaskOutcome::fail("IOError: try again"),
///             "flaky" => TaskOutcome::Success(json!("ok")),
///             other => TaskOutcome::Fail {
///                 error: format!("UnknownTask: {other}"),
///                 traceback: None,
///                 retryable: false,
///             },
///         }
///     }
/// }
/// ```
#[async_trait]
pub trait TaskHandler: Send + Sync + 'static {
    /// Runs one attempt of `job` and reports its outcome. Must not panic; if it does,
    /// the worker records the panic as a failed attempt.
    async fn handle(&self, job: ClaimedJob) -> TaskOutcome;

    /// Called when an attempt ran past its timeout: the future returned by `handle` has
    /// been dropped; a handler whose work runs elsewhere (a thread, an event loop) may
    /// use this to cancel it.
    fn timed_out(&self, _job_id: &str) {}

    /// Called when cancellation of a running job was requested (`cancel(id)`).
    fn cancel_requested(&self, _job_id: &str) {}

    /// `Some(reason)` while this handler cannot take more jobs (e.g. the threads of
    /// timed-out handlers that cannot be interrupted are piling up): the worker claims
    /// nothing new, says why once, and asks again at every poll interval. Jobs it
    /// already holds keep their leases and run.
    fn unavailable(&self) -> Option<String> {
        None
    }
}

/// Adapts an async closure into a [`TaskHandler`] (handy in Rust tests and services).
pub struct FnHandler<F>(pub F);

#[async_trait]
impl<F, Fut> TaskHandler for FnHandler<F>
where
    F: Fn(ClaimedJob) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = TaskOutcome> + Send + 'static,
{
    async fn handle(&self, job: ClaimedJob) -> TaskOutcome {
        (self.0)(job).await
    }
}
