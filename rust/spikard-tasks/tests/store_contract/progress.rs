//! `set_progress`, and the progress a job record carries.

use serde_json::Value;
use spikard_tasks::job::{progress_value, JobRow};
use spikard_tasks::time::now_ms;
use spikard_tasks::{AttemptError, Completion, JobStatus};

use crate::support::{open, started, Fixture, Kind};

/// A progress value as the engine builds it, and its JSON text as the store takes it.
fn progress(fraction: f64, message: Option<&str>) -> (Value, String) {
    let value = progress_value(fraction, message, now_ms()).unwrap();
    let text = value.to_string();
    (value, text)
}

/// Claims the job `id` (the only ready one of the fixture's queue) for a new worker.
async fn claim_one(fx: &Fixture, id: &str) -> (String, spikard_tasks::ClaimedJob) {
    let w = fx.worker();
    let mut claimed = fx.claim(&w, 1).await;
    assert_eq!(claimed.len(), 1, "{:?}", fx.kind);
    let job = claimed.remove(0);
    assert_eq!(job.id, id, "{:?}", fx.kind);
    (w, job)
}

/// Progress is written onto a running job only (replacing the one before) and read
/// back by `get`; an unknown, pending or scheduled job gets none (`false`).
pub async fn set_progress_writes_only_onto_a_running_job(kind: Kind) {
    let fx = open!(shared(kind));
    let later = JobRow {
        run_at_ms: now_ms() + 3_600_000,
        ..fx.row()
    };
    let scheduled = fx.enqueue(vec![later]).await.remove(0);
    let id = fx.add(1).await.remove(0);
    let (first, first_text) = progress(0.25, Some("step 1 of 4"));
    let unknown = uuid::Uuid::now_v7().to_string();
    assert!(!fx.store.set_progress(&unknown, &first_text).await.unwrap());
    assert!(fx.store.get(&unknown).await.unwrap().is_none(), "{kind:?}");
    for pending in [&id, &scheduled] {
        let set = fx.store.set_progress(pending, &first_text).await.unwrap();
        assert!(!set, "{kind:?}: a job that is not running");
        assert_eq!(fx.get(pending).await.progress, None, "{kind:?}");
    }
    assert_eq!(fx.get(&id).await.status, JobStatus::Pending);

    claim_one(&fx, &id).await;
    assert!(fx.store.set_progress(&id, &first_text).await.unwrap());
    let rec = fx.get(&id).await;
    assert_eq!(rec.status, JobStatus::Running, "{kind:?}");
    assert_eq!(rec.progress, Some(first), "{kind:?}");
    let (second, second_text) = progress(1.0, None);
    assert!(fx.store.set_progress(&id, &second_text).await.unwrap());
    assert_eq!(fx.get(&id).await.progress, Some(second), "{kind:?}");
    assert_eq!(fx.get(&scheduled).await.progress, None, "{kind:?}");
}

/// A finished job keeps the progress last reported, and takes no more.
pub async fn set_progress_is_kept_when_the_job_finishes(kind: Kind) {
    let fx = open!(shared(kind));
    let ids = fx.add(2).await;
    let (value, text) = progress(0.5, Some("halfway, ünïcödé"));
    let outcomes = [
        Completion::Succeeded(Value::Null),
        Completion::Cancelled {
            reason: Some("stop".into()),
        },
    ];
    for (id, outcome) in ids.iter().zip(outcomes) {
        let (w, job) = claim_one(&fx, id).await;
        assert!(fx.store.set_progress(id, &text).await.unwrap(), "{kind:?}");
        let done = vec![(started(&[job], id, now_ms()), outcome)];
        assert_eq!(fx.store.complete(&w, done).await.unwrap(), 1, "{kind:?}");
        let rec = fx.get(id).await;
        assert!(rec.status.is_finished(), "{kind:?}: {:?}", rec.status);
        assert_eq!(rec.progress.as_ref(), Some(&value), "{kind:?}");
        let (_, newer) = progress(0.9, None);
        assert!(
            !fx.store.set_progress(id, &newer).await.unwrap(),
            "{kind:?}"
        );
        assert_eq!(fx.get(id).await.progress, Some(value.clone()), "{kind:?}");
    }
}

/// A retry keeps the last attempt's progress (a retrying job takes none) until the
/// next attempt reports its own.
pub async fn set_progress_is_kept_over_a_retry_until_the_next_report(kind: Kind) {
    let fx = open!(shared(kind));
    let id = fx.add(1).await.remove(0);
    let (w, job) = claim_one(&fx, &id).await;
    let (first, first_text) = progress(0.75, Some("almost"));
    assert!(fx.store.set_progress(&id, &first_text).await.unwrap());
    let error = AttemptError {
        attempt: 1,
        error: "ValueError: again".into(),
        traceback: None,
        at_ms: now_ms(),
    };
    let retry = Completion::Retry {
        run_at_ms: now_ms(),
        error,
    };
    let done = vec![(started(&[job], &id, now_ms()), retry)];
    assert_eq!(fx.store.complete(&w, done).await.unwrap(), 1, "{kind:?}");
    let rec = fx.get(&id).await;
    assert_eq!(rec.status, JobStatus::Retrying, "{kind:?}");
    assert_eq!(rec.progress.as_ref(), Some(&first), "{kind:?}");
    let (_, ignored) = progress(0.1, None);
    assert!(!fx.store.set_progress(&id, &ignored).await.unwrap());

    let (_, again) = claim_one(&fx, &id).await;
    assert_eq!(again.attempt, 2, "{kind:?}");
    assert_eq!(fx.get(&id).await.progress, Some(first), "{kind:?}");
    let (second, second_text) = progress(0.0, Some("attempt 2"));
    assert!(fx.store.set_progress(&id, &second_text).await.unwrap());
    assert_eq!(fx.get(&id).await.progress, Some(second), "{kind:?}");
}

