//! The producer side: enqueue, look up, cancel and wait for jobs.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Notify;

use crate::config::TaskQueueConfig;
use crate::config::MAX_ATTEMPTS;
use crate::error::{CoreError, CoreResult};
use crate::job::{
    check_text, check_trace_context, progress_value, Enqueued, JobRecord, JobRow, NewJob,
    QueueCounts,
};
use crate::metrics::{self, Series};
use crate::store::{self, Store};
use crate::time::{check_instant, check_secs, secs_to_ms};

/// Largest accepted unique key, in bytes.
const MAX_UNIQUE_KEY: usize = 512;

/// A connection to one task queue: its store and configuration.
///
/// Cheap to clone; clones share the store's connection pool and the in-process
/// wake-ups between producers and workers.
///
/// ```
/// use serde_json::json;
/// use spikard_tasks::{JobStatus, NewJob, TaskQueueClient, TaskQueueConfig};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), spikard_tasks::CoreError> {
/// // `memory://`: an in-process database, handy in tests (nothing on disk).
/// let client = TaskQueueClient::connect(TaskQueueConfig {
///     url: "memory://".into(),
///     queue: "emails".into(),
///     ..TaskQueueConfig::default()
/// })
/// .await?;
/// let ids = client
///     .enqueue(vec![NewJob::new("send").args(json!(["ada@example.com"]))])
///     .await?;
/// let job = client.get(&ids[0].id).await?.expect("stored");
/// assert_eq!(job.status, JobStatus::Pending);
/// assert_eq!(client.counts(None).await?.pending, 1);
/// // Not started yet: cancelled at once.
/// assert!(client.cancel(&ids[0].id).await?);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct TaskQueueClient {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) config: Arc<TaskQueueConfig>,
    /// Woken on every enqueue so an idle worker of this process starts at once.
    pub(crate) enqueued: Arc<Notify>,
    /// Woken whenever a worker of this process writes an outcome.
    pub(crate) finished: Arc<Notify>,
}

impl std::fmt::Debug for TaskQueueClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskQueueClient")
            .field("url", &crate::url::redact(&self.config.url))
            .field("queue", &self.config.queue)
            .finish()
    }
}

impl TaskQueueClient {
    /// Validates `config`, opens its store and sets up the schema (idempotent).
    pub async fn connect(config: TaskQueueConfig) -> CoreResult<Self> {
        config.validate()?;
        let store = store::open(&config.url).await?;
        Ok(Self {
            store,
            config: Arc::new(config),
            enqueued: Arc::new(Notify::new()),
            finished: Arc::new(Notify::new()),
        })
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &TaskQueueConfig {
        &self.config
    }

    /// Resolves defaults and validates one job into a storable row.
    pub fn resolve(&self, job: NewJob, now: i64) -> CoreResult<JobRow> {
        if job.task.is_empty() {
            return Err(CoreError::UnknownTask(String::new()));
        }
        check_text("task name", &job.task)?;
        if !job.args.is_array() {
            return Err(CoreError::Serialization(
                "args must be a JSON array (a list or tuple)".into(),
            ));
        }
        if !job.kwargs.is_object() {
            return Err(CoreError::Serialization(
                "kwargs must be a JSON object (a dict with string keys)".into(),
            ));
        }
        let o = job.options;
        let max_attempts = o.max_attempts.unwrap_or(self.config.max_attempts);
        if !(1..=MAX_ATTEMPTS).contains(&max_attempts) {
            return Err(CoreError::config(format!(
                "max_attempts must be from 1 to {MAX_ATTEMPTS}"
            )));
        }
        let run_at_ms = match (o.delay, o.run_at_ms) {
            (Some(_), Some(_)) => {
                return Err(CoreError::config("give either delay or run_at, not both"))
            }
            (Some(d), None) => {
                let at = now.saturating_add(secs_to_ms(check_secs("delay", d, true)?));
                check_instant("delay (from now)", at)?
            }
            (None, Some(at)) => check_instant("run_at", at)?,
            (None, None) => now,
        };
        let timeout_ms = match o.timeout {
            Some(t) => Some(secs_to_ms(check_secs("timeout", t, false)?)),
            None => None,
        };
        if let Some(key) = &o.unique_key {
            if key.is_empty() || key.len() > MAX_UNIQUE_KEY {
                return Err(CoreError::config(format!(
                    "unique_key must be 1 to {MAX_UNIQUE_KEY} bytes"
                )));
            }
            check_text("unique_key", key)?;
        }
        if let Some(trace) = &o.trace_context {
            check_trace_context(trace)?;
        }
        let queue = o.queue.unwrap_or_else(|| self.config.queue.clone());
        if queue.is_empty() {
            return Err(CoreError::config("queue name must not be empty"));
        }
        check_text("queue name", &queue)?;
        Ok(JobRow {
            id: uuid::Uuid::now_v7().to_string(),
            queue,
            task: job.task,
            args: serde_json::to_string(&job.args)?,
            kwargs: serde_json::to_string(&job.kwargs)?,
            priority: o.priority.unwrap_or(self.config.default_priority),
            max_attempts,
            run_at_ms,
            timeout_ms,
            unique_key: o.unique_key,
            enqueued_at_ms: now,
            trace_context: o.trace_context,
        })
    }

    /// Enqueues jobs in one transaction (all or nothing) and returns their ids in order.
    pub async fn enqueue(&self, jobs: Vec<NewJob>) -> CoreResult<Vec<Enqueued>> {
        let rows = self.resolve_all(jobs)?;
        self.enqueue_rows(rows).await
    }

    /// Resolves jobs with [`Self::resolve`], all at the same moment.
    pub fn resolve_all(&self, jobs: Vec<NewJob>) -> CoreResult<Vec<JobRow>> {
        // The store's clock (the database's, where it has one): delays count from it.
        let now = self.store.now_ms();
        jobs.into_iter().map(|j| self.resolve(j, now)).collect()
    }

    /// Enqueues rows already resolved with [`Self::resolve`].
    pub async fn enqueue_rows(&self, rows: Vec<JobRow>) -> CoreResult<Vec<Enqueued>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        // The store takes the rows: keep their series to count the ones created.
        let series: Vec<_> = series_of(&rows);
        let out = self.store.enqueue(rows).await?;
        for (series, e) in series.iter().zip(&out) {
            if e.created {
                series.enqueued(1);
            }
        }
        self.enqueued.notify_one();
        Ok(out)
    }

