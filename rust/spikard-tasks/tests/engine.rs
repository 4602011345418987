//! Engine integration tests on a real SQLite file (and the in-memory parity backend).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use spikard_tasks::{
    spawn_worker, Backoff, ClaimedJob, CoreError, FnHandler, JobOptions, JobStatus, NewJob,
    TaskOutcome, TaskQueueClient, TaskQueueConfig, WorkerOptions,
};

fn config(url: String) -> TaskQueueConfig {
    TaskQueueConfig {
        url,
        queue: unique_queue(),
        concurrency: 4,
        poll_interval: 0.01,
        lease: 2.0,
        heartbeat: 0.2,
        drain_timeout: 5.0,
        backoff: Backoff {
            initial: 0.01,
            max: 0.05,
            multiplier: 2.0,
            jitter: 0.0,
        },
        ..TaskQueueConfig::default()
    }
}

/// Every backend URL the suite runs against: the embedded ones always, each server
/// backend compiled in when its server answers (with `SPIKARD_TASKS_REQUIRE_BACKENDS=1`
/// an unreachable server fails the suite instead of being skipped).
#[allow(clippy::vec_init_then_push)]
fn urls(dir: &tempfile::TempDir) -> Vec<String> {
    let mut urls = vec![
        format!("sqlite:///{}", dir.path().join("jobs.db").display()),
        "memory://".to_owned(),
    ];
    #[allow(unused_mut)]
    let mut servers: Vec<(&str, &str, &str)> = Vec::new();
    #[cfg(feature = "postgres")]
    servers.push((
        "postgres",
        "SPIKARD_TASKS_TEST_POSTGRES",
        "postgres://postgres@127.0.0.1:5432/test",
    ));
    #[cfg(feature = "mysql")]
    servers.push((
        "mysql",
        "SPIKARD_TASKS_TEST_MYSQL",
        "mysql://root@127.0.0.1:3306/test",
    ));
    #[cfg(feature = "redis")]
    servers.push((
        "redis",
        "SPIKARD_TASKS_TEST_REDIS",
        "redis://127.0.0.1:6379/0",
    ));
    for (name, var, default) in servers {
        let url = std::env::var(var).unwrap_or_else(|_| default.to_owned());
        if reachable(&url) {
            urls.push(url);
        } else if std::env::var("SPIKARD_TASKS_REQUIRE_BACKENDS").as_deref() == Ok("1") {
            panic!("{name} server at {url} is unreachable and SPIKARD_TASKS_REQUIRE_BACKENDS=1");
        } else {
            eprintln!("skipping {name}: no server at {url}");
        }
    }
    urls
}

fn reachable(url: &str) -> bool {
    let parsed = url::Url::parse(url).expect("test URL");
    let host = parsed.host_str().unwrap_or("127.0.0.1").to_owned();
    let port = parsed
        .port_or_known_default()
        .unwrap_or(match parsed.scheme() {
            "postgres" | "postgresql" => 5432,
            "mysql" | "mariadb" => 3306,
            _ => 6379,
        });
    std::net::TcpStream::connect_timeout(
        &format!("{host}:{port}").parse().expect("socket address"),
        Duration::from_secs(1),
    )
    .is_ok()
}

/// A queue name no other test (or earlier run on a shared server) uses.
fn unique_queue() -> String {
    format!("test-{}", uuid::Uuid::now_v7().simple())
}

async fn clients() -> (tempfile::TempDir, Vec<TaskQueueClient>) {
    let dir = tempfile::tempdir().unwrap();
    let mut out = Vec::new();
    for url in urls(&dir) {
        out.push(TaskQueueClient::connect(config(url)).await.unwrap());
    }
    (dir, out)
}

fn job(task: &str, args: Value) -> NewJob {
    NewJob::new(task).args(args)
}

