//! The logic the SQL stores share, generic over the sqlx driver: one implementation of
//! every method that differs between SQLite, PostgreSQL and MySQL/MariaDB only in its
//! SQL ([`Dialect`]), and the decoding of job rows.

use std::sync::Arc;
use std::time::Duration;

use sqlx::{
    AssertSqlSafe, ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Type,
};
use tokio::sync::Notify;

use super::conn_stack::Conns;
use super::dialect::Dialect;
use super::retry::{retry_tx, TxError};
use super::rows::{record_from, Fields};
use super::{shown_status, Unlock, LOST, LOST_UNSTARTED};
use crate::error::CoreResult;
use crate::job::{JobRecord, JobStatus, QueueCounts};
use crate::time::{now_ms, DbClock};

#[derive(Debug)]
/// What every SQL store holds: its pool, the hot path's connections, the database's
/// clock and its dialect.
pub(crate) struct Sql<DB: Database> {
    pub pool: Pool<DB>,
    /// The hot path's connections (enqueue, get, claim, outcomes, heartbeats).
    pub conns: Conns<DB>,
    /// The database's clock (leases and run_at are compared on it).
    pub clock: Arc<DbClock>,
    pub d: &'static Dialect,
}

impl<DB: Database> Clone for Sql<DB> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            conns: self.conns.clone(),
            clock: Arc::clone(&self.clock),
            d: self.d,
        }
    }
}

/// The rows a statement changed (each driver has its own result type).
pub(crate) trait Affected {
    fn n(&self) -> u64;
}

macro_rules! affected {
    ($($feature:literal: $result:ty),*) => {$(
        #[cfg(feature = $feature)]
        impl Affected for $result {
            fn n(&self) -> u64 {
                self.rows_affected()
            }
        }
    )*};
}

affected!(
    "sqlite": sqlx::sqlite::SqliteQueryResult,
    "postgres": sqlx::postgres::PgQueryResult,
    "mysql": sqlx::mysql::MySqlQueryResult
);

/// `?, ?, …` with `n` placeholders.
pub(crate) fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

