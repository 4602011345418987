//! The operations at scale: fills a store with 1,000,000 jobs (3 queues, 5 tasks; about
//! 90% succeeded, 4% failed, 5% pending of which a tenth scheduled, 1% cancelled;
//! enqueued 50 ms apart, the newest tenth still partly pending, some finished within
//! the last minute) by bulk SQL, then times `stats` and `list_jobs` (median of 5 runs).
//!
//! ```text
//! cargo run --release -p spikard-tasks --features postgres --example ops_scale [sqlite|postgres]
//! ```
//!
//! SQLite uses a temporary file; PostgreSQL a database of its own
//! (`spikard_bench_<pid>` on `SPIKARD_TASKS_TEST_POSTGRES`, default
//! `postgres://postgres@127.0.0.1:5432/test`), dropped at the end.

use std::time::{Duration, Instant};

use spikard_tasks::store::{self, Cursor, JobFilter, Store};
use spikard_tasks::{CoreResult, JobStatus};

const JOBS: i64 = 1_000_000;
const SPACING_MS: i64 = 50;
const PAGE: usize = 50;
const RUNS: usize = 5;

/// The generated rows' columns from `i` (SQL over `i`, the same in both dialects but
/// for the literal false `no` and the cast of JSON text `json`).
fn columns(id: &str, b: i64, n: i64, no: &str, json: &str) -> String {
    let enq = format!("({b} + i * {SPACING_MS})");
    let pending = "(i >= 900000 AND i % 2 = 0)";
    let r = "((i * 7919) % 100)";
    let status = format!(
        "CASE WHEN {pending} THEN 'pending' WHEN {r} < 91 THEN 'succeeded' \
         WHEN {r} < 95 THEN 'failed' WHEN {r} < 96 THEN 'cancelled' ELSE 'succeeded' END"
    );
    let finished = format!("CASE WHEN {pending} THEN NULL ELSE {enq} + 20 + i % 1000 END");
    let run_at = format!("CASE WHEN {pending} AND i % 20 = 0 THEN {n} + 3600000 ELSE {enq} END");
    format!(
        "{id}, 'q' || (i % 3), 'app.task' || ((i * 31) % 5), '[1, 2]', '{{}}', {status}, 0, \
         CASE WHEN {pending} THEN 0 ELSE 1 END, 3, {run_at}, NULL, NULL, \
         CASE WHEN {status} = 'succeeded' THEN '{{\"ok\": true}}' END, \
         CASE WHEN {status} = 'failed' THEN '[{{\"attempt\": 1, \"error\": \"E: x\", \"traceback\": null, \"at_ms\": 0}}]'{json} END, \
         NULL, {no}, {enq}, CASE WHEN {pending} THEN NULL ELSE {enq} + 10 END, {finished}"
    )
}

// The store never inserts finished jobs, so its count triggers count moves into a
// finished state only; rows filled finished by SQL are counted once afterwards, as the
// schema's first count does.
#[cfg(feature = "sqlite")]
const SQLITE_RECOUNT: &str = "DELETE FROM spikard_job_counts; \
    INSERT INTO spikard_job_counts (queue, status, n) SELECT queue, status, COUNT(*) \
    FROM spikard_jobs WHERE status IN ('succeeded', 'failed', 'cancelled') GROUP BY queue, status";
#[cfg(feature = "postgres")]
const POSTGRES_RECOUNT: &str = "DELETE FROM spikard_tasks.job_counts; \
    INSERT INTO spikard_tasks.job_counts (queue, status, shard, n) SELECT queue, status, 0, \
    COUNT(*) FROM spikard_tasks.jobs WHERE status IN ('succeeded', 'failed', 'cancelled') \
    GROUP BY queue, status";

const INSERT_COLUMNS: &str = "(id, queue, task, args, kwargs, status, priority, attempts, \
    max_attempts, run_at, timeout_ms, unique_key, result, errors, cancel_reason, \
    cancel_requested, enqueued_at, started_at, finished_at)";

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn time<F, Fut, T>(mut f: F) -> CoreResult<(Duration, T)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = CoreResult<T>>,
{
    let mut took = Vec::new();
    let mut last = None;
    for _ in 0..RUNS {
        let t = Instant::now();
        last = Some(f().await?);
        took.push(t.elapsed());
    }
    Ok((median(took), last.expect("runs")))
}

