//! The operations on a queue, for operators: figures, the job list, retry, bulk cancel
//! and purge, pause and resume, live workers. An `impl` block of [`TaskQueueClient`]
//! over the store's [`OpsStore`](crate::store::OpsStore) methods: this module checks
//! the input, turns the opaque page cursor into the store's [`Cursor`] and repeats the
//! bounded bulk statements until they are done.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, CoreResult};
use crate::job::{check_text, JobRecord, JobStatus};
use crate::queue::TaskQueueClient;
use crate::store::{
    Cursor, JobFilter, LimitState, QueueStats, WorkerInfo, MAX_PAGE, OPS_BATCH,
};
use crate::time::duration_ms;

/// The figures of every queue of a store ([`TaskQueueClient::stats`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// When they were read, ms since epoch (the store's clock): the "last minute" is
    /// the minute before it, and a queue's head waited `now_ms - oldest_ready_ms`.
    pub now_ms: i64,
    /// Every queue that has a job or is paused, by name.
    pub queues: Vec<QueueStats>,
    /// Every stored limit (flow control) with its running count, by key.
    #[serde(default)]
    pub limits: Vec<LimitState>,
}

/// One page of [`TaskQueueClient::list_jobs`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JobPage {
    /// The jobs, newest first.
    pub jobs: Vec<JobRecord>,
    /// Where the next page starts (pass it back as `cursor`); `None` on the last page.
    pub next_cursor: Option<String>,
}

/// The states a job can be retried from.
const RETRYABLE: [JobStatus; 2] = [JobStatus::Failed, JobStatus::Cancelled];

/// The states a job can be purged in.
const FINISHED: [JobStatus; 3] = [
    JobStatus::Succeeded,
    JobStatus::Failed,
    JobStatus::Cancelled,
];

impl TaskQueueClient {
    /// Figures per queue: counts per state, the oldest ready job, what finished in the
    /// last minute and whether the queue is paused.
    pub async fn stats(&self) -> CoreResult<Stats> {
        let now_ms = self.store.now_ms();
        let queues = self.store.stats(now_ms).await?;
        let limits = self.store.limits(true).await?;
        Ok(Stats {
            now_ms,
            queues,
            limits,
        })
    }

    /// Up to `limit` (1 to 1,000) jobs matching `filter`, newest first (by enqueue
    /// time, then id), starting after `cursor` (a page's `next_cursor`; `None`: the
    /// first page). Keyset pagination: a page never repeats or skips a job because
    /// jobs were enqueued or deleted meanwhile. A page may hold fewer than `limit` jobs
    /// (even none) and still have a `next_cursor` when the store bounds the work of one
    /// call (Redis, with a filter that few jobs match): keep going until it is `None`.
    ///
    /// A limit out of range, a malformed cursor or `since_ms` after `until_ms` is a
    /// [`CoreError::Config`].
    pub async fn list_jobs(
        &self,
        filter: JobFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> CoreResult<JobPage> {
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(CoreError::config(format!(
                "limit must be from 1 to {MAX_PAGE}, not {limit}"
            )));
        }
        check_filter(&filter)?;
        let after = cursor.map(parse_cursor).transpose()?;
        let now = self.store.now_ms();
        // The store tells whether a page follows (most read one job more than asked; a
        // store with bounded scans may end a page early, with a cursor to go on from).
        let page = self
            .store
            .list_page(&filter, after.as_ref(), limit, now)
            .await?;
        Ok(JobPage {
            jobs: page.jobs,
            next_cursor: page.next.as_ref().map(format_cursor),
        })
    }

    /// Puts a `failed` or `cancelled` job back to `pending`, due now, with a fresh
    /// attempt budget (its errors kept). `false` for any other job, an unknown one, or
    /// one whose unique key an unfinished job of its queue holds now.
    pub async fn retry(&self, id: &str) -> CoreResult<bool> {
        if id.contains('\0') {
            return Ok(false);
        }
        let Some(job) = self.store.get(id).await? else {
            return Ok(false);
        };
        if !RETRYABLE.contains(&job.status) {
            return Ok(false);
        }
        // The id decides; the other fields only narrow the statement to the job's
        // indexes.
        let filter = JobFilter {
            statuses: vec![job.status],
            task: Some(job.task),
            queue: Some(job.queue),
            ids: vec![job.id],
            ..JobFilter::default()
        };
        let now = self.store.now_ms();
        let done = self.store.retry_batch(&filter, now, 1).await?;
        Ok(done > 0)
    }

