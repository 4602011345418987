//! The counts of `stats` and `counts` stay exact through every change of a job's state
//! (the SQL stores keep the finished ones in a table their triggers maintain), on a
//! database set up before that table existed, and when several stores set up one
//! database at once.

use std::sync::Arc;

use serde_json::json;
use spikard_tasks::job::JobRow;
use spikard_tasks::store::{self, JobFilter, Store};
use spikard_tasks::time::now_ms;
use spikard_tasks::{AttemptError, Completion, JobStatus, QueueCounts};

use crate::support::{lapse, open, Fixture, Kind, LEASE};

const HOUR: i64 = 3_600_000;

fn error(attempt: u32) -> AttemptError {
    AttemptError {
        attempt,
        error: "Boom: attempt failed".into(),
        traceback: None,
        at_ms: now_ms(),
    }
}

/// Counts from a list of `(state, n)`, the rest zero.
fn counts(of: &[(JobStatus, u64)]) -> QueueCounts {
    let mut c = QueueCounts::default();
    for (state, n) in of {
        c.add(*state, *n);
    }
    c
}

/// Asserts that `stats` and `counts` both report `expected` for `queue` (`stats`
/// leaves out a queue without jobs: all zero then).
async fn expect(
    store: &dyn Store,
    kind: Kind,
    queue: &str,
    expected: &[(JobStatus, u64)],
    step: &str,
) {
    let expected = counts(expected);
    let now = now_ms();
    let stats = store.stats(now).await.unwrap();
    let got = stats
        .iter()
        .find(|s| s.queue == queue)
        .map(|s| s.counts.clone())
        .unwrap_or_default();
    assert_eq!(got, expected, "{kind:?}: stats after {step}");
    let direct = store.counts(queue).await.unwrap();
    assert_eq!(direct, expected, "{kind:?}: counts after {step}");
}

fn in_queue(queue: &str, statuses: &[JobStatus]) -> JobFilter {
    JobFilter {
        queue: Some(queue.to_owned()),
        statuses: statuses.to_vec(),
        ..JobFilter::default()
    }
}

/// Claims exactly one job of the fixture's queue (the next in claim order).
async fn claim_one(fx: &Fixture, worker: &str) -> spikard_tasks::ClaimedJob {
    let mut jobs = fx.claim(worker, 1).await;
    assert_eq!(jobs.len(), 1, "{:?}: one job to claim", fx.kind);
    jobs.remove(0)
}

