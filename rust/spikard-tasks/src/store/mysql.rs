//! MySQL 8 / MariaDB (10.6+) store, on sqlx.
//!
//! Tables are prefixed `spikard_`. Claims use `SELECT … FOR UPDATE SKIP LOCKED` inside a
//! transaction (neither server has `UPDATE … RETURNING`). JSON columns are `LONGTEXT`, so
//! results and arguments are never truncated, and the error history is appended as text
//! (the two servers' JSON functions differ).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::mysql::{MySqlPool, MySqlRow};
use sqlx::{AssertSqlSafe, Connection, MySql, Row, Transaction};
use tokio::sync::Notify;

use super::dialect::my;
use super::retry::{retry_tx, TxError};
use super::rows::{claimed_rows, insert_jobs_query, CompletionColumns};
use super::sql::{placeholders, sql_schedule_store, Sql};
use super::{all_created, fail_corrupt, maintain_locked, Maintenance, Store, LOST, LOST_UNSTARTED};
use crate::error::{CoreError, CoreResult};
use crate::job::{ClaimedJob, Completion, Enqueued, JobRecord, JobRow, QueueCounts};
use crate::time::duration_ms;

/// MySQL error numbers of a column or index that already exists (a concurrent migration).
const ER_DUP_FIELDNAME: u16 = 1060;
const ER_DUP_KEYNAME: u16 = 1061;

/// Appends the JSON text in the bound parameter to the `errors` array text.
const APPEND_ERROR: &str = "CASE WHEN errors IS NULL OR errors = '' OR errors = '[]' \
     THEN CONCAT('[', ?, ']') ELSE CONCAT(LEFT(errors, CHAR_LENGTH(errors) - 1), ',', ?, ']') END";

/// Rows per multi-row INSERT.
const INSERT_CHUNK: usize = 500;

/// A job store in a MySQL or MariaDB database.
#[derive(Clone, Debug)]
pub struct MySqlStore {
    sql: Sql<MySql>,
}