impl<DB> Sql<DB>
where
    DB: Database<QueryResult: Affected>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    for<'r> i64: Decode<'r, DB>,
    for<'r> i32: Decode<'r, DB> + Type<DB>,
    for<'r> bool: Decode<'r, DB> + Type<DB>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
{
    /// A store on `pool` whose hot path keeps at most `hot` connections open.
    pub(crate) fn new(pool: Pool<DB>, hot: usize, d: &'static Dialect) -> Self {
        Self {
            conns: Conns::new(pool.clone(), hot),
            pool,
            clock: Arc::default(),
            d,
        }
    }

    /// Runs the dialect's schema statements.
    pub(crate) async fn setup(&self, conn: &mut DB::Connection) -> Result<(), sqlx::Error> {
        for statement in self.d.schema {
            sqlx::raw_sql(AssertSqlSafe(*statement))
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }

    /// `IN (…)` placeholders for `n` values whose first is bind number `first`.
    fn list(&self, first: usize, n: usize) -> String {
        if !self.d.numbered {
            return placeholders(n);
        }
        let numbers: Vec<String> = (first..first + n).map(|i| format!("${i}")).collect();
        numbers.join(", ")
    }

    pub(crate) async fn get(&self, id: &str) -> CoreResult<Option<JobRecord>> {
        let mut conn = self.conns.get().await?;
        let q = sqlx::query(AssertSqlSafe(self.d.get)).bind(id);
        let row = q.fetch_optional(&mut *conn).await?;
        conn.release();
        let now = self.clock.now_ms();
        row.as_ref().map(|r| record_from(r, now)).transpose()
    }

    /// Writes a running job's progress ([`super::Store::set_progress`]).
    pub(crate) async fn set_progress(&self, id: &str, progress: &str) -> CoreResult<bool> {
        retry_tx(|| async move {
            let q = sqlx::query(AssertSqlSafe(self.d.set_progress)).bind(progress);
            Ok::<_, TxError>(q.bind(id).execute(&self.pool).await?.n() > 0)
        })
        .await
    }

    /// Cancels a job that has not started; when that matched nothing, asks a running one
    /// to stop. Retried whole if the database aborts it.
    pub(crate) async fn cancel(&self, id: &str) -> CoreResult<bool> {
        retry_tx(|| async move {
            let now = self.clock.now_ms();
            let sql = AssertSqlSafe(self.d.cancel);
            let done = sqlx::query(sql).bind(now).bind(id).execute(&self.pool);
            if done.await?.n() > 0 {
                return Ok(true);
            }
            let ask = sqlx::query(AssertSqlSafe(self.d.ask_cancel)).bind(id);
            Ok::<_, TxError>(ask.execute(&self.pool).await?.n() > 0)
        })
        .await
    }

    pub(crate) async fn release(&self, worker: &str, ids: Option<&[String]>) -> CoreResult<u64> {
        let sql = match ids {
            None => self.d.release.to_owned(),
            Some([]) => return Ok(0),
            Some(ids) => format!("{} AND id IN ({})", self.d.release, self.list(2, ids.len())),
        };
        let sql = &sql;
        retry_tx(|| async move {
            let mut q = sqlx::query(AssertSqlSafe(sql.as_str())).bind(worker);
            for id in ids.unwrap_or_default() {
                q = q.bind(id.as_str());
            }
            Ok::<_, TxError>(q.execute(&self.pool).await?.n())
        })
        .await
    }

    pub(crate) async fn counts(&self, queue: &str) -> CoreResult<QueueCounts> {
        let q = sqlx::query(AssertSqlSafe(self.d.counts)).bind(self.clock.now_ms());
        let rows = q.bind(queue).fetch_all(&self.pool).await?;
        let mut counts = QueueCounts::default();
        for row in rows {
            let stored = JobStatus::parse(&row.try_get::<String, _>(0)?)?;
            let status = shown_status(stored, row.try_get::<bool, _>(1)?);
            counts.add(status, row.try_get::<i64, _>(2)? as u64);
        }
        Ok(counts)
    }

    /// Rescues expired leases in one statement (SQLite, PostgreSQL; binds: now, limit;
    /// see [`super::Store::rescue_expired`]).
    #[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
    pub(crate) async fn rescue(&self, limit: usize) -> CoreResult<u64> {
        let (d, p) = (self.d, if self.d.numbered { "$" } else { "?" });
        let [attempt, error] = d.last_entry;
        // `counted`: the attempt ran (its start was recorded), or it is the second
        // rescue of the same unrecorded attempt. Every expression reads the old row.
        let counted = format!(
            "(started_at IS NOT NULL OR ({attempt} = attempts AND {error} = '{LOST_UNSTARTED}'))"
        );
        let sql = format!(
            "UPDATE {jobs} SET \
                 status = CASE WHEN {counted} THEN \
                     CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'retrying' END \
                     ELSE CASE WHEN attempts > 1 THEN 'retrying' ELSE 'pending' END END, \
                 finished_at = CASE WHEN {counted} AND attempts >= max_attempts \
                     THEN {p}1 ELSE NULL END, \
                 errors = {append}'attempt', attempts, \
                     'error', CASE WHEN {counted} THEN '{LOST}' ELSE '{LOST_UNSTARTED}' END, \
                     'traceback', NULL, 'at_ms', {p}1)), \
                 attempts = CASE WHEN {counted} THEN attempts ELSE attempts - 1 END, \
                 run_at = {p}1, locked_by = NULL, lease_until = NULL \
             WHERE id IN (SELECT id FROM {jobs} \
                 WHERE status = 'running' AND lease_until < {p}1 {pick})",
            jobs = d.jobs,
            append = d.append_entry,
            pick = d.rescue_pick,
        );
        let sql = &sql;
        retry_tx(|| async move {
            let q = sqlx::query(AssertSqlSafe(sql.as_str())).bind(self.clock.now_ms());
            Ok::<_, TxError>(q.bind(limit as i64).execute(&self.pool).await?.n())
        })
        .await
    }

    pub(crate) async fn purge(&self, before_ms: i64, limit: usize) -> CoreResult<u64> {
        let q = sqlx::query(AssertSqlSafe(self.d.purge)).bind(before_ms);
        Ok(q.bind(limit as i64).execute(&self.pool).await?.n())
    }

    /// The unfinished job holding `key` in `queue`, read on `conn`.
    pub(crate) async fn unique_holder(
        &self,
        conn: &mut DB::Connection,
        queue: &str,
        key: &str,
    ) -> Result<Option<String>, sqlx::Error> {
        let q = sqlx::query(AssertSqlSafe(self.d.unique_holder)).bind(queue);
        let row = q.bind(key).fetch_optional(conn).await?;
        row.map(|r| r.try_get::<String, _>(0)).transpose()
    }

    /// Measures the offset of the database's clock ([`super::Store::sync_clock`]).
    #[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
    pub(crate) async fn sync_clock(&self) -> CoreResult<i64> {
        // Only the query's round trip is measured (not waiting for or opening a
        // connection), and the server's time is cut to whole ms like ours.
        let mut conn = self.pool.acquire().await?;
        let sent = now_ms();
        let q = sqlx::query(AssertSqlSafe(self.d.clock));
        let db: i64 = q.fetch_one(&mut *conn).await?.try_get(0)?;
        Ok(self.clock.observe(sent, db, now_ms()))
    }

    /// Takes the maintenance lock ([`super::maintain_locked`]): held by one connection's
    /// session while the purge runs on others.
    #[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
    pub(crate) async fn purge_lock(&self) -> CoreResult<Option<Unlock>> {
        let mut conn = self.pool.acquire().await?;
        let q = sqlx::query(AssertSqlSafe(self.d.lock));
        if !q.fetch_one(&mut *conn).await?.try_get::<bool, _>(0)? {
            return Ok(None);
        }
        let unlock = AssertSqlSafe(self.d.unlock);
        Ok(Some(Box::pin(async move {
            if sqlx::query(unlock).execute(&mut *conn).await.is_err() {
                // Never hand a connection that may still hold the lock back to the pool.
                conn.close_on_drop();
            }
        })))
    }

    /// A watcher for databases without notifications: a dedicated connection runs `sql`
    /// every `interval` and wakes the worker whenever its answer moves (and on the first
    /// answer after each connect: jobs may have come while nobody watched).
    pub(crate) fn watch<T>(
        &self,
        what: &'static str,
        sql: &'static str,
        interval: Duration,
        wake: Arc<Notify>,
    ) -> tokio::task::JoinHandle<()>
    where
        T: for<'r> Decode<'r, DB> + Type<DB> + PartialEq + Send + 'static,
    {
        let options = self.pool.connect_options();
        super::supervise(what, move || {
            let (options, wake) = (Arc::clone(&options), Arc::clone(&wake));
            async move {
                let mut conn = sqlx::ConnectOptions::connect(&*options).await?;
                let mut last: Option<T> = None;
                loop {
                    let row = match sqlx::query(AssertSqlSafe(sql)).fetch_one(&mut conn).await {
                        Ok(row) => row,
                        Err(_) => return Ok::<_, sqlx::Error>(()),
                    };
                    let seen: T = row.try_get(0)?;
                    if last.as_ref() != Some(&seen) {
                        wake.notify_one();
                    }
                    last = Some(seen);
                    tokio::time::sleep(interval).await;
                }
            }
        })
    }
}

impl<R: Row> Fields for R
where
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i32: Decode<'r, R::Database> + Type<R::Database>,
    for<'a> &'a str: ColumnIndex<R>,
{
    fn text(&self, name: &str) -> CoreResult<Option<String>> {
        Ok(self.try_get(name)?)
    }

    fn int(&self, name: &str) -> CoreResult<Option<i32>> {
        Ok(self.try_get(name)?)
    }

    fn big(&self, name: &str) -> CoreResult<Option<i64>> {
        Ok(self.try_get(name)?)
    }
}

/// Implements [`ScheduleStore`](super::ScheduleStore) for a SQL store (field `sql`) that
/// provides `begin_write()` and `insert_jobs(tx, rows)`.
macro_rules! sql_schedule_store {
    ($ty:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::ScheduleStore for $ty {
            async fn save_schedule(&self, name: &str, def: &str, now: i64) -> CoreResult<()> {
                let q = sqlx::query(sqlx::AssertSqlSafe(self.sql.d.save_schedule));
                let q = q.bind(name).bind(def).bind(now).bind(now);
                q.execute(&self.sql.pool)
                    .await
                    .map(|_| ())
                    .map_err(Into::into)
            }

            async fn schedules(&self) -> CoreResult<Vec<$crate::store::StoredSchedule>> {
                let q = sqlx::query_as(sqlx::AssertSqlSafe(self.sql.d.list_schedules));
                let rows: Vec<(String, String, i64, i64)> = q.fetch_all(&self.sql.pool).await?;
                let schedule = |(name, definition, last_tick_ms, updated_at_ms)| {
                    $crate::store::StoredSchedule {
                        name,
                        definition,
                        last_tick_ms,
                        updated_at_ms,
                    }
                };
                Ok(rows.into_iter().map(schedule).collect())
            }

            async fn remove_schedule(&self, name: &str) -> CoreResult<bool> {
                let q = sqlx::query(sqlx::AssertSqlSafe(self.sql.d.remove_schedule)).bind(name);
                Ok(q.execute(&self.sql.pool).await?.rows_affected() > 0)
            }

            async fn fire_schedule(
                &self,
                name: &str,
                tick: i64,
                job: Option<JobRow>,
            ) -> CoreResult<Option<Enqueued>> {
                let job = &job;
                $crate::store::retry::retry_tx(|| async move {
                    let mut tx = self.begin_write().await?;
                    let q = sqlx::query(sqlx::AssertSqlSafe(self.sql.d.fire_schedule));
                    let won = q.bind(tick).bind(name).bind(tick).execute(&mut *tx).await?;
                    let out = match (won.rows_affected() == 1, job) {
                        (true, Some(job)) => self
                            .insert_jobs(&mut tx, std::slice::from_ref(job))
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