/// Every transition keeps the counts exact: enqueue, claim, each outcome, release,
/// cancel of waiting and running jobs, rescue to failed, retry back to pending, the
/// batches (retry, cancel, purge) and `purge_finished`. On a database of its own
/// (`purge_finished` sees every job).
pub async fn counts_stay_exact_through_every_transition(kind: Kind) {
    use JobStatus::*;
    let fx = open!(private(kind));
    let (s, q) = (&*fx.store, fx.queue.as_str());
    let w = fx.worker();
    expect(s, kind, q, &[], "nothing").await;
    // Five due jobs (claimed in priority order), one due in an hour.
    let rows: Vec<JobRow> = (0..5)
        .map(|i| JobRow {
            priority: 10 - i,
            run_at_ms: now_ms() - 1000,
            ..fx.row()
        })
        .collect();
    let ids = fx.enqueue(rows).await;
    let later = fx
        .enqueue(vec![JobRow {
            run_at_ms: now_ms() + HOUR,
            ..fx.row()
        }])
        .await
        .remove(0);
    expect(s, kind, q, &[(Pending, 5), (Scheduled, 1)], "enqueue").await;

    let a = claim_one(&fx, &w).await;
    assert_eq!(a.id, ids[0]);
    expect(
        s,
        kind,
        q,
        &[(Pending, 4), (Scheduled, 1), (Running, 1)],
        "claim",
    )
    .await;
    let done = vec![(a, Completion::Succeeded(json!(1)))];
    assert_eq!(s.complete(&w, done).await.unwrap(), 1);
    let step = [(Pending, 4), (Scheduled, 1), (Succeeded, 1)];
    expect(s, kind, q, &step, "complete succeeded").await;

    let b = claim_one(&fx, &w).await;
    assert_eq!(
        s.complete(&w, vec![(b, Completion::Failed(error(1)))])
            .await
            .unwrap(),
        1
    );
    let step = [(Pending, 3), (Scheduled, 1), (Succeeded, 1), (Failed, 1)];
    expect(s, kind, q, &step, "complete failed").await;

    let c = claim_one(&fx, &w).await;
    let retry = Completion::Retry {
        run_at_ms: now_ms() + HOUR,
        error: error(1),
    };
    assert_eq!(s.complete(&w, vec![(c.clone(), retry)]).await.unwrap(), 1);
    let step = [
        (Pending, 2),
        (Scheduled, 1),
        (Retrying, 1),
        (Succeeded, 1),
        (Failed, 1),
    ];
    expect(s, kind, q, &step, "complete retry").await;
    assert!(s.cancel(&c.id).await.unwrap());
    let step = [
        (Pending, 2),
        (Scheduled, 1),
        (Succeeded, 1),
        (Failed, 1),
        (Cancelled, 1),
    ];
    expect(s, kind, q, &step, "cancel of a retrying job").await;

    let d = claim_one(&fx, &w).await;
    let cancelled = Completion::Cancelled {
        reason: Some("stop".into()),
    };
    assert_eq!(s.complete(&w, vec![(d, cancelled)]).await.unwrap(), 1);
    let step = [
        (Pending, 1),
        (Scheduled, 1),
        (Succeeded, 1),
        (Failed, 1),
        (Cancelled, 2),
    ];
    expect(s, kind, q, &step, "complete cancelled").await;

    claim_one(&fx, &w).await;
    assert_eq!(s.release(&w, None).await.unwrap(), 1);
    expect(s, kind, q, &step, "release").await;
    assert!(s.cancel(&later).await.unwrap());
    let step = [(Pending, 1), (Succeeded, 1), (Failed, 1), (Cancelled, 3)];
    expect(s, kind, q, &step, "cancel of a scheduled job").await;

    // Back: the failed job and the three cancelled ones, then all five waiting are
    // cancelled in one batch but the one running (asked to stop, still running).
    let back = s
        .retry_batch(&in_queue(q, &[Failed, Cancelled]), now_ms(), 1000)
        .await
        .unwrap();
    assert_eq!(back, 4, "{kind:?}");
    expect(s, kind, q, &[(Pending, 5), (Succeeded, 1)], "retry_batch").await;
    let run = claim_one(&fx, &w).await;
    let step = [(Pending, 4), (Running, 1), (Succeeded, 1)];
    expect(s, kind, q, &step, "claim of a retried job").await;
    let n = s
        .cancel_batch(&in_queue(q, &[]), now_ms(), 1000)
        .await
        .unwrap();
    assert_eq!(n, 5, "{kind:?}: four cancelled, one asked");
    let step = [(Running, 1), (Succeeded, 1), (Cancelled, 4)];
    expect(s, kind, q, &step, "cancel_batch").await;
    s.cancel(&run.id).await.unwrap();
    expect(s, kind, q, &step, "cancel of a running job").await;

    // A started attempt whose lease ran out, without attempts left: failed.
    assert_eq!(s.release(&w, None).await.unwrap(), 1);
    let n = s
        .retry_batch(&in_queue(q, &[Cancelled]), now_ms(), 2)
        .await
        .unwrap();
    assert_eq!(n, 2, "{kind:?}");
    let step = [(Pending, 3), (Succeeded, 1), (Cancelled, 2)];
    expect(s, kind, q, &step, "release, retry_batch with a limit").await;
    let lost = fx
        .enqueue(vec![JobRow {
            priority: 100,
            max_attempts: 1,
            run_at_ms: now_ms() - 1000,
            ..fx.row()
        }])
        .await
        .remove(0);
    let taken = fx.claim_expired(&w, 1).await;
    assert_eq!(taken[0].id, lost);
    assert_eq!(
        s.mark_started(&w, &[(lost.clone(), now_ms())])
            .await
            .unwrap(),
        1
    );
    lapse().await;
    assert_eq!(s.rescue_expired(1000).await.unwrap(), 1);
    assert_eq!(fx.get(&lost).await.status, Failed);
    let step = [(Pending, 3), (Succeeded, 1), (Failed, 1), (Cancelled, 2)];
    expect(s, kind, q, &step, "rescue to failed").await;

    // Purges: one batch by status, then everything finished.
    let n = s
        .purge_batch(&in_queue(q, &[Cancelled]), now_ms() + 1, 1000)
        .await
        .unwrap();
    assert_eq!(n, 2, "{kind:?}");
    let step = [(Pending, 3), (Succeeded, 1), (Failed, 1)];
    expect(s, kind, q, &step, "purge_batch").await;
    assert_eq!(s.purge_finished(now_ms() + 1, 1000).await.unwrap(), 2);
    expect(s, kind, q, &[(Pending, 3)], "purge_finished").await;
}