impl MySqlStore {
    /// Starts a write transaction.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, MySql>, sqlx::Error> {
        self.sql.pool.begin().await
    }

    /// Connects and creates the table if needed (idempotent, safe concurrently:
    /// `CREATE TABLE IF NOT EXISTS` is atomic in InnoDB).
    pub async fn connect(url: &str) -> CoreResult<Self> {
        let sql: Sql<MySql> = Sql::new(
            super::pool::connect(url).await?,
            super::pool::HOT_CONNECTIONS,
            &super::dialect::MYSQL,
        );
        sql.setup(&mut *sql.pool.acquire().await?).await?;
        Self::migrate(&sql.pool).await?;
        Ok(Self { sql })
    }

    /// Brings a table of an earlier version up to date: adds the claim index and the
    /// progress and trace context columns and the job list's index where they are missing; safe when several workers start together
    /// (the loser of a race sees "already exists" and goes on).
    async fn migrate(pool: &MySqlPool) -> CoreResult<()> {
        for (column, ddl) in [
            ("ready_queue", my::CLAIM_INDEX),
            ("progress", my::PROGRESS_COLUMN),
            ("trace_context", my::TRACE_CONTEXT_COLUMN),
        ] {
            let present: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'spikard_jobs' \
                 AND COLUMN_NAME = ?",
            )
            .bind(column)
            .fetch_one(pool)
            .await?;
            if present > 0 {
                continue;
            }
            match sqlx::raw_sql(AssertSqlSafe(ddl)).execute(pool).await {
                Err(err) if !already_exists(&err) => return Err(err.into()),
                _ => {}
            }
        }
        let listed: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'spikard_jobs' \
             AND INDEX_NAME = 'spikard_jobs_enqueued'",
        )
        .fetch_one(pool)
        .await?;
        if listed == 0 {
            match sqlx::raw_sql(AssertSqlSafe(my::LIST_INDEX))
                .execute(pool)
                .await
            {
                Err(err) if !already_exists(&err) => return Err(err.into()),
                _ => {}
            }
        }
        Ok(())
    }

    async fn try_enqueue(&self, rows: &[JobRow]) -> Result<Vec<Enqueued>, TxError> {
        let mut conn = self.sql.conns.get().await?;
        let out = if rows.len() <= INSERT_CHUNK && rows.iter().all(|r| r.unique_key.is_none()) {
            // One autocommit statement (atomic on its own): one round trip.
            let plain: Vec<&JobRow> = rows.iter().collect();
            insert_jobs_query!(&plain[..], i32)
                .execute(&mut *conn)
                .await?;
            all_created(rows)
        } else {
            let mut tx = conn.begin().await?;
            let out = self.insert_jobs(&mut tx, rows).await?;
            tx.commit().await?;
            out
        };
        conn.release();
        Ok(out)
    }

    /// Inserts `rows` inside `tx`; a row whose unique key has an unfinished job in its
    /// queue (or one earlier in `rows`) gets that job's id instead.
    ///
    /// Rows without a key go first. Rows with one are inserted with `ON DUPLICATE KEY
    /// UPDATE id = id`, in (queue, key) order: the insert takes the key's lock itself, or
    /// locks and keeps the job that holds the key. (A locking read of an absent key first
    /// would take a gap lock, which lets two producers of neighbouring keys block each
    /// other's inserts: a deadlock.) Every producer locks keys in the same order, so
    /// producers of overlapping keys wait for each other instead of deadlocking. A read
    /// of the keys then finds each one's job.
    async fn insert_jobs(
        &self,
        tx: &mut Transaction<'_, MySql>,
        rows: &[JobRow],
    ) -> Result<Vec<Enqueued>, TxError> {
        let mut out: Vec<Enqueued> = all_created(rows);
        let plain: Vec<&JobRow> = rows.iter().filter(|r| r.unique_key.is_none()).collect();
        for chunk in plain.chunks(INSERT_CHUNK) {
            insert_jobs_query!(chunk, i32).execute(&mut **tx).await?;
        }
        let mut keyed: Vec<(&str, &str, usize)> = rows
            .iter()
            .enumerate()
            .filter_map(|(i, r)| Some((r.queue.as_str(), r.unique_key.as_deref()?, i)))
            .collect();
        // By key, then by position: of equal keys in `rows` the first is inserted.
        keyed.sort_unstable();
        for chunk in keyed.chunks(INSERT_CHUNK) {
            let chunk_rows: Vec<&JobRow> = chunk.iter().map(|&(_, _, i)| &rows[i]).collect();
            insert_jobs_query!(&chunk_rows[..], i32, " ON DUPLICATE KEY UPDATE id = id")
                .execute(&mut **tx)
                .await?;
            let holders = Self::key_holders(tx, chunk).await?;
            for &(queue, key, i) in chunk {
                let id = holders
                    .get(&(queue.to_owned(), key.to_owned()))
                    .ok_or_else(|| {
                        CoreError::Backend(format!(
                            "unique key {key:?} has no job after its insert"
                        ))
                    })?;
                out[i] = Enqueued {
                    created: *id == rows[i].id,
                    id: id.clone(),
                };
            }
        }
        Ok(out)
    }

    /// The id of the unfinished job holding each (queue, key) of `keys` (sorted), read
    /// with a locking read (the newest committed rows, not the transaction's snapshot).
    async fn key_holders(
        tx: &mut Transaction<'_, MySql>,
        keys: &[(&str, &str, usize)],
    ) -> Result<HashMap<(String, String), String>, TxError> {
        let mut by_queue: Vec<(&str, Vec<&str>)> = Vec::new();
        for &(queue, key, _) in keys {
            match by_queue.last_mut() {
                Some((q, ks)) if *q == queue => ks.push(key),
                _ => by_queue.push((queue, vec![key])),
            }
        }
        let filter = by_queue
            .iter()
            .map(|(_, ks)| {
                format!(
                    "(queue = ? AND unique_active IN ({}))",
                    placeholders(ks.len())
                )
            })
            .collect::<Vec<_>>()
            .join(" OR ");
        let sql =
            format!("SELECT queue, unique_active, id FROM spikard_jobs WHERE {filter} FOR UPDATE");
        let mut q = sqlx::query_as::<_, (String, String, String)>(AssertSqlSafe(sql));
        for (queue, ks) in by_queue {
            q = q.bind(queue);
            for key in ks {
                q = q.bind(key);
            }
        }
        let found = q.fetch_all(&mut **tx).await?;
        Ok(found
            .into_iter()
            .map(|(queue, key, id)| ((queue, key), id))
            .collect())
    }

    /// One claim transaction (see [`Store::claim`]).
    async fn try_claim(
        &self,
        queues: &[String],
        worker: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<(Vec<(ClaimedJob, i64)>, Vec<(ClaimedJob, Completion)>), TxError> {
        let now = self.sql.clock.now_ms();
        let mut conn = self.sql.conns.get().await?;
        let mut tx = conn.begin().await?;
        // One ordered range of the claim index per queue, read with everything a claimed
        // job needs; the best `limit` of them win (rows locked but not taken are
        // unlocked at commit).
        let mut picked: Vec<(ClaimKey, MySqlRow)> = Vec::new();
        for queue in queues {
            let rows = sqlx::query(my::CLAIM)
                .bind(queue)
                .bind(now)
                .bind(limit as i64)
                .fetch_all(&mut *tx)
                .await?;
            for row in rows {
                let key = (
                    std::cmp::Reverse(row.try_get::<i32, _>("priority")?),
                    row.try_get::<i64, _>("run_at")?,
                    row.try_get::<String, _>("id")?,
                );
                picked.push((key, row));
            }
        }
        picked.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        picked.truncate(limit);
        if picked.is_empty() {
            tx.commit().await?;
            conn.release();
            return Ok((Vec::new(), Vec::new()));
        }
        let sql = format!(
            "UPDATE spikard_jobs SET status = 'running', attempts = attempts + 1, \
             locked_by = ?, lease_until = ?, started_at = NULL WHERE id IN ({})",
            placeholders(picked.len())
        );
        let mut q = sqlx::query(AssertSqlSafe(sql))
            .bind(worker)
            .bind(now.saturating_add(duration_ms(lease)));
        for ((_, _, id), _) in &picked {
            q = q.bind(id);
        }
        q.execute(&mut *tx).await?;
        tx.commit().await?;
        conn.release();
        // The rows were read before the update counted this attempt.
        let rows: Vec<MySqlRow> = picked.into_iter().map(|(_, row)| row).collect();
        claimed_rows(&rows, 1, now).map_err(TxError::from)
    }
}

