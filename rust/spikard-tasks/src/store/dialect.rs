//! The SQL each dialect speaks, in one table per backend: the schema and the statements
//! the shared implementation ([`super::sql`]) runs. Statements whose shape depends on
//! the backend (claims, outcomes, inserts, heartbeats) stay with their store.

/// One backend's SQL; the binds of each statement are listed in [`dialect!`].
#[derive(Debug)]
#[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
pub(crate) struct Dialect {
    pub jobs: &'static str,
    /// Statements that set up the schema (idempotent), run one by one.
    pub schema: &'static [&'static str],
    /// Placeholders are numbered (`$1`, …) rather than `?`.
    pub numbered: bool,
    pub get: &'static str,
    pub cancel: &'static str,
    pub ask_cancel: &'static str,
    pub set_progress: &'static str,
    pub release: &'static str,
    /// One queue's counts (binds: now, queue; rows: status, pending and due later, count).
    pub counts: &'static str,
    pub purge: &'static str,
    pub unique_holder: &'static str,
    /// The rescue statement's parts ([`super::sql::Sql::rescue`]; not MySQL's): the
    /// latest error entry's attempt and error, the start of an expression appending the
    /// JSON object whose fields follow (closed by `))`), and the end of the pick.
    pub last_entry: [&'static str; 2],
    pub append_entry: &'static str,
    pub rescue_pick: &'static str,
    /// The database's time in ms (not SQLite's: it uses this machine's clock).
    pub clock: &'static str,
    /// Takes the maintenance lock without waiting (true if taken) / gives it back.
    pub lock: &'static str,
    pub unlock: &'static str,
    pub save_schedule: &'static str,
    /// The operations ([`super::sql_ops`]): the columns of a job (`SELECT …`, no `FROM`),
    /// the `FROM` of the job list (all jobs / failed and cancelled ones only) and of the
    /// state counts (with the index each must use where the planner would not pick it),
    /// how a write transaction begins, what locks picked rows, and the statements of
    /// pauses and workers.
    pub select: &'static str,
    pub list_from: &'static str,
    pub dead_from: &'static str,
    /// Counts per queue and stored state (binds: now, now; rows: queue, status, count,
    /// pending jobs due later, the oldest due run_at): waiting jobs from the ready index
    /// alone (it carries their state), running ones from the lease index, finished ones
    /// from the counts table that triggers keep (MySQL: a plain `GROUP BY`).
    pub state_counts: &'static str,
    pub begin: &'static str,
    pub lock_rows: &'static str,
    /// Flow control ([`super::sql_limits`]).
    pub limits: LimitSql,
    pub ops: OpsSql,
    pub list_schedules: &'static str,
    pub remove_schedule: &'static str,
    pub fire_schedule: &'static str,
}

/// The statements of pauses and workers ([`ops_statements!`] lists their binds).
#[derive(Debug)]
pub(crate) struct OpsSql {
    pub pause: &'static str,
    pub resume: &'static str,
    pub paused: &'static str,
    pub register_worker: &'static str,
    pub beat_worker: &'static str,
    pub remove_worker: &'static str,
    pub workers: &'static str,
    pub prune_workers: &'static str,
}

/// The statements of flow control ([`super::sql_limits`]): the limits table, how a row
/// of it is locked for the claim's transaction, and its upsert (binds: key, scope, name,
/// rate count, rate period, max_running).
#[derive(Debug)]
pub(crate) struct LimitSql {
    pub table: &'static str,
    pub for_update: &'static str,
    pub upsert: &'static str,
    /// The column naming a ready job's queue in the claim index (MySQL: `ready_queue`).
    pub queue_column: &'static str,
}

/// The columns of a worker's row, in the order [`super::sql_ops`] reads them.
macro_rules! worker_columns {
    () => {
        "name, host, pid, queues, concurrency, started_at, heartbeat_at, heartbeat_interval, \
         jobs_held, version"
    };
}

/// The statements of pauses and workers (binds: pause: queue, now; resume: queue;
/// register/beat: the worker's columns; remove: name; workers: now; prune: cutoff, limit).
macro_rules! ops_statements {
    (
        $paused:literal, $workers:literal, [$p1:literal, $p2:literal],
        values: $values:literal,
        pause: [$pause:literal, $pause_tail:literal], upsert: $upsert:literal, new: [$o:literal, $c:literal],
        prune: $prune:expr,
    ) => {
        OpsSql {
            pause: concat!(
                $pause,
                " ",
                $paused,
                " (queue, paused_at) VALUES (",
                $p1,
                ", ",
                $p2,
                ")",
                $pause_tail
            ),
            resume: concat!("DELETE FROM ", $paused, " WHERE queue = ", $p1),
            paused: concat!("SELECT queue FROM ", $paused),
            register_worker: concat!(
                "INSERT INTO ",
                $workers,
                " (",
                worker_columns!(),
                ") VALUES ",
                $values,
                " ",
                $upsert,
                " ",
                "host = ",
                $o,
                "host",
                $c,
                ", pid = ",
                $o,
                "pid",
                $c,
                ", queues = ",
                $o,
                "queues",
                $c,
                ", concurrency = ",
                $o,
                "concurrency",
                $c,
                ", started_at = ",
                $o,
                "started_at",
                $c,
                ", heartbeat_at = ",
                $o,
                "heartbeat_at",
                $c,
                ", heartbeat_interval = ",
                $o,
                "heartbeat_interval",
                $c,
                ", jobs_held = ",
                $o,
                "jobs_held",
                $c,
                ", version = ",
                $o,
                "version",
                $c,
            ),
            beat_worker: concat!(
                "INSERT INTO ",
                $workers,
                " (",
                worker_columns!(),
                ") VALUES ",
                $values,
                " ",
                $upsert,
                " ",
                "heartbeat_at = ",
                $o,
                "heartbeat_at",
                $c,
                ", jobs_held = ",
                $o,
                "jobs_held",
                $c,
            ),
            remove_worker: concat!("DELETE FROM ", $workers, " WHERE name = ", $p1),
            workers: concat!(
                "SELECT ",
                worker_columns!(),
                " FROM ",
                $workers,
                " WHERE heartbeat_at + 2 * heartbeat_interval >= ",
                $p1
            ),
            prune_workers: $prune,
        }
    };
}

