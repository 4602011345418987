//! What a worker tells about each attempt: the process metrics ([`crate::metrics`]) and
//! one `tracing` event per start and per outcome, target `spikard_tasks::job`.
//!
//! | level | message | fields besides `job_id`, `task`, `queue`, `attempt`, `max_attempts` |
//! |---|---|---|
//! | DEBUG | `job started` | |
//! | DEBUG | `job succeeded` | `duration` |
//! | WARN | `job attempt failed, retrying` | `duration`, `error`, `retry_in` (seconds) |
//! | ERROR | `job failed` | `duration`, `error`, `traceback` (the whole text, or empty) |
//! | INFO | `job cancelled` | `duration`, `reason` (or empty) |
//!
//! `duration` is the attempt's run time in seconds. A disabled level costs one check of
//! `tracing`'s level filter.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::job::{ClaimedJob, Completion};
use crate::metrics::{self, Series};

/// The `tracing` target of the per-job events.
pub(crate) const TARGET: &str = "spikard_tasks::job";

/// An attempt being watched from its start to its outcome.
pub(crate) struct Attempt {
    series: Arc<Series>,
    clock: Instant,
}

/// When the job was due: its enqueue time, or its `run_at` when later (a delayed job, a
/// retry). `None` when neither is known, or for a later attempt without its `run_at`.
fn due_ms(job: &ClaimedJob) -> Option<i64> {
    let run_at = Some(job.run_at_ms).filter(|&at| at > 0);
    match (job.enqueued_at_ms, run_at) {
        (Some(enqueued), Some(run_at)) => Some(enqueued.max(run_at)),
        (None, Some(run_at)) => Some(run_at),
        (Some(enqueued), None) if job.attempt <= 1 => Some(enqueued),
        _ => None,
    }
}

impl Attempt {
    /// Counts the start of `job`'s attempt at `started_ms` (the store's clock) and logs it.
    pub(crate) fn start(job: &ClaimedJob, started_ms: i64) -> Self {
        let series = metrics::series(&job.task, &job.queue);
        let latency = due_ms(job)
            .map(|due| Duration::from_millis(started_ms.saturating_sub(due).max(0) as u64));
        series.started(latency);
        tracing::debug!(
            target: TARGET,
            job_id = job.id.as_str(),
            task = job.task.as_str(),
            queue = job.queue.as_str(),
            attempt = job.attempt,
            max_attempts = job.max_attempts,
            "job started"
        );
        Self {
            series,
            clock: Instant::now(),
        }
    }

    /// Counts the attempt's outcome and logs it; `now_ms` is the store's clock when the
    /// outcome was decided (a retry's delay counts from it).
    pub(crate) fn finish(self, job: &ClaimedJob, completion: &Completion, now_ms: i64) {
        let run = self.clock.elapsed();
        self.series.finished(completion, run);
        log_outcome(job, completion, run.as_secs_f64(), now_ms);
    }
}

fn log_outcome(job: &ClaimedJob, completion: &Completion, duration: f64, now_ms: i64) {
    let (job_id, task, queue) = (job.id.as_str(), job.task.as_str(), job.queue.as_str());
    let (attempt, max_attempts) = (job.attempt, job.max_attempts);
    match completion {
        Completion::Succeeded(_) => tracing::debug!(
            target: TARGET,
            job_id, task, queue, attempt, max_attempts, duration,
            "job succeeded"
        ),
        Completion::Retry { run_at_ms, error } => tracing::warn!(
            target: TARGET,
            job_id, task, queue, attempt, max_attempts, duration,
            error = error.error.as_str(),
            retry_in = run_at_ms.saturating_sub(now_ms).max(0) as f64 / 1000.0,
            "job attempt failed, retrying"
        ),
        Completion::Failed(error) => tracing::error!(
            target: TARGET,
            job_id, task, queue, attempt, max_attempts, duration,
            error = error.error.as_str(),
            traceback = error.traceback.as_deref().unwrap_or(""),
            "job failed"
        ),
        Completion::Cancelled { reason } => tracing::info!(
            target: TARGET,
            job_id, task, queue, attempt, max_attempts, duration,
            reason = reason.as_deref().unwrap_or(""),
            "job cancelled"
        ),
    }
}

#[cfg(test)]
mod tests;