fn already_exists(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .and_then(|e| e.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>())
        .is_some_and(|e| matches!(e.number(), ER_DUP_FIELDNAME | ER_DUP_KEYNAME))
}

#[async_trait]
impl Store for MySqlStore {
    async fn enqueue(&self, rows: Vec<JobRow>) -> CoreResult<Vec<Enqueued>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        retry_tx(|| self.try_enqueue(&rows)).await
    }

    async fn get(&self, id: &str) -> CoreResult<Option<JobRecord>> {
        self.sql.get(id).await
    }

    async fn set_progress(&self, id: &str, progress: &str) -> CoreResult<bool> {
        self.sql.set_progress(id, progress).await
    }

    async fn cancel(&self, id: &str) -> CoreResult<bool> {
        self.sql.cancel(id).await
    }

    async fn claim(
        &self,
        queues: &[String],
        worker: &str,
        limit: usize,
        lease: Duration,
    ) -> CoreResult<Vec<ClaimedJob>> {
        if limit == 0 || queues.is_empty() {
            return Ok(Vec::new());
        }
        let (jobs, broken) = retry_tx(|| self.try_claim(queues, worker, limit, lease)).await?;
        fail_corrupt(self, worker, broken).await;
        Ok(jobs.into_iter().map(|(job, _)| job).collect())
    }

    async fn complete(
        &self,
        worker: &str,
        done: Vec<(ClaimedJob, Completion)>,
    ) -> CoreResult<usize> {
        if done.is_empty() {
            return Ok(0);
        }
        let now = self.sql.clock.now_ms();
        let done = &done;
        retry_tx(|| async move {
            let mut written = 0usize;
            let chunks: Vec<_> = done.chunks(COMPLETE_CHUNK).collect();
            let mut conn = self.sql.conns.get().await?;
            // One statement writes a chunk; only several chunks need a transaction.
            if let [chunk] = chunks.as_slice() {
                let q = complete_statement(worker, chunk, now)?;
                written = q.execute(&mut *conn).await?.rows_affected() as usize;
            } else {
                let mut tx = conn.begin().await?;
                for chunk in chunks {
                    let q = complete_statement(worker, chunk, now)?;
                    written += q.execute(&mut *tx).await?.rows_affected() as usize;
                }
                tx.commit().await?;
            }
            conn.release();
            Ok::<_, TxError>(written)
        })
        .await
    }

    async fn heartbeat(
        &self,
        worker: &str,
        ids: &[String],
        lease: Duration,
    ) -> CoreResult<Vec<String>> {
        let until = self.sql.clock.now_ms().saturating_add(duration_ms(lease));
        // Renewing a lease twice is harmless: a retry runs every chunk again.
        retry_tx(|| async move {
            let mut cancel = Vec::new();
            let mut conn = self.sql.conns.get().await?;
            // By primary key only: no gap locks on the locked_by index to deadlock with
            // claims.
            for chunk in ids.chunks(INSERT_CHUNK) {
                let list = placeholders(chunk.len());
                let sql = format!(
                    "UPDATE spikard_jobs SET lease_until = ? WHERE id IN ({list}) \
                     AND locked_by = ? AND status = 'running'"
                );
                let mut q = sqlx::query(AssertSqlSafe(sql)).bind(until);
                for id in chunk {
                    q = q.bind(id);
                }
                q.bind(worker).execute(&mut *conn).await?;
                let sql = format!(
                    "SELECT id FROM spikard_jobs WHERE id IN ({list}) AND locked_by = ? \
                     AND status = 'running' AND cancel_requested = 1"
                );
                let mut q = sqlx::query_scalar::<_, String>(AssertSqlSafe(sql));
                for id in chunk {
                    q = q.bind(id);
                }
                cancel.extend(q.bind(worker).fetch_all(&mut *conn).await?);
            }
            conn.release();
            Ok::<_, TxError>(cancel)
        })
        .await
    }

    async fn mark_started(&self, worker: &str, started: &[(String, i64)]) -> CoreResult<u64> {
        // Recording a start twice is harmless: a retry runs every chunk again.
        retry_tx(|| async move {
            let mut marked = 0;
            let mut conn = self.sql.conns.get().await?;
            for chunk in started.chunks(INSERT_CHUNK) {
                let sql = format!(
                    "UPDATE spikard_jobs SET started_at = CASE id {}END \
                     WHERE id IN ({}) AND locked_by = ? AND status = 'running'",
                    "WHEN ? THEN ? ".repeat(chunk.len()),
                    placeholders(chunk.len())
                );
                let mut q = sqlx::query(AssertSqlSafe(sql));
                for (id, at) in chunk {
                    q = q.bind(id).bind(at);
                }
                for (id, _) in chunk {
                    q = q.bind(id);
                }
                marked += q.bind(worker).execute(&mut *conn).await?.rows_affected();
            }
            conn.release();
            Ok::<_, TxError>(marked)
        })
        .await
    }

    async fn rescue_expired(&self, limit: usize) -> CoreResult<u64> {
        retry_tx(|| async move {
            let now = self.sql.clock.now_ms();
            let mut tx = self.sql.pool.begin().await?;
            // `counted`: the attempt ran (its start was recorded), or it is the second
            // rescue of the same unrecorded attempt. Decided in a locked read, then written
            // by two plain updates (no SET expression reads a column assigned before it).
            // The latest entry is indexed by JSON_LENGTH: MariaDB 10.11's `$[last]` returned
            // NULL for some rows of a multi-row statement.
            let sql = format!(
                "SELECT id, CAST(started_at IS NOT NULL OR COALESCE( \
                     JSON_EXTRACT(errors, CONCAT('$[', JSON_LENGTH(errors) - 1, '].attempt')) = attempts \
                     AND JSON_UNQUOTE(JSON_EXTRACT(errors, \
                         CONCAT('$[', JSON_LENGTH(errors) - 1, '].error'))) = '{LOST_UNSTARTED}', \
                     FALSE) AS SIGNED) \
                 FROM spikard_jobs WHERE status = 'running' AND lease_until < ? \
                 ORDER BY lease_until LIMIT ? FOR UPDATE SKIP LOCKED"
            );
            let expired: Vec<(String, i64)> = sqlx::query_as(AssertSqlSafe(sql))
                .bind(now)
                .bind(limit as i64)
                .fetch_all(&mut *tx)
                .await?;
            let (counted, unstarted): (Vec<_>, Vec<_>) = expired.iter().partition(|(_, c)| *c != 0);
            let entry = |text: &str| {
                format!(
                    "JSON_OBJECT('attempt', attempts, 'error', '{text}', 'traceback', NULL, 'at_ms', ?)"
                )
            };
            for (ids, text, rest) in [
                (
                    &counted,
                    LOST,
                    "status = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'retrying' END, \
                     finished_at = CASE WHEN attempts >= max_attempts THEN ? ELSE NULL END",
                ),
                (
                    &unstarted,
                    LOST_UNSTARTED,
                    "status = CASE WHEN attempts > 1 THEN 'retrying' ELSE 'pending' END, \
                     finished_at = NULL + ?, attempts = attempts - 1",
                ),
            ] {
                if ids.is_empty() {
                    continue;
                }
                let e = entry(text);
                let sql = format!(
                    "UPDATE spikard_jobs SET \
                         errors = CASE WHEN errors IS NULL OR errors = '' OR errors = '[]' \
                             THEN CONCAT('[', {e}, ']') \
                             ELSE CONCAT(LEFT(errors, CHAR_LENGTH(errors) - 1), ',', {e}, ']') END, \
                         {rest}, run_at = ?, locked_by = NULL, lease_until = NULL \
                     WHERE id IN ({})",
                    placeholders(ids.len())
                );
                let mut q = sqlx::query(AssertSqlSafe(sql))
                    .bind(now)
                    .bind(now)
                    .bind(now)
                    .bind(now);
                for (id, _) in ids.iter() {
                    q = q.bind(id);
                }
                q.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok::<_, TxError>(expired.len() as u64)
        })
        .await
    }

    async fn release(&self, worker: &str, ids: Option<&[String]>) -> CoreResult<u64> {
        self.sql.release(worker, ids).await
    }

    async fn counts(&self, queue: &str) -> CoreResult<QueueCounts> {
        self.sql.counts(queue).await
    }

    async fn purge_finished(&self, before_ms: i64, limit: usize) -> CoreResult<u64> {
        self.sql.purge(before_ms, limit).await
    }

    async fn maintain(&self, purge_before: Option<i64>) -> CoreResult<Maintenance> {
        maintain_locked(self, purge_before, self.sql.purge_lock()).await
    }

    async fn close(&self) {
        self.sql.conns.close().await;
    }

    fn now_ms(&self) -> i64 {
        self.sql.clock.now_ms()
    }

    async fn sync_clock(&self) -> CoreResult<i64> {
        self.sql.sync_clock().await
    }

    fn spawn_listener(
        &self,
        _queues: Vec<String>,
        wake: Arc<Notify>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let newest = "SELECT MAX(id) FROM spikard_jobs";
        Some(
            self.sql
                .watch::<Option<String>>("MySQL job watcher", newest, WATCH_INTERVAL, wake),
        )
    }
}