/// The jobs table as versions without progress created it (SQLite).
const OLD_SQLITE_JOBS: &str = "CREATE TABLE spikard_jobs (
    id TEXT PRIMARY KEY NOT NULL, queue TEXT NOT NULL, task TEXT NOT NULL,
    args TEXT NOT NULL, kwargs TEXT NOT NULL, status TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL, run_at INTEGER NOT NULL, timeout_ms INTEGER,
    unique_key TEXT, result TEXT, errors TEXT, cancel_reason TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0, enqueued_at INTEGER NOT NULL,
    started_at INTEGER, finished_at INTEGER, locked_by TEXT, lease_until INTEGER)";

/// Takes the `progress` column out of a database set up by this version, as if an
/// earlier version had created it (PostgreSQL, MySQL).
#[allow(unused_variables)]
async fn drop_progress_column(kind: Kind, url: &str) {
    #[cfg(any(feature = "postgres", feature = "mysql"))]
    {
        use sqlx::Connection;
        match kind {
            #[cfg(feature = "postgres")]
            Kind::Postgres => {
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::query("ALTER TABLE spikard_tasks.jobs DROP COLUMN progress")
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
            #[cfg(feature = "mysql")]
            Kind::MySql => {
                let mut conn = sqlx::MySqlConnection::connect(url).await.unwrap();
                sqlx::query("ALTER TABLE spikard_jobs DROP COLUMN progress")
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
            _ => unreachable!("{kind:?}"),
        }
    }
}

/// A database whose jobs table an earlier version created (without `progress`) keeps
/// working: opening it adds the column (two processes opening it at once both
/// succeed), its jobs read back without progress, and their progress is stored.
pub async fn opening_a_table_of_an_earlier_version_adds_the_progress_column(kind: Kind) {
    use spikard_tasks::store::{self, Store};
    let dir = tempfile::tempdir().unwrap();
    let (url, _fx) = match kind {
        Kind::Sqlite => {
            let path = dir.path().join("old.db");
            let url = format!("sqlite:///{}", path.display());
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true);
            let mut conn = sqlx::ConnectOptions::connect(&options).await.unwrap();
            sqlx::query(OLD_SQLITE_JOBS)
                .execute(&mut conn)
                .await
                .unwrap();
            sqlx::Connection::close(conn).await.unwrap();
            (url, None)
        }
        _ => {
            let fx = open!(private(kind));
            fx.store.close().await;
            drop_progress_column(kind, &fx.url).await;
            (fx.url.clone(), Some(fx))
        }
    };
    let queue = format!("contract-{}", uuid::Uuid::now_v7().simple());
    let enqueued_at_ms = now_ms() - 5_000;
    let row = JobRow {
        id: uuid::Uuid::now_v7().to_string(),
        queue: queue.clone(),
        task: "contract.old".into(),
        args: "[]".into(),
        kwargs: "{}".into(),
        priority: 0,
        max_attempts: 3,
        run_at_ms: now_ms(),
        timeout_ms: None,
        unique_key: None,
        enqueued_at_ms,
        trace_context: None,
    };
    if kind == Kind::Sqlite {
        // A job written by the earlier version, in its columns.
        let mut conn = sqlx::ConnectOptions::connect(
            &sqlx::sqlite::SqliteConnectOptions::new().filename(dir.path().join("old.db")),
        )
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO spikard_jobs (id, queue, task, args, kwargs, status, max_attempts, \
             run_at, enqueued_at) VALUES (?, ?, ?, '[]', '{}', 'pending', 3, ?, ?)",
        )
        .bind(&row.id)
        .bind(&queue)
        .bind(&row.task)
        .bind(row.run_at_ms)
        .bind(enqueued_at_ms)
        .execute(&mut conn)
        .await
        .unwrap();
        sqlx::Connection::close(conn).await.unwrap();
    }
    let (a, b) = tokio::join!(store::open(&url), store::open(&url));
    let (a, b): (std::sync::Arc<dyn Store>, _) = (a.unwrap(), b.unwrap());
    if kind != Kind::Sqlite {
        a.enqueue(vec![row.clone()]).await.unwrap();
    }
    let rec = b.get(&row.id).await.unwrap().expect("the old job");
    assert_eq!((rec.status, rec.progress), (JobStatus::Pending, None));
    let claimed = a
        .claim(&[queue], "old-worker", 1, crate::support::LEASE)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "{kind:?}");
    assert_eq!(claimed[0].enqueued_at_ms, Some(enqueued_at_ms), "{kind:?}");
    let (value, text) = progress(0.5, Some("migrated"));
    assert!(b.set_progress(&row.id, &text).await.unwrap(), "{kind:?}");
    assert_eq!(a.get(&row.id).await.unwrap().unwrap().progress, Some(value));
    a.close().await;
    b.close().await;
}
