//! Jobs: the state enum, what is enqueued, what is stored and what a worker claims.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{CoreError, CoreResult};

/// The one job-state enum. Transitions:
///
/// ```text
///  enqueue ──► pending ◄──────────────┐ (run_at reached; a scheduled job is pending whose run_at is ahead)
///  enqueue(delay) ──► scheduled ──────┘
///  pending ──claim──► running ──ok──► succeeded
///                     running ──error, attempts left──► retrying ──run_at reached──► running
///                     running ──error, none left──► failed
///                     running ──Cancel / cancel()──► cancelled
///                     running ──lease expired (worker died)──► retrying (or failed if no attempts left)
///                     running ──graceful drain timed out──► pending (attempt not counted)
///  pending | scheduled | retrying ──cancel()──► cancelled
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Ready to run.
    Pending,
    /// Waiting for its `run_at`.
    Scheduled,
    /// Claimed by a worker that holds its lease.
    Running,
    /// An attempt failed; waiting for its next attempt.
    Retrying,
    /// The handler returned; its value is stored.
    Succeeded,
    /// Every attempt failed (the dead state).
    Failed,
    /// Cancelled before or while running.
    Cancelled,
}

impl JobStatus {
    /// The lowercase name stored in backends and shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Scheduled => "scheduled",
            Self::Running => "running",
            Self::Retrying => "retrying",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> CoreResult<Self> {
        Ok(match s {
            "pending" => Self::Pending,
            "scheduled" => Self::Scheduled,
            "running" => Self::Running,
            "retrying" => Self::Retrying,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            other => {
                return Err(CoreError::Backend(format!(
                    "corrupt job row: unknown status {other:?}"
                )))
            }
        })
    }

    /// True for the states a job never leaves.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

/// Per-job options given at enqueue time; unset ones take the task's or queue's defaults.
///
/// ```
/// use serde_json::json;
/// use spikard_tasks::{JobOptions, JobStatus, NewJob, TaskQueueClient, TaskQueueConfig};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), spikard_tasks::CoreError> {
/// # let client = TaskQueueClient::connect(TaskQueueConfig {
/// #     url: "memory://".into(),
/// #     ..TaskQueueConfig::default()
/// # })
/// # .await?;
/// let options = JobOptions {
///     priority: Some(10),     // runs before lower priorities
///     delay: Some(60.0),      // not before a minute from now
///     max_attempts: Some(5),  // instead of the queue's max_attempts
///     timeout: Some(30.0),    // each attempt may run 30 s
///     // While a job with this key is unfinished, enqueueing returns that job.
///     unique_key: Some("report:2024-06".into()),
///     ..JobOptions::default()
/// };
/// let job = NewJob::new("report").args(json!([2024, 6])).options(options);
/// let first = client.enqueue(vec![job.clone()]).await?;
/// let again = client.enqueue(vec![job]).await?;
/// assert!(first[0].created && !again[0].created);
/// assert_eq!(again[0].id, first[0].id);
/// let stored = client.get(&first[0].id).await?.expect("stored");
/// assert_eq!(stored.status, JobStatus::Scheduled);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobOptions {
    /// Higher runs first among ready jobs.
    pub priority: Option<i32>,
    /// Seconds from now before the job may start.
    pub delay: Option<f64>,
    /// Absolute start time, milliseconds since the epoch (bindings convert aware datetimes).
    pub run_at_ms: Option<i64>,
    /// Attempts before the job fails for good.
    pub max_attempts: Option<u32>,
    /// While a job with this key is not finished, enqueueing another returns it instead.
    pub unique_key: Option<String>,
    /// Seconds an attempt may run before it is failed with a timeout error.
    pub timeout: Option<f64>,
    /// Queue to put the job in (defaults to the configured queue).
    pub queue: Option<String>,
    /// The W3C trace context of the span that enqueued the job: its `traceparent`,
    /// optionally followed by `;` and its `tracestate`. Opaque to the engine (checked
    /// by [`check_trace_context`] only), stored with the job and handed to the handler
    /// of every attempt ([`ClaimedJob::trace_context`]).
    pub trace_context: Option<String>,
}

/// Refuses a name or key that no backend can store the same way: PostgreSQL text
/// cannot hold a NUL character, so no backend takes one (the error names `field`).
pub fn check_text(field: &str, value: &str) -> CoreResult<()> {
    if value.contains('\0') {
        return Err(CoreError::config(format!(
            "{field} must not contain a NUL character (\\0)"
        )));
    }
    Ok(())
}

/// Longest trace context ([`JobOptions::trace_context`]), in characters.
pub const MAX_TRACE_CONTEXT: usize = 512;