/// A claimed row's place in the claim order: priority (highest first), run_at, id.
type ClaimKey = (std::cmp::Reverse<i32>, i64, String);

/// Most outcomes written by one statement (at most 16 bound values each).
const COMPLETE_CHUNK: usize = 512;

/// One `UPDATE` writing the outcomes of `chunk`, each only while `worker` holds that
/// attempt's lease: every column is a `CASE id WHEN … THEN … END` over the chunk and the
/// rows are found by primary key only (no scan, no gap locks to deadlock with claims).
fn complete_statement<'q>(
    worker: &'q str,
    chunk: &'q [(ClaimedJob, Completion)],
    now: i64,
) -> CoreResult<sqlx::query::Query<'q, MySql, sqlx::mysql::MySqlArguments>> {
    let cols = chunk
        .iter()
        .map(|(job, outcome)| Ok((job, CompletionColumns::new(outcome, now)?)))
        .collect::<CoreResult<Vec<_>>>()?;
    let when = |n: usize| "WHEN ? THEN ? ".repeat(n);
    let errors = cols.iter().filter(|(_, c)| c.error.is_some()).count();
    let retries = cols.iter().filter(|(_, c)| c.run_at_ms.is_some()).count();
    let reasons = cols
        .iter()
        .filter(|(_, c)| c.cancel_reason.is_some())
        .count();
    let mut sets = vec![
        format!("status = CASE id {}END", when(cols.len())),
        format!("result = CASE id {}END", when(cols.len())),
        format!("finished_at = CASE id {}END", when(cols.len())),
    ];
    if retries > 0 {
        sets.push(format!("run_at = CASE id {}ELSE run_at END", when(retries)));
    }
    if errors > 0 {
        let append = format!("WHEN ? THEN {APPEND_ERROR} ");
        sets.push(format!(
            "errors = CASE id {}ELSE errors END",
            append.repeat(errors)
        ));
    }
    if reasons > 0 {
        sets.push(format!(
            "cancel_reason = CASE id {}ELSE cancel_reason END",
            when(reasons)
        ));
    }
    let starts = cols
        .iter()
        .filter(|(j, _)| j.started_at_ms.is_some())
        .count();
    if starts > 0 {
        sets.push(format!(
            "started_at = CASE id {}ELSE started_at END",
            when(starts)
        ));
    }
    let sql = format!(
        "UPDATE spikard_jobs SET {}, locked_by = NULL, lease_until = NULL \
         WHERE id IN ({}) AND locked_by = ? AND status = 'running' AND attempts = CASE id {}END",
        sets.join(", "),
        placeholders(cols.len()),
        when(cols.len())
    );
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for (job, c) in &cols {
        q = q.bind(&job.id).bind(c.status);
    }
    for (job, c) in &cols {
        q = q.bind(&job.id).bind(c.result.clone());
    }
    for (job, c) in &cols {
        q = q.bind(&job.id).bind(c.finished_at_ms);
    }
    for (job, c) in cols.iter().filter(|(_, c)| c.run_at_ms.is_some()) {
        q = q.bind(&job.id).bind(c.run_at_ms);
    }
    for (job, c) in cols.iter().filter(|(_, c)| c.error.is_some()) {
        q = q.bind(&job.id).bind(c.error.clone()).bind(c.error.clone());
    }
    for (job, c) in cols.iter().filter(|(_, c)| c.cancel_reason.is_some()) {
        q = q.bind(&job.id).bind(c.cancel_reason.clone());
    }
    for (job, _) in cols.iter().filter(|(j, _)| j.started_at_ms.is_some()) {
        q = q.bind(&job.id).bind(job.started_at_ms);
    }
    for (job, _) in &cols {
        q = q.bind(&job.id);
    }
    q = q.bind(worker);
    for (job, _) in &cols {
        q = q.bind(&job.id).bind(job.attempt as i32);
    }
    Ok(q)
}

/// How often an idle worker's watcher asks for the newest job id.
const WATCH_INTERVAL: Duration = Duration::from_millis(5);

sql_schedule_store!(MySqlStore);

super::sql_ops::sql_ops_store!(MySqlStore, |_s| ());
super::sql_limits::sql_limit_store!(MySqlStore, |_s| ());
