//! SQLite store (the embedded default), on sqlx.
//!
//! Files run in WAL mode so readers never block the writer; every write transaction
//! starts with `BEGIN IMMEDIATE` so concurrent processes queue on the busy timeout
//! instead of failing. `memory://` / `sqlite::memory:` use one long-lived in-memory
//! connection: the same schema and queries, no file.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Connection, Sqlite};

use super::rows::{
    claimed_rows, earlier_in_batch, in_claim_order, insert_jobs_query, CompletionColumns,
};
use super::sql::{placeholders, sql_schedule_store, Sql};
use super::sqlite_direct::DirectWriter;
use super::{all_created, fail_corrupt, Store};
use crate::error::{CoreError, CoreResult};
use crate::job::{ClaimedJob, Completion, Enqueued, JobRecord, JobRow, QueueCounts};
use crate::time::{duration_ms, now_ms};

/// Rows per multi-row INSERT (12 bound values each, far below SQLite's variable limit).
pub(crate) const INSERT_CHUNK: usize = 400;

/// A job store in a SQLite database.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    sql: Sql<Sqlite>,
    /// Taken around this store's writes: SQLite has one writer at a time, and writers of
    /// one process that collide (a claim while outcomes are written) would otherwise
    /// meet in SQLite's busy handler, which sleeps for milliseconds. Other processes
    /// still wait on the busy timeout.
    writes: Arc<tokio::sync::Mutex<()>>,
    /// Keeps an in-memory database alive; never used for queries.
    _anchor: Option<Arc<tokio::sync::Mutex<sqlx::SqliteConnection>>>,
    /// Inserts on a blocking producer's own thread (file databases only).
    direct: Option<Arc<DirectWriter>>,
}

/// How often an idle worker's watcher asks SQLite whether another process committed.
const WATCH_INTERVAL: Duration = Duration::from_millis(4);

/// Connections to a database file: the pool's and, besides them, the hot path's.
const FILE_CONNECTIONS: usize = 4;

/// Most outcomes written by one statement (8 bound values each).
const COMPLETE_CHUNK: usize = 512;

/// How long opening a file keeps retrying while other processes hold it busy.
const OPEN_BUSY_BUDGET: Duration = Duration::from_secs(30);

/// True for SQLite's "database is busy/locked" answers (SQLITE_BUSY, SQLITE_LOCKED).
fn is_busy(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code();
            let primary = code
                .as_deref()
                .and_then(|c| c.parse::<i64>().ok())
                .map(|c| c & 0xff);
            matches!(primary, Some(5) | Some(6))
        }
        _ => false,
    }
}