/// A [`Dialect`]: the statements alike in every dialect from its table names, its
/// placeholders `$p` and the `errors` column as text, then the rest as given.
macro_rules! dialect {
    (
        $jobs:literal, $schedules:literal, [$p1:literal, $p2:literal, $p3:literal, $p4:literal],
        errors: $errors:literal, upsert: $upsert:literal, $($field:ident: $value:expr,)*
    ) => {
        Dialect {
            jobs: $jobs,
            select: concat!("SELECT id, queue, task, args, kwargs, status, priority, attempts, \
                max_attempts, run_at, timeout_ms, unique_key, result, ", $errors, ", \
                cancel_reason, enqueued_at, started_at, finished_at, progress, trace_context"),
            // binds: id
            get: concat!("SELECT id, queue, task, args, kwargs, status, priority, attempts, \
                max_attempts, run_at, timeout_ms, unique_key, result, ", $errors, ", \
                cancel_reason, enqueued_at, started_at, finished_at, progress, trace_context FROM ", $jobs,
                " WHERE id = ", $p1),
            // binds: now, id
            cancel: concat!("UPDATE ", $jobs, " SET status = 'cancelled', finished_at = ", $p1,
                ", cancel_reason = 'cancelled by request' WHERE id = ", $p2,
                " AND status IN ('pending', 'retrying')"),
            // binds: id
            ask_cancel: concat!("UPDATE ", $jobs, " SET cancel_requested = TRUE WHERE id = ", $p1,
                " AND status = 'running'"),
            // binds: progress, id
            set_progress: concat!("UPDATE ", $jobs, " SET progress = ", $p1, " WHERE id = ", $p2,
                " AND status = 'running'"),
            // binds: worker, then ids of an `AND id IN (…)` appended. MySQL evaluates SET left
            // to right: status is computed before attempts is decremented.
            release: concat!("UPDATE ", $jobs, " SET \
                status = CASE WHEN attempts > 1 THEN 'retrying' ELSE 'pending' END, \
                attempts = attempts - 1, locked_by = NULL, lease_until = NULL, started_at = NULL \
                WHERE locked_by = ", $p1, " AND status = 'running'"),
            // binds: queue, key
            unique_holder: concat!("SELECT id FROM ", $jobs, " WHERE queue = ", $p1,
                " AND unique_key = ", $p2, " AND status IN ('pending', 'running', 'retrying')"),
            // binds: name, definition, now, now
            save_schedule: concat!("INSERT INTO ", $schedules, " (name, definition, last_tick, \
                updated_at) VALUES (", $p1, ", ", $p2, ", ", $p3, ", ", $p4, ") ", $upsert),
            list_schedules: concat!("SELECT name, definition, last_tick, updated_at FROM ",
                $schedules, " ORDER BY name"),
            // binds: name
            remove_schedule: concat!("DELETE FROM ", $schedules, " WHERE name = ", $p1),
            // binds: tick, name, tick
            fire_schedule: concat!("UPDATE ", $schedules, " SET last_tick = ", $p1,
                " WHERE name = ", $p2, " AND last_tick < ", $p3),
            $($field: $value,)*
        }
    };
}

