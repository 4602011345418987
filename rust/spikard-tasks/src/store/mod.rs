//! Storage backends: the `Store` trait and construction from a URL.
//!
//! A store only persists; every decision (defaults, backoff, retry or fail) is made by
//! the engine so that all backends behave the same. Each backend must pass the shared
//! conformance suites: `tests/store_contract.rs` (one test per method and backend),
//! `tests/engine.rs` and the Python suite.
//!
//! What every store does alike is written once: here (corrupt claimed rows, the
//! maintenance round, listener reconnects, the `scheduled` state) and in `rows.rs` (job
//! decoding, outcome columns). The SQL stores share `sql.rs` (one implementation generic
//! over the sqlx driver) and speak the SQL of `dialect.rs`; `pool.rs` opens their pools
//! and `conn_stack.rs` keeps their hot path's connections.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::{CoreError, CoreResult};
use crate::job::{
    AttemptError, ClaimedJob, Completion, Enqueued, JobRecord, JobRow, JobStatus, QueueCounts,
};
use crate::url::BackendUrl;

pub use limits::{
    ClaimPlan, Limit, LimitScope, LimitState, LimitStore, LimitedClaim, Rate, MAX_RATE_PER_SECOND,
};
pub use ops::{
    Cursor, JobFilter, OpsStore, QueueStats, StorePage, WorkerInfo, MAX_PAGE, OPS_BATCH,
};

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
mod conn_stack;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
mod dialect;
pub mod limits;
#[cfg(feature = "mysql")]
pub mod mysql;
pub mod ops;
#[cfg(any(feature = "postgres", feature = "mysql"))]
mod pool;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "redis")]
mod redis_limits;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
mod retry;
mod rows;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
mod sql;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
mod sql_limits;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
mod sql_ops;
#[cfg(feature = "sqlite")]
pub mod sqlite;
#[cfg(feature = "sqlite")]
mod sqlite_direct;

/// Every row as a newly created job (the outcome of inserting rows without unique keys).
pub(crate) fn all_created(rows: &[JobRow]) -> Vec<Enqueued> {
    rows.iter()
        .map(|r| Enqueued {
            id: r.id.clone(),
            created: true,
        })
        .collect()
}

/// The state a reader sees: the stores keep a job waiting for a `run_at` ahead of now
/// (`later`) as `pending`; it is shown as `scheduled`.
pub(crate) fn shown_status(stored: JobStatus, later: bool) -> JobStatus {
    if later && stored == JobStatus::Pending {
        JobStatus::Scheduled
    } else {
        stored
    }
}

/// A claimed job whose row could not be read, as the outcome that fails it with the
/// reason (logged): a corrupt row must not block its queue.
pub(crate) fn corrupt_job(
    (id, queue, task): (String, String, String),
    attempt: u32,
    err: &CoreError,
    now: i64,
) -> (ClaimedJob, Completion) {
    tracing::error!(job_id = %id, error = %err, "failing corrupt job row");
    let (error, traceback, at_ms) = (err.to_string(), None, now);
    let job = ClaimedJob {
        id,
        queue,
        task,
        attempt,
        ..Default::default()
    };
    (
        job,
        Completion::Failed(AttemptError {
            attempt,
            error,
            traceback,
            at_ms,
        }),
    )
}

/// Writes the outcomes of a claim's corrupt jobs ([`corrupt_job`]). The good jobs of the
/// claim are never lost over it: if this write fails, the corrupt jobs' leases expire and
/// they are failed on a later attempt.
pub(crate) async fn fail_corrupt<S: Store + ?Sized>(
    store: &S,
    worker: &str,
    broken: Vec<(ClaimedJob, Completion)>,
) {
    if broken.is_empty() {
        return;
    }
    if let Err(err) = store.complete(worker, broken).await {
        tracing::warn!(error = %err, "failing corrupt jobs failed");
    }
}

