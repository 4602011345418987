//! What the operations' schema costs the hot path: bulk enqueue and drain of no-op jobs
//! through the store (claim, mark_started, complete in batches, several claimers at
//! once), with the schema of each stage of the operations work, in alternating runs of
//! one binary on a fresh database each:
//!
//! - `before`: the indexes the store had before the operations (ready without the state,
//!   lease, unique, finished);
//! - `+list`: and the job list's indexes (`enqueued`, `dead`);
//! - `+states`: and the full `(queue, status, run_at)` index of the first stats;
//! - `+ready`: the job list's indexes and the ready index carrying the state (no
//!   `states` index);
//! - `+cnt-v1`: that and the first triggers counting finished jobs (on inserts too, one
//!   update trigger);
//! - `+cnt-one`: (SQLite) the first version's one update trigger, none on inserts (on
//!   PostgreSQL the same as `+counts`);
//! - `+cnt-row`: (PostgreSQL) row-level triggers on updates of finished_at in place of
//!   the statement-level one (on SQLite the same as `+counts`);
//! - `+counts`: that and the triggers counting finished jobs (the schema the store sets
//!   up now).
//!
//! ```text
//! cargo run --release -p spikard-tasks --features postgres --example ops_drain \
//!     [sqlite|postgres] [jobs] [rounds]
//! ```
//!
//! PostgreSQL uses a database of its own (`spikard_drain_<pid>` on
//! `SPIKARD_TASKS_TEST_POSTGRES`, default `postgres://postgres@127.0.0.1:5432/test`),
//! dropped at the end. Figures are per job; compare ratios of one run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use spikard_tasks::job::JobRow;
use spikard_tasks::store::{self, Store};
use spikard_tasks::time::now_ms;
use spikard_tasks::{Completion, CoreError, CoreResult};

const BATCH: usize = 1000;
const CLAIM: usize = 16;
const CLAIMERS: usize = 4;

/// A schema stage: its name and the DDL turning the store's schema into it.
struct Variant {
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
    /// With the ready index of before (without the state).
    old_ready: bool,
    /// With the count triggers.
    counted: bool,
}

const SQLITE_NO_COUNTS: &str = "DROP TRIGGER IF EXISTS spikard_jobs_count_insert; \
    DROP TRIGGER IF EXISTS spikard_jobs_count_update; \
    DROP TRIGGER IF EXISTS spikard_jobs_count_finish; \
    DROP TRIGGER IF EXISTS spikard_jobs_count_unfinish; \
    DROP TRIGGER IF EXISTS spikard_jobs_count_delete;";
const PG_NO_COUNTS: &str = "DROP TRIGGER IF EXISTS jobs_count_insert ON spikard_tasks.jobs; \
    DROP TRIGGER IF EXISTS jobs_count_update ON spikard_tasks.jobs; \
    DROP TRIGGER IF EXISTS jobs_count_delete ON spikard_tasks.jobs;";

/// The count triggers of the first version (an insert trigger, one update trigger
/// decrementing and upserting), in place of the store's.
const SQLITE_OLD_COUNTS: &str = r#"
DROP TRIGGER spikard_jobs_count_finish;
DROP TRIGGER spikard_jobs_count_unfinish;
CREATE TRIGGER IF NOT EXISTS spikard_jobs_count_insert AFTER INSERT ON spikard_jobs
WHEN NEW.status IN ('succeeded', 'failed', 'cancelled')
BEGIN
    INSERT INTO spikard_job_counts (queue, status, n) VALUES (NEW.queue, NEW.status, 1)
        ON CONFLICT (queue, status) DO UPDATE SET n = n + 1;
END;
-- Every statement that moves a job into or out of a finished state writes its
-- finished_at (set on finishing, cleared on a retry; the purges rely on it too), and
-- claims, starts and heartbeats never do: the trigger is not even entered for them.
CREATE TRIGGER IF NOT EXISTS spikard_jobs_count_update AFTER UPDATE OF finished_at
ON spikard_jobs
WHEN NEW.status IS NOT OLD.status
    AND (NEW.status IN ('succeeded', 'failed', 'cancelled')
        OR OLD.status IN ('succeeded', 'failed', 'cancelled'))
BEGIN
    UPDATE spikard_job_counts SET n = n - 1 WHERE queue = OLD.queue AND status = OLD.status;
    INSERT INTO spikard_job_counts (queue, status, n)
        SELECT NEW.queue, NEW.status, 1 WHERE NEW.status IN ('succeeded', 'failed', 'cancelled')
        ON CONFLICT (queue, status) DO UPDATE SET n = n + 1;
