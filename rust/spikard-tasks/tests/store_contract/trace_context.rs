//! The trace context a job is enqueued with: stored, read back by `get` and by every
//! claim, and added to tables of earlier versions.

use spikard_tasks::job::{JobRow, MAX_TRACE_CONTEXT};
use spikard_tasks::time::now_ms;
use spikard_tasks::{AttemptError, ClaimedJob, Completion, JobStatus};

use crate::support::{open, started, Kind};

/// A `traceparent` with a `tracestate`, as the Python side builds them.
const TRACE: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01;congo=t61rcWkgMzE";

/// The longest trace context a job takes, every byte of it kept.
fn longest() -> String {
    let head = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01;";
    let mut text = head.to_owned();
    while text.len() < MAX_TRACE_CONTEXT {
        text.push(char::from(b'a' + (text.len() % 26) as u8));
    }
    text
}

/// The claimed job `id` of `claimed`.
fn claimed<'a>(claimed: &'a [ClaimedJob], id: &str) -> &'a ClaimedJob {
    claimed.iter().find(|j| j.id == id).expect("claimed")
}

/// A job keeps the trace context it was enqueued with (plain rows, a keyed row, the
/// longest one) and a job without one has none: `get` reads it, every claim hands it
/// to the worker (a retry's too), and a finished job still shows it.
pub async fn trace_context_is_stored_and_read_by_get_and_every_claim(kind: Kind) {
    let fx = open!(shared(kind));
    let long = longest();
    let with = |text: &str| JobRow {
        trace_context: Some(text.to_owned()),
        ..fx.row()
    };
    let keyed = JobRow {
        unique_key: Some(format!("traced-{}", uuid::Uuid::now_v7().simple())),
        ..with(TRACE)
    };
    let rows = vec![with(TRACE), fx.row(), with(&long), keyed];
    let expected: Vec<Option<String>> = rows.iter().map(|r| r.trace_context.clone()).collect();
    let ids = fx.enqueue(rows).await;
    // A lone row takes the one-statement path of some stores.
    let alone = fx.enqueue(vec![with(TRACE)]).await.remove(0);
    for (id, trace) in ids.iter().zip(&expected) {
        assert_eq!(&fx.get(id).await.trace_context, trace, "{kind:?}");
    }
    assert_eq!(fx.get(&alone).await.trace_context.as_deref(), Some(TRACE));

    let w = fx.worker();
    let jobs = fx.claim(&w, 10).await;
    assert_eq!(jobs.len(), 5, "{kind:?}");
    for (id, trace) in ids.iter().zip(&expected) {
        assert_eq!(&claimed(&jobs, id).trace_context, trace, "{kind:?}");
    }
    assert_eq!(claimed(&jobs, &alone).trace_context.as_deref(), Some(TRACE));

    let retry = Completion::Retry {
        run_at_ms: now_ms(),
        error: AttemptError {
            attempt: 1,
            error: "Flaky: 1".into(),
            traceback: None,
            at_ms: now_ms(),
        },
    };
    let done = vec![
        (started(&jobs, &ids[0], now_ms()), retry),
        (
            started(&jobs, &ids[2], now_ms()),
            Completion::Succeeded(serde_json::Value::Null),
        ),
    ];
    assert_eq!(fx.store.complete(&w, done).await.unwrap(), 2, "{kind:?}");
    let again = fx.claim(&w, 10).await;
    assert_eq!(again.len(), 1, "{kind:?}");
    assert_eq!(
        (again[0].id.as_str(), again[0].attempt),
        (ids[0].as_str(), 2)
    );
    assert_eq!(again[0].trace_context.as_deref(), Some(TRACE), "{kind:?}");
    let finished = fx.get(&ids[2]).await;
    assert_eq!(finished.status, JobStatus::Succeeded, "{kind:?}");
    assert_eq!(finished.trace_context, Some(long), "{kind:?}");
}

/// The jobs table as the version before trace contexts created it (SQLite).
const PROGRESS_ERA_SQLITE_JOBS: &str = "CREATE TABLE spikard_jobs (
    id TEXT PRIMARY KEY NOT NULL, queue TEXT NOT NULL, task TEXT NOT NULL,
    args TEXT NOT NULL, kwargs TEXT NOT NULL, status TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL, run_at INTEGER NOT NULL, timeout_ms INTEGER,
    unique_key TEXT, result TEXT, errors TEXT, cancel_reason TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0, enqueued_at INTEGER NOT NULL,
    started_at INTEGER, finished_at INTEGER, locked_by TEXT, lease_until INTEGER,
    progress TEXT)";