    /// [`Self::retry`] for every `failed` or `cancelled` job matching `filter` (its
    /// `statuses` narrowed to those two; empty: both), in batches. Returns how many
    /// went back to `pending`.
    pub async fn retry_jobs(&self, mut filter: JobFilter) -> CoreResult<u64> {
        check_filter(&filter)?;
        if !narrow_statuses(&mut filter, &RETRYABLE) {
            return Ok(0);
        }
        let now = self.store.now_ms();
        bound_to(&mut filter, now);
        let store = &self.store;
        batches(|| store.retry_batch(&filter, now, OPS_BATCH)).await
    }

    /// Cancels every job matching `filter` that has not started and asks every running
    /// one to stop, in batches. Returns how many of both. Jobs enqueued after the call
    /// began are not touched.
    pub async fn cancel_jobs(&self, mut filter: JobFilter) -> CoreResult<u64> {
        check_filter(&filter)?;
        let now = self.store.now_ms();
        bound_to(&mut filter, now);
        let store = &self.store;
        let done = batches(|| store.cancel_batch(&filter, now, OPS_BATCH)).await?;
        if done > 0 {
            // Waiters on a cancelled job see it finished at once.
            self.finished.notify_waiters();
        }
        Ok(done)
    }

    /// Deletes every finished job (`succeeded`, `failed`, `cancelled`; `filter.statuses`
    /// narrows them) matching `filter` that finished more than `older_than` ago, in
    /// batches. Returns how many.
    pub async fn purge(&self, mut filter: JobFilter, older_than: Duration) -> CoreResult<u64> {
        check_filter(&filter)?;
        if !narrow_statuses(&mut filter, &FINISHED) {
            return Ok(0);
        }
        let now = self.store.now_ms();
        bound_to(&mut filter, now);
        let before = now.saturating_sub(duration_ms(older_than));
        let store = &self.store;
        batches(|| store.purge_batch(&filter, before, OPS_BATCH)).await
    }

    /// Pauses `queue`: no worker of the store claims from it any more (each notices
    /// within its poll interval; jobs it holds finish). Enqueueing still works.
    /// Returns `false` if it was paused already.
    pub async fn pause(&self, queue: &str) -> CoreResult<bool> {
        check_queue(queue)?;
        let now = self.store.now_ms();
        self.store.set_paused(queue, true, now).await
    }

    /// Resumes a paused `queue`. Returns `false` if it was not paused.
    pub async fn resume(&self, queue: &str) -> CoreResult<bool> {
        check_queue(queue)?;
        let now = self.store.now_ms();
        self.store.set_paused(queue, false, now).await
    }

    /// The paused queues, by name.
    pub async fn paused(&self) -> CoreResult<Vec<String>> {
        self.store.paused_queues().await
    }

    /// The live workers of the store (those that missed fewer than two heartbeats), by
    /// name.
    pub async fn workers(&self) -> CoreResult<Vec<WorkerInfo>> {
        let now = self.store.now_ms();
        self.store.workers(now).await
    }
}

/// A queue name as enqueue accepts it: not empty, no NUL.
fn check_queue(queue: &str) -> CoreResult<()> {
    if queue.is_empty() {
        return Err(CoreError::config("queue name must not be empty"));
    }
    check_text("queue name", queue)
}

/// Refuses a filter no store should be asked: an empty or NUL-holding name or id, or a
/// time window that ends before it starts.
fn check_filter(filter: &JobFilter) -> CoreResult<()> {
    if let Some(queue) = &filter.queue {
        check_queue(queue)?;
    }
    if let Some(task) = &filter.task {
        if task.is_empty() {
            return Err(CoreError::config("task name must not be empty"));
        }
        check_text("task name", task)?;
    }
    for id in &filter.ids {
        check_text("job id", id)?;
    }
    if let (Some(since), Some(until)) = (filter.since_ms, filter.until_ms) {
        if since > until {
            return Err(CoreError::config(format!(
                "since ({since} ms) must not be after until ({until} ms)"
            )));
        }
    }
    Ok(())
}

/// Narrows `filter.statuses` to `allowed` (all of them when it names none); `false`
/// when nothing is left, so no job can match.
fn narrow_statuses(filter: &mut JobFilter, allowed: &[JobStatus]) -> bool {
    if filter.statuses.is_empty() {
        filter.statuses = allowed.to_vec();
        return true;
    }
    let mut kept = Vec::with_capacity(allowed.len());
    for status in filter.statuses.drain(..) {
        if allowed.contains(&status) && !kept.contains(&status) {
            kept.push(status);
        }
    }
    filter.statuses = kept;
    !filter.statuses.is_empty()
}