#[cfg(feature = "sqlite")]
pub(crate) const SQLITE: Dialect = dialect!(
    "spikard_jobs", "spikard_schedules", ["?", "?", "?", "?"],
    errors: "errors",
    upsert: "ON CONFLICT (name) DO UPDATE SET definition = excluded.definition, \
        updated_at = excluded.updated_at",
    schema: &[SQLITE_SCHEMA, SQLITE_LIMITS],
    numbered: false,
    // binds: before, limit (and the same for every dialect)
    purge: "DELETE FROM spikard_jobs WHERE id IN (SELECT id FROM spikard_jobs \
        WHERE finished_at IS NOT NULL AND finished_at < ? LIMIT ?)",
    last_entry: ["json_extract(errors, '$[#-1].attempt')", "json_extract(errors, '$[#-1].error')"],
    append_entry: "json_insert(COALESCE(errors, '[]'), '$[#]', json_object(",
    rescue_pick: "LIMIT ?2",
    clock: "",
    lock: "",
    unlock: "",
    // Without ANALYZE figures SQLite's planner would sort a queue's jobs by another index.
    list_from: "spikard_jobs INDEXED BY spikard_jobs_enqueued",
    dead_from: "spikard_jobs INDEXED BY spikard_jobs_dead",
    counts: "SELECT status, (status = 'pending' AND run_at > ?1) AS later, COUNT(*) \
        FROM spikard_jobs INDEXED BY spikard_jobs_ready WHERE queue = ?2 \
        AND status IN ('pending', 'retrying') GROUP BY 1, 2 \
        UNION ALL SELECT status, 0, COUNT(*) FROM spikard_jobs INDEXED BY spikard_jobs_lease \
        WHERE status = 'running' AND queue = ?2 GROUP BY 1 \
        UNION ALL SELECT status, 0, n FROM spikard_job_counts WHERE queue = ?2 AND n <> 0",
    state_counts: "SELECT queue, status, COUNT(*), SUM(status = 'pending' AND run_at > ?1), \
        MIN(CASE WHEN run_at <= ?2 THEN run_at END) FROM spikard_jobs \
        INDEXED BY spikard_jobs_ready WHERE status IN ('pending', 'retrying') \
        GROUP BY queue, status \
        UNION ALL SELECT queue, status, COUNT(*), 0, NULL FROM spikard_jobs \
        INDEXED BY spikard_jobs_lease WHERE status = 'running' GROUP BY queue, status \
        UNION ALL SELECT queue, status, n, 0, NULL FROM spikard_job_counts WHERE n <> 0",
    begin: "BEGIN IMMEDIATE",
    lock_rows: "",
    limits: LimitSql {
        table: "spikard_limits",
        for_update: "",
        queue_column: "queue",
        upsert: "INSERT INTO spikard_limits (limit_key, scope, name, rate_count, rate_period_ms, \
            max_running, next_start_us) VALUES (?, ?, ?, ?, ?, ?, 0) ON CONFLICT (limit_key) \
            DO UPDATE SET rate_count = excluded.rate_count, \
            rate_period_ms = excluded.rate_period_ms, max_running = excluded.max_running",
    },
    ops: ops_statements!(
        "spikard_paused", "spikard_workers", ["?", "?"],
        values: "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        pause: ["INSERT OR IGNORE INTO", ""], upsert: "ON CONFLICT (name) DO UPDATE SET",
        new: ["excluded.", ""],
        prune: "DELETE FROM spikard_workers WHERE name IN (SELECT name FROM spikard_workers \
            WHERE heartbeat_at + 2 * heartbeat_interval < ? LIMIT ?)",
    ),
);

#[cfg(feature = "sqlite")]
const SQLITE_SCHEMA: &str = r#"
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
    lease_until INTEGER,
    progress TEXT,
    trace_context TEXT
);
-- The ready index (which carries the state, so waiting jobs are counted from it alone) is
-- created by `SqliteStore::setup`: SQLITE_READY.
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
-- The job list, newest first (keyset pages), and its failed/cancelled part (rare states
-- whose list would otherwise read past every other job; only those jobs are in it).
CREATE INDEX IF NOT EXISTS spikard_jobs_enqueued ON spikard_jobs(enqueued_at, id);
CREATE INDEX IF NOT EXISTS spikard_jobs_dead
    ON spikard_jobs(enqueued_at, id) WHERE status IN ('failed', 'cancelled');