/// Refuses a trace context no backend should store: longer than
/// [`MAX_TRACE_CONTEXT`] characters, not ASCII, or with a NUL ([`CoreError::Config`]
/// naming the field). Its content is otherwise not looked at.
pub fn check_trace_context(value: &str) -> CoreResult<()> {
    if value.len() > MAX_TRACE_CONTEXT || !value.is_ascii() {
        return Err(CoreError::config(format!(
            "trace_context must be at most {MAX_TRACE_CONTEXT} ASCII characters"
        )));
    }
    check_text("trace_context", value)
}

/// Longest progress message, in characters.
pub const MAX_PROGRESS_MESSAGE: usize = 1000;

/// The progress a handler reports, as stored with its job:
/// `{"fraction": 0.4, "message": "step 2 of 5" | null, "at_ms": 1718000000000}`.
///
/// `fraction` must be finite and from 0.0 to 1.0; `message` at most
/// [`MAX_PROGRESS_MESSAGE`] characters without a NUL. Both are refused with a
/// [`CoreError::Config`] otherwise. `at_ms` is when it was reported (the store's clock).
pub fn progress_value(fraction: f64, message: Option<&str>, at_ms: i64) -> CoreResult<Value> {
    if !fraction.is_finite() || !(0.0..=1.0).contains(&fraction) {
        return Err(CoreError::config(format!(
            "progress must be a finite number from 0.0 to 1.0, not {fraction}"
        )));
    }
    if let Some(text) = message {
        if text.chars().count() > MAX_PROGRESS_MESSAGE {
            return Err(CoreError::config(format!(
                "progress message must be at most {MAX_PROGRESS_MESSAGE} characters"
            )));
        }
        check_text("progress message", text)?;
    }
    Ok(serde_json::json!({
        // `+ 0.0` stores -0.0 as 0.0.
        "fraction": fraction + 0.0,
        "message": message,
        "at_ms": at_ms,
    }))
}

/// A job to enqueue: task name, JSON arguments and options.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewJob {
    /// Registered task name.
    pub task: String,
    /// Positional arguments (a JSON array).
    pub args: Value,
    /// Keyword arguments (a JSON object).
    pub kwargs: Value,
    /// Options.
    #[serde(default)]
    pub options: JobOptions,
}

impl NewJob {
    /// A job with no arguments and default options.
    pub fn new(task: impl Into<String>) -> Self {
        Self {
            task: task.into(),
            args: Value::Array(vec![]),
            kwargs: Value::Object(Default::default()),
            options: JobOptions::default(),
        }
    }

    /// Sets the positional arguments.
    pub fn args(mut self, args: Value) -> Self {
        self.args = args;
        self
    }

    /// Sets the options.
    pub fn options(mut self, options: JobOptions) -> Self {
        self.options = options;
        self
    }
}

/// A fully resolved row, ready for a backend to insert.
#[derive(Clone, Debug, PartialEq)]
pub struct JobRow {
    /// Job id (UUIDv7, time ordered).
    pub id: String,
    /// Queue name.
    pub queue: String,
    /// Task name.
    pub task: String,
    /// Positional arguments as JSON text.
    pub args: String,
    /// Keyword arguments as JSON text.
    pub kwargs: String,
    /// Priority (higher first).
    pub priority: i32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Earliest start, ms since epoch.
    pub run_at_ms: i64,
    /// Attempt timeout in ms, if any.
    pub timeout_ms: Option<i64>,
    /// De-duplication key, if any.
    pub unique_key: Option<String>,
    /// When it was enqueued, ms since epoch.
    pub enqueued_at_ms: i64,
    /// The enqueuing span's trace context ([`JobOptions::trace_context`]), if any.
    pub trace_context: Option<String>,
}

/// What an enqueue returned for one job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enqueued {
    /// The job's id (an existing job's id when a unique key matched).
    pub id: String,
    /// False when an unfinished job with the same unique key was returned instead.
    pub created: bool,
}

/// The error of one failed attempt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttemptError {
    /// 1-based attempt number.
    pub attempt: u32,
    /// Error text, `"ExcType: message"` for Python exceptions.
    pub error: String,
    /// Formatted traceback, when there is one.
    #[serde(default)]
    pub traceback: Option<String>,
    /// When the attempt ended, ms since epoch.
    pub at_ms: i64,
}

