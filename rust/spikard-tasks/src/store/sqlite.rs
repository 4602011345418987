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
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Connection, Row};

use super::conns::Conns;
use super::rows::{
    cancel_job, earlier_in_batch, in_claim_order, insert_jobs_query, placeholders,
    CompletionColumns,
};
use super::sqlite_direct::DirectWriter;
use super::{all_created, Store, LOST, LOST_UNSTARTED};
use crate::error::{CoreError, CoreResult};
use crate::job::{
    AttemptError, ClaimedJob, Completion, Enqueued, JobRecord, JobRow, JobStatus, QueueCounts,
};
use crate::time::{duration_ms, now_ms};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS spikard_jobs (
    id TEXT PRIMARY KEY NOT NULL,
    queue TEXT NOT NULL,
    task TEXT NOT NULL,
    args TEXT NOT NULL,
    kwargs TEXT NOT NULL,
    status TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    run_at INTEGER NOT NULL,
    timeout_ms INTEGER,
    unique_key TEXT,
    result TEXT,
    errors TEXT,
    cancel_reason TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    enqueued_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER,
    locked_by TEXT,
    lease_until INTEGER
);
CREATE INDEX IF NOT EXISTS spikard_jobs_ready
    ON spikard_jobs(queue, priority DESC, run_at, id) WHERE status IN ('pending', 'retrying');
CREATE INDEX IF NOT EXISTS spikard_jobs_lease
    ON spikard_jobs(lease_until) WHERE status = 'running';
-- Heartbeats and outcomes go by id; one index less to update on every claim and outcome.
DROP INDEX IF EXISTS spikard_jobs_locked;
CREATE UNIQUE INDEX IF NOT EXISTS spikard_jobs_unique
    ON spikard_jobs(queue, unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('pending', 'running', 'retrying');
CREATE INDEX IF NOT EXISTS spikard_jobs_finished
    ON spikard_jobs(finished_at) WHERE finished_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS spikard_schedules (
    name TEXT PRIMARY KEY NOT NULL,
    definition TEXT NOT NULL,
    last_tick INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS spikard_meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
INSERT OR IGNORE INTO spikard_meta (key, value) VALUES ('schema_version', '1');
"#;

const COLUMNS: &str = "id, queue, task, args, kwargs, status, priority, attempts, max_attempts, \
     run_at, timeout_ms, unique_key, result, errors, cancel_reason, enqueued_at, started_at, \
     finished_at";

/// Rows per multi-row INSERT (12 bound values each, far below SQLite's variable limit).
pub(crate) const INSERT_CHUNK: usize = 400;

/// A job store in a SQLite database.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// The hot path's connections (enqueue, get, claim, outcomes, heartbeats).
    conns: Conns<sqlx::Sqlite>,
    /// Taken around this store's writes: SQLite has one writer at a time, and writers of
    /// one process that collide (a claim while outcomes are written) would otherwise
    /// meet in SQLite's busy handler, which sleeps for milliseconds. Other processes
    /// still wait on the busy timeout.
    writes: Arc<tokio::sync::Mutex<()>>,
    /// Keeps an in-memory database alive; never used for queries.
    _anchor: Option<Arc<tokio::sync::Mutex<sqlx::SqliteConnection>>>,
    /// How to open another connection to the same file (for the change watcher).
    file_options: Option<SqliteConnectOptions>,
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
        self.pool.begin_with("BEGIN IMMEDIATE").await
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
                    store.file_options = Some(options);
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
            let existing: Option<String> = sqlx::query_scalar(
                "SELECT id FROM spikard_jobs WHERE queue = ? AND unique_key = ? \
                 AND status IN ('pending', 'running', 'retrying')",
            )
            .bind(&row.queue)
            .bind(key)
            .fetch_optional(&mut **tx)
            .await?;
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
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::raw_sql(SCHEMA).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(Self {
            conns: Conns::new(pool.clone(), hot),
            pool,
            writes: Arc::default(),
            _anchor: None,
            file_options: None,
            direct: None,
        })
    }
}