impl SqliteStore {
    /// Starts a write transaction.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.sql.pool.begin_with("BEGIN IMMEDIATE").await
    }

    /// Opens (creating if needed) a database file and sets up the schema.
    pub async fn open_file(path: &Path, synchronous_full: bool) -> CoreResult<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !parent.is_dir() {
                return Err(CoreError::config(format!(
                    "SQLite database directory {} does not exist",
                    parent.display()
                )));
            }
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(if synchronous_full {
                SqliteSynchronous::Full
            } else {
                SqliteSynchronous::Normal
            })
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(false);
        // Several processes opening a fresh file at once race to switch it to WAL;
        // SQLite answers that race with SQLITE_BUSY without calling the busy handler,
        // so the open is retried (briefly, with backoff) until one of them has won.
        let started = std::time::Instant::now();
        let mut pause = Duration::from_millis(5);
        loop {
            match Self::try_open_file(options.clone()).await {
                Ok(mut store) => {
                    store.direct = Some(Arc::new(DirectWriter::open(path, synchronous_full)?));
                    return Ok(store);
                }
                Err(e) if is_busy(&e) && started.elapsed() < OPEN_BUSY_BUDGET => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                Err(e) => {
                    return Err(CoreError::Backend(format!(
                        "cannot open {}: {e}",
                        path.display()
                    )))
                }
            }
        }
    }

    /// One attempt at opening a database file and setting up its schema.
    async fn try_open_file(options: SqliteConnectOptions) -> Result<Self, sqlx::Error> {
        let pool = SqlitePoolOptions::new()
            .min_connections(1)
            .max_connections(FILE_CONNECTIONS as u32)
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(options)
            .await?;
        Self::setup(pool, FILE_CONNECTIONS).await
    }

    /// Opens a private in-memory database that lives as long as this store.
    ///
    /// It is a named shared-cache database held open by an anchor connection, so it
    /// survives the pool replacing its connection (e.g. after a cancelled query).
    pub async fn open_memory() -> CoreResult<Self> {
        let name = format!(
            "file:spikard-tasks-{}?mode=memory&cache=shared",
            uuid::Uuid::now_v7().simple()
        );
        let options = SqliteConnectOptions::from_str(&name)?.busy_timeout(Duration::from_secs(30));
        let anchor = sqlx::ConnectOptions::connect(&options).await?;
        let pool = SqlitePoolOptions::new()
            .min_connections(1)
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(options)
            .await?;
        let mut store = Self::setup(pool, 1).await?;
        store._anchor = Some(Arc::new(tokio::sync::Mutex::new(anchor)));
        Ok(store)
    }

    /// Inserts `rows` inside `tx` (unique keys resolved to existing jobs).
    async fn insert_jobs(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
        rows: &[JobRow],
    ) -> CoreResult<Vec<Enqueued>> {
        let mut out: Vec<Enqueued> = all_created(rows);
        let mut plain: Vec<&JobRow> = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let Some(key) = &row.unique_key else {
                plain.push(row);
                continue;
            };
            let existing = self.sql.unique_holder(tx, &row.queue, key).await?;
            match existing.or_else(|| earlier_in_batch(rows, &out, i)) {
                Some(id) => out[i] = Enqueued { id, created: false },
                None => plain.push(row),
            }
        }
        for chunk in plain.chunks(INSERT_CHUNK) {
            insert_statement(chunk).execute(&mut **tx).await?;
        }
        Ok(out)
    }

    /// Sets up the schema; the hot path keeps at most `hot` connections open.
    async fn setup(pool: SqlitePool, hot: usize) -> Result<Self, sqlx::Error> {
        let sql = Sql::new(pool, hot, &super::dialect::SQLITE);
        let mut tx = sql.pool.begin_with("BEGIN IMMEDIATE").await?;
        sql.setup(&mut tx).await?;
        migrate(&mut tx).await?;
        tx.commit().await?;
        Ok(Self {
            sql,
            writes: Arc::default(),
            _anchor: None,
            direct: None,
        })
    }
}

/// Brings a table of an earlier version up to date: the ready index with the state,
/// the `progress` and `trace_context` columns where they are missing, the counts of
/// finished jobs (table and first count) where that table is, and their triggers where
/// they are of an earlier version (dropped and created anew). Runs inside setup's write
/// transaction, so processes opening the file at once take turns and only the first
/// adds them.
async fn migrate(conn: &mut sqlx::SqliteConnection) -> Result<(), sqlx::Error> {
    let ready_columns: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM pragma_index_info('spikard_jobs_ready')")
            .fetch_one(&mut *conn)
            .await?;
    if ready_columns == 4 {
        sqlx::query("DROP INDEX spikard_jobs_ready")
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query(super::dialect::SQLITE_READY)
        .execute(&mut *conn)
        .await?;
    let counted: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'spikard_job_counts'",
    )
    .fetch_one(&mut *conn)
    .await?;
    if counted == 0 {
        sqlx::raw_sql(super::dialect::SQLITE_COUNTS)
            .execute(&mut *conn)
            .await?;
    }
    let triggered: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger' AND name = ?",
    )
    .bind(super::dialect::SQLITE_COUNT_TRIGGER)
    .fetch_one(&mut *conn)
    .await?;
    if triggered == 0 {
        sqlx::raw_sql(super::dialect::SQLITE_COUNT_TRIGGERS)
            .execute(&mut *conn)
            .await?;
    }
    for (column, ddl) in [
        (
            "progress",
            "ALTER TABLE spikard_jobs ADD COLUMN progress TEXT",
        ),
        (
            "trace_context",
            "ALTER TABLE spikard_jobs ADD COLUMN trace_context TEXT",
        ),
    ] {
        let present: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pragma_table_info('spikard_jobs') WHERE name = ?",
        )
        .bind(column)
        .fetch_one(&mut *conn)
        .await?;
        if present == 0 {
            sqlx::query(ddl).execute(&mut *conn).await?;
        }
    }
    Ok(())
}

/// One multi-row `INSERT` of `rows` (at most [`INSERT_CHUNK`]).
fn insert_statement<'q>(
    rows: &[&'q JobRow],
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    insert_jobs_query!(rows, i64)
}