-- Earlier indexes of the state counts: waiting jobs are counted from the ready index,
-- running ones from the lease index, finished ones by triggers (SQLITE_COUNTS).
DROP INDEX IF EXISTS spikard_jobs_states;
DROP INDEX IF EXISTS spikard_jobs_active;
CREATE TABLE IF NOT EXISTS spikard_paused (
    queue TEXT PRIMARY KEY NOT NULL,
    paused_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS spikard_workers (
    name TEXT PRIMARY KEY NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    queues TEXT NOT NULL,
    concurrency INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    heartbeat_interval INTEGER NOT NULL,
    jobs_held INTEGER NOT NULL,
    version TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS spikard_meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
INSERT OR IGNORE INTO spikard_meta (key, value) VALUES ('schema_version', '1');
"#;

/// The ready index: claims read it in their order; its last column, the state, lets the
/// state counts read waiting jobs from it alone. Created by `SqliteStore::setup`, which
/// first drops one of an earlier version (without the state).
#[cfg(feature = "sqlite")]
pub(crate) const SQLITE_READY: &str = "CREATE INDEX IF NOT EXISTS spikard_jobs_ready \
    ON spikard_jobs(queue, priority DESC, run_at, id, status) \
    WHERE status IN ('pending', 'retrying')";

/// The counts of finished jobs per queue and state and their first figures: run by
/// `SqliteStore::setup` in its write transaction when the table is missing, so the jobs
/// already there are counted once (the triggers, SQLITE_COUNT_TRIGGERS, come next).
#[cfg(feature = "sqlite")]
pub(crate) const SQLITE_COUNTS: &str = r#"
CREATE TABLE spikard_job_counts (
    queue TEXT NOT NULL,
    status TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (queue, status)
) WITHOUT ROWID;
INSERT INTO spikard_job_counts (queue, status, n)
    SELECT queue, status, COUNT(*) FROM spikard_jobs
    WHERE status IN ('succeeded', 'failed', 'cancelled') GROUP BY queue, status;
"#;

/// The name of the newest count trigger: `SqliteStore::setup` (re)creates the triggers
/// when it is missing.
#[cfg(feature = "sqlite")]
pub(crate) const SQLITE_COUNT_TRIGGER: &str = "spikard_jobs_count_finish";

/// The triggers keeping `spikard_job_counts` on every change of a job (whatever statement
/// makes it), replacing those of an earlier version. There is none on inserts: the store
/// only ever inserts waiting jobs (`pending`), never finished ones.
#[cfg(feature = "sqlite")]
pub(crate) const SQLITE_COUNT_TRIGGERS: &str = r#"
DROP TRIGGER IF EXISTS spikard_jobs_count_insert;
DROP TRIGGER IF EXISTS spikard_jobs_count_update;
DROP TRIGGER IF EXISTS spikard_jobs_count_finish;
DROP TRIGGER IF EXISTS spikard_jobs_count_unfinish;
-- Every statement that moves a job into or out of a finished state writes its
-- finished_at (set on finishing, cleared on a retry; the purges rely on it too), and
-- claims, starts and heartbeats never do: the triggers are not even entered for them.
-- Into a finished state (the hot path: completions, cancels): one upsert.
CREATE TRIGGER spikard_jobs_count_finish AFTER UPDATE OF finished_at ON spikard_jobs
WHEN NEW.status IN ('succeeded', 'failed', 'cancelled')
    AND OLD.status NOT IN ('succeeded', 'failed', 'cancelled')
BEGIN
    INSERT INTO spikard_job_counts (queue, status, n) VALUES (NEW.queue, NEW.status, 1)
        ON CONFLICT (queue, status) DO UPDATE SET n = n + 1;
END;
-- Out of a finished state (retries), or into another one.
CREATE TRIGGER spikard_jobs_count_unfinish AFTER UPDATE OF finished_at ON spikard_jobs
WHEN OLD.status IN ('succeeded', 'failed', 'cancelled') AND NEW.status IS NOT OLD.status
BEGIN
    UPDATE spikard_job_counts SET n = n - 1 WHERE queue = OLD.queue AND status = OLD.status;
    INSERT INTO spikard_job_counts (queue, status, n)
        SELECT NEW.queue, NEW.status, 1 WHERE NEW.status IN ('succeeded', 'failed', 'cancelled')
        ON CONFLICT (queue, status) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS spikard_jobs_count_delete AFTER DELETE ON spikard_jobs
WHEN OLD.status IN ('succeeded', 'failed', 'cancelled')
BEGIN
    UPDATE spikard_job_counts SET n = n - 1 WHERE queue = OLD.queue AND status = OLD.status;
END;
"#;

#[cfg(feature = "postgres")]
pub(crate) const POSTGRES: Dialect = dialect!(
    "spikard_tasks.jobs", "spikard_tasks.schedules", ["$1", "$2", "$3", "$4"],
    errors: "errors::text AS errors",
    upsert: "ON CONFLICT (name) DO UPDATE SET definition = excluded.definition, \
        updated_at = excluded.updated_at",
    schema: &[POSTGRES_SCHEMA, POSTGRES_LIMITS],
    numbered: true,
    purge: "DELETE FROM spikard_tasks.jobs WHERE id IN (SELECT id FROM spikard_tasks.jobs \
        WHERE finished_at IS NOT NULL AND finished_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
    last_entry: ["(errors->-1->>'attempt')::int", "errors->-1->>'error'"],
    append_entry: "COALESCE(errors, '[]'::jsonb) || jsonb_build_array(jsonb_build_object(",
    rescue_pick: "ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED",
    clock: "SELECT floor(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::bigint",
    // A session advisory lock ("spkt" in ASCII), dropped by the server if we die.
    lock: "SELECT pg_try_advisory_lock(1936747380)",
    unlock: "SELECT pg_advisory_unlock(1936747380)",
    list_from: "spikard_tasks.jobs",
    dead_from: "spikard_tasks.jobs",
    counts: "SELECT status, (status = 'pending' AND run_at > $1) AS later, COUNT(*) \
        FROM spikard_tasks.jobs WHERE queue = $2 AND status IN ('pending', 'retrying') \
        GROUP BY 1, 2 \
        UNION ALL SELECT status, FALSE, COUNT(*) FROM spikard_tasks.jobs \
        WHERE status = 'running' AND queue = $2 GROUP BY 1 \
        UNION ALL SELECT status, FALSE, SUM(n)::bigint FROM spikard_tasks.job_counts \
        WHERE queue = $2 GROUP BY status HAVING SUM(n) <> 0",
    state_counts: "SELECT queue, status, COUNT(*), \
        COUNT(*) FILTER (WHERE status = 'pending' AND run_at > $1), \
        MIN(run_at) FILTER (WHERE run_at <= $2) FROM spikard_tasks.jobs \
        WHERE status IN ('pending', 'retrying') GROUP BY queue, status \
        UNION ALL SELECT queue, status, COUNT(*), 0, NULL FROM spikard_tasks.jobs \
        WHERE status = 'running' GROUP BY queue, status \
        UNION ALL SELECT queue, status, SUM(n)::bigint, 0, NULL FROM spikard_tasks.job_counts \
        GROUP BY queue, status HAVING SUM(n) <> 0",
    begin: "BEGIN",
    lock_rows: " FOR UPDATE SKIP LOCKED",
    limits: LimitSql {
        table: "spikard_tasks.limits",
        for_update: " FOR UPDATE",
        queue_column: "queue",
        upsert: "INSERT INTO spikard_tasks.limits (limit_key, scope, name, rate_count, \
            rate_period_ms, max_running, next_start_us) VALUES ($1, $2, $3, $4, $5, $6, 0) \
            ON CONFLICT (limit_key) DO UPDATE SET rate_count = excluded.rate_count, \
            rate_period_ms = excluded.rate_period_ms, max_running = excluded.max_running",
    },
    ops: ops_statements!(
        "spikard_tasks.paused", "spikard_tasks.workers", ["$1", "$2"],
        values: "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        pause: ["INSERT INTO", " ON CONFLICT (queue) DO NOTHING"],
        upsert: "ON CONFLICT (name) DO UPDATE SET", new: ["excluded.", ""],
        prune: "DELETE FROM spikard_tasks.workers WHERE name IN (SELECT name \
            FROM spikard_tasks.workers WHERE heartbeat_at + 2 * heartbeat_interval < $1 LIMIT $2)",
    ),
);

#[cfg(feature = "postgres")]
const POSTGRES_SCHEMA: &str = r#"
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
    lease_until BIGINT,
    progress TEXT,
    trace_context TEXT
);
-- Tables of earlier versions lack these columns (setup runs under an advisory lock).
-- Looked up first: ALTER TABLE locks the table exclusively even when the column exists.
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = 'spikard_tasks'
        AND table_name = 'jobs' AND column_name = 'progress') THEN
        ALTER TABLE spikard_tasks.jobs ADD COLUMN progress TEXT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = 'spikard_tasks'
        AND table_name = 'jobs' AND column_name = 'trace_context') THEN
        ALTER TABLE spikard_tasks.jobs ADD COLUMN trace_context TEXT;
    END IF;