super::rows::row_decoders!(SqliteRow, i64);

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
                let mut conn = self.conns.get().await?;
                insert_statement(&[row]).execute(&mut *conn).await?;
                conn.release();
                return Ok(all_created(&rows));
            }
        }
        let mut conn = self.conns.get().await?;
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        let out = Self::insert_jobs(&mut tx, &rows).await?;
        tx.commit().await?;
        conn.release();
        Ok(out)
    }

    async fn get(&self, id: &str) -> CoreResult<Option<JobRecord>> {
        let sql = format!("SELECT {COLUMNS} FROM spikard_jobs WHERE id = ?");
        let mut conn = self.conns.get().await?;
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
        conn.release();
        row.as_ref()
            .map(|r| record_from_row(r, self.now_ms()))
            .transpose()
    }

    async fn cancel(&self, id: &str) -> CoreResult<bool> {
        let _writing = self.writes.lock().await;
        cancel_job!(
            self,
            now_ms(),
            id,
            "UPDATE spikard_jobs SET status = 'cancelled', finished_at = ?, \
             cancel_reason = 'cancelled by request' \
             WHERE id = ? AND status IN ('pending', 'retrying')",
            "UPDATE spikard_jobs SET cancel_requested = 1 WHERE id = ? AND status = 'running'"
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
        let mut conn = self.conns.get().await?;
        let ready = q.bind(now).fetch_optional(&mut *conn).await?.is_some();
        conn.release();
        if !ready {
            return Ok(Vec::new());
        }
        // Writers take the write lock before a connection (never the other way round).
        let _writing = self.writes.lock().await;
        let mut conn = self.conns.get().await?;
        let sql = format!(
            "UPDATE spikard_jobs SET status = 'running', attempts = attempts + 1, \
             locked_by = ?, lease_until = ?, started_at = NULL \
             WHERE id IN (SELECT id FROM spikard_jobs \
                 WHERE queue IN ({}) AND status IN ('pending', 'retrying') AND run_at <= ? \
                 ORDER BY priority DESC, run_at, id LIMIT ?) \
             RETURNING id, queue, task, args, kwargs, attempts, max_attempts, timeout_ms, \
             priority, run_at",
            placeholders(queues.len())
        );
        let mut q = sqlx::query(AssertSqlSafe(sql))
            .bind(worker)
            .bind(now.saturating_add(duration_ms(lease)));
        for queue in queues {
            q = q.bind(queue);
        }
        let rows = q.bind(now).bind(limit as i64).fetch_all(&mut *conn).await?;
        let mut keyed = Vec::with_capacity(rows.len());
        for row in &rows {
            let run_at: i64 = row.try_get("run_at")?;
            match claimed_from_row(row) {
                Ok(job) => keyed.push((job, run_at)),
                Err(err) => {
                    // A corrupt row must not block the queue: fail it with the reason.
                    let id: String = row.try_get("id")?;
                    tracing::error!(job_id = %id, error = %err, "failing corrupt job row");
                    sqlx::query(
                        "UPDATE spikard_jobs SET status = 'failed', finished_at = ?, \
                         locked_by = NULL, lease_until = NULL, \
                         errors = json_insert(COALESCE(errors, '[]'), '$[#]', json(?)) WHERE id = ?",
                    )
                    .bind(now)
                    .bind(serde_json::to_string(&AttemptError {
                        attempt: row.try_get::<i64, _>("attempts")? as u32,
                        error: err.to_string(),
                        traceback: None,
                        at_ms: now,
                    })?)
                    .bind(&id)
                    .execute(&mut *conn)
                    .await?;
                }
            }
        }
        conn.release();
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
        let mut conn = self.conns.get().await?;
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
        let mut conn = self.conns.get().await?;
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
        let mut conn = self.conns.get().await?;
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
        let now = now_ms();
        // `counted`: the attempt ran (its start was recorded), or it is the second
        // rescue of the same unrecorded attempt. Every expression reads the old row.
        let counted = format!(
            "(started_at IS NOT NULL OR (json_extract(errors, '$[#-1].attempt') = attempts \
             AND json_extract(errors, '$[#-1].error') = '{LOST_UNSTARTED}'))"
        );
        let sql = format!(
            "UPDATE spikard_jobs SET \
                 status = CASE WHEN {counted} THEN \
                     CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'retrying' END \
                     ELSE CASE WHEN attempts > 1 THEN 'retrying' ELSE 'pending' END END, \
                 finished_at = CASE WHEN {counted} AND attempts >= max_attempts \
                     THEN ?1 ELSE NULL END, \
                 errors = json_insert(COALESCE(errors, '[]'), '$[#]', json_object( \
                     'attempt', attempts, \
                     'error', CASE WHEN {counted} THEN '{LOST}' ELSE '{LOST_UNSTARTED}' END, \
                     'traceback', NULL, 'at_ms', ?1)), \
                 attempts = CASE WHEN {counted} THEN attempts ELSE attempts - 1 END, \
                 run_at = ?1, locked_by = NULL, lease_until = NULL \
             WHERE id IN (SELECT id FROM spikard_jobs \
                 WHERE status = 'running' AND lease_until < ?1 LIMIT ?2)"
        );
        let res = sqlx::query(AssertSqlSafe(sql))
            .bind(now)
            .bind(limit as i64)
            .execute(&self.pool)
            .await?;
        Ok(res.rows_affected())
    }

    async fn release(&self, worker: &str, ids: Option<&[String]>) -> CoreResult<u64> {
        let _writing = self.writes.lock().await;
        let base = "UPDATE spikard_jobs SET \
                 status = CASE WHEN attempts > 1 THEN 'retrying' ELSE 'pending' END, \
                 attempts = attempts - 1, locked_by = NULL, lease_until = NULL, started_at = NULL \
             WHERE locked_by = ? AND status = 'running'";
        let res = match ids {
            None => sqlx::query(base).bind(worker).execute(&self.pool).await?,
            Some([]) => return Ok(0),
            Some(ids) => {
                let sql = format!("{base} AND id IN ({})", placeholders(ids.len()));
                let mut q = sqlx::query(AssertSqlSafe(sql)).bind(worker);
                for id in ids {
                    q = q.bind(id);
                }
                q.execute(&self.pool).await?
            }
        };
        Ok(res.rows_affected())
    }

    async fn counts(&self, queue: &str) -> CoreResult<QueueCounts> {
        let rows = sqlx::query(
            "SELECT status, (status = 'pending' AND run_at > ?) AS later, COUNT(*) AS n \
             FROM spikard_jobs WHERE queue = ? GROUP BY 1, 2",
        )
        .bind(now_ms())
        .bind(queue)
        .fetch_all(&self.pool)
        .await?;
        let mut counts = QueueCounts::default();
        for row in rows {
            let mut status = JobStatus::parse(&row.try_get::<String, _>("status")?)?;
            if row.try_get::<bool, _>("later")? {
                status = JobStatus::Scheduled;
            }
            counts.add(status, row.try_get::<i64, _>("n")? as u64);
        }
        Ok(counts)
    }

    /// SQLite has no notifications across processes: a dedicated connection polls
    /// `PRAGMA data_version` (a counter that moves when another connection commits; a
    /// cheap in-memory read) and wakes the worker when it moves.
    fn spawn_listener(
        &self,
        _queues: Vec<String>,
        wake: Arc<tokio::sync::Notify>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let options = self.file_options.clone()?;
        Some(tokio::spawn(async move {
            let Ok(mut conn) = sqlx::ConnectOptions::connect(&options).await else {
                tracing::warn!("cannot open the SQLite change watcher; relying on polling");
                return;
            };
            let mut last: Option<i64> = None;
            loop {
                match sqlx::query_scalar::<_, i64>("PRAGMA data_version")
                    .fetch_one(&mut conn)
                    .await
                {
                    Ok(version) => {
                        // The first reading wakes the worker too: a commit made after
                        // its first claim but before this baseline would be missed.
                        if last != Some(version) {
                            wake.notify_one();
                        }
                        last = Some(version);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "SQLite change watcher failed; relying on polling");
                        return;
                    }
                }
                tokio::time::sleep(WATCH_INTERVAL).await;
            }
        }))
    }

    async fn close(&self) {
        self.conns.close().await;
    }

    async fn purge_finished(&self, before_ms: i64, limit: usize) -> CoreResult<u64> {
        let _writing = self.writes.lock().await;
        let res = sqlx::query(
            "DELETE FROM spikard_jobs WHERE id IN (SELECT id FROM spikard_jobs \
             WHERE finished_at IS NOT NULL AND finished_at < ? LIMIT ?)",
        )
        .bind(before_ms)
        .bind(limit as i64)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected())
    }
}

super::rows::sql_schedule_store!(
    SqliteStore,
    save: "INSERT INTO spikard_schedules (name, definition, last_tick, updated_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (name) DO UPDATE SET definition = excluded.definition, \
             updated_at = excluded.updated_at",
    list: "SELECT name, definition, last_tick, updated_at FROM spikard_schedules ORDER BY name",
    remove: "DELETE FROM spikard_schedules WHERE name = ?",
    fire: "UPDATE spikard_schedules SET last_tick = ? WHERE name = ? AND last_tick < ?"
);