/// A snapshot of a stored job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Job id.
    pub id: String,
    /// Queue name.
    pub queue: String,
    /// Task name.
    pub task: String,
    /// Current state.
    pub status: JobStatus,
    /// Attempts started so far.
    pub attempts: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Priority.
    pub priority: i32,
    /// Earliest (next) start, ms since epoch.
    pub run_at_ms: i64,
    /// Positional arguments.
    pub args: Value,
    /// Keyword arguments.
    pub kwargs: Value,
    /// The handler's return value, once succeeded.
    pub result: Option<Value>,
    /// One entry per failed attempt.
    pub errors: Vec<AttemptError>,
    /// Why it was cancelled, if it was.
    pub cancel_reason: Option<String>,
    /// De-duplication key.
    pub unique_key: Option<String>,
    /// Enqueue time, ms since epoch.
    pub enqueued_at_ms: i64,
    /// Start of the latest attempt, ms since epoch.
    pub started_at_ms: Option<i64>,
    /// When it reached a finished state, ms since epoch.
    pub finished_at_ms: Option<i64>,
    /// The progress its handler last reported ([`progress_value`]'s object), if any.
    /// It stays when the job finishes, and over a retry until the next attempt
    /// reports again.
    #[serde(default)]
    pub progress: Option<Value>,
    /// The enqueuing span's trace context ([`JobOptions::trace_context`]), if any.
    #[serde(default)]
    pub trace_context: Option<String>,
}

/// A job a worker has claimed: it holds the lease for `attempt`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClaimedJob {
    /// Job id.
    pub id: String,
    /// Queue name.
    pub queue: String,
    /// Task name.
    pub task: String,
    /// Positional arguments.
    pub args: Value,
    /// Keyword arguments.
    pub kwargs: Value,
    /// This attempt's number (1-based).
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Attempt timeout in seconds, if any.
    pub timeout: Option<f64>,
    /// Priority.
    pub priority: i32,
    /// When the job was enqueued, ms since epoch, as stored (`None` only for a row
    /// that lacks it).
    pub enqueued_at_ms: Option<i64>,
    /// The `run_at` the job was claimed with (when it was due: its enqueue time, the time
    /// it was delayed to, or a retry's time), ms since epoch; 0 where it is not known.
    /// (Not an `Option`: the job travels by value through the bindings' channels and is
    /// kept small.)
    pub run_at_ms: i64,
    /// When this attempt began running in the worker, ms since epoch; `None` while the
    /// job is only claimed (held ahead of a free slot). Set by the worker, written with
    /// the outcome, so a finished job shows when its last attempt really started.
    pub started_at_ms: Option<i64>,
    /// The enqueuing span's trace context ([`JobOptions::trace_context`]), if any: the
    /// parent of the span this attempt runs in.
    pub trace_context: Option<String>,
}

/// The outcome of an attempt, as written back to the backend.
#[derive(Clone, Debug, PartialEq)]
pub enum Completion {
    /// Succeeded with this JSON result.
    Succeeded(Value),
    /// Failed; run again at `run_at_ms`.
    Retry {
        /// Next start, ms since epoch.
        run_at_ms: i64,
        /// The failed attempt's error.
        error: AttemptError,
    },
    /// Failed for good.
    Failed(AttemptError),
    /// Cancelled; no more attempts.
    Cancelled {
        /// Why.
        reason: Option<String>,
    },
}

impl Completion {
    /// The state this completion moves the job to.
    pub fn status(&self) -> JobStatus {
        match self {
            Self::Succeeded(_) => JobStatus::Succeeded,
            Self::Retry { .. } => JobStatus::Retrying,
            Self::Failed(_) => JobStatus::Failed,
            Self::Cancelled { .. } => JobStatus::Cancelled,
        }
    }
}

/// Counts of jobs per state in one queue.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueCounts {
    /// Ready to run.
    pub pending: u64,
    /// Waiting for run_at.
    pub scheduled: u64,
    /// Running.
    pub running: u64,
    /// Waiting for a retry.
    pub retrying: u64,
    /// Succeeded.
    pub succeeded: u64,
    /// Failed.
    pub failed: u64,
    /// Cancelled.
    pub cancelled: u64,
}

impl QueueCounts {
    /// Adds `n` to the counter of `status`.
    pub fn add(&mut self, status: JobStatus, n: u64) {
        let slot = match status {
            JobStatus::Pending => &mut self.pending,
            JobStatus::Scheduled => &mut self.scheduled,
            JobStatus::Running => &mut self.running,
            JobStatus::Retrying => &mut self.retrying,
            JobStatus::Succeeded => &mut self.succeeded,
            JobStatus::Failed => &mut self.failed,
            JobStatus::Cancelled => &mut self.cancelled,
        };
        *slot += n;
    }

    /// Jobs not yet finished.
    pub fn unfinished(&self) -> u64 {
        self.pending + self.scheduled + self.running + self.retrying
    }
}