#[async_trait]
impl Store for SqliteStore {
    fn enqueue_blocking(&self, rows: &[JobRow]) -> Option<CoreResult<Vec<Enqueued>>> {
        let direct = self.direct.as_ref()?;
        let in_async_code = tokio::runtime::Handle::try_current().is_ok();
        if in_async_code || rows.iter().any(|r| r.unique_key.is_some()) {
            return None;
        }
        let _writing = self.writes.blocking_lock();
        Some(direct.insert(rows))
    }

    async fn enqueue(&self, rows: Vec<JobRow>) -> CoreResult<Vec<Enqueued>> {
        let _writing = self.writes.lock().await;
        if let [row] = rows.as_slice() {
            if row.unique_key.is_none() {
                // One row, nothing to look up first: one autocommit statement.
                let mut conn = self.sql.conns.get().await?;
                insert_statement(&[row]).execute(&mut *conn).await?;
                conn.release();
                return Ok(all_created(&rows));
            }
        }
        let mut conn = self.sql.conns.get().await?;
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        let out = self.insert_jobs(&mut tx, &rows).await?;
        tx.commit().await?;
        conn.release();
        Ok(out)
    }

    async fn get(&self, id: &str) -> CoreResult<Option<JobRecord>> {
        self.sql.get(id).await
    }

    async fn set_progress(&self, id: &str, progress: &str) -> CoreResult<bool> {
        let _writing = self.writes.lock().await;
        self.sql.set_progress(id, progress).await
    }

