//! PostgreSQL store, on sqlx.
//!
//! Tables live in their own schema (`spikard_tasks`). Workers claim with
//! `FOR UPDATE SKIP LOCKED`, so any number of workers on any number of hosts share one
//! queue without blocking each other. Enqueues `NOTIFY` inside their transaction and
//! idle workers `LISTEN`, so a new job starts within milliseconds, not a poll interval.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgListener, PgPool, PgRow};
use sqlx::{AssertSqlSafe, Row};
use tokio::sync::Notify;

use super::conns::Conns;
use super::retry::{retry_tx, TxError};
use super::rows::{cancel_job, in_claim_order, CompletionColumns};
use super::{all_created, purge_rounds, rescue_rounds, Maintenance, Store, LOST, LOST_UNSTARTED};
use crate::error::{CoreError, CoreResult};
use crate::job::{
    AttemptError, ClaimedJob, Completion, Enqueued, JobRecord, JobRow, JobStatus, QueueCounts,
};
use crate::time::{duration_ms, now_ms, DbClock};

const CHANNEL: &str = "spikard_tasks_enqueued";
/// The advisory lock key of the maintenance round (any fixed number; "spkt" in ASCII).
const MAINTENANCE_LOCK: i64 = 0x7370_6b74;

const SCHEMA: &str = r#"
CREATE SCHEMA IF NOT EXISTS spikard_tasks;
CREATE TABLE IF NOT EXISTS spikard_tasks.jobs (
    id TEXT PRIMARY KEY,
    queue TEXT NOT NULL,
    task TEXT NOT NULL,
    args TEXT NOT NULL,
    kwargs TEXT NOT NULL,
    status TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    run_at BIGINT NOT NULL,
    timeout_ms BIGINT,
    unique_key TEXT,
    result TEXT,
    errors JSONB,
    cancel_reason TEXT,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    enqueued_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    locked_by TEXT,
    lease_until BIGINT
);
CREATE INDEX IF NOT EXISTS jobs_ready
    ON spikard_tasks.jobs (queue, priority DESC, run_at, id) WHERE status IN ('pending', 'retrying');
CREATE INDEX IF NOT EXISTS jobs_lease
    ON spikard_tasks.jobs (lease_until) WHERE status = 'running';