END;
"#;
/// Row-level count triggers on updates (an experiment: per row, only on writes of
/// finished_at that change the state), the statement-level one on deletes kept.
const PG_ROW_COUNTS: &str = r#"
CREATE OR REPLACE FUNCTION spikard_tasks.count_job_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status IN ('succeeded', 'failed', 'cancelled') THEN
        INSERT INTO spikard_tasks.job_counts AS c (queue, status, shard, n)
        VALUES (OLD.queue, OLD.status, pg_backend_pid() % 16, -1)
        ON CONFLICT (queue, status, shard) DO UPDATE SET n = c.n - 1;
    END IF;
    IF NEW.status IN ('succeeded', 'failed', 'cancelled') THEN
        INSERT INTO spikard_tasks.job_counts AS c (queue, status, shard, n)
        VALUES (NEW.queue, NEW.status, pg_backend_pid() % 16, 1)
        ON CONFLICT (queue, status, shard) DO UPDATE SET n = c.n + 1;
    END IF;
    RETURN NULL;
END $$;
DROP TRIGGER jobs_count_update ON spikard_tasks.jobs;
CREATE TRIGGER jobs_count_update AFTER UPDATE OF finished_at ON spikard_tasks.jobs
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status
        AND (OLD.status IN ('succeeded', 'failed', 'cancelled')
            OR NEW.status IN ('succeeded', 'failed', 'cancelled')))
    EXECUTE FUNCTION spikard_tasks.count_job_row();
"#;
/// SQLite: the update trigger of the first version (one for every move, decrementing
/// then upserting) in place of the two split by direction, still none on inserts.
const SQLITE_ONE_UPDATE_TRIGGER: &str = r#"
DROP TRIGGER spikard_jobs_count_finish;
DROP TRIGGER spikard_jobs_count_unfinish;
CREATE TRIGGER spikard_jobs_count_update AFTER UPDATE OF finished_at
ON spikard_jobs
WHEN NEW.status IS NOT OLD.status
    AND (NEW.status IN ('succeeded', 'failed', 'cancelled')
        OR OLD.status IN ('succeeded', 'failed', 'cancelled'))
BEGIN
    UPDATE spikard_job_counts SET n = n - 1 WHERE queue = OLD.queue AND status = OLD.status;
    INSERT INTO spikard_job_counts (queue, status, n)
        SELECT NEW.queue, NEW.status, 1 WHERE NEW.status IN ('succeeded', 'failed', 'cancelled')
        ON CONFLICT (queue, status) DO UPDATE SET n = n + 1;
END;
"#;
/// The count triggers of the first version (statement-level on inserts too).
const PG_OLD_COUNTS: &str = r#"
CREATE OR REPLACE FUNCTION spikard_tasks.count_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO spikard_tasks.job_counts AS c (queue, status, shard, n)
        SELECT queue, status, pg_backend_pid() % 16, COUNT(*) FROM new_jobs
        WHERE status IN ('succeeded', 'failed', 'cancelled')
        GROUP BY queue, status ORDER BY queue, status
        ON CONFLICT (queue, status, shard) DO UPDATE SET n = c.n + excluded.n;
    ELSIF TG_OP = 'DELETE' THEN
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
CREATE TRIGGER jobs_count_insert AFTER INSERT ON spikard_tasks.jobs
    REFERENCING NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION spikard_tasks.count_jobs();
"#;

/// The ready index as it was before the operations (without the state).
const SQLITE_OLD_READY: &str = "DROP INDEX spikard_jobs_ready; \
    CREATE INDEX spikard_jobs_ready ON spikard_jobs(queue, priority DESC, run_at, id) \
    WHERE status IN ('pending', 'retrying');";
const PG_OLD_READY: &str = "DROP INDEX spikard_tasks.jobs_ready; \
    CREATE INDEX jobs_ready ON spikard_tasks.jobs (queue, priority DESC, run_at, id) \
    WHERE status IN ('pending', 'retrying');";