    /// Enqueues rows on the calling thread when the store can (see
    /// [`Store::enqueue_blocking`]); `None` when the caller must use
    /// [`Self::enqueue_rows`] instead. For blocking callers only, never async code.
    pub fn enqueue_rows_blocking(&self, rows: &[JobRow]) -> Option<CoreResult<Vec<Enqueued>>> {
        if rows.is_empty() {
            return Some(Ok(Vec::new()));
        }
        let out = self.store.enqueue_blocking(rows)?;
        if let Ok(done) = &out {
            let created = rows.iter().zip(done).filter(|(_, e)| e.created);
            metrics::count_enqueued(created.map(|(r, _)| (r.task.as_str(), r.queue.as_str())));
            self.enqueued.notify_one();
        }
        Some(out)
    }

    /// Reads a job; `None` for an unknown id (an id with a NUL, which no job has,
    /// included: no backend is asked).
    pub async fn get(&self, id: &str) -> CoreResult<Option<JobRecord>> {
        if id.contains('\0') {
            return Ok(None);
        }
        self.store.get(id).await
    }

    /// Cancels a job that has not started, or asks a running one to stop.
    /// `false` for finished or unknown jobs.
    pub async fn cancel(&self, id: &str) -> CoreResult<bool> {
        if id.contains('\0') {
            return Ok(false);
        }
        let cancelled = self.store.cancel(id).await?;
        if cancelled {
            self.finished.notify_waiters();
        }
        Ok(cancelled)
    }

    /// Reports the progress of a running job: stores
    /// `{"fraction": …, "message": …, "at_ms": <the store's clock>}` with it
    /// ([`crate::job::progress_value`]), replacing the value reported before.
    /// Returns `false` (nothing written) for a job that is not running: unknown,
    /// pending, scheduled, retrying or finished.
    ///
    /// The value stays when the job finishes (the last report remains visible), and a
    /// retry keeps it until the next attempt reports its own. A `fraction` that is not
    /// finite or not from 0.0 to 1.0, or a message longer than 1,000 characters or with
    /// a NUL, is refused with [`CoreError::Config`].
    pub async fn set_progress(
        &self,
        id: &str,
        fraction: f64,
        message: Option<&str>,
    ) -> CoreResult<bool> {
        let value = progress_value(fraction, message, self.store.now_ms())?;
        if id.contains('\0') {
            return Ok(false);
        }
        self.store.set_progress(id, &value.to_string()).await
    }

    /// Waits until the job is finished and returns it; `Ok(None)` if `timeout` passed
    /// first. Errors with [`CoreError::Backend`] if the id is unknown.
    pub async fn wait(&self, id: &str, timeout: Option<Duration>) -> CoreResult<Option<JobRecord>> {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut pause = Duration::from_millis(1);
        loop {
            let finished = self.finished.notified();
            tokio::pin!(finished);
            finished.as_mut().enable();
            match self.get(id).await? {
                None => {
                    return Err(CoreError::Backend(format!("no job with id {id:?}")));
                }
                Some(job) if job.status.is_finished() => return Ok(Some(job)),
                Some(_) => {}
            }
            let sleep_until = tokio::time::Instant::now() + pause;
            let wake = match deadline {
                Some(d) if d <= tokio::time::Instant::now() => return Ok(None),
                Some(d) => sleep_until.min(d),
                None => sleep_until,
            };
            tokio::select! {
                _ = &mut finished => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// Closes the store's connections (idempotent); later calls fail with a
    /// `BackendError`. Stop this client's workers and schedulers first.
    pub async fn close(&self) {
        self.store.close().await;
    }

    /// Job counts per state of the configured queue (or `queue`).
    pub async fn counts(&self, queue: Option<&str>) -> CoreResult<QueueCounts> {
        self.store.counts(queue.unwrap_or(&self.config.queue)).await
    }
}

/// Builds the JSON `[args]` array from anything serializable (a Rust convenience).
pub fn json_args<T: serde::Serialize>(args: T) -> CoreResult<Value> {
    let v = serde_json::to_value(args)?;
    if v.is_array() {
        Ok(v)
    } else {
        Ok(Value::Array(vec![v]))
    }
}

/// The metric series of each row (one lookup per run of rows of the same task and queue).
fn series_of(rows: &[JobRow]) -> Vec<Arc<Series>> {
    let mut out: Vec<Arc<Series>> = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let same = i > 0 && rows[i - 1].task == row.task && rows[i - 1].queue == row.queue;
        let series = match out.last() {
            Some(last) if same => last.clone(),
            _ => metrics::series(&row.task, &row.queue),
        };
        out.push(series);
    }
    out
}