-- Heartbeats and outcomes go by id, and a release by worker reads the running rows of
-- jobs_lease: one index less to update on every claim.
DROP INDEX IF EXISTS spikard_tasks.jobs_locked;
CREATE UNIQUE INDEX IF NOT EXISTS jobs_unique
    ON spikard_tasks.jobs (queue, unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('pending', 'running', 'retrying');
-- No (queue, status) index for counts: every claim and outcome would update it, and
-- counting a queue of 1,000,000 rows took 60 ms with it and 92 ms without.
DROP INDEX IF EXISTS spikard_tasks.jobs_counts;
CREATE INDEX IF NOT EXISTS jobs_finished
    ON spikard_tasks.jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS spikard_tasks.schedules (
    name TEXT PRIMARY KEY,
    definition TEXT NOT NULL,
    last_tick BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS spikard_tasks.meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO spikard_tasks.meta (key, value) VALUES ('schema_version', '1') ON CONFLICT DO NOTHING;
"#;

const COLUMNS: &str = "id, queue, task, args, kwargs, status, priority, attempts, max_attempts, \
     run_at, timeout_ms, unique_key, result, errors::text AS errors, cancel_reason, enqueued_at, \
     started_at, finished_at";

/// A job store in a PostgreSQL database.
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
    /// The hot path's connections (enqueue, claim, outcomes, heartbeats).
    conns: Conns<sqlx::Postgres>,
    /// The database's clock (leases and run_at are compared on it).
    clock: Arc<DbClock>,
}

impl PostgresStore {
    /// Starts a write transaction.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        self.pool.begin().await
    }

    /// Connects and sets up the schema (idempotent; safe when several workers start at
    /// once: setup runs under a transaction-scoped advisory lock).
    pub async fn connect(url: &str) -> CoreResult<Self> {
        super::connect::probe::<sqlx::PgConnection>(url).await?;
        let pool = super::connect::pool_options::<sqlx::Postgres>()
            .connect(url)
            .await
            .map_err(|e| super::connect::connect_error(url, e))?;
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('spikard_tasks.schema'))")
            .execute(&mut *tx)
            .await?;
        sqlx::raw_sql(SCHEMA).execute(&mut *tx).await?;
        tx.commit().await?;
        let conns = Conns::new(pool.clone(), super::connect::HOT_CONNECTIONS);
        Ok(Self {
            pool,
            conns,
            clock: Arc::default(),
        })
    }

    /// Inserts rows without unique keys in one statement, whatever their number, and
    /// notifies listeners of their queues (on commit: at once outside a transaction).
    async fn insert_plain<'e, E>(executor: E, plain: &[&JobRow]) -> Result<(), sqlx::Error>
    where
        E: sqlx::Executor<'e, Database = sqlx::Postgres>,
    {
        let col = |f: fn(&JobRow) -> String| plain.iter().map(|r| f(r)).collect::<Vec<_>>();
        sqlx::query(
            "WITH ins AS (INSERT INTO spikard_tasks.jobs (id, queue, task, args, kwargs, \
             status, priority, max_attempts, run_at, timeout_ms, enqueued_at) \
             SELECT id, queue, task, args, kwargs, 'pending', priority, max_attempts, run_at, \
             timeout_ms, enqueued_at FROM UNNEST($1::text[], $2::text[], $3::text[], \
             $4::text[], $5::text[], $6::int[], $7::int[], $8::bigint[], $9::bigint[], \
             $10::bigint[]) AS t(id, queue, task, args, kwargs, priority, max_attempts, \
             run_at, timeout_ms, enqueued_at) RETURNING queue) \
             SELECT pg_notify($11, q) FROM (SELECT DISTINCT queue AS q FROM ins) AS s",
        )
        .bind(col(|r| r.id.clone()))
        .bind(col(|r| r.queue.clone()))
        .bind(col(|r| r.task.clone()))
        .bind(col(|r| r.args.clone()))
        .bind(col(|r| r.kwargs.clone()))
        .bind(plain.iter().map(|r| r.priority).collect::<Vec<i32>>())
        .bind(
            plain
                .iter()
                .map(|r| r.max_attempts as i32)
                .collect::<Vec<i32>>(),
        )
        .bind(plain.iter().map(|r| r.run_at_ms).collect::<Vec<i64>>())
        .bind(
            plain
                .iter()
                .map(|r| r.timeout_ms)
                .collect::<Vec<Option<i64>>>(),
        )
        .bind(plain.iter().map(|r| r.enqueued_at_ms).collect::<Vec<i64>>())
        .bind(CHANNEL)
        .execute(executor)
        .await?;
        Ok(())
    }

    /// Inserts `rows` inside `tx` (unique keys resolved to existing jobs) and notifies
    /// listeners of their queues on commit. Rows with a unique key go in (queue, key)
    /// order, so producers of overlapping keys wait for each other instead of deadlocking.
    async fn insert_jobs(
        tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
        rows: &[JobRow],
    ) -> Result<Vec<Enqueued>, TxError> {
        let mut out: Vec<Enqueued> = all_created(rows);
        let plain: Vec<&JobRow> = rows.iter().filter(|r| r.unique_key.is_none()).collect();
        let mut keyed: Vec<(&str, &str, usize)> = rows
            .iter()
            .enumerate()
            .filter_map(|(i, r)| Some((r.queue.as_str(), r.unique_key.as_deref()?, i)))
            .collect();
        keyed.sort_unstable();
        for &(_, key, i) in &keyed {
            out[i] = Self::insert_or_find(tx, &rows[i], key).await?;
        }
        if !plain.is_empty() {
            Self::insert_plain(&mut **tx, &plain).await?;
        }
        // The plain rows' statement notified their queues; notify those of unique rows.
        let mut queues: Vec<&str> = keyed.iter().map(|&(queue, _, _)| queue).collect();
        queues.dedup();
        for queue in queues {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(queue)
                .execute(&mut **tx)
                .await?;
        }
        Ok(out)
    }

    /// Inserts `row` (unique key `key`), or finds the unfinished job holding its key;
    /// safe against concurrent producers of the same key.
    async fn insert_or_find(
        tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
        row: &JobRow,
        key: &str,
    ) -> Result<Enqueued, TxError> {
        // The job that held the key may finish between the insert and the read; the next
        // insert then succeeds (or finds a newer holder).
        for _ in 0..3 {
            let inserted: Option<String> = sqlx::query_scalar(
                "INSERT INTO spikard_tasks.jobs (id, queue, task, args, kwargs, status, priority, \
                 max_attempts, run_at, timeout_ms, unique_key, enqueued_at) \
                 VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT (queue, unique_key) \
                 WHERE unique_key IS NOT NULL AND status IN ('pending', 'running', 'retrying') \
                 DO NOTHING RETURNING id",
            )
            .bind(&row.id)
            .bind(&row.queue)
            .bind(&row.task)
            .bind(&row.args)
            .bind(&row.kwargs)
            .bind(row.priority)
            .bind(row.max_attempts as i32)
            .bind(row.run_at_ms)
            .bind(row.timeout_ms)
            .bind(key)
            .bind(row.enqueued_at_ms)
            .fetch_optional(&mut **tx)
            .await?;
            if let Some(id) = inserted {
                return Ok(Enqueued { id, created: true });
            }
            let existing: Option<String> = sqlx::query_scalar(
                "SELECT id FROM spikard_tasks.jobs WHERE queue = $1 AND unique_key = $2 \
                 AND status IN ('pending', 'running', 'retrying')",
            )
            .bind(&row.queue)
            .bind(key)
            .fetch_optional(&mut **tx)
            .await?;
            if let Some(id) = existing {
                return Ok(Enqueued { id, created: false });
            }
        }
        Err(CoreError::Backend(format!(
            "unique key {key:?} kept conflicting with jobs that finished meanwhile; retry"
        ))
        .into())
    }
}