/// Gives back a lock taken for a maintenance round.
pub(crate) type Unlock = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// [`Store::maintain`] of a store with several writers: the rescue rounds, then the purge
/// rounds only if `lock` (awaited after the rescue) took the store's maintenance lock
/// (`None`: another worker is purging).
pub(crate) async fn maintain_locked<S, L>(
    store: &S,
    purge_before: Option<i64>,
    lock: L,
) -> CoreResult<Maintenance>
where
    S: Store + ?Sized,
    L: std::future::Future<Output = CoreResult<Option<Unlock>>>,
{
    let rescued = rescue_rounds(store).await?;
    let mut purged = None;
    if let Some(before) = purge_before {
        if let Some(unlock) = lock.await? {
            let done = purge_rounds(store, before).await;
            unlock.await;
            purged = Some(done?);
        }
    }
    Ok(Maintenance { rescued, purged })
}

/// Pause before a wake-up listener reconnects, doubled up to [`LISTEN_MAX_PAUSE`].
const LISTEN_PAUSE: Duration = Duration::from_millis(100);
const LISTEN_MAX_PAUSE: Duration = Duration::from_secs(5);

/// Runs a wake-up listener ([`Store::spawn_listener`]) for good: `session` connects and
/// listens until its connection is lost (`Ok`) or cannot connect (`Err`); either way it
/// runs again after a pause (100 ms, doubled up to 5 s while it keeps failing, back to
/// 100 ms once a session got going).
pub(crate) fn supervise<F, Fut, E>(
    what: &'static str,
    mut session: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), E>> + Send,
    E: std::fmt::Display,
{
    tokio::spawn(async move {
        let mut pause = LISTEN_PAUSE;
        loop {
            match session().await {
                Ok(()) => {
                    pause = LISTEN_PAUSE;
                    tracing::warn!("{what} lost its connection; reconnecting");
                }
                Err(e) => tracing::warn!(error = %e, retry_in = ?pause, "{what} failed"),
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(LISTEN_MAX_PAUSE);
        }
    })
}

/// A stored cron schedule: its definition (JSON of `CronSchedule`) and firing state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSchedule {
    /// Unique name.
    pub name: String,
    /// The definition as JSON.
    pub definition: String,
    /// The last tick that fired or was passed over, ms since epoch.
    pub last_tick_ms: i64,
    /// When the definition was last written, ms since epoch.
    pub updated_at_ms: i64,
}

/// Persistence of cron schedules (a part of every [`Store`]).
#[async_trait]
pub trait ScheduleStore: Send + Sync + 'static {
    /// Creates or replaces the schedule `name`. A new schedule's last tick is `now_ms`
    /// (ticks before its creation never fire); a replaced one keeps its last tick.
    async fn save_schedule(&self, name: &str, definition: &str, now_ms: i64) -> CoreResult<()>;

    /// Every stored schedule, by name.
    async fn schedules(&self) -> CoreResult<Vec<StoredSchedule>>;

    /// Removes a schedule; false if there was none.
    async fn remove_schedule(&self, name: &str) -> CoreResult<bool>;

    /// Atomically claims tick `tick_ms` of schedule `name` (only if its last tick is
    /// older) and enqueues `job` with it. Returns the job when this call won the tick,
    /// `None` when another scheduler already had it (or `job` was `None`). This is what
    /// makes any number of schedulers enqueue exactly one job per tick.
    async fn fire_schedule(
        &self,
        name: &str,
        tick_ms: i64,
        job: Option<JobRow>,
    ) -> CoreResult<Option<Enqueued>>;
}

/// Persistence of jobs. Implementations must be safe to share between tasks and
/// processes (several workers may claim from one store at once).
#[async_trait]
pub trait Store: ScheduleStore + OpsStore + LimitStore {
    /// Inserts rows in one transaction (all or nothing). A row whose `unique_key` matches
    /// an unfinished job in its queue is not inserted; that job's id is returned instead.
    async fn enqueue(&self, rows: Vec<JobRow>) -> CoreResult<Vec<Enqueued>>;

    /// Like [`Store::enqueue`], but on the calling thread, for a producer that would
    /// block on the insert anyway; `None` when this store cannot for these rows (the
    /// caller then uses [`Store::enqueue`]). Never call it from async code.
    fn enqueue_blocking(&self, _rows: &[JobRow]) -> Option<CoreResult<Vec<Enqueued>>> {
        None
    }

    /// Reads a job; `None` for an unknown id.
    async fn get(&self, id: &str) -> CoreResult<Option<JobRecord>>;

    /// Cancels a job that has not started (`true`), or asks a running one to stop
    /// (`true`); `false` for finished or unknown jobs.
    async fn cancel(&self, id: &str) -> CoreResult<bool>;