fn variants() -> Vec<Variant> {
    vec![
        Variant {
            name: "before",
            sqlite: "DROP INDEX spikard_jobs_enqueued; DROP INDEX spikard_jobs_dead;",
            postgres: "DROP INDEX spikard_tasks.jobs_enqueued; DROP INDEX spikard_tasks.jobs_dead;",
            old_ready: true,
            counted: false,
        },
        Variant {
            name: "+list",
            sqlite: "",
            postgres: "",
            old_ready: true,
            counted: false,
        },
        Variant {
            name: "+states",
            sqlite: "CREATE INDEX spikard_jobs_states ON spikard_jobs(queue, status, run_at);",
            postgres: "CREATE INDEX jobs_states ON spikard_tasks.jobs (queue, status, run_at);",
            old_ready: true,
            counted: false,
        },
        Variant {
            name: "+ready",
            sqlite: "",
            postgres: "",
            old_ready: false,
            counted: false,
        },
        Variant {
            name: "+cnt-v1",
            sqlite: SQLITE_OLD_COUNTS,
            postgres: PG_OLD_COUNTS,
            old_ready: false,
            counted: true,
        },
        Variant {
            name: "+cnt-one",
            sqlite: SQLITE_ONE_UPDATE_TRIGGER,
            postgres: "",
            old_ready: false,
            counted: true,
        },
        Variant {
            name: "+cnt-row",
            sqlite: "",
            postgres: PG_ROW_COUNTS,
            old_ready: false,
            counted: true,
        },
        Variant {
            name: "+counts",
            sqlite: "",
            postgres: "",
            old_ready: false,
            counted: true,
        },
    ]
}

fn row(queue: &str, i: usize) -> JobRow {
    let now = now_ms();
    JobRow {
        id: uuid::Uuid::now_v7().to_string(),
        queue: queue.to_owned(),
        task: "bench.noop".into(),
        args: format!("[{i}]"),
        kwargs: "{}".into(),
        priority: 0,
        max_attempts: 3,
        run_at_ms: now,
        timeout_ms: None,
        unique_key: None,
        enqueued_at_ms: now,
        trace_context: None,
    }
}

/// Enqueues `jobs` in batches and drains them; returns (enqueue, drain) time per job.
async fn run(store: Arc<dyn Store>, jobs: usize) -> CoreResult<(Duration, Duration)> {
    let queue = format!("bench-{}", uuid::Uuid::now_v7().simple());
    let t = Instant::now();
    for start in (0..jobs).step_by(BATCH) {
        let rows = (start..(start + BATCH).min(jobs))
            .map(|i| row(&queue, i))
            .collect();
        store.enqueue(rows).await?;
    }
    let enqueue = t.elapsed();
    let t = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CLAIMERS {
        let (store, queue) = (store.clone(), queue.clone());
        tasks.push(tokio::spawn(async move {
            let worker = format!("w{c}");
            let mut done = 0;
            loop {
                let lease = Duration::from_secs(60);
                let claimed = store
                    .claim(std::slice::from_ref(&queue), &worker, CLAIM, lease)
                    .await?;
                if claimed.is_empty() {
                    return Ok::<usize, CoreError>(done);
                }
                let starts: Vec<(String, i64)> =
                    claimed.iter().map(|j| (j.id.clone(), now_ms())).collect();
                store.mark_started(&worker, &starts).await?;
                let batch = claimed
                    .into_iter()
                    .map(|j| (j, Completion::Succeeded(json!(null))))
                    .collect();
                done += store.complete(&worker, batch).await?;
            }
        }));
    }
    let mut done = 0;
    for task in tasks {
        done += task.await.expect("claimer")?;
    }
    assert_eq!(done, jobs, "every job drained once");
    let drain = t.elapsed();
    Ok((enqueue / jobs as u32, drain / jobs as u32))
}