super::rows::row_decoders!(PgRow, i32);

#[async_trait]
impl Store for PostgresStore {
    async fn enqueue(&self, rows: Vec<JobRow>) -> CoreResult<Vec<Enqueued>> {
        let rows = &rows;
        retry_tx(|| async move {
            if rows.iter().all(|r| r.unique_key.is_none()) {
                // One autocommit statement: one round trip for a single job or a batch.
                let plain: Vec<&JobRow> = rows.iter().collect();
                let mut conn = self.conns.get().await?;
                Self::insert_plain(&mut *conn, &plain).await?;
                conn.release();
                return Ok(all_created(rows));
            }
            let mut tx = self.pool.begin().await?;
            let out = Self::insert_jobs(&mut tx, rows).await?;
            tx.commit().await?;
            Ok::<_, TxError>(out)
        })
        .await
    }

    async fn get(&self, id: &str) -> CoreResult<Option<JobRecord>> {
        let sql = format!("SELECT {COLUMNS} FROM spikard_tasks.jobs WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref()
            .map(|r| record_from_row(r, self.now_ms()))
            .transpose()
    }

    async fn cancel(&self, id: &str) -> CoreResult<bool> {
        cancel_job!(
            self,
            self.clock.now_ms(),
            id,
            "UPDATE spikard_tasks.jobs SET status = 'cancelled', finished_at = $1, \
             cancel_reason = 'cancelled by request' \
             WHERE id = $2 AND status IN ('pending', 'retrying')",
            "UPDATE spikard_tasks.jobs SET cancel_requested = TRUE \
             WHERE id = $1 AND status = 'running'"
        )
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
        retry_tx(|| async move {
            let now = self.clock.now_ms();
            let mut conn = self.conns.get().await?;
            let rows = sqlx::query(
                // Per queue, an ordered scan of the ready index that stops at the limit (a
                // plain `queue = ANY($1)` sorts every ready row of the queues on each claim).
                "WITH picked AS ( \
                     SELECT c.id FROM UNNEST($1::text[]) AS q(name) CROSS JOIN LATERAL ( \
                         SELECT id, priority, run_at FROM spikard_tasks.jobs \
                         WHERE queue = q.name AND status IN ('pending', 'retrying') \
                             AND run_at <= $2 \
                         ORDER BY priority DESC, run_at, id LIMIT $3 FOR UPDATE SKIP LOCKED) c \
                     ORDER BY c.priority DESC, c.run_at, c.id LIMIT $3) \
                 UPDATE spikard_tasks.jobs j SET status = 'running', attempts = j.attempts + 1, \
                     locked_by = $4, lease_until = $5, started_at = NULL \
                 FROM picked WHERE j.id = picked.id \
                 RETURNING j.id, j.queue, j.task, j.args, j.kwargs, j.attempts, j.max_attempts, \
                     j.timeout_ms, j.priority, j.run_at",
            )
            .bind(queues)
            .bind(now)
            .bind(limit as i64)
            .bind(worker)
            .bind(now.saturating_add(duration_ms(lease)))
            .fetch_all(&mut *conn)
            .await?;
            let mut keyed = Vec::with_capacity(rows.len());
            for row in &rows {
                let run_at: i64 = row.try_get("run_at")?;
                match claimed_from_row(row) {
                    Ok(job) => keyed.push((job, run_at)),
                    Err(err) => {
                        let id: String = row.try_get("id")?;
                        tracing::error!(job_id = %id, error = %err, "failing corrupt job row");
                        let entry = AttemptError {
                            attempt: row.try_get::<i32, _>("attempts")? as u32,
                            error: err.to_string(),
                            traceback: None,
                            at_ms: now,
                        };
                        sqlx::query(
                            "UPDATE spikard_tasks.jobs SET status = 'failed', finished_at = $1, \
                             locked_by = NULL, lease_until = NULL, \
                             errors = COALESCE(errors, '[]'::jsonb) || jsonb_build_array($2::jsonb) \
                             WHERE id = $3",
                        )
                        .bind(now)
                        .bind(serde_json::to_string(&entry)?)
                        .bind(&id)
                        .execute(&mut *conn)
                        .await?;
                    }
                }
            }
            conn.release();
            // RETURNING order is unspecified: hand jobs out in priority order.
            Ok::<_, TxError>(in_claim_order(keyed))
        })
        .await
    }

    async fn complete(
        &self,
        worker: &str,
        done: Vec<(ClaimedJob, Completion)>,
    ) -> CoreResult<usize> {
        if done.is_empty() {
            return Ok(0);
        }
        let now = self.clock.now_ms();
        let n = done.len();
        let mut ids = Vec::with_capacity(n);
        let mut attempts = Vec::with_capacity(n);
        let mut statuses = Vec::with_capacity(n);
        let mut results: Vec<Option<String>> = Vec::with_capacity(n);
        let mut run_ats: Vec<Option<i64>> = Vec::with_capacity(n);
        let mut errors: Vec<Option<String>> = Vec::with_capacity(n);
        let mut reasons: Vec<Option<String>> = Vec::with_capacity(n);
        let mut finished: Vec<Option<i64>> = Vec::with_capacity(n);
        let mut started: Vec<Option<i64>> = Vec::with_capacity(n);
        for (job, outcome) in &done {
            ids.push(job.id.clone());
            started.push(job.started_at_ms);
            attempts.push(job.attempt as i32);
            let c = CompletionColumns::new(outcome, now)?;
            statuses.push(c.status.to_owned());
            results.push(c.result);
            run_ats.push(c.run_at_ms);
            errors.push(c.error);
            reasons.push(c.cancel_reason);
            finished.push(c.finished_at_ms);
        }
        let (ids, attempts, statuses, results) = (&ids, &attempts, &statuses, &results);
        let (run_ats, errors, reasons) = (&run_ats, &errors, &reasons);
        let (finished, started) = (&finished, &started);
        retry_tx(|| async move {
            let mut conn = self.conns.get().await?;
            // One statement for the whole batch, by primary key. `(…) IS TRUE` keeps the
            // planner off the `locked_by`/`status` indexes: bitmap scans of those walk every
            // dead entry left by earlier outcomes (cost grows with the jobs run since vacuum).
            let res = sqlx::query(
                "UPDATE spikard_tasks.jobs j SET status = u.status, result = u.result, \
                     run_at = COALESCE(u.run_at, j.run_at), \
                     errors = CASE WHEN u.error IS NULL THEN j.errors \
                         ELSE COALESCE(j.errors, '[]'::jsonb) || jsonb_build_array(u.error::jsonb) END, \
                     cancel_reason = COALESCE(u.reason, j.cancel_reason), finished_at = u.finished, \
                     locked_by = NULL, lease_until = NULL, started_at = COALESCE(u.started, j.started_at) \
                 FROM UNNEST($1::text[], $2::int[], $3::text[], $4::text[], $5::bigint[], \
                     $6::text[], $7::text[], $8::bigint[], $10::bigint[]) \
                     AS u(id, attempt, status, result, run_at, error, reason, finished, started) \
                 WHERE j.id = u.id AND j.attempts = u.attempt \
                     AND (j.locked_by = $9 AND j.status = 'running') IS TRUE",
            )
            .bind(ids)
            .bind(attempts)
            .bind(statuses)
            .bind(results)
            .bind(run_ats)
            .bind(errors)
            .bind(reasons)
            .bind(finished)
            .bind(worker)
            .bind(started)
            .execute(&mut *conn)
            .await?;
            conn.release();
            Ok::<_, TxError>(res.rows_affected() as usize)
        })
        .await
    }

    async fn heartbeat(
        &self,
        worker: &str,
        ids: &[String],
        lease: Duration,
    ) -> CoreResult<Vec<String>> {
        retry_tx(|| async move {
            let mut conn = self.conns.get().await?;
            let rows: Vec<(String, bool)> = sqlx::query_as(
                "UPDATE spikard_tasks.jobs SET lease_until = $1 \
                 WHERE id = ANY($3) AND (locked_by = $2 AND status = 'running') IS TRUE \
                 RETURNING id, cancel_requested",
            )
            .bind(self.clock.now_ms().saturating_add(duration_ms(lease)))
            .bind(worker)
            .bind(ids)
            .fetch_all(&mut *conn)
            .await?;
            conn.release();
            Ok::<_, TxError>(
                rows.into_iter()
                    .filter(|(_, c)| *c)
                    .map(|(id, _)| id)
                    .collect(),
            )
        })
        .await
    }

    async fn mark_started(&self, worker: &str, started: &[(String, i64)]) -> CoreResult<u64> {
        if started.is_empty() {
            return Ok(0);
        }
        let (ids, at): (Vec<&str>, Vec<i64>) =
            started.iter().map(|(id, at)| (id.as_str(), *at)).unzip();
        let (ids, at) = (&ids, &at);
        retry_tx(|| async move {
            let mut conn = self.conns.get().await?;
            let res = sqlx::query(
                "UPDATE spikard_tasks.jobs j SET started_at = u.at \
                 FROM UNNEST($1::text[], $2::bigint[]) AS u(id, at) \
                 WHERE j.id = u.id AND (j.locked_by = $3 AND j.status = 'running') IS TRUE",
            )
            .bind(ids)
            .bind(at)
            .bind(worker)
            .execute(&mut *conn)
            .await?;
            conn.release();
            Ok::<_, TxError>(res.rows_affected())
        })
        .await
    }

    async fn rescue_expired(&self, limit: usize) -> CoreResult<u64> {
        // `counted`: the attempt ran (its start was recorded), or it is the second
        // rescue of the same unrecorded attempt. Every expression reads the old row.
        let counted = format!(
            "(started_at IS NOT NULL OR ((errors->-1->>'attempt')::int = attempts \
             AND errors->-1->>'error' = '{LOST_UNSTARTED}'))"
        );
        let sql = format!(
            "UPDATE spikard_tasks.jobs SET \
                 status = CASE WHEN {counted} THEN \
                     CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'retrying' END \
                     ELSE CASE WHEN attempts > 1 THEN 'retrying' ELSE 'pending' END END, \
                 finished_at = CASE WHEN {counted} AND attempts >= max_attempts \
                     THEN $1 ELSE NULL END, \
                 errors = COALESCE(errors, '[]'::jsonb) || jsonb_build_array(jsonb_build_object( \
                     'attempt', attempts, \
                     'error', CASE WHEN {counted} THEN '{LOST}' ELSE '{LOST_UNSTARTED}' END, \
                     'traceback', NULL, 'at_ms', $1)), \
                 attempts = CASE WHEN {counted} THEN attempts ELSE attempts - 1 END, \
                 run_at = $1, locked_by = NULL, lease_until = NULL \
             WHERE id IN (SELECT id FROM spikard_tasks.jobs \
                 WHERE status = 'running' AND lease_until < $1 \
                 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)"
        );
        let sql = &sql;
        retry_tx(|| async move {
            let res = sqlx::query(AssertSqlSafe(sql.as_str()))
                .bind(self.clock.now_ms())
                .bind(limit as i64)
                .execute(&self.pool)
                .await?;
            Ok::<_, TxError>(res.rows_affected())
        })
        .await
    }

    async fn release(&self, worker: &str, ids: Option<&[String]>) -> CoreResult<u64> {
        let ids = ids.map(|ids| ids.to_vec());
        let ids = &ids;
        retry_tx(|| async move {
            let res = sqlx::query(
                "UPDATE spikard_tasks.jobs SET \
                     status = CASE WHEN attempts > 1 THEN 'retrying' ELSE 'pending' END, \
                     attempts = attempts - 1, locked_by = NULL, lease_until = NULL, started_at = NULL \
                 WHERE locked_by = $1 AND status = 'running' AND ($2::text[] IS NULL OR id = ANY($2))",
            )
            .bind(worker)
            .bind(ids)
            .execute(&self.pool)
            .await?;
            Ok::<_, TxError>(res.rows_affected())
        })
        .await
    }

    async fn counts(&self, queue: &str) -> CoreResult<QueueCounts> {
        let rows: Vec<(String, bool, i64)> = sqlx::query_as(
            "SELECT status, (status = 'pending' AND run_at > $1) AS later, COUNT(*) \
             FROM spikard_tasks.jobs WHERE queue = $2 GROUP BY 1, 2",
        )
        .bind(self.clock.now_ms())
        .bind(queue)
        .fetch_all(&self.pool)
        .await?;
        let mut counts = QueueCounts::default();
        for (status, later, n) in rows {
            let status = if later {
                JobStatus::Scheduled
            } else {
                JobStatus::parse(&status)?
            };
            counts.add(status, n as u64);
        }
        Ok(counts)
    }

    async fn purge_finished(&self, before_ms: i64, limit: usize) -> CoreResult<u64> {
        let res = sqlx::query(
            "DELETE FROM spikard_tasks.jobs WHERE id IN (SELECT id FROM spikard_tasks.jobs \
             WHERE finished_at IS NOT NULL AND finished_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
        )
        .bind(before_ms)
        .bind(limit as i64)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected())
    }