/// Leaves out jobs enqueued after `now`, so that a bulk operation ends even while
/// matching jobs keep coming.
fn bound_to(filter: &mut JobFilter, now: i64) {
    let end = now.saturating_add(1);
    filter.until_ms = Some(filter.until_ms.map_or(end, |u| u.min(end)));
}

/// Repeats a bulk statement of at most [`OPS_BATCH`] rows until a round touches fewer;
/// returns how many rows all rounds touched.
async fn batches<F, Fut>(mut batch: F) -> CoreResult<u64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = CoreResult<u64>>,
{
    let mut done = 0u64;
    loop {
        let n = batch().await?;
        done = done.saturating_add(n);
        if n < OPS_BATCH as u64 {
            return Ok(done);
        }
    }
}

/// The opaque form of a cursor: `<enqueued_at_ms>:<id>`.
fn format_cursor(cursor: &Cursor) -> String {
    format!("{}:{}", cursor.enqueued_at_ms, cursor.id)
}

/// Reads a cursor [`format_cursor`] wrote.
fn parse_cursor(text: &str) -> CoreResult<Cursor> {
    let malformed = || {
        CoreError::config(format!(
            "malformed cursor {text:?}: pass a page's next_cursor as it is"
        ))
    };
    let (at, id) = text.split_once(':').ok_or_else(malformed)?;
    let enqueued_at_ms = at.parse::<i64>().map_err(|_| malformed())?;
    if id.is_empty() || id.contains('\0') || at.starts_with('+') {
        return Err(malformed());
    }
    Ok(Cursor {
        enqueued_at_ms,
        id: id.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_malformed_ones_are_refused() {
        let text = format_cursor(&Cursor {
            enqueued_at_ms: 1_700_000_000_123,
            id: "0190-abc:def".into(),
        });
        assert_eq!(text, "1700000000123:0190-abc:def");
        assert_eq!(
            parse_cursor(&text).unwrap(),
            Cursor {
                enqueued_at_ms: 1_700_000_000_123,
                id: "0190-abc:def".into()
            }
        );
        assert_eq!(parse_cursor("-5:a").unwrap().enqueued_at_ms, -5);
        for bad in [
            "", "123", "abc:id", "12:", ":id", "+1:id", "1.5:id", "9:a\0b",
        ] {
            assert!(
                matches!(parse_cursor(bad), Err(CoreError::Config(m)) if m.contains("malformed cursor")),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn statuses_narrow_to_the_allowed_ones() {
        let mut f = JobFilter::default();
        assert!(narrow_statuses(&mut f, &RETRYABLE));
        assert_eq!(f.statuses, RETRYABLE.to_vec());
        let mut f = JobFilter {
            statuses: vec![JobStatus::Failed, JobStatus::Pending],
            ..JobFilter::default()
        };
        assert!(narrow_statuses(&mut f, &RETRYABLE));
        assert_eq!(f.statuses, vec![JobStatus::Failed]);
        let mut f = JobFilter {
            statuses: vec![JobStatus::Running],
            ..JobFilter::default()
        };
        assert!(!narrow_statuses(&mut f, &FINISHED));
    }

    #[test]
    fn bulk_operations_stop_at_now() {
        let mut f = JobFilter::default();
        bound_to(&mut f, 100);
        assert_eq!(f.until_ms, Some(101));
        let mut f = JobFilter {
            until_ms: Some(50),
            ..JobFilter::default()
        };
        bound_to(&mut f, 100);
        assert_eq!(f.until_ms, Some(50));
    }

    #[test]
    fn filters_are_checked() {
        let bad = [
            JobFilter {
                queue: Some(String::new()),
                ..JobFilter::default()
            },
            JobFilter {
                task: Some("a\0".into()),
                ..JobFilter::default()
            },
            JobFilter {
                since_ms: Some(2),
                until_ms: Some(1),
                ..JobFilter::default()
            },
        ];
        for f in bad {
            assert!(
                matches!(check_filter(&f), Err(CoreError::Config(_))),
                "{f:?}"
            );
        }
        assert!(check_filter(&JobFilter::default()).is_ok());
    }
}
