//! `JobService`: the tower service apalis calls for each claimed job.
//!
//! It runs the [`TaskHandler`] (with the job's timeout, catching panics), turns the
//! handler's [`TaskOutcome`] into a [`Completion`] (retry with backoff, fail, cancel)
//! and hands it to the completer, which writes it while this worker holds the lease.
//! Each start and outcome is counted and logged (`observe.rs`).

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use apalis_core::error::BoxDynError;
use apalis_core::task::Task;
use futures_util::FutureExt;
use tokio::sync::Notify;

use super::completer::Completer;
use super::held::HeldJobs;
use super::observe::Attempt;
use super::stats::WorkerStats;
use crate::config::Backoff;
use crate::handler::{TaskHandler, TaskOutcome};
use crate::job::{AttemptError, ClaimedJob, Completion};
use crate::retry::{next_attempt_delay, AttemptFailure};
use crate::store::Store;
use crate::time::{duration_ms, secs, secs_to_ms, MAX_INSTANT_MS};

/// Runs one claimed job per call.
#[derive(Clone)]
pub(crate) struct JobService {
    pub completer: Completer,
    pub handler: Arc<dyn TaskHandler>,
    pub backoff: Backoff,
    /// Backoff of particular tasks, by name (instead of `backoff`).
    pub task_backoff: Arc<HashMap<String, Backoff>>,
    pub inflight: Arc<AtomicUsize>,
    pub held: Arc<HeldJobs>,
    pub finished: Arc<Notify>,
    pub stats: Arc<WorkerStats>,
    /// The store, for its clock (the database's, where it has one).
    pub store: Arc<dyn Store>,
}

/// Decrements the in-flight count when a job's future ends or is dropped.
struct InflightGuard(Arc<AtomicUsize>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl tower::Service<Task<ClaimedJob>> for JobService {
    type Response = ();
    type Error = BoxDynError;
    type Future = Pin<Box<dyn Future<Output = Result<(), BoxDynError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, task: Task<ClaimedJob>) -> Self::Future {
        self.inflight.fetch_add(1, Ordering::AcqRel);
        let guard = InflightGuard(self.inflight.clone());
        let this = self.clone();
        Box::pin(async move {
            let _guard = guard;
            let mut job = task.args;
            let started = this.store.now_ms();
            job.started_at_ms = Some(started);
            this.completer.started(job.id.clone(), started);
            let attempt = Attempt::start(&job, started);
            let outcome = this.run(&job).await;
            let backoff = this.task_backoff.get(&job.task).unwrap_or(&this.backoff);
            let now = this.store.now_ms();
            let completion = decide(&job, outcome, backoff, now);
            this.stats.record(&completion);
            attempt.finish(&job, &completion, now);
            let id = job.id.clone();
            this.completer.complete(job, completion).await;
            this.held.remove(&id);
            this.finished.notify_waiters();
            Ok(())
        })
    }
}

impl JobService {
    async fn run(&self, job: &ClaimedJob) -> TaskOutcome {
        let handler = self.handler.clone();
        let call = AssertUnwindSafe(handler.handle(job.clone())).catch_unwind();
        let result = match job.timeout {
            Some(limit) => match tokio::time::timeout(secs(limit), call).await {
                Ok(r) => r,
                Err(_) => {
                    self.handler.timed_out(&job.id);
                    return TaskOutcome::fail(format!(
                        "TimeoutError: attempt {} ran past its {limit}s timeout",
                        job.attempt
                    ));
                }
            },
            None => call.await,
        };
        result.unwrap_or_else(|panic| {
            let text = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            TaskOutcome::fail(format!("PanicException: handler panicked: {text}"))
        })
    }
}

/// Turns a handler's outcome into what is stored, applying retries and backoff.
pub(crate) fn decide(
    job: &ClaimedJob,
    outcome: TaskOutcome,
    backoff: &Backoff,
    now: i64,
) -> Completion {
    let error_entry = |error: String, traceback: Option<String>| AttemptError {
        attempt: job.attempt,
        error,
        traceback,
        at_ms: now,
    };
    match outcome {
        TaskOutcome::Success(value) => Completion::Succeeded(value),
        TaskOutcome::Cancel { reason } => Completion::Cancelled { reason },
        TaskOutcome::Retry { after, reason } => {
            let text = format!(
                "Retry: {}",
                reason.unwrap_or_else(|| format!("retry requested after {}s", after.as_secs_f64()))
            );
            let failure = AttemptFailure::RetryRequested {
                after_secs: after.as_secs_f64(),
            };
            match next_attempt_delay(backoff, job.attempt, job.max_attempts, failure) {
                Some(_) => Completion::Retry {
                    run_at_ms: now.saturating_add(duration_ms(after)).min(MAX_INSTANT_MS),
                    error: error_entry(text, None),
                },
                None => Completion::Failed(error_entry(
                    format!("{text} (no attempts left of {})", job.max_attempts),
                    None,
                )),
            }
        }
        TaskOutcome::Fail {
            error,
            traceback,
            retryable,
        } => {
            let failure = AttemptFailure::Failed { retryable };
            match next_attempt_delay(backoff, job.attempt, job.max_attempts, failure) {
                Some(secs) => Completion::Retry {
                    run_at_ms: now.saturating_add(secs_to_ms(secs)).min(MAX_INSTANT_MS),
                    error: error_entry(error, traceback),
                },
                None => Completion::Failed(error_entry(error, traceback)),
            }
        }
    }
}