    /// Writes `progress` (JSON text, see [`crate::job::progress_value`]) onto the job
    /// while it is `running`, replacing any earlier value; `false` (nothing written) for
    /// a job that is not running: unknown, pending, scheduled, retrying or finished.
    /// Whoever holds the lease is not checked. The value is kept when the job finishes
    /// and over a retry (until the next attempt writes its own).
    async fn set_progress(&self, id: &str, progress: &str) -> CoreResult<bool>;

    /// Claims up to `limit` ready jobs of `queues` (highest priority first, then oldest
    /// `run_at`) for `worker`, counting an attempt and taking a lease until `lease`
    /// from now. A claimed job is `running` with no `started_at` until the worker
    /// records its start ([`Store::mark_started`] or its outcome).
    async fn claim(
        &self,
        queues: &[String],
        worker: &str,
        limit: usize,
        lease: Duration,
    ) -> CoreResult<Vec<ClaimedJob>>;

    /// Writes outcomes of attempts (and each attempt's `started_at_ms`). An outcome is
    /// written only if `worker` still holds the lease of that attempt, so a late worker
    /// never overwrites a newer attempt. Returns how many were written.
    async fn complete(
        &self,
        worker: &str,
        done: Vec<(ClaimedJob, Completion)>,
    ) -> CoreResult<usize>;

    /// Records that the attempts of held jobs began running: `(id, started_at_ms)`,
    /// sorted by id. Only jobs that `worker` holds in `running` are marked. Returns how
    /// many were marked.
    async fn mark_started(&self, worker: &str, started: &[(String, i64)]) -> CoreResult<u64>;

    /// Renews the leases of the jobs `ids` (sorted by id) that `worker` still holds;
    /// returns ids of those jobs whose cancellation was requested. Jobs locked by
    /// `worker` but not in `ids` are left to expire (their claim never reached the
    /// worker).
    async fn heartbeat(
        &self,
        worker: &str,
        ids: &[String],
        lease: Duration,
    ) -> CoreResult<Vec<String>>;

    /// Rescues up to `limit` running jobs whose lease expired (their worker died or
    /// stalled). A job whose start was recorded used its attempt: it goes to `retrying`,
    /// or `failed` when no attempts are left, with a `WorkerLost` error entry
    /// ([`LOST`]). A job whose start was never recorded (claimed ahead, or its worker
    /// died within moments of starting it) gets its attempt back: `pending` (or
    /// `retrying` after earlier attempts) with a [`LOST_UNSTARTED`] entry — unless its
    /// latest entry is already that one for the same attempt, in which case the attempt
    /// counts (a job that kills its worker at once cannot run forever). Returns how many
    /// were rescued.
    async fn rescue_expired(&self, limit: usize) -> CoreResult<u64>;

    /// Puts jobs claimed by `worker` back to `pending` (`retrying` after earlier
    /// attempts) without counting the attempt (graceful shutdown). With `ids`, only those.
    async fn release(&self, worker: &str, ids: Option<&[String]>) -> CoreResult<u64>;

    /// Job counts per state in `queue`.
    async fn counts(&self, queue: &str) -> CoreResult<QueueCounts>;

    /// Deletes up to `limit` jobs that finished before `before_ms`; returns how many.
    async fn purge_finished(&self, before_ms: i64, limit: usize) -> CoreResult<u64>;

    /// Runs one round of maintenance: the rescue of expired leases (on every worker:
    /// bounded batches that skip rows another worker is rescuing, so a stalled worker
    /// never holds it up), then, when `purge_before` is given, the expiry of old results
    /// if no other worker of the store is purging right now (stores with several writers
    /// take a lock of their database for it: PostgreSQL advisory lock, MySQL `GET_LOCK`,
    /// Redis `SET NX PX`; SQLite's one writer serializes it anyway).
    async fn maintain(&self, purge_before: Option<i64>) -> CoreResult<Maintenance> {
        let no_lock = async { Ok(Some(Box::pin(async {}) as Unlock)) };
        maintain_locked(self, purge_before, no_lock).await
    }

    /// The time the store's comparisons use, ms since the epoch: the database's clock
    /// where it has one ([`Store::sync_clock`]), this machine's for SQLite.
    fn now_ms(&self) -> i64 {
        crate::time::now_ms()
    }

