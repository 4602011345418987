//! Job rows read and written the same way by every store: decoding (from a SQL row or a
//! Redis hash) and outcome columns.

use serde_json::Value;

use super::{corrupt_job, shown_status};
use crate::error::{CoreError, CoreResult};
use crate::job::{ClaimedJob, Completion, Enqueued, JobRecord, JobRow, JobStatus};

/// A stored job's columns by name (`None`: NULL or absent). Numbers are parsed from
/// the text unless the store has typed columns.
pub(crate) trait Fields {
    fn text(&self, name: &str) -> CoreResult<Option<String>>;
    /// An INTEGER column (`attempts`, `max_attempts`, `priority`).
    fn int(&self, name: &str) -> CoreResult<Option<i32>> {
        parsed(self, name)
    }
    /// A BIGINT column (times in ms).
    fn big(&self, name: &str) -> CoreResult<Option<i64>> {
        parsed(self, name)
    }
}

fn parsed<T: std::str::FromStr>(f: &(impl Fields + ?Sized), name: &str) -> CoreResult<Option<T>> {
    let Some(text) = f.text(name)? else {
        return Ok(None);
    };
    let id = || f.text("id").ok().flatten().unwrap_or_default();
    let what = || format!("{name} is not a number: {text:?}");
    text.parse().map(Some).map_err(|_| corrupt(&id(), &what()))
}

fn corrupt(id: &str, what: &str) -> CoreError {
    CoreError::Backend(format!("corrupt job row {id}: {what}"))
}

fn need<T>(value: Option<T>, id: &str, name: &str) -> CoreResult<T> {
    value.ok_or_else(|| corrupt(id, &format!("no {name}")))
}

/// Parses a JSON column; a value that is not JSON marks the row corrupt.
fn json(f: &impl Fields, name: &str, id: &str) -> CoreResult<Option<Value>> {
    let parse = |t: String| serde_json::from_str(&t);
    let not_json = |e| corrupt(id, &format!("{name} is not JSON ({e})"));
    f.text(name)?.map(parse).transpose().map_err(not_json)
}

/// The job as a record; `now` (the store's clock) tells `scheduled` from `pending`.
pub(crate) fn record_from(f: &impl Fields, now: i64) -> CoreResult<JobRecord> {
    let id = need(f.text("id")?, "", "id")?;
    let stored = JobStatus::parse(&need(f.text("status")?, &id, "status")?)?;
    let run_at_ms = need(f.big("run_at")?, &id, "run_at")?;
    let errors = match json(f, "errors", &id)? {
        Some(v) => serde_json::from_value(v).map_err(|e| corrupt(&id, &format!("errors ({e})")))?,
        None => Vec::new(),
    };
    Ok(JobRecord {
        queue: need(f.text("queue")?, &id, "queue")?,
        task: need(f.text("task")?, &id, "task")?,
        status: shown_status(stored, run_at_ms > now),
        attempts: need(f.int("attempts")?, &id, "attempts")? as u32,
        max_attempts: need(f.int("max_attempts")?, &id, "max_attempts")? as u32,
        priority: need(f.int("priority")?, &id, "priority")?,
        run_at_ms,
        args: json(f, "args", &id)?.unwrap_or_default(),
        kwargs: json(f, "kwargs", &id)?.unwrap_or_default(),
        result: json(f, "result", &id)?,
        errors,
        cancel_reason: f.text("cancel_reason")?,
        unique_key: f.text("unique_key")?,
        enqueued_at_ms: need(f.big("enqueued_at")?, &id, "enqueued_at")?,
        started_at_ms: f.big("started_at")?,
        finished_at_ms: f.big("finished_at")?,
        progress: json(f, "progress", &id)?,
        trace_context: f.text("trace_context")?,
        id,
    })
}

fn claimed_from(f: &impl Fields, id: &str, attempt: u32) -> CoreResult<ClaimedJob> {
    Ok(ClaimedJob {
        queue: need(f.text("queue")?, id, "queue")?,
        task: need(f.text("task")?, id, "task")?,
        args: json(f, "args", id)?.unwrap_or_default(),
        kwargs: json(f, "kwargs", id)?.unwrap_or_default(),
        attempt,
        max_attempts: need(f.int("max_attempts")?, id, "max_attempts")? as u32,
        timeout: f.big("timeout_ms")?.map(|ms| ms as f64 / 1000.0),
        priority: need(f.int("priority")?, id, "priority")?,
        enqueued_at_ms: f.big("enqueued_at")?,
        trace_context: f.text("trace_context")?,
        run_at_ms: f.big("run_at")?.unwrap_or(0),
        started_at_ms: None,
        id: id.to_owned(),
    })
}

