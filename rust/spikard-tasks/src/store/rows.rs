//! Row decoding and outcome columns shared by the SQL stores.

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

/// The body of [`Store::cancel`](super::Store::cancel) of a SQL store: `$cancel` (binds:
/// now, id) cancels a job that has not started; when it matched nothing, `$ask` (binds:
/// id) asks a running one to stop. Retried whole if the database aborts it.
macro_rules! cancel_job {
    ($store:ident, $now:expr, $id:ident, $cancel:literal, $ask:literal) => {
        $crate::store::retry::retry_tx(|| async move {
            let done = sqlx::query($cancel)
                .bind($now)
                .bind($id)
                .execute(&$store.pool)
                .await?;
            if done.rows_affected() > 0 {
                return Ok(true);
            }
            let asked = sqlx::query($ask).bind($id).execute(&$store.pool).await?;
            Ok::<_, $crate::store::retry::TxError>(asked.rows_affected() > 0)
        })
        .await
    };
}

pub(crate) use cancel_job;

/// `?, ?, …` with `n` placeholders.
pub(crate) fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
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

/// Generates `record_from_row` and `claimed_from_row` for one sqlx row type; `$int` is
/// the type the backend decodes `INTEGER` columns as.
macro_rules! row_decoders {
    ($row:ty, $int:ty) => {
        /// The row as a record; `now` (the store's clock) tells `scheduled` from `pending`.
        fn record_from_row(
            row: &$row,
            now: i64,
        ) -> $crate::error::CoreResult<$crate::job::JobRecord> {
            use sqlx::Row;
            use $crate::job::JobStatus;
            use $crate::store::rows::decode_json;
            let id: String = row.try_get("id")?;
            let stored = JobStatus::parse(&row.try_get::<String, _>("status")?)?;
            let run_at_ms: i64 = row.try_get("run_at")?;
            let status = if stored == JobStatus::Pending && run_at_ms > now {
                JobStatus::Scheduled
            } else {
                stored
            };
            let errors = match decode_json(row.try_get("errors")?, "errors", &id)? {
                Some(v) => serde_json::from_value(v).map_err(|e| {
                    $crate::error::CoreError::Backend(format!("corrupt job row {id}: errors ({e})"))
                })?,
                None => Vec::new(),
            };
            Ok($crate::job::JobRecord {
                queue: row.try_get("queue")?,
                task: row.try_get("task")?,
                status,
                attempts: row.try_get::<$int, _>("attempts")? as u32,
                max_attempts: row.try_get::<$int, _>("max_attempts")? as u32,
                priority: row.try_get::<$int, _>("priority")? as i32,
                run_at_ms,
                args: decode_json(row.try_get("args")?, "args", &id)?.unwrap_or_default(),
                kwargs: decode_json(row.try_get("kwargs")?, "kwargs", &id)?.unwrap_or_default(),
                result: decode_json(row.try_get("result")?, "result", &id)?,
                errors,
                cancel_reason: row.try_get("cancel_reason")?,
                unique_key: row.try_get("unique_key")?,
                enqueued_at_ms: row.try_get("enqueued_at")?,
                started_at_ms: row.try_get("started_at")?,
                finished_at_ms: row.try_get("finished_at")?,
                id,
            })
        }

        fn claimed_from_row(row: &$row) -> $crate::error::CoreResult<$crate::job::ClaimedJob> {
            use sqlx::Row;
            use $crate::store::rows::decode_json;
            let id: String = row.try_get("id")?;
            Ok($crate::job::ClaimedJob {
                queue: row.try_get("queue")?,
                task: row.try_get("task")?,
                args: decode_json(row.try_get("args")?, "args", &id)?.unwrap_or_default(),
                kwargs: decode_json(row.try_get("kwargs")?, "kwargs", &id)?.unwrap_or_default(),
                attempt: row.try_get::<$int, _>("attempts")? as u32,
                max_attempts: row.try_get::<$int, _>("max_attempts")? as u32,
                timeout: row
                    .try_get::<Option<i64>, _>("timeout_ms")?
                    .map(|ms| ms as f64 / 1000.0),
                priority: row.try_get::<$int, _>("priority")? as i32,
                started_at_ms: None,
                id,
            })
        }
    };
}

pub(crate) use row_decoders;

/// Implements [`ScheduleStore`](super::ScheduleStore) for a SQL store from its four
/// statements. The store provides `pool`, `begin_write()` and `insert_jobs(tx, rows)`.
macro_rules! sql_schedule_store {
    ($ty:ty, save: $save:literal, list: $list:literal, remove: $remove:literal, fire: $fire:literal) => {
        #[async_trait::async_trait]
        impl $crate::store::ScheduleStore for $ty {
            async fn save_schedule(
                &self,
                name: &str,
                definition: &str,
                now_ms: i64,
            ) -> $crate::error::CoreResult<()> {
                sqlx::query($save)
                    .bind(name)
                    .bind(definition)
                    .bind(now_ms)
                    .bind(now_ms)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn schedules(
                &self,
            ) -> $crate::error::CoreResult<Vec<$crate::store::StoredSchedule>> {
                let rows: Vec<(String, String, i64, i64)> =
                    sqlx::query_as($list).fetch_all(&self.pool).await?;
                Ok(rows
                    .into_iter()
                    .map(|(name, definition, last_tick_ms, updated_at_ms)| {
                        $crate::store::StoredSchedule {
                            name,
                            definition,
                            last_tick_ms,
                            updated_at_ms,
                        }
                    })
                    .collect())
            }

            async fn remove_schedule(&self, name: &str) -> $crate::error::CoreResult<bool> {
                let res = sqlx::query($remove).bind(name).execute(&self.pool).await?;
                Ok(res.rows_affected() > 0)
            }

            async fn fire_schedule(
                &self,
                name: &str,
                tick_ms: i64,
                job: Option<$crate::job::JobRow>,
            ) -> $crate::error::CoreResult<Option<$crate::job::Enqueued>> {
                let job = &job;
                $crate::store::retry::retry_tx(|| async move {
                    let mut tx = self.begin_write().await?;
                    let won = sqlx::query($fire)
                        .bind(tick_ms)
                        .bind(name)
                        .bind(tick_ms)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected()
                        == 1;
                    let out = match (won, job) {
                        (true, Some(job)) => Self::insert_jobs(&mut tx, std::slice::from_ref(job))
                            .await?
                            .pop(),
                        _ => None,
                    };
                    tx.commit().await?;
                    Ok::<_, $crate::store::retry::TxError>(out)
                })
                .await
            }
        }
    };
}

pub(crate) use sql_schedule_store;