    async fn maintain(&self, purge_before: Option<i64>) -> CoreResult<Maintenance> {
        let rescued = rescue_rounds(self).await?;
        let Some(before) = purge_before else {
            return Ok(Maintenance {
                rescued,
                purged: None,
            });
        };
        // One purging worker at a time: a session advisory lock, held on one connection
        // while the rounds run on others; the server drops it if this process dies.
        let mut lock = self.pool.acquire().await?;
        let leader: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(MAINTENANCE_LOCK)
            .fetch_one(&mut *lock)
            .await?;
        if !leader {
            return Ok(Maintenance {
                rescued,
                purged: None,
            });
        }
        let purged = purge_rounds(self, before).await;
        let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(MAINTENANCE_LOCK)
            .execute(&mut *lock)
            .await;
        if unlocked.is_err() {
            // Never hand a connection that may still hold the lock back to the pool.
            lock.close_on_drop();
        }
        Ok(Maintenance {
            rescued,
            purged: Some(purged?),
        })
    }

    async fn close(&self) {
        self.conns.close().await;
    }

    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    async fn sync_clock(&self) -> CoreResult<i64> {
        // Only the query's round trip is measured (not waiting for or opening a
        // connection), and the server's time is cut to whole ms like ours.
        let mut conn = self.pool.acquire().await?;
        let sent = now_ms();
        let db: i64 = sqlx::query_scalar(
            "SELECT floor(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::bigint",
        )
        .fetch_one(&mut *conn)
        .await?;
        Ok(self.clock.observe(sent, db, now_ms()))
    }