/// Runs `sql` (several statements) on a connection of its own.
async fn ddl(url: &str, sql: &str) -> CoreResult<()> {
    if sql.is_empty() {
        return Ok(());
    }
    use sqlx::Connection;
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    if let Some(path) = url.strip_prefix("sqlite:///") {
        let options = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
        let mut conn = sqlx::ConnectOptions::connect(&options).await?;
        sqlx::raw_sql(sql).execute(&mut conn).await?;
        conn.close().await?;
    } else {
        #[cfg(feature = "postgres")]
        {
            let mut conn = sqlx::PgConnection::connect(url).await?;
            sqlx::raw_sql(sql).execute(&mut conn).await?;
            conn.close().await?;
        }
    }
    Ok(())
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[tokio::main]
async fn main() -> CoreResult<()> {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "sqlite".into());
    let jobs: usize = args.next().map_or(10_000, |s| s.parse().expect("jobs"));
    let rounds: usize = args.next().map_or(3, |s| s.parse().expect("rounds"));
    let dir = std::env::temp_dir().join(format!("spikard-ops-drain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| CoreError::Backend(e.to_string()))?;
    let admin = std::env::var("SPIKARD_TASKS_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let pg_name = format!("spikard_drain_{}", std::process::id());
    let pg_url = {
        let mut url = url::Url::parse(&admin).expect("URL");
        url.set_path(&pg_name);
        url.to_string()
    };
    if which == "postgres" {
        ddl(&admin, &format!("CREATE DATABASE {pg_name}")).await?;
    }
    // OPS_DRAIN_ONLY=name,name…: only those stages (and `before`, the base of the ratios).
    let only = std::env::var("OPS_DRAIN_ONLY").ok();
    let variants: Vec<Variant> = variants()
        .into_iter()
        .enumerate()
        .filter(|(i, v)| {
            *i == 0
                || only
                    .as_deref()
                    .is_none_or(|o| o.split(',').any(|n| n == v.name))
        })
        .map(|(_, v)| v)
        .collect();
    let mut figures: Vec<Vec<(Duration, Duration)>> = vec![Vec::new(); variants.len()];
    let result: CoreResult<()> = async {
        for round in 0..rounds {
            for (v, variant) in variants.iter().enumerate() {
                let (url, sql) = match which.as_str() {
                    "sqlite" => {
                        let path = dir.join(format!("r{round}-{v}.db"));
                        (format!("sqlite:///{}", path.display()), variant.sqlite)
                    }
                    "postgres" => {
                        ddl(&pg_url, "DROP SCHEMA IF EXISTS spikard_tasks CASCADE").await?;
                        (pg_url.clone(), variant.postgres)
                    }
                    other => panic!("unknown backend {other} (sqlite or postgres)"),
                };
                let store = store::open(&url).await?;
                ddl(&url, sql).await?;
                let sqlite = which == "sqlite";
                if variant.old_ready {
                    ddl(
                        &url,
                        if sqlite {
                            SQLITE_OLD_READY
                        } else {
                            PG_OLD_READY
                        },
                    )
                    .await?;
                }
                if !variant.counted {
                    ddl(
                        &url,
                        if sqlite {
                            SQLITE_NO_COUNTS
                        } else {
                            PG_NO_COUNTS
                        },
                    )
                    .await?;
                }
                let (enqueue, drain) = run(store.clone(), jobs).await?;
                store.close().await;
                println!(
                    "round {round} {:<8} enqueue {:>6.1} µs/job  drain {:>6.1} µs/job",
                    variant.name,
                    micros(enqueue),
                    micros(drain)
                );
                figures[v].push((enqueue, drain));
                #[cfg(feature = "postgres")]
                if which == "postgres" && std::env::var("OPS_DRAIN_INDEXES").is_ok() {
                    use sqlx::Connection;
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    let mut conn = sqlx::PgConnection::connect(&pg_url).await?;
                    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
                        "SELECT indexrelname::text, idx_scan, idx_tup_read FROM \
                         pg_stat_user_indexes WHERE schemaname = 'spikard_tasks' \
                         AND relname = 'jobs' ORDER BY 1",
                    )
                    .fetch_all(&mut conn)
                    .await?;
                    println!("    index scans: {rows:?}");
                }
            }
        }
        Ok(())
    }
    .await;
    if which == "postgres" {
        ddl(
            &admin,
            &format!("DROP DATABASE IF EXISTS {pg_name} WITH (FORCE)"),
        )
        .await?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    result?;
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let base = figures[0].clone();
    let (base_e, base_d) = (
        median(base.iter().map(|f| f.0).collect()),
        median(base.iter().map(|f| f.1).collect()),
    );
    println!("\n{which}: {jobs} jobs, {rounds} rounds, medians (ratio to `before`)");
    for (variant, f) in variants.iter().zip(figures) {
        let e = median(f.iter().map(|x| x.0).collect());
        let d = median(f.iter().map(|x| x.1).collect());
        println!(
            "  {:<8} enqueue {:>6.1} µs/job ({:.3})  drain {:>6.1} µs/job ({:.3})",
            variant.name,
            micros(e),
            e.as_secs_f64() / base_e.as_secs_f64(),
            micros(d),
            d.as_secs_f64() / base_d.as_secs_f64()
        );
    }
    Ok(())
}
