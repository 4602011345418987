//! PostgreSQL store, on sqlx.
//!
//! Tables live in their own schema (`spikard_tasks`). Workers claim with
//! `FOR UPDATE SKIP LOCKED`, so any number of workers on any number of hosts share one
//! queue without blocking each other. Enqueues `NOTIFY` inside their transaction and
//! idle workers `LISTEN`, so a new job starts within milliseconds, not a poll interval.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgListener, Postgres};
use tokio::sync::Notify;

use super::dialect::pg;
use super::retry::{retry_tx, TxError};
use super::rows::{claimed_rows, in_claim_order, CompletionColumns};
use super::sql::{sql_schedule_store, Sql};
use super::{all_created, fail_corrupt, maintain_locked, Maintenance, Store};
use crate::error::{CoreError, CoreResult};
use crate::job::{ClaimedJob, Completion, Enqueued, JobRecord, JobRow, QueueCounts};
use crate::time::duration_ms;

const CHANNEL: &str = "spikard_tasks_enqueued";

/// A job store in a PostgreSQL database.
#[derive(Clone, Debug)]
pub struct PostgresStore {
    sql: Sql<Postgres>,
}

impl PostgresStore {
    /// Starts a write transaction.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        self.sql.pool.begin().await
    }

    /// Connects and sets up the schema (idempotent; safe when several workers start at
    /// once: setup runs under a transaction-scoped advisory lock).
    pub async fn connect(url: &str) -> CoreResult<Self> {
        let sql: Sql<Postgres> = Sql::new(
            super::pool::connect(url).await?,
            super::pool::HOT_CONNECTIONS,
            &super::dialect::POSTGRES,
        );
        let mut tx = sql.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('spikard_tasks.schema'))")
            .execute(&mut *tx)
            .await?;
        sql.setup(&mut *tx).await?;
        let counted: bool =
            sqlx::query_scalar("SELECT to_regclass('spikard_tasks.job_counts') IS NOT NULL")
                .fetch_one(&mut *tx)
                .await?;
        if !counted {
            sqlx::raw_sql(pg::COUNTS).execute(&mut *tx).await?;
        }
        // An earlier version counted inserts too; the store never inserts finished jobs.
        let insert_trigger: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'jobs_count_insert' \
             AND tgrelid = 'spikard_tasks.jobs'::regclass)",
        )
        .fetch_one(&mut *tx)
        .await?;
        if insert_trigger {
            sqlx::query("DROP TRIGGER jobs_count_insert ON spikard_tasks.jobs")
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Self { sql })
    }

    /// Inserts rows without unique keys in one statement, whatever their number, and
    /// notifies listeners of their queues (on commit: at once outside a transaction).
    async fn insert_plain<'e, E>(executor: E, plain: &[&JobRow]) -> Result<(), sqlx::Error>
    where
        E: sqlx::Executor<'e, Database = sqlx::Postgres>,
    {
        sqlx::query(pg::INSERT_PLAIN)
            .bind(column(plain, |r| r.id.as_str()))
            .bind(column(plain, |r| r.queue.as_str()))
            .bind(column(plain, |r| r.task.as_str()))
            .bind(column(plain, |r| r.args.as_str()))
            .bind(column(plain, |r| r.kwargs.as_str()))
            .bind(column(plain, |r| r.priority))
            .bind(column(plain, |r| r.max_attempts as i32))
            .bind(column(plain, |r| r.run_at_ms))
            .bind(column(plain, |r| r.timeout_ms))
            .bind(column(plain, |r| r.enqueued_at_ms))
            .bind(column(plain, |r| r.trace_context.as_deref()))
            .bind(CHANNEL)
            .execute(executor)
            .await?;
        Ok(())
    }

    /// Inserts `rows` inside `tx` (unique keys resolved to existing jobs) and notifies
    /// listeners of their queues on commit. Rows with a unique key go in (queue, key)
    /// order, so producers of overlapping keys wait for each other instead of deadlocking.
    async fn insert_jobs(
        &self,
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
            out[i] = self.insert_or_find(tx, &rows[i], key).await?;
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
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
        row: &JobRow,
        key: &str,
    ) -> Result<Enqueued, TxError> {
        // The job that held the key may finish between the insert and the read; the next
        // insert then succeeds (or finds a newer holder).
        for _ in 0..3 {
            let inserted: Option<String> = sqlx::query_scalar(pg::INSERT_KEYED)
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
                .bind(&row.trace_context)
                .fetch_optional(&mut **tx)
                .await?;
            if let Some(id) = inserted {
                return Ok(Enqueued { id, created: true });
            }
            let existing = self.sql.unique_holder(tx, &row.queue, key).await?;
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

#[async_trait]
impl Store for PostgresStore {
    async fn enqueue(&self, rows: Vec<JobRow>) -> CoreResult<Vec<Enqueued>> {
        let rows = &rows;
        retry_tx(|| async move {
            if rows.iter().all(|r| r.unique_key.is_none()) {
                // One autocommit statement: one round trip for a single job or a batch.
                let plain: Vec<&JobRow> = rows.iter().collect();
                let mut conn = self.sql.conns.get().await?;
                Self::insert_plain(&mut *conn, &plain).await?;
                conn.release();
                return Ok(all_created(rows));
            }
            let mut tx = self.sql.pool.begin().await?;
            let out = self.insert_jobs(&mut tx, rows).await?;
            tx.commit().await?;
            Ok::<_, TxError>(out)
        })
        .await
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
        let (keyed, broken) = retry_tx(|| async move {
            let now = self.sql.clock.now_ms();
            let mut conn = self.sql.conns.get().await?;
            let rows = sqlx::query(pg::CLAIM)
                .bind(queues)
                .bind(now)
                .bind(limit as i64)
                .bind(worker)
                .bind(now.saturating_add(duration_ms(lease)))
                .fetch_all(&mut *conn)
                .await?;
            conn.release();
            Ok::<_, TxError>(claimed_rows(&rows, 0, now)?)
        })
        .await?;
        fail_corrupt(self, worker, broken).await;
        // RETURNING order is unspecified: hand jobs out in priority order.
        Ok(in_claim_order(keyed))
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
        let cols = done
            .iter()
            .map(|(_, outcome)| CompletionColumns::new(outcome, now));
        let cols = cols.collect::<CoreResult<Vec<_>>>()?;
        let ids = column(&done, |(job, _)| job.id.as_str());
        let attempts = column(&done, |(job, _)| job.attempt as i32);
        let started = column(&done, |(job, _)| job.started_at_ms);
        let statuses = column(&cols, |c| c.status);
        let results = column(&cols, |c| c.result.as_deref());
        let run_ats = column(&cols, |c| c.run_at_ms);
        let errors = column(&cols, |c| c.error.as_deref());
        let reasons = column(&cols, |c| c.cancel_reason.as_deref());
        let finished = column(&cols, |c| c.finished_at_ms);
        let (ids, attempts, statuses, results) = (&ids, &attempts, &statuses, &results);
        let (run_ats, errors, reasons) = (&run_ats, &errors, &reasons);
        let (finished, started) = (&finished, &started);
        retry_tx(|| async move {
            let mut conn = self.sql.conns.get().await?;
            // One statement for the whole batch, by primary key. `(…) IS TRUE` keeps the
            // planner off the `locked_by`/`status` indexes: bitmap scans of those walk every
            // dead entry left by earlier outcomes (cost grows with the jobs run since vacuum).
            let res = sqlx::query(pg::COMPLETE)
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
            let mut conn = self.sql.conns.get().await?;
            let rows: Vec<(String, bool)> = sqlx::query_as(pg::HEARTBEAT)
                .bind(self.sql.clock.now_ms().saturating_add(duration_ms(lease)))
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
            let mut conn = self.sql.conns.get().await?;
            let res = sqlx::query(pg::MARK_STARTED)
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
        self.sql.rescue(limit).await
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
        queues: Vec<String>,
        wake: Arc<Notify>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let (pool, queues) = (self.sql.pool.clone(), Arc::new(queues));
        Some(super::supervise("LISTEN connection", move || {
            let (pool, queues, wake) = (pool.clone(), Arc::clone(&queues), Arc::clone(&wake));
            async move {
                let mut listener = PgListener::connect_with(&pool).await?;
                listener.listen(CHANNEL).await?;
                // A job may have arrived while we were not listening.
                wake.notify_one();
                while let Ok(note) = listener.recv().await {
                    if queues.iter().any(|q| q == note.payload()) {
                        wake.notify_one();
                    }
                }
                Ok::<_, sqlx::Error>(())
            }
        }))
    }
}

sql_schedule_store!(PostgresStore);

/// One column of a statement's arrays (`UNNEST`).
fn column<'a, T, U>(items: &'a [T], value: impl Fn(&'a T) -> U) -> Vec<U> {
    items.iter().map(value).collect()
}

super::sql_ops::sql_ops_store!(PostgresStore, |_s| ());
super::sql_limits::sql_limit_store!(PostgresStore, |_s| ());