    /// Measures the offset of the database's clock to this machine's (one round trip);
    /// returns it in ms. Stores without a server keep 0.
    async fn sync_clock(&self) -> CoreResult<i64> {
        Ok(0)
    }

    /// Closes every connection this store opened (idempotent). Calls after it fail with
    /// a `BackendError`. Stop the store's workers first.
    async fn close(&self) {}

    /// Starts a task that calls `wake.notify_one()` whenever another process enqueues
    /// into one of `queues` (e.g. PostgreSQL LISTEN/NOTIFY), so idle workers start new
    /// jobs at once instead of at the next poll. `None` when the backend cannot push.
    fn spawn_listener(
        &self,
        _queues: Vec<String>,
        _wake: Arc<tokio::sync::Notify>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        None
    }
}

/// The error entry of a rescued attempt that had started.
pub const LOST: &str = "WorkerLost: the worker running this attempt stopped renewing its lease";
/// The error entry of a rescued job whose attempt was never recorded as started.
pub const LOST_UNSTARTED: &str = "WorkerLost: the worker holding this job stopped before \
    recording its start; the attempt is not counted";

/// Rows one maintenance statement touches at most.
pub const MAINTENANCE_BATCH: usize = 1000;
/// Statements of each kind one maintenance round runs at most.
const MAINTENANCE_ROUNDS: usize = 100;

/// What one maintenance round did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Maintenance {
    /// Jobs whose expired lease was rescued.
    pub rescued: u64,
    /// Finished jobs deleted; `None` when no purge ran (none asked for, or another
    /// worker was purging).
    pub purged: Option<u64>,
}

/// Rescues in batches of [`MAINTENANCE_BATCH`] rows, at most [`MAINTENANCE_ROUNDS`]
/// statements (the rest waits for the next round); returns how many were rescued.
pub async fn rescue_rounds<S: Store + ?Sized>(store: &S) -> CoreResult<u64> {
    rounds(|| store.rescue_expired(MAINTENANCE_BATCH)).await
}

/// Deletes jobs finished before `before` in batches, like [`rescue_rounds`].
pub async fn purge_rounds<S: Store + ?Sized>(store: &S, before: i64) -> CoreResult<u64> {
    rounds(|| store.purge_finished(before, MAINTENANCE_BATCH)).await
}

async fn rounds<F, Fut>(mut batch: F) -> CoreResult<u64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = CoreResult<u64>>,
{
    let mut done = 0;
    for _ in 0..MAINTENANCE_ROUNDS {
        let n = batch().await?;
        done += n;
        if n < MAINTENANCE_BATCH as u64 {
            break;
        }
    }
    Ok(done)
}

/// Opens (and sets up, idempotently) the store a URL names.
pub async fn open(url: &str) -> CoreResult<Arc<dyn Store>> {
    // From now on log lines never show this URL's password, whoever writes them.
    crate::redact::remember(url);
    let store = open_store(url).await?;
    store.sync_clock().await?;
    Ok(store)
}

async fn open_store(url: &str) -> CoreResult<Arc<dyn Store>> {
    match BackendUrl::parse(url)? {
        #[cfg(feature = "sqlite")]
        BackendUrl::SqliteFile {
            path,
            synchronous_full,
        } => Ok(Arc::new(
            sqlite::SqliteStore::open_file(&path, synchronous_full).await?,
        )),
        #[cfg(feature = "sqlite")]
        BackendUrl::Memory => Ok(Arc::new(sqlite::SqliteStore::open_memory().await?)),
        #[cfg(feature = "postgres")]
        BackendUrl::Postgres(url) => Ok(Arc::new(postgres::PostgresStore::connect(&url).await?)),
        #[cfg(feature = "mysql")]
        BackendUrl::MySql(url) => Ok(Arc::new(mysql::MySqlStore::connect(&url).await?)),
        #[cfg(feature = "redis")]
        BackendUrl::Redis(url) => Ok(Arc::new(redis::RedisStore::connect(&url).await?)),
        BackendUrl::InProcess => Err(CoreError::config(
            "inprocess:// is the pure-Python fast path; the durable engine cannot open it",
        )),
        #[allow(unreachable_patterns)]
        other => Err(CoreError::config(format!(
            "the {} backend is not available in this build",
            other.kind()
        ))),
    }
}