/// Jobs of many queues finished by concurrent stores (each completing batches at
/// once) are counted once each.
pub async fn counts_stay_exact_under_concurrent_completions(kind: Kind) {
    let fx = open!(shared(kind));
    let q = fx.queue.clone();
    let jobs = 200;
    fx.add(jobs).await;
    let mut tasks = Vec::new();
    for i in 0..4 {
        let store: Arc<dyn Store> = fx.second_handle().await;
        let (q, w) = (q.clone(), fx.worker());
        tasks.push(tokio::spawn(async move {
            let mut done: usize = 0;
            loop {
                let claimed = store
                    .claim(std::slice::from_ref(&q), &w, 7, LEASE)
                    .await
                    .unwrap();
                if claimed.is_empty() {
                    return done;
                }
                let outcome = |j: &spikard_tasks::ClaimedJob| {
                    if (usize::from(j.id.as_bytes()[35]) + i).is_multiple_of(3) {
                        Completion::Failed(error(1))
                    } else {
                        Completion::Succeeded(json!(null))
                    }
                };
                let batch: Vec<_> = claimed.iter().map(|j| (j.clone(), outcome(j))).collect();
                done += store.complete(&w, batch).await.unwrap();
            }
        }));
    }
    let mut done: usize = 0;
    for t in tasks {
        done += t.await.unwrap();
    }
    assert_eq!(done, jobs, "{kind:?}");
    let c = fx.store.counts(&q).await.unwrap();
    assert_eq!(c.succeeded + c.failed, jobs as u64, "{kind:?}: {c:?}");
    let failed = fx
        .store
        .list_jobs(&in_queue(&q, &[JobStatus::Failed]), None, 1000, now_ms())
        .await
        .unwrap()
        .len() as u64;
    assert_eq!(c.failed, failed, "{kind:?}: {c:?}");
    expect(
        &*fx.store,
        kind,
        &q,
        &[
            (JobStatus::Succeeded, c.succeeded),
            (JobStatus::Failed, failed),
        ],
        "concurrent completions",
    )
    .await;
    assert_eq!(
        fx.store
            .purge_batch(&in_queue(&q, &[]), now_ms() + 1, 1000)
            .await
            .unwrap(),
        jobs as u64
    );
    expect(&*fx.store, kind, &q, &[], "purge of them all").await;
}

/// Takes the counts machinery out of a SQL database (as an earlier version left it:
/// no counts table, no triggers), or with `everything` the whole schema (a fresh one).
async fn strip(kind: Kind, url: &str, everything: bool) {
    use sqlx::Connection;
    match kind {
        Kind::Sqlite => {
            let path = url.trim_start_matches("sqlite://");
            let options = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
            let mut conn = sqlx::ConnectOptions::connect(&options).await.unwrap();
            let sql = if everything {
                "SELECT 1"
            } else {
                "DROP TRIGGER spikard_jobs_count_finish; DROP TRIGGER spikard_jobs_count_unfinish; \
                 DROP TRIGGER spikard_jobs_count_delete; DROP TABLE spikard_job_counts;"
            };
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .unwrap();
            conn.close().await.unwrap();
        }
        #[cfg(feature = "postgres")]
        Kind::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            let sql = if everything {
                "DROP SCHEMA spikard_tasks CASCADE"
            } else {
                "DROP TRIGGER jobs_count_update ON spikard_tasks.jobs; \
                 DROP TRIGGER jobs_count_delete ON spikard_tasks.jobs; \
                 DROP FUNCTION spikard_tasks.count_jobs(); DROP TABLE spikard_tasks.job_counts;"
            };
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .unwrap();
            conn.close().await.unwrap();
        }
        _ => {}
    }
}

