//! The SQL each dialect speaks, in one table per backend: the schema and the statements
//! that the shared implementation ([`super::sql`]) runs. Statements whose shape depends
//! on the backend (claims, outcomes, inserts, rescues) stay with their store.

/// One backend's SQL. Binds are listed per statement; `?` stands for the dialect's
/// placeholders (`$1`, `$2`, … on PostgreSQL).
#[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
pub(crate) struct Dialect {
    /// Statements that set up the schema (idempotent), run one by one.
    pub schema: &'static [&'static str],
    /// Placeholders are numbered (`$1`, …) rather than `?`.
    pub numbered: bool,
    /// A job by id (binds: id).
    pub get: &'static str,
    /// Cancels a job that has not started (binds: now, id).
    pub cancel: &'static str,
    /// Asks a running job to stop (binds: id).
    pub ask_cancel: &'static str,
    /// Puts jobs of a worker back (binds: worker); `AND id IN (…)` is appended for ids.
    pub release: &'static str,
    /// `(status, pending and due later, count)` of a queue (binds: now, queue).
    pub counts: &'static str,
    /// Deletes finished jobs (binds: before, limit).
    pub purge: &'static str,
    /// The id of the unfinished job holding a unique key (binds: queue, key).
    pub unique_holder: &'static str,
    /// The database's time in ms (not for SQLite: it uses this machine's clock).
    pub clock: &'static str,
    /// Takes the maintenance lock without waiting (true if taken) / gives it back.
    pub lock: &'static str,
    pub unlock: &'static str,
    /// Schedules: save (binds: name, definition, now, now), list, remove (binds: name),
    /// fire (binds: tick, name, tick).
    pub save_schedule: &'static str,
    pub list_schedules: &'static str,
    pub remove_schedule: &'static str,
    pub fire_schedule: &'static str,
}

/// The columns of a job record (the `errors` column as text).
macro_rules! columns {
    ($errors:literal) => {
        concat!(
            "id, queue, task, args, kwargs, status, priority, attempts, max_attempts, run_at, ",
            "timeout_ms, unique_key, result, ",
            $errors,
            ", cancel_reason, enqueued_at, started_at, finished_at"
        )
    };
}

/// Puts a worker's running jobs back without counting the attempt (MySQL evaluates SET
/// left to right: status is computed before attempts is decremented).
macro_rules! release {
    ($table:literal, $worker:literal) => {
        concat!(
            "UPDATE ",
            $table,
            " SET ",
            "status = CASE WHEN attempts > 1 THEN 'retrying' ELSE 'pending' END, ",
            "attempts = attempts - 1, locked_by = NULL, lease_until = NULL, started_at = NULL ",
            "WHERE locked_by = ",
            $worker,
            " AND status = 'running'"
        )
    };
}

#[cfg(feature = "sqlite")]
pub(crate) const SQLITE: Dialect = Dialect {
    schema: &[SQLITE_SCHEMA],
    numbered: false,
    get: concat!(
        "SELECT ",
        columns!("errors"),
        " FROM spikard_jobs WHERE id = ?"
    ),
    cancel: "UPDATE spikard_jobs SET status = 'cancelled', finished_at = ?, \
             cancel_reason = 'cancelled by request' \
             WHERE id = ? AND status IN ('pending', 'retrying')",
    ask_cancel: "UPDATE spikard_jobs SET cancel_requested = 1 WHERE id = ? AND status = 'running'",
    release: release!("spikard_jobs", "?"),
    counts: "SELECT status, (status = 'pending' AND run_at > ?) AS later, COUNT(*) AS n \
             FROM spikard_jobs WHERE queue = ? GROUP BY 1, 2",
    purge: "DELETE FROM spikard_jobs WHERE id IN (SELECT id FROM spikard_jobs \
            WHERE finished_at IS NOT NULL AND finished_at < ? LIMIT ?)",
    unique_holder: "SELECT id FROM spikard_jobs WHERE queue = ? AND unique_key = ? \
                    AND status IN ('pending', 'running', 'retrying')",
    clock: "",
    lock: "",
    unlock: "",
    save_schedule: "INSERT INTO spikard_schedules (name, definition, last_tick, updated_at) \
                    VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET \
                    definition = excluded.definition, updated_at = excluded.updated_at",
    list_schedules:
        "SELECT name, definition, last_tick, updated_at FROM spikard_schedules ORDER BY name",
    remove_schedule: "DELETE FROM spikard_schedules WHERE name = ?",
    fire_schedule: "UPDATE spikard_schedules SET last_tick = ? WHERE name = ? AND last_tick < ?",
};

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

