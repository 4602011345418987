//! The operations model: what an operator reads and does to a store (stats, the job
//! list, retry, bulk cancel and purge, pause, live workers). One set of types, used by
//! the engine's client (`queue.rs`), the bindings and so every face (Python, CLI, HTTP,
//! dashboard). Every store implements [`OpsStore`] and passes
//! `tests/store_contract/ops.rs`.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::CoreResult;
use crate::job::{JobRecord, JobStatus, QueueCounts};

/// Most jobs one page of [`OpsStore::list_jobs`] holds.
pub const MAX_PAGE: usize = 1000;

/// Rows one bulk statement ([`OpsStore::retry_batch`], [`OpsStore::cancel_batch`],
/// [`OpsStore::purge_batch`]) touches at most; the engine repeats it until a round
/// touches fewer.
pub const OPS_BATCH: usize = 1000;

/// Which jobs an operation concerns. Every field narrows; the default matches every job.
/// An unknown field is an error when read from JSON (a misspelt narrowing must not
/// widen a bulk operation to every job).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobFilter {
    /// Any of these states (empty: any state). `Scheduled` is a `pending` job whose
    /// `run_at` is after `now`, `Pending` one whose `run_at` is not (as [`JobRecord`]
    /// shows them).
    #[serde(default)]
    pub statuses: Vec<JobStatus>,
    /// Only this task (exact name).
    #[serde(default)]
    pub task: Option<String>,
    /// Only this queue.
    #[serde(default)]
    pub queue: Option<String>,
    /// Enqueued at or after this time (ms since epoch).
    #[serde(default)]
    pub since_ms: Option<i64>,
    /// Enqueued strictly before this time (ms since epoch).
    #[serde(default)]
    pub until_ms: Option<i64>,
    /// Only these jobs, by id (empty: any job). The engine's single-job operations
    /// (`TaskQueueClient::retry`) name their job this way, so a store must honour it in
    /// every method that takes a filter.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<String>,
}

/// Where a page of [`OpsStore::list_jobs`] continues: the `(enqueued_at_ms, id)` of
/// the last job of the previous page. Pages are newest first: ordered by
/// `enqueued_at_ms` descending, then `id` descending; the next page holds the jobs
/// strictly after the cursor in that order (keyset pagination, never an offset).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The last job's enqueue time.
    pub enqueued_at_ms: i64,
    /// The last job's id.
    pub id: String,
}

/// One page of the job list as a store reads it ([`OpsStore::list_page`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StorePage {
    /// At most `limit` jobs, newest first.
    pub jobs: Vec<JobRecord>,
    /// Where the next page starts; `None` when no job is left after this page. A store
    /// whose scan is bounded may end a page early (even empty) with a cursor at the
    /// last job it looked at: more may follow.
    pub next: Option<Cursor>,
}

/// One queue's figures in [`OpsStore::stats`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStats {
    /// The queue.
    pub queue: String,
    /// Jobs per state (as [`JobRecord`] shows them: `scheduled` split from `pending`).
    pub counts: QueueCounts,
    /// The smallest `run_at_ms` of a job that is ready (`pending` or `retrying`, due
    /// now): how long the queue's head has waited is `now - oldest_ready_ms`.
    pub oldest_ready_ms: Option<i64>,
    /// Jobs that finished `succeeded` within the minute before `now`.
    pub succeeded_last_minute: u64,
    /// Jobs that finished `failed` within the minute before `now`.
    pub failed_last_minute: u64,
    /// Whether the queue is paused ([`OpsStore::set_paused`]). A paused queue with no
    /// job at all is listed too.
    pub paused: bool,
}

/// A worker as it registered itself ([`OpsStore::register_worker`]) and last beat.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// The worker's unique name (the `locked_by` of the jobs it holds).
    pub name: String,
    /// Host name of its machine.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// The queues it claims from.
    pub queues: Vec<String>,
    /// How many jobs it runs at once.
    pub concurrency: u32,
    /// When it started, ms since epoch.
    pub started_at_ms: i64,
    /// Its latest heartbeat, ms since epoch (the store's clock).
    pub heartbeat_at_ms: i64,
    /// The interval between its heartbeats, ms. It is gone once two are missed:
    /// `heartbeat_at_ms + 2 * heartbeat_interval_ms < now`.
    pub heartbeat_interval_ms: i64,
    /// Jobs it held (claimed, running or claimed ahead) at its latest heartbeat.
    pub jobs_held: u32,
    /// The engine version it runs.
    pub version: String,
}