/// The count triggers of the first version (SQLite): one on inserts, one update trigger.
const SQLITE_FIRST_TRIGGERS: &str = r#"
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

/// The count triggers of the first version (PostgreSQL): statement-level on inserts too.
#[cfg(feature = "postgres")]
const POSTGRES_FIRST_TRIGGERS: &str = r#"
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

/// Puts back the count triggers of the first version in a SQL database.
async fn first_triggers(kind: Kind, url: &str) {
    use sqlx::Connection;
    match kind {
        Kind::Sqlite => {
            let path = url.trim_start_matches("sqlite://");
            let options = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
            let mut conn = sqlx::ConnectOptions::connect(&options).await.unwrap();
            sqlx::raw_sql(SQLITE_FIRST_TRIGGERS)
                .execute(&mut conn)
                .await
                .unwrap();
            conn.close().await.unwrap();
        }
        #[cfg(feature = "postgres")]
        Kind::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::raw_sql(POSTGRES_FIRST_TRIGGERS)
                .execute(&mut conn)
                .await
                .unwrap();
            conn.close().await.unwrap();
        }
        _ => {}
    }
}

/// The names of the count triggers on the jobs table, sorted.
async fn count_triggers(kind: Kind, url: &str) -> Vec<String> {
    use sqlx::Connection;
    let sql = match kind {
        Kind::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'trigger' \
             AND tbl_name = 'spikard_jobs' ORDER BY name"
        }
        _ => {
            "SELECT tgname::text FROM pg_trigger WHERE NOT tgisinternal \
             AND tgrelid = 'spikard_tasks.jobs'::regclass ORDER BY tgname"
        }
    };
    match kind {
        Kind::Sqlite => {
            let path = url.trim_start_matches("sqlite://");
            let options = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
            let mut conn = sqlx::ConnectOptions::connect(&options).await.unwrap();
            let names = sqlx::query_scalar(sql).fetch_all(&mut conn).await.unwrap();
            conn.close().await.unwrap();
            names
        }
        #[cfg(feature = "postgres")]
        Kind::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            let names = sqlx::query_scalar(sql).fetch_all(&mut conn).await.unwrap();
            conn.close().await.unwrap();
            names
        }
        _ => Vec::new(),
    }
}

/// A database with the count triggers of the first version: two stores opening it at
/// once replace them (no change is counted twice, none missed): completions, a retry
/// out of a finished state, enqueues and a purge keep the counts exact.
pub async fn opening_a_database_with_the_first_count_triggers_replaces_them(kind: Kind) {
    use JobStatus::*;
    let fx = open!(private(kind));
    let q = fx.queue.clone();
    let w = fx.worker();
    fx.add(4).await;
    let claimed = fx.claim(&w, 4).await;
    let done = vec![
        (claimed[0].clone(), Completion::Succeeded(json!(1))),
        (claimed[1].clone(), Completion::Failed(error(1))),
    ];
    assert_eq!(fx.store.complete(&w, done).await.unwrap(), 2);
    let step = [(Running, 2), (Succeeded, 1), (Failed, 1)];
    expect(&*fx.store, kind, &q, &step, "the jobs").await;
    fx.store.close().await;
    first_triggers(kind, &fx.url).await;
    let (a, b) = tokio::join!(store::open(&fx.url), store::open(&fx.url));
    let (a, b): (Arc<dyn Store>, Arc<dyn Store>) = (a.unwrap(), b.unwrap());
    expect(&*a, kind, &q, &step, "opening twice at once").await;
    let expected: &[&str] = match kind {
        Kind::Sqlite => &[
            "spikard_jobs_count_delete",
            "spikard_jobs_count_finish",
            "spikard_jobs_count_unfinish",
        ],
        _ => &["jobs_count_delete", "jobs_count_update"],
    };
    assert_eq!(count_triggers(kind, &fx.url).await, expected, "{kind:?}");
    let done = vec![
        (claimed[2].clone(), Completion::Succeeded(json!(3))),
        (claimed[3].clone(), Completion::Failed(error(1))),
    ];
    assert_eq!(b.complete(&w, done).await.unwrap(), 2);
    let step = [(Succeeded, 2), (Failed, 2)];
    expect(&*a, kind, &q, &step, "completions after the upgrade").await;
    let filter = in_queue(&q, &[Failed]);
    assert_eq!(a.retry_batch(&filter, now_ms(), 10).await.unwrap(), 2);
    let step = [(Pending, 2), (Succeeded, 2)];
    expect(&*b, kind, &q, &step, "a retry after the upgrade").await;
    b.enqueue(vec![fx.row()]).await.unwrap();
    let step = [(Pending, 3), (Succeeded, 2)];
    expect(&*a, kind, &q, &step, "an enqueue after the upgrade").await;
    let purged = a
        .purge_batch(&in_queue(&q, &[]), now_ms() + 1, 1000)
        .await
        .unwrap();
    assert_eq!(purged, 2);
    expect(&*a, kind, &q, &[(Pending, 3)], "a purge after the upgrade").await;
    a.close().await;
    b.close().await;
}