/// Takes the `trace_context` column out of a database set up by this version, as if
/// the version before had created it (PostgreSQL, MySQL).
#[allow(unused_variables)]
async fn drop_trace_context_column(kind: Kind, url: &str) {
    #[cfg(any(feature = "postgres", feature = "mysql"))]
    {
        use sqlx::Connection;
        match kind {
            #[cfg(feature = "postgres")]
            Kind::Postgres => {
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::query("ALTER TABLE spikard_tasks.jobs DROP COLUMN trace_context")
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
            #[cfg(feature = "mysql")]
            Kind::MySql => {
                let mut conn = sqlx::MySqlConnection::connect(url).await.unwrap();
                sqlx::query("ALTER TABLE spikard_jobs DROP COLUMN trace_context")
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
            _ => unreachable!("{kind:?}"),
        }
    }
}

/// A new job row of `queue`, ready now.
fn new_row(queue: &str, trace_context: Option<&str>) -> JobRow {
    JobRow {
        id: uuid::Uuid::now_v7().to_string(),
        queue: queue.to_owned(),
        task: "contract.old".into(),
        args: "[]".into(),
        kwargs: "{}".into(),
        priority: 0,
        max_attempts: 3,
        run_at_ms: now_ms(),
        timeout_ms: None,
        unique_key: None,
        enqueued_at_ms: now_ms(),
        trace_context: trace_context.map(Into::into),
    }
}

/// A database whose jobs table the version before trace contexts created keeps
/// working: opening it adds the column (two processes opening it at once both
/// succeed), a job written before reads back and is claimed without a trace context,
/// and a job enqueued afterwards keeps its own.
pub async fn opening_a_table_of_an_earlier_version_adds_the_trace_context_column(kind: Kind) {
    use spikard_tasks::store::{self, Store};
    let dir = tempfile::tempdir().unwrap();
    let queue = format!("contract-{}", uuid::Uuid::now_v7().simple());
    let old = new_row(&queue, None);
    let (url, _fx) = match kind {
        Kind::Sqlite => {
            let path = dir.path().join("old.db");
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true);
            let mut conn = sqlx::ConnectOptions::connect(&options).await.unwrap();
            sqlx::query(PROGRESS_ERA_SQLITE_JOBS)
                .execute(&mut conn)
                .await
                .unwrap();
            // A job written by that version, in its columns.
            sqlx::query(
                "INSERT INTO spikard_jobs (id, queue, task, args, kwargs, status, \
                 max_attempts, run_at, enqueued_at) VALUES (?, ?, ?, '[]', '{}', 'pending', \
                 3, ?, ?)",
            )
            .bind(&old.id)
            .bind(&queue)
            .bind(&old.task)
            .bind(old.run_at_ms)
            .bind(old.enqueued_at_ms)
            .execute(&mut conn)
            .await
            .unwrap();
            sqlx::Connection::close(conn).await.unwrap();
            (format!("sqlite:///{}", path.display()), None)
        }
        _ => {
            let fx = open!(private(kind));
            // Written before the column goes: the table keeps the job's other columns.
            fx.store.enqueue(vec![old.clone()]).await.unwrap();
            fx.store.close().await;
            drop_trace_context_column(kind, &fx.url).await;
            (fx.url.clone(), Some(fx))
        }
    };
    let (a, b) = tokio::join!(store::open(&url), store::open(&url));
    let (a, b): (std::sync::Arc<dyn Store>, _) = (a.unwrap(), b.unwrap());
    let rec = b.get(&old.id).await.unwrap().expect("the old job");
    assert_eq!((rec.status, rec.trace_context), (JobStatus::Pending, None));
    let new = new_row(&queue, Some(TRACE));
    a.enqueue(vec![new.clone()]).await.unwrap();
    let got = b.get(&new.id).await.unwrap().expect("the new job");
    assert_eq!(got.trace_context.as_deref(), Some(TRACE), "{kind:?}");
    let jobs = a
        .claim(&[queue], "old-worker", 2, crate::support::LEASE)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 2, "{kind:?}");
    assert_eq!(claimed(&jobs, &old.id).trace_context, None, "{kind:?}");
    let traced = claimed(&jobs, &new.id).trace_context.as_deref();
    assert_eq!(traced, Some(TRACE), "{kind:?}");
    a.close().await;
    b.close().await;
}