    async fn cancel(&self, id: &str) -> CoreResult<bool> {
        let _writing = self.writes.lock().await;
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
        let now = now_ms();
        // A read first: an UPDATE takes the database's one write lock even when nothing
        // is ready, and idle workers would take it on every poll.
        let probe = format!(
            "SELECT 1 FROM spikard_jobs WHERE queue IN ({}) \
             AND status IN ('pending', 'retrying') AND run_at <= ? LIMIT 1",
            placeholders(queues.len())
        );
        let mut q = sqlx::query_scalar::<_, i64>(AssertSqlSafe(probe));
        for queue in queues {
            q = q.bind(queue);
        }
        let mut conn = self.sql.conns.get().await?;
        let ready = q.bind(now).fetch_optional(&mut *conn).await?.is_some();
        conn.release();
        if !ready {
            return Ok(Vec::new());
        }
        // Writers take the write lock before a connection (never the other way round).
        let writing = self.writes.lock().await;
        let mut conn = self.sql.conns.get().await?;
        let sql = format!(
            "UPDATE spikard_jobs SET status = 'running', attempts = attempts + 1, \
             locked_by = ?, lease_until = ?, started_at = NULL \
             WHERE id IN (SELECT id FROM spikard_jobs \
                 WHERE queue IN ({}) AND status IN ('pending', 'retrying') AND run_at <= ? \
                 ORDER BY priority DESC, run_at, id LIMIT ?) \
             RETURNING id, queue, task, args, kwargs, attempts, max_attempts, timeout_ms, \
             priority, run_at, enqueued_at, trace_context",
            placeholders(queues.len())
        );
        let mut q = sqlx::query(AssertSqlSafe(sql))
            .bind(worker)
            .bind(now.saturating_add(duration_ms(lease)));
        for queue in queues {
            q = q.bind(queue);
        }
        let rows = q.bind(now).bind(limit as i64).fetch_all(&mut *conn).await?;
        conn.release();
        drop(writing); // failing corrupt rows (below) writes again
        let (keyed, broken) = claimed_rows(&rows, 0, now)?;
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
        let now = now_ms();
        let mut written = 0;
        let _writing = self.writes.lock().await;
        let mut conn = self.sql.conns.get().await?;
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        // One statement per chunk: the outcomes travel as a VALUES table.
        for chunk in done.chunks(COMPLETE_CHUNK) {
            let sql = format!(
                "UPDATE spikard_jobs SET status = v.column1, result = v.column2, \
                 run_at = COALESCE(v.column3, spikard_jobs.run_at), \
                 errors = CASE WHEN v.column4 IS NULL THEN spikard_jobs.errors \
                     ELSE json_insert(COALESCE(spikard_jobs.errors, '[]'), '$[#]', json(v.column4)) END, \
                 cancel_reason = COALESCE(v.column5, spikard_jobs.cancel_reason), \
                 finished_at = v.column6, locked_by = NULL, lease_until = NULL, \
                 started_at = COALESCE(v.column9, spikard_jobs.started_at) \
                 FROM (VALUES {}) AS v \
                 WHERE spikard_jobs.id = v.column7 AND spikard_jobs.attempts = v.column8 \
                 AND spikard_jobs.locked_by = ? AND spikard_jobs.status = 'running'",
                vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ")
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for (job, outcome) in chunk {
                let c = CompletionColumns::new(outcome, now)?;
                q = q
                    .bind(c.status)
                    .bind(c.result)
                    .bind(c.run_at_ms)
                    .bind(c.error)
                    .bind(c.cancel_reason)
                    .bind(c.finished_at_ms)
                    .bind(&job.id)
                    .bind(job.attempt as i64)
                    .bind(job.started_at_ms);
            }
            let res = q.bind(worker).execute(&mut *tx).await?;
            written += res.rows_affected() as usize;
        }
        tx.commit().await?;
        conn.release();
        Ok(written)
    }

    async fn heartbeat(
        &self,
        worker: &str,
        ids: &[String],
        lease: Duration,
    ) -> CoreResult<Vec<String>> {
        let until = now_ms().saturating_add(duration_ms(lease));
        let mut cancel = Vec::new();
        let _writing = self.writes.lock().await;
        let mut conn = self.sql.conns.get().await?;
        for chunk in ids.chunks(INSERT_CHUNK) {
            let sql = format!(
                "UPDATE spikard_jobs SET lease_until = ? WHERE locked_by = ? \
                 AND status = 'running' AND id IN ({}) RETURNING id, cancel_requested",
                placeholders(chunk.len())
            );
            let mut q = sqlx::query_as::<_, (String, i64)>(AssertSqlSafe(sql))
                .bind(until)
                .bind(worker);
            for id in chunk {
                q = q.bind(id);
            }
            let rows = q.fetch_all(&mut *conn).await?;
            cancel.extend(rows.into_iter().filter(|(_, c)| *c != 0).map(|(id, _)| id));
        }
        conn.release();
        Ok(cancel)
    }

    async fn mark_started(&self, worker: &str, started: &[(String, i64)]) -> CoreResult<u64> {
        if started.is_empty() {
            return Ok(0);
        }
        let _writing = self.writes.lock().await;
        let mut conn = self.sql.conns.get().await?;
        let mut marked = 0;
        for chunk in started.chunks(INSERT_CHUNK / 2) {
            let sql = format!(
                "UPDATE spikard_jobs SET started_at = v.column2 FROM (VALUES {}) AS v \
                 WHERE spikard_jobs.id = v.column1 AND spikard_jobs.locked_by = ? \
                 AND spikard_jobs.status = 'running'",
                vec!["(?, ?)"; chunk.len()].join(", ")
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for (id, at) in chunk {
                q = q.bind(id).bind(at);
            }
            marked += q.bind(worker).execute(&mut *conn).await?.rows_affected();
        }
        conn.release();
        Ok(marked)
    }

    async fn rescue_expired(&self, limit: usize) -> CoreResult<u64> {
        let _writing = self.writes.lock().await;
        self.sql.rescue(limit).await
    }

    async fn release(&self, worker: &str, ids: Option<&[String]>) -> CoreResult<u64> {
        let _writing = self.writes.lock().await;
        self.sql.release(worker, ids).await
    }

    async fn counts(&self, queue: &str) -> CoreResult<QueueCounts> {
        self.sql.counts(queue).await
    }

    /// SQLite has no notifications across processes: a dedicated connection polls
    /// `PRAGMA data_version` (a counter that moves when another connection commits; a
    /// cheap in-memory read) and wakes the worker when it moves.
    fn spawn_listener(
        &self,
        _queues: Vec<String>,
        wake: Arc<tokio::sync::Notify>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        self.direct.as_ref()?; // a file database (an in-memory one has no other writers)
        let version = "PRAGMA data_version";
        Some(
            self.sql
                .watch::<i64>("SQLite change watcher", version, WATCH_INTERVAL, wake),
        )
    }

    async fn close(&self) {
        self.sql.conns.close().await;
    }

    async fn purge_finished(&self, before_ms: i64, limit: usize) -> CoreResult<u64> {
        let _writing = self.writes.lock().await;
        self.sql.purge(before_ms, limit).await
    }
}

sql_schedule_store!(SqliteStore);

super::sql_ops::sql_ops_store!(SqliteStore, |s| s.writes.lock().await);
super::sql_limits::sql_limit_store!(SqliteStore, |s| s.writes.lock().await);