/// Jobs in every state on a database without the counts table (an earlier version's):
/// two stores opening it at once both succeed and count each job once; later changes
/// are counted.
pub async fn opening_a_database_without_counts_counts_its_jobs_once(kind: Kind) {
    use JobStatus::*;
    let fx = open!(private(kind));
    let q = fx.queue.clone();
    let w = fx.worker();
    fx.add(6).await;
    let claimed = fx.claim(&w, 4).await;
    let outcomes = [
        Completion::Succeeded(json!(1)),
        Completion::Succeeded(json!(2)),
        Completion::Failed(error(1)),
    ];
    let done: Vec<_> = claimed.iter().cloned().zip(outcomes).collect();
    assert_eq!(fx.store.complete(&w, done).await.unwrap(), 3);
    let waiting = fx.add(1).await.remove(0);
    assert!(fx.store.cancel(&waiting).await.unwrap());
    let step = [
        (Pending, 2),
        (Running, 1),
        (Succeeded, 2),
        (Failed, 1),
        (Cancelled, 1),
    ];
    expect(&*fx.store, kind, &q, &step, "the jobs").await;
    fx.store.close().await;
    strip(kind, &fx.url, false).await;
    let (a, b) = tokio::join!(store::open(&fx.url), store::open(&fx.url));
    let (a, b): (Arc<dyn Store>, Arc<dyn Store>) = (a.unwrap(), b.unwrap());
    expect(&*a, kind, &q, &step, "opening twice at once").await;
    expect(&*b, kind, &q, &step, "opening twice at once").await;
    let c = claimed[3].clone();
    let done = vec![(c, Completion::Succeeded(json!(3)))];
    assert_eq!(b.complete(&w, done).await.unwrap(), 1);
    let step = [(Pending, 2), (Succeeded, 3), (Failed, 1), (Cancelled, 1)];
    expect(&*a, kind, &q, &step, "a completion after the upgrade").await;
    a.close().await;
    b.close().await;
}

/// Two stores setting up one fresh database at once both succeed, and count what each
/// finishes.
pub async fn two_stores_set_up_a_fresh_database_at_once(kind: Kind) {
    use JobStatus::*;
    let fx = open!(private(kind));
    fx.store.close().await;
    let url = if kind == Kind::Sqlite {
        let path = fx
            .url
            .trim_start_matches("sqlite://")
            .replace("jobs.db", "fresh.db");
        format!("sqlite://{path}")
    } else {
        strip(kind, &fx.url, true).await;
        fx.url.clone()
    };
    let (a, b) = tokio::join!(store::open(&url), store::open(&url));
    let (a, b): (Arc<dyn Store>, Arc<dyn Store>) = (a.unwrap(), b.unwrap());
    let q = fx.queue.clone();
    a.enqueue((0..3).map(|_| fx.row()).collect()).await.unwrap();
    let w = fx.worker();
    let claimed = b
        .claim(std::slice::from_ref(&q), &w, 2, LEASE)
        .await
        .unwrap();
    let done: Vec<_> = claimed
        .into_iter()
        .map(|j| (j, Completion::Succeeded(json!(0))))
        .collect();
    assert_eq!(b.complete(&w, done).await.unwrap(), 2);
    expect(&*a, kind, &q, &[(Pending, 1), (Succeeded, 2)], "fresh").await;
    a.close().await;
    b.close().await;
}
