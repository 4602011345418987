//! The operations ([`OpsStore`](super::OpsStore)) of the SQL stores, written once over
//! the sqlx driver like [`super::sql`]: filters become parameterised SQL ([`Args`]),
//! bulk actions pick a bounded batch of ids and change those in one transaction (MySQL
//! cannot update a table through a subquery of itself).

use std::collections::{BTreeMap, HashSet};

use sqlx::{
    AssertSqlSafe, ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row, Type,
};

use super::dialect::Dialect;
use super::ops::{Cursor, JobFilter, QueueStats, WorkerInfo};
use super::retry::{retry_tx, TxError};
use super::rows::record_from;
use super::sql::{Affected, Sql};
use crate::error::CoreResult;
use crate::job::{JobRecord, JobStatus};

/// How long a gone worker's row is kept before [`Sql::workers`] deletes it.
const GONE_KEPT_MS: i64 = 3_600_000;
/// Rows of gone workers one call of [`Sql::workers`] deletes at most.
const PRUNE_BATCH: i64 = 100;

/// One bound value.
#[derive(Clone, Debug)]
pub(super) enum Arg {
    Text(String),
    Int(i64),
}

/// The values bound to a statement being written, and their placeholders.
pub(super) struct Args {
    numbered: bool,
    pub(super) values: Vec<Arg>,
}

impl Args {
    pub(super) fn new(d: &Dialect) -> Self {
        Self {
            numbered: d.numbered,
            values: Vec::new(),
        }
    }

    /// Binds `value`; returns its placeholder.
    fn p(&mut self, value: Arg) -> String {
        self.values.push(value);
        if self.numbered {
            format!("${}", self.values.len())
        } else {
            "?".to_owned()
        }
    }

    pub(super) fn text(&mut self, value: &str) -> String {
        self.p(Arg::Text(value.to_owned()))
    }

    pub(super) fn int(&mut self, value: i64) -> String {
        self.p(Arg::Int(value))
    }

    /// `p, p, …` binding every id.
    pub(super) fn list(&mut self, ids: &[String]) -> String {
        let marks: Vec<String> = ids.iter().map(|id| self.text(id)).collect();
        marks.join(", ")
    }
}

/// Whether the filter asks only for failed or cancelled jobs (the rare states with an
/// index of their own).
fn dead_only(filter: &JobFilter) -> bool {
    !filter.statuses.is_empty()
        && filter
            .statuses
            .iter()
            .all(|s| matches!(s, JobStatus::Failed | JobStatus::Cancelled))
}

/// The filter as `AND …` terms (empty for the default filter). `now` tells scheduled
/// from pending. State names are the enum's own; every user value is bound.
fn filter_terms(filter: &JobFilter, now: i64, a: &mut Args) -> String {
    let mut sql = String::new();
    if !filter.statuses.is_empty() {
        let (pending, scheduled) = (
            filter.statuses.contains(&JobStatus::Pending),
            filter.statuses.contains(&JobStatus::Scheduled),
        );
        let mut plain: Vec<&str> = filter
            .statuses
            .iter()
            .filter(|s| !matches!(s, JobStatus::Pending | JobStatus::Scheduled))
            .map(|s| s.as_str())
            .collect();
        let mut any: Vec<String> = Vec::new();
        match (pending, scheduled) {
            (true, true) => plain.push("pending"),
            (true, false) => any.push(format!("(status = 'pending' AND run_at <= {})", a.int(now))),
            (false, true) => any.push(format!("(status = 'pending' AND run_at > {})", a.int(now))),
            (false, false) => {}
        }
        plain.sort_unstable();
        plain.dedup();
        if !plain.is_empty() {
            let names: Vec<String> = plain.iter().map(|s| format!("'{s}'")).collect();
            any.push(format!("status IN ({})", names.join(", ")));
        }
        sql += &format!(" AND ({})", any.join(" OR "));
        if dead_only(filter) {
            // The predicate of the index of those states, word for word.
            sql += " AND status IN ('failed', 'cancelled')";
        }
    }
    if let Some(task) = &filter.task {
        sql += &format!(" AND task = {}", a.text(task));
    }
    if let Some(queue) = &filter.queue {
        sql += &format!(" AND queue = {}", a.text(queue));
    }
    if let Some(since) = filter.since_ms {
        sql += &format!(" AND enqueued_at >= {}", a.int(since));
    }
    if let Some(until) = filter.until_ms {
        sql += &format!(" AND enqueued_at < {}", a.int(until));
    }
    if !filter.ids.is_empty() {
        sql += &format!(" AND id IN ({})", a.list(&filter.ids));
    }
    sql
}