/// A claim's rows as jobs, each with its `run_at` (0 where the row has none), and the
/// corrupt ones as the outcomes that fail them ([`super::corrupt_job`]). `bump` is added
/// to each attempt (MySQL reads its rows before the claim counts the attempt).
#[allow(clippy::type_complexity)]
pub(crate) fn claimed_rows<F: Fields>(
    rows: &[F],
    bump: u32,
    now: i64,
) -> CoreResult<(Vec<(ClaimedJob, i64)>, Vec<(ClaimedJob, Completion)>)> {
    let mut jobs = Vec::with_capacity(rows.len());
    let mut broken = Vec::new();
    for f in rows {
        let text = |name| f.text(name).ok().flatten().unwrap_or_default();
        let id = text("id");
        let attempt = f.int("attempts").ok().flatten().unwrap_or(0) as u32 + bump;
        match claimed_from(f, &id, attempt) {
            Ok(job) => jobs.push((job, f.big("run_at")?.unwrap_or(0))),
            Err(err) => broken.push(corrupt_job(
                (id, text("queue"), text("task")),
                attempt,
                &err,
                now,
            )),
        }
    }
    Ok((jobs, broken))
}

#[cfg(feature = "sqlite")]
/// The id of a job created earlier in the same batch with row `i`'s queue and unique key.
pub(crate) fn earlier_in_batch(rows: &[JobRow], out: &[Enqueued], i: usize) -> Option<String> {
    let row = &rows[i];
    let key = row.unique_key.as_ref()?;
    rows[..i]
        .iter()
        .zip(out)
        .find(|(r, e)| e.created && r.queue == row.queue && r.unique_key.as_ref() == Some(key))
        .map(|(_, e)| e.id.clone())
}

/// Claimed jobs (each with its `run_at`) in the order a claim hands them out: highest
/// priority first, then oldest `run_at`, then id.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn in_claim_order(mut keyed: Vec<(ClaimedJob, i64)>) -> Vec<ClaimedJob> {
    keyed.sort_by(|(a, ra), (b, rb)| {
        b.priority
            .cmp(&a.priority)
            .then(ra.cmp(rb))
            .then(a.id.cmp(&b.id))
    });
    keyed.into_iter().map(|(j, _)| j).collect()
}

/// A multi-row `INSERT` of `n` new jobs into `table` with `?` placeholders (SQLite, MySQL);
/// the binds per row are id, queue, task, args, kwargs, priority, max_attempts, run_at,
/// timeout_ms, unique_key, enqueued_at, trace_context.
#[cfg(any(feature = "sqlite", feature = "mysql"))]
pub(crate) fn insert_jobs_sql(table: &str, n: usize) -> String {
    format!(
        "INSERT INTO {table} (id, queue, task, args, kwargs, status, priority, \
         max_attempts, run_at, timeout_ms, unique_key, enqueued_at, trace_context) VALUES {}",
        vec!["(?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?)"; n].join(", ")
    )
}

/// The multi-row `INSERT` query of `$rows` (`&[&JobRow]`) with every bind in place;
/// `$attempts` is the integer type of the backend's `max_attempts` column, `$tail` (if
/// given) is appended to the statement.
#[cfg(any(feature = "sqlite", feature = "mysql"))]
macro_rules! insert_jobs_query {
    ($rows:expr, $attempts:ty) => {
        $crate::store::rows::insert_jobs_query!($rows, $attempts, "")
    };
    ($rows:expr, $attempts:ty, $tail:expr) => {{
        let rows = $rows;
        let sql = $crate::store::rows::insert_jobs_sql("spikard_jobs", rows.len()) + $tail;
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for r in rows {
            q = q
                .bind(&r.id)
                .bind(&r.queue)
                .bind(&r.task)
                .bind(&r.args)
                .bind(&r.kwargs)
                .bind(r.priority)
                .bind(r.max_attempts as $attempts)
                .bind(r.run_at_ms)
                .bind(r.timeout_ms)
                .bind(&r.unique_key)
                .bind(r.enqueued_at_ms)
                .bind(&r.trace_context);
        }
        q
    }};
}
#[cfg(any(feature = "sqlite", feature = "mysql"))]
pub(crate) use insert_jobs_query;

/// The column values a [`Completion`] writes.
pub(crate) struct CompletionColumns {
    pub status: &'static str,
    pub result: Option<String>,
    pub run_at_ms: Option<i64>,
    pub error: Option<String>,
    pub cancel_reason: Option<String>,
    pub finished_at_ms: Option<i64>,
}

impl CompletionColumns {
    pub(crate) fn new(outcome: &Completion, now: i64) -> CoreResult<Self> {
        let mut cols = Self {
            status: outcome.status().as_str(),
            result: None,
            run_at_ms: None,
            error: None,
            cancel_reason: None,
            finished_at_ms: Some(now),
        };
        match outcome {
            Completion::Succeeded(v) => cols.result = Some(serde_json::to_string(v)?),
            Completion::Retry { run_at_ms, error } => {
                cols.run_at_ms = Some(*run_at_ms);
                cols.error = Some(serde_json::to_string(error)?);
                cols.finished_at_ms = None;
            }
            Completion::Failed(error) => cols.error = Some(serde_json::to_string(error)?),
            Completion::Cancelled { reason } => cols.cancel_reason.clone_from(reason),
        }
        Ok(cols)
    }
}