#[cfg(feature = "postgres")]
pub(crate) const POSTGRES: Dialect = Dialect {
    schema: &[POSTGRES_SCHEMA],
    numbered: true,
    get: concat!(
        "SELECT ",
        columns!("errors::text AS errors"),
        " FROM spikard_tasks.jobs WHERE id = $1"
    ),
    cancel: "UPDATE spikard_tasks.jobs SET status = 'cancelled', finished_at = $1, \
             cancel_reason = 'cancelled by request' \
             WHERE id = $2 AND status IN ('pending', 'retrying')",
    ask_cancel: "UPDATE spikard_tasks.jobs SET cancel_requested = TRUE \
                 WHERE id = $1 AND status = 'running'",
    release: release!("spikard_tasks.jobs", "$1"),
    counts: "SELECT status, (status = 'pending' AND run_at > $1) AS later, COUNT(*) \
             FROM spikard_tasks.jobs WHERE queue = $2 GROUP BY 1, 2",
    purge: "DELETE FROM spikard_tasks.jobs WHERE id IN (SELECT id FROM spikard_tasks.jobs \
            WHERE finished_at IS NOT NULL AND finished_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
    unique_holder: "SELECT id FROM spikard_tasks.jobs WHERE queue = $1 AND unique_key = $2 \
                    AND status IN ('pending', 'running', 'retrying')",
    clock: "SELECT floor(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::bigint",
    // A session advisory lock ("spkt" in ASCII), dropped by the server if we die.
    lock: "SELECT pg_try_advisory_lock(1936747380)",
    unlock: "SELECT pg_advisory_unlock(1936747380)",
    save_schedule: "INSERT INTO spikard_tasks.schedules (name, definition, last_tick, updated_at) \
                    VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO UPDATE SET \
                    definition = excluded.definition, updated_at = excluded.updated_at",
    list_schedules: "SELECT name, definition, last_tick, updated_at FROM spikard_tasks.schedules \
                     ORDER BY name",
    remove_schedule: "DELETE FROM spikard_tasks.schedules WHERE name = $1",
    fire_schedule: "UPDATE spikard_tasks.schedules SET last_tick = $1 \
                    WHERE name = $2 AND last_tick < $3",
};

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

#[cfg(feature = "mysql")]
pub(crate) const MYSQL: Dialect = Dialect {
    schema: &[MYSQL_SCHEMA, MYSQL_SCHEDULES],
    numbered: false,
    get: concat!(
        "SELECT ",
        columns!("errors"),
        " FROM spikard_jobs WHERE id = ?"
    ),
    cancel: "UPDATE spikard_jobs SET status = 'cancelled', finished_at = ?, \
             cancel_reason = 'cancelled by request' \
             WHERE id = ? AND status IN ('pending', 'retrying')",
    ask_cancel: "UPDATE spikard_jobs SET cancel_requested = 1 WHERE id = ? AND status = 'running'",
    release: release!("spikard_jobs", "?"),
    counts: "SELECT status, CAST(status = 'pending' AND run_at > ? AS SIGNED) AS later, \
             CAST(COUNT(*) AS SIGNED) FROM spikard_jobs WHERE queue = ? GROUP BY 1, 2",
    purge: "DELETE FROM spikard_jobs WHERE finished_at IS NOT NULL AND finished_at < ? \
            ORDER BY finished_at LIMIT ?",
    unique_holder: "",
    clock: "SELECT CAST(FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000) AS SIGNED)",
    // A named lock of the server, held by one connection's session; dropped if we die.
    lock: "SELECT COALESCE(GET_LOCK('spikard_tasks.maintenance', 0), 0) = 1",
    unlock: "SELECT RELEASE_LOCK('spikard_tasks.maintenance')",
    save_schedule: "INSERT INTO spikard_schedules (name, definition, last_tick, updated_at) \
                    VALUES (?, ?, ?, ?) ON DUPLICATE KEY UPDATE \
                    definition = VALUES(definition), updated_at = VALUES(updated_at)",
    list_schedules:
        "SELECT name, definition, last_tick, updated_at FROM spikard_schedules ORDER BY name",
    remove_schedule: "DELETE FROM spikard_schedules WHERE name = ?",
    fire_schedule: "UPDATE spikard_schedules SET last_tick = ? WHERE name = ? AND last_tick < ?",
};

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
    INDEX spikard_jobs_ready (queue, status, priority, run_at),
    INDEX spikard_jobs_lease (status, lease_until),
    INDEX spikard_jobs_locked (locked_by),
    INDEX spikard_jobs_finished (finished_at),
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