impl WorkerInfo {
    /// Whether it missed two heartbeats at `now_ms`.
    pub fn is_gone(&self, now_ms: i64) -> bool {
        self.heartbeat_at_ms
            .saturating_add(self.heartbeat_interval_ms.saturating_mul(2))
            < now_ms
    }
}

/// The operations every store supports (a part of every [`super::Store`]). Times are
/// ms since the epoch on the store's clock ([`super::Store::now_ms`]), passed in by the
/// engine so a test can move them.
#[async_trait]
pub trait OpsStore: Send + Sync + 'static {
    /// Figures per queue: every queue that has a job or is paused, by name.
    async fn stats(&self, now_ms: i64) -> CoreResult<Vec<QueueStats>>;

    /// Up to `limit` (1..=[`MAX_PAGE`]) jobs matching `filter`, newest first, after
    /// `after` ([`Cursor`]). Never an offset scan.
    async fn list_jobs(
        &self,
        filter: &JobFilter,
        after: Option<&Cursor>,
        limit: usize,
        now_ms: i64,
    ) -> CoreResult<Vec<JobRecord>>;

    /// One page of the job list: up to `limit` jobs as [`OpsStore::list_jobs`] reads
    /// them, and where the next page starts ([`StorePage::next`]). The default reads
    /// `limit + 1` jobs to know whether one follows; a store whose filtered scans are
    /// bounded (Redis) answers with what it found within its bound instead.
    async fn list_page(
        &self,
        filter: &JobFilter,
        after: Option<&Cursor>,
        limit: usize,
        now_ms: i64,
    ) -> CoreResult<StorePage> {
        let mut jobs = self.list_jobs(filter, after, limit + 1, now_ms).await?;
        let next = if jobs.len() > limit {
            jobs.truncate(limit);
            jobs.last().map(|j| Cursor {
                enqueued_at_ms: j.enqueued_at_ms,
                id: j.id.clone(),
            })
        } else {
            None
        };
        Ok(StorePage { jobs, next })
    }

    /// Puts up to `limit` `failed` or `cancelled` jobs matching `filter` back to
    /// `pending`, due at `now_ms`, with a fresh attempt budget: `attempts` 0, the same
    /// `max_attempts`; `errors` (the history) kept; `result`, `finished_at`,
    /// `started_at`, `cancel_reason`, `cancel_requested` and the lease cleared. A job
    /// whose unique key an unfinished job of its queue holds now is skipped. Returns how
    /// many were put back. The caller restricts `filter.statuses` to those two states.
    async fn retry_batch(&self, filter: &JobFilter, now_ms: i64, limit: usize) -> CoreResult<u64>;

    /// Cancels up to `limit` jobs matching `filter` that have not started (`pending`,
    /// scheduled, `retrying`: to `cancelled`, `cancel_reason` "cancelled by request",
    /// `finished_at` `now_ms`) and asks running ones to stop (`cancel_requested`, only
    /// those not asked yet, so repeated rounds end). Returns how many of both.
    async fn cancel_batch(&self, filter: &JobFilter, now_ms: i64, limit: usize) -> CoreResult<u64>;

    /// Deletes up to `limit` finished jobs (`succeeded`, `failed`, `cancelled`) matching
    /// `filter` whose `finished_at` is before `before_ms`. Returns how many.
    async fn purge_batch(
        &self,
        filter: &JobFilter,
        before_ms: i64,
        limit: usize,
    ) -> CoreResult<u64>;

    /// Pauses (`true`) or resumes (`false`) `queue`, persisted in the store. Returns
    /// whether that changed anything. Enqueueing into a paused queue still works; no
    /// worker claims from it ([`OpsStore::paused_queues`]).
    async fn set_paused(&self, queue: &str, paused: bool, now_ms: i64) -> CoreResult<bool>;

    /// The paused queues, by name.
    async fn paused_queues(&self) -> CoreResult<Vec<String>>;

    /// Records a starting worker (replacing any row of the same name).
    async fn register_worker(&self, worker: &WorkerInfo) -> CoreResult<()>;

    /// A worker's heartbeat: `heartbeat_at_ms` and `jobs_held` of its row. Re-creates a
    /// row that maintenance removed (from `worker`) so a worker that stalled and came
    /// back is listed again.
    async fn beat_worker(&self, worker: &WorkerInfo) -> CoreResult<()>;

    /// Removes a stopping worker's row.
    async fn remove_worker(&self, name: &str) -> CoreResult<()>;

    /// Live workers (not [`WorkerInfo::is_gone`] at `now_ms`), by name. Deletes (a
    /// bounded batch of) the rows of workers gone for more than an hour.
    async fn workers(&self, now_ms: i64) -> CoreResult<Vec<WorkerInfo>>;
}