    fn spawn_listener(
        &self,
        queues: Vec<String>,
        wake: Arc<Notify>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let pool = self.pool.clone();
        Some(tokio::spawn(async move {
            let mut pause = Duration::from_millis(100);
            loop {
                match PgListener::connect_with(&pool).await {
                    Ok(mut listener) => {
                        if let Err(e) = listener.listen(CHANNEL).await {
                            tracing::warn!(error = %e, "LISTEN failed; retrying");
                        } else {
                            pause = Duration::from_millis(100);
                            // A job may have arrived while we were not listening.
                            wake.notify_one();
                            while let Ok(note) = listener.recv().await {
                                if queues.iter().any(|q| q == note.payload()) {
                                    wake.notify_one();
                                }
                            }
                            tracing::warn!("LISTEN connection lost; reconnecting");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "LISTEN connection failed; retrying"),
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }))
    }
}

super::rows::sql_schedule_store!(
    PostgresStore,
    save: "INSERT INTO spikard_tasks.schedules (name, definition, last_tick, updated_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO UPDATE SET \
             definition = excluded.definition, updated_at = excluded.updated_at",
    list: "SELECT name, definition, last_tick, updated_at FROM spikard_tasks.schedules ORDER BY name",
    remove: "DELETE FROM spikard_tasks.schedules WHERE name = $1",
    fire: "UPDATE spikard_tasks.schedules SET last_tick = $1 WHERE name = $2 AND last_tick < $3"
);
