//! Row decoding and outcome columns shared by the stores.

use serde_json::Value;

use crate::error::{CoreError, CoreResult};
use crate::job::{ClaimedJob, Completion, Enqueued, JobRow};

/// Parses a JSON column; a value that is not JSON marks the row corrupt.
pub(crate) fn decode_json(text: Option<String>, what: &str, id: &str) -> CoreResult<Option<Value>> {
    text.map(|t| {
        serde_json::from_str(&t).map_err(|e| {
            CoreError::Backend(format!("corrupt job row {id}: {what} is not JSON ({e})"))
        })
    })
    .transpose()
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
/// timeout_ms, unique_key, enqueued_at.
#[cfg(any(feature = "sqlite", feature = "mysql"))]
pub(crate) fn insert_jobs_sql(table: &str, n: usize) -> String {
    format!(
        "INSERT INTO {table} (id, queue, task, args, kwargs, status, priority, \
         max_attempts, run_at, timeout_ms, unique_key, enqueued_at) VALUES {}",
        vec!["(?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?)"; n].join(", ")
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
                .bind(r.enqueued_at_ms);
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