async fn measure(name: &str, store: &dyn Store, now: i64) -> CoreResult<()> {
    println!("\n{name}: 1,000,000 jobs; median of {RUNS} runs");
    let (took, stats) = time(|| store.stats(now)).await?;
    println!("  {:<34} {:>8.1} ms", "stats()", took.as_secs_f64() * 1e3);
    for s in &stats {
        println!(
            "      {}: {:?} oldest_ready={:?} last minute ok={} failed={}",
            s.queue, s.counts, s.oldest_ready_ms, s.succeeded_last_minute, s.failed_last_minute
        );
    }
    let all = JobFilter::default();
    let mut cursor: Option<Cursor> = None;
    for _ in 0..19 {
        let page = store.list_jobs(&all, cursor.as_ref(), PAGE, now).await?;
        let last = page.last().expect("a full page");
        cursor = Some(Cursor {
            enqueued_at_ms: last.enqueued_at_ms,
            id: last.id.clone(),
        });
    }
    let status = |s: JobStatus| JobFilter {
        statuses: vec![s],
        ..JobFilter::default()
    };
    let cases: Vec<(&str, JobFilter, Option<Cursor>)> = vec![
        ("list_jobs() first page", all.clone(), None),
        ("list_jobs() 20th page (cursor)", all.clone(), cursor),
        ("list_jobs(status=failed)", status(JobStatus::Failed), None),
        (
            "list_jobs(status=succeeded)",
            status(JobStatus::Succeeded),
            None,
        ),
        (
            "list_jobs(status=pending)",
            status(JobStatus::Pending),
            None,
        ),
        (
            "list_jobs(status=scheduled)",
            status(JobStatus::Scheduled),
            None,
        ),
        (
            "list_jobs(status=cancelled)",
            status(JobStatus::Cancelled),
            None,
        ),
        (
            "list_jobs(task=app.task3)",
            JobFilter {
                task: Some("app.task3".into()),
                ..JobFilter::default()
            },
            None,
        ),
        (
            "list_jobs(queue=q1)",
            JobFilter {
                queue: Some("q1".into()),
                ..JobFilter::default()
            },
            None,
        ),
        (
            "list_jobs(failed, queue=q2, task=app.task1)",
            JobFilter {
                statuses: vec![JobStatus::Failed],
                queue: Some("q2".into()),
                task: Some("app.task1".into()),
                ..JobFilter::default()
            },
            None,
        ),
    ];
    for (label, filter, after) in cases {
        let (took, page) = time(|| store.list_jobs(&filter, after.as_ref(), PAGE, now)).await?;
        println!(
            "  {label:<34} {:>8.1} ms  ({} jobs)",
            took.as_secs_f64() * 1e3,
            page.len()
        );
    }
    Ok(())
}

async fn sqlite() -> CoreResult<()> {
    let dir = std::env::temp_dir().join(format!("spikard-ops-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| spikard_tasks::CoreError::Backend(e.to_string()))?;
    let path = dir.join("jobs.db");
    let url = format!("sqlite:///{}", path.display());
    let store = store::open(&url).await?;
    let now = store.now_ms();
    let base = now - JOBS * SPACING_MS;
    let t = Instant::now();
    {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
            .await
            .map_err(spikard_tasks::CoreError::from)?;
        let id = "printf('%08x-0000-7000-8000-%012x', i, i)";
        let sql = format!(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {}) \
             INSERT INTO spikard_jobs {INSERT_COLUMNS} SELECT {} FROM n",
            JOBS - 1,
            columns(id, base, now, "0", "")
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql + ";" + SQLITE_RECOUNT))
            .execute(&mut conn)
            .await
            .map_err(spikard_tasks::CoreError::from)?;
    }
    println!("SQLite: filled in {:.1} s", t.elapsed().as_secs_f64());
    let result = measure("SQLite (file)", &*store, now).await;
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

#[cfg(feature = "postgres")]
async fn postgres() -> CoreResult<()> {
    use sqlx::Connection;
    let admin = std::env::var("SPIKARD_TASKS_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let name = format!("spikard_bench_{}", std::process::id());
    let exec = |url: String, sql: String| async move {
        let mut conn = sqlx::PgConnection::connect(&url).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .map(|_| ())
    };
    exec(admin.clone(), format!("CREATE DATABASE {name}"))
        .await
        .map_err(spikard_tasks::CoreError::from)?;
    let mut url = url::Url::parse(&admin).expect("URL");
    url.set_path(&name);
    let result = async {
        let store = store::open(url.as_str()).await?;
        let now = store.now_ms();
        let base = now - JOBS * SPACING_MS;
        let t = Instant::now();
        let id = "lpad(to_hex(i), 8, '0') || '-0000-7000-8000-' || lpad(to_hex(i), 12, '0')";
        let sql = format!(
            "INSERT INTO spikard_tasks.jobs {INSERT_COLUMNS} SELECT {} \
             FROM generate_series(0::bigint, {}) AS g(i)",
            columns(id, base, now, "FALSE", "::jsonb"),
            JOBS - 1
        );
        exec(url.to_string(), sql + ";" + POSTGRES_RECOUNT)
            .await
            .map_err(spikard_tasks::CoreError::from)?;
        exec(url.to_string(), "VACUUM ANALYZE spikard_tasks.jobs".into())
            .await
            .map_err(spikard_tasks::CoreError::from)?;
        println!("PostgreSQL: filled in {:.1} s", t.elapsed().as_secs_f64());
        let r = measure("PostgreSQL", &*store, now).await;
        store.close().await;
        r
    }
    .await;
    exec(
        admin,
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    )
    .await
    .map_err(spikard_tasks::CoreError::from)?;
    result
}

#[tokio::main]
async fn main() -> CoreResult<()> {
    let which = std::env::args().nth(1).unwrap_or_else(|| "sqlite".into());
    match which.as_str() {
        "sqlite" => sqlite().await,
        #[cfg(feature = "postgres")]
        "postgres" => postgres().await,
        other => panic!("unknown backend {other} (sqlite, or postgres with that feature)"),
    }
}