END $$;
-- The ready index: claims read it in their order; it carries the state, so the state
-- counts read waiting jobs from it alone. One of an earlier version (without the
-- state) is replaced.
DO $$ BEGIN
    IF EXISTS (SELECT 1 FROM pg_indexes WHERE schemaname = 'spikard_tasks'
        AND indexname = 'jobs_ready' AND indexdef NOT LIKE '%INCLUDE (status)%') THEN
        DROP INDEX spikard_tasks.jobs_ready;
    END IF;
END $$;
CREATE INDEX IF NOT EXISTS jobs_ready
    ON spikard_tasks.jobs (queue, priority DESC, run_at, id) INCLUDE (status)
    WHERE status IN ('pending', 'retrying');
CREATE INDEX IF NOT EXISTS jobs_lease
    ON spikard_tasks.jobs (lease_until) WHERE status = 'running';
-- Heartbeats and outcomes go by id, and a release by worker reads the running rows of
-- jobs_lease: one index less to update on every claim.
DROP INDEX IF EXISTS spikard_tasks.jobs_locked;
CREATE UNIQUE INDEX IF NOT EXISTS jobs_unique
    ON spikard_tasks.jobs (queue, unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('pending', 'running', 'retrying');
-- An earlier (queue, status) index, replaced by jobs_ready and the counts table.
DROP INDEX IF EXISTS spikard_tasks.jobs_counts;
-- The job list, newest first (keyset pages), and its failed/cancelled part.
CREATE INDEX IF NOT EXISTS jobs_enqueued ON spikard_tasks.jobs (enqueued_at, id);
CREATE INDEX IF NOT EXISTS jobs_dead
    ON spikard_tasks.jobs (enqueued_at, id) WHERE status IN ('failed', 'cancelled');
-- Earlier indexes of the state counts: waiting jobs are counted from jobs_ready, running
-- ones from jobs_lease, finished ones by triggers (pg::COUNTS). A partial index of the
-- unfinished states on (queue, status, run_at) was taken by the planner for claims,
-- sorting every ready job of the queue on each.
DROP INDEX IF EXISTS spikard_tasks.jobs_states;
DROP INDEX IF EXISTS spikard_tasks.jobs_active;
DROP INDEX IF EXISTS spikard_tasks.jobs_unfinished;
CREATE INDEX IF NOT EXISTS jobs_finished
    ON spikard_tasks.jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS spikard_tasks.schedules (
    name TEXT PRIMARY KEY,
    definition TEXT NOT NULL,
    last_tick BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS spikard_tasks.paused (
    queue TEXT PRIMARY KEY,
    paused_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS spikard_tasks.workers (
    name TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid BIGINT NOT NULL,
    queues TEXT NOT NULL,
    concurrency BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    heartbeat_interval BIGINT NOT NULL,
    jobs_held BIGINT NOT NULL,
    version TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS spikard_tasks.meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO spikard_tasks.meta (key, value) VALUES ('schema_version', '1') ON CONFLICT DO NOTHING;
"#;

/// PostgreSQL's statements of its own: arrays in (`UNNEST`), `FOR UPDATE SKIP LOCKED`.
#[cfg(feature = "postgres")]
pub(crate) mod pg {
    /// The counts of finished jobs per queue, state and shard, kept by statement-level
    /// triggers (one aggregate per statement, from its transition tables) on every
    /// change of a job, and their first figures: run by `PostgresStore::connect` under
    /// its schema lock when the table is missing (creating the triggers waits for
    /// writers in flight and holds off new ones until the count is in). Each server
    /// process adds to its own shard (`pg_backend_pid() % 16`), so concurrent completers
    /// do not queue on one row; readers sum the shards.
    pub(crate) const COUNTS: &str = r#"
CREATE TABLE spikard_tasks.job_counts (
    queue TEXT NOT NULL,
    status TEXT NOT NULL,
    shard INTEGER NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (queue, status, shard)
);
CREATE OR REPLACE FUNCTION spikard_tasks.count_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO spikard_tasks.job_counts AS c (queue, status, shard, n)
        SELECT queue, status, pg_backend_pid() % 16, -COUNT(*) FROM old_jobs
        WHERE status IN ('succeeded', 'failed', 'cancelled')
        GROUP BY queue, status ORDER BY queue, status
        ON CONFLICT (queue, status, shard) DO UPDATE SET n = c.n + excluded.n;
    ELSIF EXISTS (SELECT 1 FROM new_jobs WHERE status IN ('succeeded', 'failed', 'cancelled'))
        OR EXISTS (SELECT 1 FROM old_jobs WHERE status IN ('succeeded', 'failed', 'cancelled'))
    THEN
        INSERT INTO spikard_tasks.job_counts AS c (queue, status, shard, n)
        SELECT queue, status, pg_backend_pid() % 16, SUM(d) FROM (
            SELECT n.queue, n.status, 1 AS d FROM new_jobs n JOIN old_jobs o ON o.id = n.id
            WHERE n.status IN ('succeeded', 'failed', 'cancelled')
            AND (n.status, n.queue) IS DISTINCT FROM (o.status, o.queue)
            UNION ALL
            SELECT o.queue, o.status, -1 FROM old_jobs o JOIN new_jobs n ON n.id = o.id
            WHERE o.status IN ('succeeded', 'failed', 'cancelled')
            AND (n.status, n.queue) IS DISTINCT FROM (o.status, o.queue)
        ) AS t GROUP BY queue, status HAVING SUM(d) <> 0 ORDER BY queue, status
        ON CONFLICT (queue, status, shard) DO UPDATE SET n = c.n + excluded.n;
    END IF;
    RETURN NULL;
END $$;
-- No trigger on inserts: the store only ever inserts waiting jobs (`pending`), never
-- finished ones (and a statement-level one would copy every enqueued row into its
-- transition table). PostgresStore::connect drops one of an earlier version.
DROP TRIGGER IF EXISTS jobs_count_update ON spikard_tasks.jobs;
CREATE TRIGGER jobs_count_update AFTER UPDATE ON spikard_tasks.jobs
    REFERENCING OLD TABLE AS old_jobs NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION spikard_tasks.count_jobs();
DROP TRIGGER IF EXISTS jobs_count_delete ON spikard_tasks.jobs;
CREATE TRIGGER jobs_count_delete AFTER DELETE ON spikard_tasks.jobs
    REFERENCING OLD TABLE AS old_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION spikard_tasks.count_jobs();
INSERT INTO spikard_tasks.job_counts (queue, status, shard, n)
    SELECT queue, status, 0, COUNT(*) FROM spikard_tasks.jobs
    WHERE status IN ('succeeded', 'failed', 'cancelled') GROUP BY queue, status;
"#;

    /// Inserts jobs without a unique key from arrays and notifies their queues (binds: id,
    /// queue, task, args, kwargs, priority, max_attempts, run_at, timeout_ms, enqueued_at,
    /// trace_context as arrays, then the channel).
    pub(crate) const INSERT_PLAIN: &str =
        "WITH ins AS (INSERT INTO spikard_tasks.jobs (id, queue, task, args, kwargs, \
        status, priority, max_attempts, run_at, timeout_ms, enqueued_at, trace_context) \
        SELECT id, queue, task, args, kwargs, 'pending', priority, max_attempts, run_at, \
        timeout_ms, enqueued_at, trace_context FROM UNNEST($1::text[], $2::text[], \
        $3::text[], $4::text[], $5::text[], $6::int[], $7::int[], $8::bigint[], \
        $9::bigint[], $10::bigint[], $11::text[]) AS t(id, queue, task, args, kwargs, \
        priority, max_attempts, run_at, timeout_ms, enqueued_at, trace_context) \
        RETURNING queue) \
        SELECT pg_notify($12, q) FROM (SELECT DISTINCT queue AS q FROM ins) AS s";
    /// Inserts a job with a unique key unless an unfinished job holds it; returns its id.
    pub(crate) const INSERT_KEYED: &str =
        "INSERT INTO spikard_tasks.jobs (id, queue, task, args, kwargs, status, priority, \
        max_attempts, run_at, timeout_ms, unique_key, enqueued_at, trace_context) \
        VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8, $9, $10, $11, $12) \
        ON CONFLICT (queue, unique_key) \
        WHERE unique_key IS NOT NULL AND status IN ('pending', 'running', 'retrying') \
        DO NOTHING RETURNING id";
    /// Claims (binds: queues, now, limit, worker, lease_until).
    /// Per queue, an ordered scan of the ready index that stops at the limit (a
    /// plain `queue = ANY($1)` sorts every ready row of the queues on each claim).
    pub(crate) const CLAIM: &str = "WITH picked AS ( \
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
        j.timeout_ms, j.priority, j.run_at, j.enqueued_at, j.trace_context";
    /// Writes outcomes (binds: id, attempt, status, result, run_at, error, reason, finished
    /// as arrays, worker, started as an array).
    pub(crate) const COMPLETE: &str =
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
        AND (j.locked_by = $9 AND j.status = 'running') IS TRUE";
    /// Renews leases (binds: lease_until, worker, ids).
    pub(crate) const HEARTBEAT: &str = "UPDATE spikard_tasks.jobs SET lease_until = $1 \
        WHERE id = ANY($3) AND (locked_by = $2 AND status = 'running') IS TRUE \
        RETURNING id, cancel_requested";
    /// Records starts (binds: ids, started_at as arrays, worker).
    pub(crate) const MARK_STARTED: &str = "UPDATE spikard_tasks.jobs j SET started_at = u.at \
        FROM UNNEST($1::text[], $2::bigint[]) AS u(id, at) \
        WHERE j.id = u.id AND (j.locked_by = $3 AND j.status = 'running') IS TRUE";
}

/// MySQL's statements of its own.
#[cfg(feature = "mysql")]
pub(crate) mod my {
    /// The claim index: `ready_queue` is the queue of a ready (pending or retrying) job and
    /// NULL otherwise, so one queue's ready jobs are one ordered index range and a claim reads
    /// and locks only the rows it takes (two statuses in one range would sort every ready row
    /// of the queue and lock them all). Added by `MySqlStore::migrate` to old tables too.
    pub(crate) const CLAIM_INDEX: &str = "ALTER TABLE spikard_jobs \
        ADD COLUMN ready_queue VARCHAR(200) AS (CASE WHEN status IN ('pending', 'retrying') \
        THEN queue END) STORED, \
        ADD INDEX spikard_jobs_claim (ready_queue, priority DESC, run_at, id)";
    /// The progress column, added by `MySqlStore::migrate` to tables of earlier versions.
    pub(crate) const PROGRESS_COLUMN: &str =
        "ALTER TABLE spikard_jobs ADD COLUMN progress TEXT NULL";
    /// The job list's index, added by `MySqlStore::migrate` to tables of earlier versions.
    pub(crate) const LIST_INDEX: &str =
        "ALTER TABLE spikard_jobs ADD INDEX spikard_jobs_enqueued (enqueued_at, id)";
    /// The trace context column, added by `MySqlStore::migrate` to tables of earlier
    /// versions.
    pub(crate) const TRACE_CONTEXT_COLUMN: &str =
        "ALTER TABLE spikard_jobs ADD COLUMN trace_context TEXT NULL";
    /// One queue's ready jobs in claim order, locked (binds: queue, now, limit): one
    /// ordered range of the claim index, read with everything a claimed job needs.
    pub(crate) const CLAIM: &str =
        "SELECT id, queue, task, args, kwargs, attempts, max_attempts, timeout_ms, \
        priority, run_at, enqueued_at, trace_context FROM spikard_jobs \
        FORCE INDEX (spikard_jobs_claim) \
        WHERE ready_queue = ? AND run_at <= ? \
        ORDER BY priority DESC, run_at, id LIMIT ? FOR UPDATE SKIP LOCKED";
}

#[cfg(feature = "mysql")]
pub(crate) const MYSQL: Dialect = dialect!(
    "spikard_jobs", "spikard_schedules", ["?", "?", "?", "?"],
    errors: "errors",
    upsert: "ON DUPLICATE KEY UPDATE definition = VALUES(definition), \
        updated_at = VALUES(updated_at)",
    schema: &[MYSQL_SCHEMA, MYSQL_SCHEDULES, MYSQL_PAUSED, MYSQL_WORKERS, MYSQL_LIMITS],
    numbered: false,
    purge: "DELETE FROM spikard_jobs WHERE finished_at IS NOT NULL AND finished_at < ? \
        ORDER BY finished_at LIMIT ?",
    last_entry: ["", ""],
    append_entry: "",
    rescue_pick: "",
    clock: "SELECT CAST(FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000) AS SIGNED)",
    // A named lock of the server, held by one connection's session; dropped if we die.
    lock: "SELECT COALESCE(GET_LOCK('spikard_tasks.maintenance', 0), 0) = 1",
    unlock: "SELECT RELEASE_LOCK('spikard_tasks.maintenance')",
    list_from: "spikard_jobs",
    dead_from: "spikard_jobs",
    counts: "SELECT status, (status = 'pending' AND run_at > ?) AS later, COUNT(*) \
        FROM spikard_jobs WHERE queue = ? GROUP BY 1, 2",
    state_counts: "SELECT queue, status, COUNT(*), \
        CAST(COALESCE(SUM(status = 'pending' AND run_at > ?), 0) AS SIGNED), \
        MIN(CASE WHEN status IN ('pending', 'retrying') AND run_at <= ? THEN run_at END) \
        FROM spikard_jobs GROUP BY queue, status",
    begin: "BEGIN",
    lock_rows: " FOR UPDATE SKIP LOCKED",
    limits: LimitSql {
        table: "spikard_limits",
        for_update: " FOR UPDATE",
        queue_column: "ready_queue",
        upsert: "INSERT INTO spikard_limits (limit_key, scope, name, rate_count, rate_period_ms, \
            max_running, next_start_us) VALUES (?, ?, ?, ?, ?, ?, 0) ON DUPLICATE KEY UPDATE \
            rate_count = VALUES(rate_count), rate_period_ms = VALUES(rate_period_ms), \
            max_running = VALUES(max_running)",
    },
    ops: ops_statements!(
        "spikard_paused", "spikard_workers", ["?", "?"],
        values: "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        pause: ["INSERT IGNORE INTO", ""], upsert: "ON DUPLICATE KEY UPDATE", new: ["VALUES(", ")"],
        prune: "DELETE FROM spikard_workers \
            WHERE heartbeat_at + 2 * heartbeat_interval < ? LIMIT ?",
    ),
);

#[cfg(feature = "mysql")]
const MYSQL_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS spikard_jobs (
    id VARCHAR(36) NOT NULL PRIMARY KEY,
    queue VARCHAR(200) NOT NULL,
    task VARCHAR(255) NOT NULL,
    args LONGTEXT NOT NULL,
    kwargs LONGTEXT NOT NULL,
    status VARCHAR(16) NOT NULL,
    priority INT NOT NULL DEFAULT 0,
    attempts INT NOT NULL DEFAULT 0,
    max_attempts INT NOT NULL,
    run_at BIGINT NOT NULL,
    timeout_ms BIGINT NULL,
    unique_key VARCHAR(512) NULL,
    unique_active VARCHAR(512) AS (CASE WHEN status IN ('pending', 'running', 'retrying')
        THEN unique_key END) STORED,
    result LONGTEXT NULL,
    errors LONGTEXT NULL,
    cancel_reason TEXT NULL,
    cancel_requested TINYINT NOT NULL DEFAULT 0,
    enqueued_at BIGINT NOT NULL,
    started_at BIGINT NULL,
    finished_at BIGINT NULL,
    locked_by VARCHAR(255) NULL,
    lease_until BIGINT NULL,
    progress TEXT NULL,
    trace_context TEXT NULL,
    INDEX spikard_jobs_ready (queue, status, priority, run_at),
    INDEX spikard_jobs_lease (status, lease_until),
    INDEX spikard_jobs_locked (locked_by),
    INDEX spikard_jobs_finished (finished_at),
    INDEX spikard_jobs_enqueued (enqueued_at, id),
    UNIQUE INDEX spikard_jobs_unique (queue, unique_active)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin
"#;

#[cfg(feature = "mysql")]
const MYSQL_SCHEDULES: &str = r#"
CREATE TABLE IF NOT EXISTS spikard_schedules (
    name VARCHAR(200) NOT NULL PRIMARY KEY,
    definition LONGTEXT NOT NULL,
    last_tick BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin
"#;

#[cfg(feature = "mysql")]
const MYSQL_PAUSED: &str = r#"
CREATE TABLE IF NOT EXISTS spikard_paused (
    queue VARCHAR(200) NOT NULL PRIMARY KEY,
    paused_at BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin
"#;

#[cfg(feature = "mysql")]
const MYSQL_WORKERS: &str = r#"
CREATE TABLE IF NOT EXISTS spikard_workers (
    name VARCHAR(255) NOT NULL PRIMARY KEY,
    host VARCHAR(255) NOT NULL,
    pid BIGINT NOT NULL,
    queues LONGTEXT NOT NULL,
    concurrency BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    heartbeat_interval BIGINT NOT NULL,
    jobs_held BIGINT NOT NULL,
    version VARCHAR(64) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin
"#;

/// The limits of flow control ([`super::sql_limits`]): one row per task or queue limit;
/// `next_start_us` is when its rate allows the next start (µs since the epoch).
#[cfg(feature = "sqlite")]
const SQLITE_LIMITS: &str = r#"
CREATE TABLE IF NOT EXISTS spikard_limits (
    limit_key TEXT PRIMARY KEY NOT NULL,
    scope TEXT NOT NULL,
    name TEXT NOT NULL,
    rate_count BIGINT,
    rate_period_ms BIGINT,
    max_running BIGINT,
    next_start_us BIGINT NOT NULL DEFAULT 0
);
"#;

#[cfg(feature = "postgres")]
const POSTGRES_LIMITS: &str = r#"
CREATE TABLE IF NOT EXISTS spikard_tasks.limits (
    limit_key TEXT PRIMARY KEY,
    scope TEXT NOT NULL,
    name TEXT NOT NULL,
    rate_count BIGINT,
    rate_period_ms BIGINT,
    max_running BIGINT,
    next_start_us BIGINT NOT NULL DEFAULT 0
);
"#;

#[cfg(feature = "mysql")]
const MYSQL_LIMITS: &str = r#"
CREATE TABLE IF NOT EXISTS spikard_limits (
    limit_key VARCHAR(255) NOT NULL PRIMARY KEY,
    scope VARCHAR(16) NOT NULL,
    name VARCHAR(255) NOT NULL,
    rate_count BIGINT NULL,
    rate_period_ms BIGINT NULL,
    max_running BIGINT NULL,
    next_start_us BIGINT NOT NULL DEFAULT 0
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin
"#;