fn echo_handler() -> Arc<FnHandler<impl Fn(ClaimedJob) -> std::future::Ready<TaskOutcome>>> {
    Arc::new(FnHandler(|job: ClaimedJob| {
        std::future::ready(TaskOutcome::Success(
            json!({"task": job.task, "args": job.args}),
        ))
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_run_and_read_results() {
    let (_dir, clients) = clients().await;
    for client in clients {
        let ids = client
            .enqueue((0..50).map(|i| job("echo", json!([i]))).collect())
            .await
            .unwrap();
        assert_eq!(ids.len(), 50);
        let rec = client.get(&ids[7].id).await.unwrap().unwrap();
        assert_eq!(rec.status, JobStatus::Pending);
        assert_eq!(rec.args, json!([7]));

        let mut worker = spawn_worker(
            &client,
            echo_handler(),
            WorkerOptions::from_config(client.config()),
        )
        .unwrap();
        for e in &ids {
            let rec = client
                .wait(&e.id, Some(Duration::from_secs(10)))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(rec.status, JobStatus::Succeeded);
            assert_eq!(rec.attempts, 1);
            assert_eq!(rec.result.as_ref().unwrap()["task"], "echo");
        }
        let report = worker.stop().await.unwrap();
        assert_eq!(report.succeeded, 50);
        assert_eq!(client.counts(None).await.unwrap().succeeded, 50);
        assert!(client.get("no-such-id").await.unwrap().is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_then_succeeds_and_exhausts_attempts() {
    let (_dir, clients) = clients().await;
    for client in clients {
        let calls = Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        let handler = Arc::new(FnHandler(move |job: ClaimedJob| {
            let n = c.fetch_add(1, Ordering::SeqCst);
            std::future::ready(match job.task.as_str() {
                "flaky" if job.attempt < 3 => TaskOutcome::Fail {
                    error: format!("ValueError: attempt {}", job.attempt),
                    traceback: Some("Traceback ...".into()),
                    retryable: true,
                },
                "flaky" => TaskOutcome::Success(json!(n)),
                _ => TaskOutcome::fail("RuntimeError: always"),
            })
        }));
        let opts = JobOptions {
            max_attempts: Some(3),
            ..Default::default()
        };
        let ids = client
            .enqueue(vec![
                job("flaky", json!([])).options(opts.clone()),
                job("broken", json!([])).options(opts),
            ])
            .await
            .unwrap();
        let mut worker = spawn_worker(
            &client,
            handler,
            WorkerOptions::from_config(client.config()),
        )
        .unwrap();
        let flaky = client
            .wait(&ids[0].id, Some(Duration::from_secs(10)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(flaky.status, JobStatus::Succeeded);
        assert_eq!(flaky.attempts, 3);
        assert_eq!(flaky.errors.len(), 2);
        assert_eq!(flaky.errors[1].error, "ValueError: attempt 2");
        assert_eq!(flaky.errors[0].traceback.as_deref(), Some("Traceback ..."));
        let broken = client
            .wait(&ids[1].id, Some(Duration::from_secs(10)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(broken.status, JobStatus::Failed);
        assert_eq!(broken.attempts, 3);
        assert_eq!(broken.errors.len(), 3);
        worker.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_order_with_one_slot_and_delay_respected() {
    let (_dir, clients) = clients().await;
    for client in clients {
        let order = Arc::new(Mutex::new(Vec::<(i64, Instant)>::new()));
        let o = order.clone();
        let handler = Arc::new(FnHandler(move |job: ClaimedJob| {
            o.lock()
                .unwrap()
                .push((job.args[0].as_i64().unwrap(), Instant::now()));
            std::future::ready(TaskOutcome::Success(Value::Null))
        }));
        let mut jobs = Vec::new();
        for p in [1, 5, -3, 9, 0] {
            jobs.push(job("p", json!([p])).options(JobOptions {
                priority: Some(p),
                ..Default::default()
            }));
        }
        let enqueued_at = Instant::now();
        jobs.push(job("p", json!([100])).options(JobOptions {
            delay: Some(0.3),
            priority: Some(1000),
            ..Default::default()
        }));
        let ids = client.enqueue(jobs).await.unwrap();
        assert_eq!(
            client.get(&ids[5].id).await.unwrap().unwrap().status,
            JobStatus::Scheduled
        );
        let mut opts = WorkerOptions::from_config(client.config());
        opts.concurrency = 1;
        let mut worker = spawn_worker(&client, handler, opts).unwrap();
        for e in &ids {
            client
                .wait(&e.id, Some(Duration::from_secs(10)))
                .await
                .unwrap()
                .unwrap();
        }
        worker.stop().await.unwrap();
        let order = order.lock().unwrap();
        let seen: Vec<i64> = order.iter().map(|(v, _)| *v).collect();
        assert_eq!(seen, vec![9, 5, 1, 0, -3, 100]);
        assert!(order[5].1 - enqueued_at >= Duration::from_millis(300));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_unique_and_bad_input() {
    let (_dir, clients) = clients().await;
    for client in clients {
        let ids = client
            .enqueue(vec![job("x", json!([])).options(JobOptions {
                delay: Some(60.0),
                ..Default::default()
            })])
            .await
            .unwrap();
        assert!(client.cancel(&ids[0].id).await.unwrap());
        assert!(!client.cancel(&ids[0].id).await.unwrap());
        assert!(!client.cancel("unknown").await.unwrap());
        assert_eq!(
            client.get(&ids[0].id).await.unwrap().unwrap().status,
            JobStatus::Cancelled
        );

        let keyed = || {
            job("u", json!([])).options(JobOptions {
                unique_key: Some("k1".into()),
                ..Default::default()
            })
        };
        let a = client.enqueue(vec![keyed(), keyed()]).await.unwrap();
        assert!(a[0].created && !a[1].created);
        assert_eq!(a[0].id, a[1].id);
        let b = client.enqueue(vec![keyed()]).await.unwrap();
        assert_eq!(b[0].id, a[0].id);

        let before = client.counts(None).await.unwrap();
        let err = client
            .enqueue(vec![
                job("ok", json!([])),
                job("bad", json!({"not": "a list"})),
            ])
            .await
            .unwrap_err();
        assert!(matches!(err, CoreError::Serialization(_)), "{err}");
        assert_eq!(
            client.counts(None).await.unwrap(),
            before,
            "nothing written"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_drain_finishes_in_flight_and_timeout_releases() {
    let (_dir, clients) = clients().await;
    for client in clients {
        let handler = Arc::new(FnHandler(|job: ClaimedJob| async move {
            let ms = job.args[0].as_u64().unwrap();
            tokio::time::sleep(Duration::from_millis(ms)).await;
            TaskOutcome::Success(json!(ms))
        }));
        // In-flight job shorter than the drain timeout finishes.
        let ids = client
            .enqueue(vec![job("sleep", json!([300]))])
            .await
            .unwrap();
        let mut worker = spawn_worker(
            &client,
            handler.clone(),
            WorkerOptions::from_config(client.config()),
        )
        .unwrap();
        while client.get(&ids[0].id).await.unwrap().unwrap().status != JobStatus::Running {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let report = worker.stop().await.unwrap();
        assert_eq!(report.succeeded, 1);
        assert_eq!(
            client.get(&ids[0].id).await.unwrap().unwrap().status,
            JobStatus::Succeeded
        );

        // A job longer than the drain timeout is released: pending again, attempt not counted.
        let ids = client
            .enqueue(vec![job("sleep", json!([5000]))])
            .await
            .unwrap();
        let mut opts = WorkerOptions::from_config(client.config());
        opts.drain_timeout = Duration::from_millis(200);
        let mut worker = spawn_worker(&client, handler.clone(), opts).unwrap();
        while client.get(&ids[0].id).await.unwrap().unwrap().status != JobStatus::Running {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let report = worker.stop().await.unwrap();
        assert_eq!(report.released, 1);
        let rec = client.get(&ids[0].id).await.unwrap().unwrap();
        assert_eq!(rec.status, JobStatus::Pending);
        assert_eq!(rec.attempts, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_lease_is_rescued_and_late_ack_ignored() {
    let (_dir, clients) = clients().await;
    for client in clients {
        let ids = client.enqueue(vec![job("lost", json!([]))]).await.unwrap();
        // A "worker" that claims and then dies: it never heartbeats.
        let mut dead = WorkerOptions::from_config(client.config());
        dead.name = "dead-worker".into();
        let never = Arc::new(FnHandler(|_job: ClaimedJob| {
            std::future::pending::<TaskOutcome>()
        }));
        dead.lease = Duration::from_millis(300);
        // One slot, held forever by the hung attempt: like a dead process, it claims no more.
        dead.concurrency = 1;
        dead.heartbeat = Duration::from_secs(3600);
        let mut dead_worker = spawn_worker(&client, never, dead).unwrap();
        while client.get(&ids[0].id).await.unwrap().unwrap().status != JobStatus::Running {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut live = spawn_worker(
            &client,
            echo_handler(),
            WorkerOptions::from_config(client.config()),
        )
        .unwrap();
        let rec = client
            .wait(&ids[0].id, Some(Duration::from_secs(10)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rec.status, JobStatus::Succeeded);
        assert_eq!(rec.attempts, 2);
        assert!(
            rec.errors[0].error.starts_with("WorkerLost"),
            "{:?}",
            rec.errors
        );
        live.stop().await.unwrap();
        // The dead worker's drain times out; its release must not touch the finished job.
        let report = dead_worker.stop().await;
        assert!(report.is_ok());
        assert_eq!(
            client.get(&ids[0].id).await.unwrap().unwrap().status,
            JobStatus::Succeeded
        );
    }
}

/// Schema set-up is idempotent and safe when several workers start at the same moment
/// against a database that has never been set up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_setup_on_a_fresh_database() {
    let dir = tempfile::tempdir().unwrap();
    for base in urls(&dir) {
        let url = match fresh_database(&base, &dir).await {
            Some(url) => url,
            None => continue,
        };
        let connects = (0..4).map(|_| TaskQueueClient::connect(config(url.clone())));
        let clients = futures_util::future::join_all(connects).await;
        let clients: Vec<_> = clients.into_iter().map(|c| c.unwrap()).collect();
        let ids = clients[0].enqueue(vec![job("x", json!([]))]).await.unwrap();
        let again = TaskQueueClient::connect(config(url.clone())).await.unwrap();
        assert!(again.get(&ids[0].id).await.unwrap().is_some(), "{url}");
    }
}

/// A database nobody has set up yet, on the same server as `base`.
async fn fresh_database(base: &str, dir: &tempfile::TempDir) -> Option<String> {
    let name = format!("spikard_setup_{}", uuid::Uuid::now_v7().simple());
    if base.starts_with("sqlite:") {
        return Some(format!(
            "sqlite:///{}",
            dir.path().join(format!("{name}.db")).display()
        ));
    }
    #[cfg(feature = "postgres")]
    if base.starts_with("postgres") {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(base).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap();
        let mut url = url::Url::parse(base).unwrap();
        url.set_path(&name);
        return Some(url.to_string());
    }
    #[cfg(feature = "mysql")]
    if base.starts_with("mysql") {
        use sqlx::Connection;
        let mut conn = sqlx::MySqlConnection::connect(base).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap();
        let mut url = url::Url::parse(base).unwrap();
        url.set_path(&name);
        return Some(url.to_string());
    }
    None
}