/// A worker from a row of its columns, in [`Dialect::workers`]' order.
fn worker_from<R: Row>(row: &R) -> CoreResult<WorkerInfo>
where
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    usize: ColumnIndex<R>,
{
    let queues: String = row.try_get(3)?;
    Ok(WorkerInfo {
        name: row.try_get(0)?,
        host: row.try_get(1)?,
        pid: row.try_get::<i64, _>(2)? as u32,
        queues: serde_json::from_str(&queues)?,
        concurrency: row.try_get::<i64, _>(4)? as u32,
        started_at_ms: row.try_get(5)?,
        heartbeat_at_ms: row.try_get(6)?,
        heartbeat_interval_ms: row.try_get(7)?,
        jobs_held: row.try_get::<i64, _>(8)? as u32,
        version: row.try_get(9)?,
    })
}

impl<DB> Sql<DB>
where
    DB: Database<QueryResult: Affected>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    for<'r> i64: Decode<'r, DB>,
    for<'r> i32: Decode<'r, DB> + Type<DB>,
    for<'r> bool: Decode<'r, DB> + Type<DB>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
{
    /// A query of `sql` with `args` bound.
    pub(super) fn query(
        sql: String,
        args: Vec<Arg>,
    ) -> sqlx::query::Query<'static, DB, DB::Arguments> {
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for arg in args {
            q = match arg {
                Arg::Text(s) => q.bind(s),
                Arg::Int(i) => q.bind(i),
            };
        }
        q
    }

    /// Figures per queue ([`super::OpsStore::stats`]): counts per stored state with the
    /// scheduled split and the oldest ready job in one statement (waiting jobs an
    /// index-only scan of the ready index, running ones the lease index, finished ones
    /// the counts table the triggers keep), then the last minute's outcomes and the
    /// pauses.
    pub(crate) async fn stats(&self, now: i64) -> CoreResult<Vec<QueueStats>> {
        let d = self.d;
        let mut by_queue: BTreeMap<String, QueueStats> = BTreeMap::new();
        let rows = sqlx::query(AssertSqlSafe(d.state_counts))
            .bind(now)
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
        for row in rows {
            let queue: String = row.try_get(0)?;
            let status = JobStatus::parse(&row.try_get::<String, _>(1)?)?;
            let n = row.try_get::<i64, _>(2)? as u64;
            let later = row.try_get::<i64, _>(3)? as u64;
            let oldest = row.try_get::<Option<i64>, _>(4)?;
            let stats = by_queue.entry(queue.clone()).or_insert_with(|| QueueStats {
                queue,
                ..QueueStats::default()
            });
            stats.counts.add(status, n);
            let c = &mut stats.counts;
            c.pending = c.pending.saturating_sub(later);
            c.scheduled += later;
            stats.oldest_ready_ms = [stats.oldest_ready_ms, oldest].into_iter().flatten().min();
        }
        let mut a = Args::new(d);
        let recent = format!(
            "SELECT queue, status, COUNT(*) FROM {} WHERE finished_at > {} \
             AND finished_at <= {} AND status IN ('succeeded', 'failed') GROUP BY queue, status",
            d.jobs,
            a.int(now.saturating_sub(60_000)),
            a.int(now),
        );
        for row in Self::query(recent, a.values).fetch_all(&self.pool).await? {
            let queue: String = row.try_get(0)?;
            let status: String = row.try_get(1)?;
            let n = row.try_get::<i64, _>(2)? as u64;
            if let Some(stats) = by_queue.get_mut(&queue) {
                if status == "succeeded" {
                    stats.succeeded_last_minute = n;
                } else {
                    stats.failed_last_minute = n;
                }
            }
        }
        for queue in self.paused_queues().await? {
            let stats = by_queue.entry(queue.clone()).or_insert_with(|| QueueStats {
                queue,
                ..QueueStats::default()
            });
            stats.paused = true;
        }
        Ok(by_queue.into_values().collect())
    }

    /// A page of jobs newest first ([`super::OpsStore::list_jobs`]): one ordered range of
    /// the `(enqueued_at, id)` index (or of its failed/cancelled part), read backwards
    /// from the cursor.
    pub(crate) async fn list_jobs(
        &self,
        filter: &JobFilter,
        after: Option<&Cursor>,
        limit: usize,
        now: i64,
    ) -> CoreResult<Vec<JobRecord>> {
        let d = self.d;
        let mut a = Args::new(d);
        let mut terms = filter_terms(filter, now, &mut a);
        if let Some(c) = after {
            // The first term bounds the index range; the second breaks ties by id.
            terms += &format!(
                " AND enqueued_at <= {} AND (enqueued_at < {} OR id < {})",
                a.int(c.enqueued_at_ms),
                a.int(c.enqueued_at_ms),
                a.text(&c.id)
            );
        }
        let from = if dead_only(filter) {
            d.dead_from
        } else {
            d.list_from
        };
        let sql = format!(
            "{} FROM {from} WHERE 1 = 1{terms} ORDER BY enqueued_at DESC, id DESC LIMIT {}",
            d.select,
            a.int(limit as i64)
        );
        let rows = Self::query(sql, a.values).fetch_all(&self.pool).await?;
        rows.iter().map(|r| record_from(r, now)).collect()
    }

    /// Ids of up to `limit` jobs in `states` (SQL) matching `filter`, locked where the
    /// database can, read on `conn` (a transaction).
    async fn pick(
        &self,
        conn: &mut DB::Connection,
        states: &str,
        filter: &JobFilter,
        now: i64,
        limit: usize,
    ) -> Result<Vec<(String, String, Option<String>)>, TxError> {
        let mut a = Args::new(self.d);
        let terms = filter_terms(filter, now, &mut a);
        let sql = format!(
            "SELECT id, queue, unique_key FROM {} j WHERE {states}{terms} LIMIT {}{}",
            self.d.jobs,
            a.int(limit as i64),
            self.d.lock_rows,
        );
        let rows = Self::query(sql, a.values).fetch_all(&mut *conn).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?));
        }
        Ok(out)
    }

    /// Runs `UPDATE`/`DELETE` `head` on the jobs `ids` that still satisfy `tail`.
    async fn change(
        &self,
        conn: &mut DB::Connection,
        head: impl FnOnce(&mut Args) -> String,
        ids: &[String],
        tail: &str,
    ) -> Result<u64, TxError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut a = Args::new(self.d);
        let head = head(&mut a);
        let sql = format!("{head} WHERE id IN ({}){tail}", a.list(ids));
        Ok(Self::query(sql, a.values).execute(&mut *conn).await?.n())
    }

    /// [`super::OpsStore::retry_batch`].
    pub(crate) async fn retry_batch(
        &self,
        filter: &JobFilter,
        now: i64,
        limit: usize,
    ) -> CoreResult<u64> {
        let jobs = self.d.jobs;
        let states = format!(
            "status IN ('failed', 'cancelled') AND (unique_key IS NULL OR NOT EXISTS \
             (SELECT 1 FROM {jobs} h WHERE h.queue = j.queue AND h.unique_key = j.unique_key \
             AND h.status IN ('pending', 'running', 'retrying')))"
        );
        let states = &states;
        retry_tx(|| async move {
            let mut tx = self.pool.begin_with(AssertSqlSafe(self.d.begin)).await?;
            let picked = self.pick(&mut tx, states, filter, now, limit).await?;
            // Of jobs sharing a unique key, the first only.
            let mut keys = HashSet::new();
            let ids: Vec<String> = picked
                .into_iter()
                .filter(|(_, queue, key)| {
                    key.as_ref()
                        .is_none_or(|k| keys.insert((queue.clone(), k.clone())))
                })
                .map(|(id, _, _)| id)
                .collect();
            let head = |a: &mut Args| {
                format!(
                    "UPDATE {jobs} SET status = 'pending', run_at = {}, attempts = 0, \
                     result = NULL, finished_at = NULL, started_at = NULL, \
                     cancel_reason = NULL, cancel_requested = FALSE, locked_by = NULL, \
                     lease_until = NULL",
                    a.int(now)
                )
            };
            let tail = " AND status IN ('failed', 'cancelled')";
            let n = self.change(&mut tx, head, &ids, tail).await?;
            tx.commit().await?;
            Ok::<_, TxError>(n)
        })
        .await
    }

    /// [`super::OpsStore::cancel_batch`].
    pub(crate) async fn cancel_batch(
        &self,
        filter: &JobFilter,
        now: i64,
        limit: usize,
    ) -> CoreResult<u64> {
        let jobs = self.d.jobs;
        let states = "(status IN ('pending', 'retrying') \
            OR (status = 'running' AND cancel_requested = FALSE))";
        retry_tx(|| async move {
            let mut tx = self.pool.begin_with(AssertSqlSafe(self.d.begin)).await?;
            let picked = self.pick(&mut tx, states, filter, now, limit).await?;
            let ids: Vec<String> = picked.into_iter().map(|(id, _, _)| id).collect();
            let cancel = |a: &mut Args| {
                format!(
                    "UPDATE {jobs} SET status = 'cancelled', finished_at = {}, \
                     cancel_reason = 'cancelled by request'",
                    a.int(now)
                )
            };
            let tail = " AND status IN ('pending', 'retrying')";
            let mut n = self.change(&mut tx, cancel, &ids, tail).await?;
            let ask = |_: &mut Args| format!("UPDATE {jobs} SET cancel_requested = TRUE");
            let tail = " AND status = 'running' AND cancel_requested = FALSE";
            n += self.change(&mut tx, ask, &ids, tail).await?;
            tx.commit().await?;
            Ok::<_, TxError>(n)
        })
        .await
    }

    /// [`super::OpsStore::purge_batch`].
    pub(crate) async fn purge_batch(
        &self,
        filter: &JobFilter,
        before: i64,
        limit: usize,
    ) -> CoreResult<u64> {
        let jobs = self.d.jobs;
        let states = format!(
            "status IN ('succeeded', 'failed', 'cancelled') AND finished_at < {}",
            if self.d.numbered { "$1" } else { "?" }
        );
        let states = &states;
        retry_tx(|| async move {
            let mut tx = self.pool.begin_with(AssertSqlSafe(self.d.begin)).await?;
            // `before` is bound first (the `states` placeholder), then the filter's values.
            let mut a = Args::new(self.d);
            a.int(before);
            let terms = filter_terms(filter, before, &mut a);
            let sql = format!(
                "SELECT id FROM {jobs} j WHERE {states}{terms} LIMIT {}{}",
                a.int(limit as i64),
                self.d.lock_rows,
            );
            let rows = Self::query(sql, a.values).fetch_all(&mut *tx).await?;
            let ids = rows
                .iter()
                .map(|r| r.try_get::<String, _>(0))
                .collect::<Result<Vec<_>, _>>()?;
            let head = |_: &mut Args| format!("DELETE FROM {jobs}");
            let tail = " AND finished_at IS NOT NULL";
            let n = self.change(&mut tx, head, &ids, tail).await?;
            tx.commit().await?;
            Ok::<_, TxError>(n)
        })
        .await
    }

    /// [`super::OpsStore::set_paused`].
    pub(crate) async fn set_paused(&self, queue: &str, paused: bool, now: i64) -> CoreResult<bool> {
        let q = if paused {
            sqlx::query(AssertSqlSafe(self.d.ops.pause))
                .bind(queue)
                .bind(now)
        } else {
            sqlx::query(AssertSqlSafe(self.d.ops.resume)).bind(queue)
        };
        Ok(q.execute(&self.pool).await?.n() > 0)
    }

    /// [`super::OpsStore::paused_queues`], by name.
    pub(crate) async fn paused_queues(&self) -> CoreResult<Vec<String>> {
        let rows = sqlx::query(AssertSqlSafe(self.d.ops.paused))
            .fetch_all(&self.pool)
            .await?;
        let mut names = rows
            .iter()
            .map(|r| r.try_get::<String, _>(0))
            .collect::<Result<Vec<_>, _>>()?;
        names.sort_unstable();
        Ok(names)
    }

    /// Writes a worker's row: all of it (`register`) or, on an existing row, only its
    /// heartbeat and held count.
    pub(crate) async fn put_worker(&self, w: &WorkerInfo, register: bool) -> CoreResult<()> {
        let sql = if register {
            self.d.ops.register_worker
        } else {
            self.d.ops.beat_worker
        };
        let q = sqlx::query(AssertSqlSafe(sql))
            .bind(w.name.as_str())
            .bind(w.host.as_str())
            .bind(i64::from(w.pid))
            .bind(serde_json::to_string(&w.queues)?)
            .bind(i64::from(w.concurrency))
            .bind(w.started_at_ms)
            .bind(w.heartbeat_at_ms)
            .bind(w.heartbeat_interval_ms)
            .bind(i64::from(w.jobs_held))
            .bind(w.version.as_str());
        q.execute(&self.pool).await?;
        Ok(())
    }

    /// [`super::OpsStore::remove_worker`].
    pub(crate) async fn remove_worker(&self, name: &str) -> CoreResult<()> {
        let q = sqlx::query(AssertSqlSafe(self.d.ops.remove_worker)).bind(name);
        q.execute(&self.pool).await?;
        Ok(())
    }

    /// [`super::OpsStore::workers`]: the live ones, after deleting a batch of rows gone
    /// for more than an hour.
    pub(crate) async fn workers(&self, now: i64) -> CoreResult<Vec<WorkerInfo>> {
        let prune = sqlx::query(AssertSqlSafe(self.d.ops.prune_workers))
            .bind(now.saturating_sub(GONE_KEPT_MS))
            .bind(PRUNE_BATCH);
        prune.execute(&self.pool).await?;
        let q = sqlx::query(AssertSqlSafe(self.d.ops.workers)).bind(now);
        let rows = q.fetch_all(&self.pool).await?;
        let mut out = rows
            .iter()
            .map(worker_from)
            .collect::<CoreResult<Vec<_>>>()?;
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

/// Implements [`OpsStore`](super::OpsStore) for a SQL store (field `sql`); `$lock` (with
/// the store as `$s`) is held around each write (SQLite's one-writer lock, `()` else).
macro_rules! sql_ops_store {
    ($ty:ty, |$s:ident| $lock:expr) => {
        #[async_trait::async_trait]
        impl $crate::store::OpsStore for $ty {
            async fn stats(&self, now: i64) -> CoreResult<Vec<$crate::store::QueueStats>> {
                self.sql.stats(now).await
            }

            async fn list_jobs(
                &self,
                filter: &$crate::store::JobFilter,
                after: Option<&$crate::store::Cursor>,
                limit: usize,
                now: i64,
            ) -> CoreResult<Vec<JobRecord>> {
                self.sql.list_jobs(filter, after, limit, now).await
            }

            async fn retry_batch(
                &self,
                filter: &$crate::store::JobFilter,
                now: i64,
                limit: usize,
            ) -> CoreResult<u64> {
                let $s = self;
                let _writing = $lock;
                self.sql.retry_batch(filter, now, limit).await
            }

            async fn cancel_batch(
                &self,
                filter: &$crate::store::JobFilter,
                now: i64,
                limit: usize,
            ) -> CoreResult<u64> {
                let $s = self;
                let _writing = $lock;
                self.sql.cancel_batch(filter, now, limit).await
            }

            async fn purge_batch(
                &self,
                filter: &$crate::store::JobFilter,
                before: i64,
                limit: usize,
            ) -> CoreResult<u64> {
                let $s = self;
                let _writing = $lock;
                self.sql.purge_batch(filter, before, limit).await
            }

            async fn set_paused(&self, queue: &str, paused: bool, now: i64) -> CoreResult<bool> {
                let $s = self;
                let _writing = $lock;
                self.sql.set_paused(queue, paused, now).await
            }

            async fn paused_queues(&self) -> CoreResult<Vec<String>> {
                self.sql.paused_queues().await
            }

            async fn register_worker(&self, w: &$crate::store::WorkerInfo) -> CoreResult<()> {
                let $s = self;
                let _writing = $lock;
                self.sql.put_worker(w, true).await
            }

            async fn beat_worker(&self, w: &$crate::store::WorkerInfo) -> CoreResult<()> {
                let $s = self;
                let _writing = $lock;
                self.sql.put_worker(w, false).await
            }

            async fn remove_worker(&self, name: &str) -> CoreResult<()> {
                let $s = self;
                let _writing = $lock;
                self.sql.remove_worker(name).await
            }

            async fn workers(&self, now: i64) -> CoreResult<Vec<$crate::store::WorkerInfo>> {
                let $s = self;
                let _writing = $lock;
                self.sql.workers(now).await
            }
        }
    };
}
pub(crate) use sql_ops_store;
