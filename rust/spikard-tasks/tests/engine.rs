//! Engine integration tests on a real SQLite file (and the in-memory parity backend).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
mod common;
use common::urls;
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
        // The delayed job has the highest priority, so it may run before the last ready
        // ones once it is due (on a loaded machine): only its start time is fixed.
        let ready: Vec<i64> = seen.iter().copied().filter(|v| *v != 100).collect();
        assert_eq!(
            ready,
            vec![9, 5, 1, 0, -3],
            "ready jobs by priority: {seen:?}"
        );
        let delayed = order.iter().find(|(v, _)| *v == 100).unwrap().1;
        assert!(delayed - enqueued_at >= Duration::from_millis(300));
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
        // An id no job can have is unknown on every backend, not a backend error.
        assert!(!client.cancel("a\0b").await.unwrap());
        assert!(client.get("a\0b").await.unwrap().is_none());
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

        // A NUL in a task, queue or unique key is refused on every backend alike.
        let nul = |task: &str, queue: Option<&str>, key: Option<&str>| {
            job(task, json!([])).options(JobOptions {
                queue: queue.map(str::to_owned),
                unique_key: key.map(str::to_owned),
                ..Default::default()
            })
        };
        for (bad, field) in [
            (nul("a\0b", None, None), "task name"),
            (nul("t", Some("q\0"), None), "queue name"),
            (nul("t", None, Some("\0k")), "unique_key"),
        ] {
            let err = client
                .enqueue(vec![job("ok", json!([])), bad])
                .await
                .unwrap_err();
            assert!(matches!(err, CoreError::Config(_)), "{err}");
            assert!(err.to_string().starts_with(field), "{err}");
        }
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
        // Counts handler starts: "claimed" (status running) is not yet "started".
        let started = Arc::new(AtomicU32::new(0));
        let seen = started.clone();
        let handler = Arc::new(FnHandler(move |job: ClaimedJob| {
            seen.fetch_add(1, Ordering::SeqCst);
            async move {
                let ms = job.args[0].as_u64().unwrap();
                tokio::time::sleep(Duration::from_millis(ms)).await;
                TaskOutcome::Success(json!(ms))
            }
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
        while started.load(Ordering::SeqCst) < 1 {
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
        while started.load(Ordering::SeqCst) < 2 {
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
        // Rescued at the live worker's next heartbeat (5 s), or by another test's worker
        // on the same database before that.
        let rec = client
            .wait(&ids[0].id, Some(Duration::from_secs(30)))
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

// Added with the Redis store: semantics every backend shares that the tests above
// leave open (full-range priority, unique keys after finish, counts, leases, purge),
// then Redis-only checks.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_spans_the_i32_range_across_queues() {
    let (_dir, clients) = clients().await;
    for client in clients {
        let other = unique_queue();
        let now = spikard_tasks::time::now_ms();
        let order = Arc::new(Mutex::new(Vec::<String>::new()));
        let o = order.clone();
        let handler = Arc::new(FnHandler(move |job: ClaimedJob| {
            let label = job.args[0].as_str().unwrap().to_owned();
            o.lock().unwrap().push(label);
            std::future::ready(TaskOutcome::Success(Value::Null))
        }));
        let spec: [(&str, i32, bool, Option<i64>); 8] = [
            ("min", i32::MIN, false, None),
            ("zero-new", 0, false, Some(now - 1_000)),
            ("max-1", i32::MAX - 1, false, None),
            ("neg", -1, true, None),
            ("min+1", i32::MIN + 1, true, None),
            ("max", i32::MAX, true, None),
            ("zero-old", 0, true, Some(now - 2_000)),
            ("pos", 1, false, None),
        ];
        let jobs = spec
            .iter()
            .map(|(label, priority, in_other, run_at_ms)| {
                job("p", json!([label])).options(JobOptions {
                    priority: Some(*priority),
                    run_at_ms: *run_at_ms,
                    queue: in_other.then(|| other.clone()),
                    ..Default::default()
                })
            })
            .collect();
        let ids = client.enqueue(jobs).await.unwrap();
        let mut opts = WorkerOptions::from_config(client.config());
        opts.concurrency = 1;
        opts.queues.push(other);
        let mut worker = spawn_worker(&client, handler, opts).unwrap();
        for e in &ids {
            client
                .wait(&e.id, Some(Duration::from_secs(10)))
                .await
                .unwrap()
                .unwrap();
        }
        worker.stop().await.unwrap();
        assert_eq!(
            *order.lock().unwrap(),
            ["max", "max-1", "pos", "zero-old", "zero-new", "neg", "min+1", "min"],
            "{}",
            client.config().url
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unique_key_is_per_queue_and_free_again_once_finished() {
    let (_dir, clients) = clients().await;
    for client in clients {
        let url = client.config().url.clone();
        let keyed = |queue: Option<String>| {
            job("u", json!([])).options(JobOptions {
                unique_key: Some("k".into()),
                queue,
                ..Default::default()
            })
        };
        let a = client.enqueue(vec![keyed(None)]).await.unwrap().remove(0);
        assert!(a.created, "{url}");
        let elsewhere = client
            .enqueue(vec![keyed(Some(unique_queue()))])
            .await
            .unwrap()
            .remove(0);
        assert!(elsewhere.created && elsewhere.id != a.id, "{url}");
        let mut worker = spawn_worker(
            &client,
            echo_handler(),
            WorkerOptions::from_config(client.config()),
        )
        .unwrap();
        let done = client
            .wait(&a.id, Some(Duration::from_secs(10)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(done.status, JobStatus::Succeeded, "{url}");
        worker.stop().await.unwrap();

        let b = client.enqueue(vec![keyed(None)]).await.unwrap().remove(0);
        assert!(b.created && b.id != a.id, "{url}: key freed by success");
        assert!(client.cancel(&b.id).await.unwrap());
        let c = client.enqueue(vec![keyed(None)]).await.unwrap().remove(0);
        assert!(c.created && c.id != b.id, "{url}: key freed by cancel");
        let d = client.enqueue(vec![keyed(None)]).await.unwrap().remove(0);
        assert!(
            !d.created && d.id == c.id,
            "{url}: key held by a pending job"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_track_every_state() {
    let (_dir, clients) = clients().await;
    for client in clients {
        let url = client.config().url.clone();
        let later = || JobOptions {
            delay: Some(60.0),
            ..Default::default()
        };
        let attempts = |n| JobOptions {
            max_attempts: Some(n),
            ..Default::default()
        };
        let ids = client
            .enqueue(vec![
                job("ok", json!([])),
                job("ok", json!([])),
                job("bad", json!([])).options(attempts(1)),
                job("again", json!([])).options(attempts(3)),
                job("ok", json!([])).options(later()),
                job("ok", json!([])).options(later()),
            ])
            .await
            .unwrap();
        let counts = client.counts(None).await.unwrap();
        assert_eq!((counts.pending, counts.scheduled), (4, 2), "{url}");
        assert!(client.cancel(&ids[5].id).await.unwrap());
        let handler = Arc::new(FnHandler(|job: ClaimedJob| {
            std::future::ready(match job.task.as_str() {
                "ok" => TaskOutcome::Success(Value::Null),
                "bad" => TaskOutcome::fail("RuntimeError: bad"),
                _ => TaskOutcome::Retry {
                    after: Duration::from_secs(60),
                    reason: None,
                },
            })
        }));
        let mut worker = spawn_worker(
            &client,
            handler,
            WorkerOptions::from_config(client.config()),
        )
        .unwrap();
        for e in &ids[..3] {
            client
                .wait(&e.id, Some(Duration::from_secs(10)))
                .await
                .unwrap()
                .unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while client.get(&ids[3].id).await.unwrap().unwrap().status != JobStatus::Retrying {
            assert!(Instant::now() < deadline, "{url}: retry never written");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        worker.stop().await.unwrap();
        assert_eq!(
            client.counts(None).await.unwrap(),
            spikard_tasks::QueueCounts {
                pending: 0,
                scheduled: 1,
                running: 0,
                retrying: 1,
                succeeded: 2,
                failed: 1,
                cancelled: 1,
            },
            "{url}"
        );
    }
}

/// Store-level lease rules (a second handle on the same database, so not `memory://`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_cancel_heartbeat_release_and_rescue() {
    use spikard_tasks::Completion;
    let dir = tempfile::tempdir().unwrap();
    for url in urls(&dir).into_iter().filter(|u| u != "memory://") {
        let client = TaskQueueClient::connect(config(url.clone())).await.unwrap();
        let store = spikard_tasks::store::open(&url).await.unwrap();
        let queues = [client.config().queue.clone()];
        let now = spikard_tasks::time::now_ms();
        // Purge is global: clear what earlier runs left behind first.
        store.purge_finished(now - 60_000, 1000).await.unwrap();
        let one = JobOptions {
            max_attempts: Some(1),
            ..Default::default()
        };
        let rows = vec![
            client.resolve(job("a", json!([])), now).unwrap(),
            client.resolve(job("b", json!([])), now).unwrap(),
            client
                .resolve(job("c", json!([])).options(one), now)
                .unwrap(),
        ];
        let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        store.enqueue(rows).await.unwrap();
        let worker = format!("w-{}", unique_queue());
        let lease = Duration::from_secs(60);
        let claimed = store.claim(&queues, &worker, 10, lease).await.unwrap();
        let mut got: Vec<String> = claimed.iter().map(|j| j.id.clone()).collect();
        got.sort();
        assert_eq!(got, ids, "{url}");
        assert!(store
            .claim(&queues, &worker, 10, lease)
            .await
            .unwrap()
            .is_empty());
        let c = claimed.iter().find(|j| j.id == ids[2]).unwrap().clone();

        // Cancelling a running job only asks; the heartbeat reports it.
        assert!(store.cancel(&ids[0]).await.unwrap(), "{url}");
        assert_eq!(
            store.heartbeat(&worker, &ids, lease).await.unwrap(),
            [ids[0].clone()]
        );
        // Release gives a job back without counting the attempt; others' jobs are untouched.
        assert_eq!(store.release("someone-else", None).await.unwrap(), 0);
        let b_only = [ids[1].clone()];
        assert_eq!(store.release(&worker, Some(&b_only)).await.unwrap(), 1);
        let b = store.get(&ids[1]).await.unwrap().unwrap();
        assert_eq!(
            (b.status, b.attempts, b.started_at_ms),
            (JobStatus::Pending, 0, None)
        );
        let again = store.claim(&queues, &worker, 10, lease).await.unwrap();
        assert_eq!((again.len(), again[0].attempt), (1, 1), "{url}");
        // Outcomes of another worker or attempt are not written.
        let ok = || Completion::Succeeded(json!(1));
        assert_eq!(
            store
                .complete("someone-else", vec![(c.clone(), ok())])
                .await
                .unwrap(),
            0
        );
        let mut wrong = c.clone();
        wrong.attempt = 2;
        assert_eq!(
            store.complete(&worker, vec![(wrong, ok())]).await.unwrap(),
            0
        );

        // a and c started (b was only claimed); a claim itself records no start.
        assert_eq!(
            store.get(&ids[0]).await.unwrap().unwrap().started_at_ms,
            None
        );
        let marks = [(ids[0].clone(), now + 1), (ids[2].clone(), now + 2)];
        assert_eq!(store.mark_started(&worker, &marks).await.unwrap(), 2);
        assert_eq!(store.mark_started("someone-else", &marks).await.unwrap(), 0);
        let a = store.get(&ids[0]).await.unwrap().unwrap();
        assert_eq!(a.started_at_ms, Some(now + 1), "{url}");

        // The lease lapses: a retries, c has no attempts left and fails, b never started
        // and gets its attempt back.
        store
            .heartbeat(&worker, &ids, Duration::ZERO)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        // Rescue is global per database: another test's worker may rescue these jobs
        // first, so what is asserted is their state afterwards, not who rescued them.
        store.rescue_expired(1000).await.unwrap();
        let a = store.get(&ids[0]).await.unwrap().unwrap();
        assert_eq!((a.status, a.attempts), (JobStatus::Retrying, 1), "{url}");
        assert_eq!(a.errors[0].error, spikard_tasks::store::LOST, "{url}");
        let b = store.get(&ids[1]).await.unwrap().unwrap();
        assert_eq!((b.status, b.attempts), (JobStatus::Pending, 0), "{url}");
        assert_eq!(
            b.errors[0].error,
            spikard_tasks::store::LOST_UNSTARTED,
            "{url}"
        );
        let failed = store.get(&ids[2]).await.unwrap().unwrap();
        assert_eq!(failed.status, JobStatus::Failed, "{url}");
        assert!(failed.finished_at_ms.is_some() && failed.errors.len() == 1);
        let counts = store.counts(&queues[0]).await.unwrap();
        assert_eq!(
            (
                counts.pending,
                counts.retrying,
                counts.failed,
                counts.running
            ),
            (1, 1, 1, 0),
            "{url}"
        );
        // A late outcome after the rescue is ignored, and the worker holds nothing now.
        assert_eq!(store.complete(&worker, vec![(c, ok())]).await.unwrap(), 0);
        assert!(store
            .heartbeat(&worker, &ids, lease)
            .await
            .unwrap()
            .is_empty());

        // A claim the worker never heard of (its reply was lost) is not renewed by the
        // heartbeat: its lease runs out and the job is rescued.
        let d = client
            .resolve(job("d", json!([])), spikard_tasks::time::now_ms())
            .unwrap();
        let d_id = d.id.clone();
        store.enqueue(vec![d]).await.unwrap();
        let short = Duration::from_millis(50);
        let lost = store.claim(&queues, &worker, 10, short).await.unwrap();
        assert!(lost.iter().any(|j| j.id == d_id), "{url}");
        store.heartbeat(&worker, &[], lease).await.unwrap();
        tokio::time::sleep(Duration::from_millis(120)).await;
        store.rescue_expired(1000).await.unwrap(); // or another test's maintenance did
        let d = store.get(&d_id).await.unwrap().unwrap();
        assert_eq!((d.status, d.attempts), (JobStatus::Pending, 0), "{url}");
        // Rescued unstarted twice at the same attempt: the second time it counts, so a
        // job that kills its worker at once cannot run forever.
        let again = store.claim(&queues, &worker, 10, short).await.unwrap();
        assert!(
            again.iter().any(|j| j.id == d_id && j.attempt == 1),
            "{url}"
        );
        tokio::time::sleep(Duration::from_millis(120)).await;
        store.rescue_expired(1000).await.unwrap(); // or another test's maintenance did
        let d = store.get(&d_id).await.unwrap().unwrap();
        assert_eq!((d.status, d.attempts), (JobStatus::Retrying, 1), "{url}");
        assert_eq!(d.errors.len(), 2, "{url}");
        assert_eq!(d.errors[1].error, spikard_tasks::store::LOST, "{url}");
    }
}

/// `purge_finished` is global, so it runs only where this test owns the database: a
/// private SQLite file and a Redis database index no other test uses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_deletes_only_finished_jobs() {
    use spikard_tasks::Completion;
    let dir = tempfile::tempdir().unwrap();
    #[allow(unused_mut)]
    let mut targets = vec![format!(
        "sqlite:///{}",
        dir.path().join("purge.db").display()
    )];
    #[cfg(feature = "redis")]
    if let Some(base) = urls(&dir).into_iter().find(|u| u.starts_with("redis")) {
        let mut own = url::Url::parse(&base).unwrap();
        own.set_path("/15");
        targets.push(own.to_string());
    }
    for url in targets {
        let client = TaskQueueClient::connect(config(url.clone())).await.unwrap();
        let store = spikard_tasks::store::open(&url).await.unwrap();
        let queues = [client.config().queue.clone()];
        let now = spikard_tasks::time::now_ms();
        // Purge is global: clear what earlier runs left behind first.
        store.purge_finished(now - 60_000, 1000).await.unwrap();
        let rows: Vec<_> = (0..3)
            .map(|i| client.resolve(job("x", json!([i])), now).unwrap())
            .collect();
        let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        store.enqueue(rows).await.unwrap();
        let worker = format!("w-{}", unique_queue());
        let claimed = store
            .claim(&queues, &worker, 10, Duration::from_secs(60))
            .await
            .unwrap();
        let done: Vec<_> = claimed
            .into_iter()
            .filter(|j| j.id != ids[2])
            .map(|j| (j, Completion::Succeeded(json!("r"))))
            .collect();
        assert_eq!(store.complete(&worker, done).await.unwrap(), 2);
        assert_eq!(
            store.purge_finished(now - 60_000, 1000).await.unwrap(),
            0,
            "{url}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
        let cutoff = spikard_tasks::time::now_ms();
        assert!(
            store.purge_finished(cutoff, 1000).await.unwrap() >= 2,
            "{url}"
        );
        assert!(store.get(&ids[0]).await.unwrap().is_none(), "{url}");
        assert!(store.get(&ids[1]).await.unwrap().is_none(), "{url}");
        assert_eq!(
            store.get(&ids[2]).await.unwrap().unwrap().status,
            JobStatus::Running
        );
        let counts = store.counts(&queues[0]).await.unwrap();
        assert_eq!((counts.succeeded, counts.running), (0, 1), "{url}");
        // Leave nothing unfinished behind (a later run purges it).
        store.release(&worker, None).await.unwrap();
        assert!(store.cancel(&ids[2]).await.unwrap());
    }
}

#[cfg(feature = "redis")]
fn redis_url(dir: &tempfile::TempDir) -> Option<String> {
    urls(dir).into_iter().find(|u| u.starts_with("redis"))
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_corrupt_job_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = redis_url(&dir) else { return };
    let client = TaskQueueClient::connect(config(url.clone())).await.unwrap();
    let first = JobOptions {
        priority: Some(10),
        ..Default::default()
    };
    let ids = client
        .enqueue(vec![
            job("bad", json!([1])).options(first),
            job("good", json!([2])),
        ])
        .await
        .unwrap();
    let raw = redis::Client::open(url.as_str()).unwrap();
    let mut conn = raw.get_multiplexed_async_connection().await.unwrap();
    let key = format!("spikard:job:{}", ids[0].id);
    let () = redis::cmd("HSET")
        .arg(&key)
        .arg("args")
        .arg("{not json")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        client.get(&ids[0].id).await.is_err(),
        "corruption is reported"
    );
    let mut worker = spawn_worker(
        &client,
        echo_handler(),
        WorkerOptions::from_config(client.config()),
    )
    .unwrap();
    let good = client
        .wait(&ids[1].id, Some(Duration::from_secs(10)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(good.status, JobStatus::Succeeded);
    worker.stop().await.unwrap();
    let (status, errors): (String, String) = redis::cmd("HMGET")
        .arg(&key)
        .arg("status")
        .arg("errors")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(status, "failed");
    assert!(errors.contains("args is not JSON"), "{errors}");
    let counts = client.counts(None).await.unwrap();
    assert_eq!((counts.failed, counts.succeeded, counts.running), (1, 1, 0));
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_pubsub_wakes_an_idle_worker_of_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = redis_url(&dir) else { return };
    let mut cfg = config(url);
    cfg.poll_interval = 30.0;
    // Two clients share no in-process wake-up: only Redis pub/sub can start the job.
    let consumer = TaskQueueClient::connect(cfg.clone()).await.unwrap();
    let producer = TaskQueueClient::connect(cfg).await.unwrap();
    let mut worker = spawn_worker(
        &consumer,
        echo_handler(),
        WorkerOptions::from_config(consumer.config()),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ids = producer.enqueue(vec![job("x", json!([]))]).await.unwrap();
    let rec = producer
        .wait(&ids[0].id, Some(Duration::from_secs(5)))
        .await
        .unwrap()
        .expect("an idle worker was not woken");
    let latency = rec.started_at_ms.unwrap() - rec.enqueued_at_ms;
    assert!(latency < 1_000, "started {latency} ms after enqueue");
    worker.stop().await.unwrap();
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_errors_never_echo_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let Some(base) = redis_url(&dir) else { return };
    let host = url::Url::parse(&base).unwrap();
    let addr = format!(
        "{}:{}",
        host.host_str().unwrap(),
        host.port().unwrap_or(6379)
    );
    // The server needs no password (AUTH fails) and speaks no TLS (the handshake fails).
    for url in [
        format!("redis://:s3cr%23et@{addr}/0"),
        format!("rediss://user:s3cr%23et@{addr}/0"),
    ] {
        let Err(err) = spikard_tasks::store::open(&url).await else {
            continue;
        };
        let text = err.to_string();
        assert!(!text.contains("s3cr"), "{text}");
    }
}

/// A private `redis-server` (skipped when none is installed) is killed and restarted
/// under a running worker: the store reconnects, the wake-up listener resubscribes,
/// and jobs from before (kept by the append-only file) and after both finish.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_worker_survives_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let start = || {
        std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
    };
    let Ok(mut server) = start() else {
        eprintln!("skipping: no redis-server binary");
        return;
    };
    let url = format!("redis://127.0.0.1:{port}/0");
    let up = |url: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !common::reachable(url) {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    up(&url);
    let mut cfg = config(url.clone());
    cfg.poll_interval = 30.0;
    let consumer = TaskQueueClient::connect(cfg.clone()).await.unwrap();
    let producer = TaskQueueClient::connect(cfg).await.unwrap();
    let mut worker = spawn_worker(
        &consumer,
        echo_handler(),
        WorkerOptions::from_config(consumer.config()),
    )
    .unwrap();
    let before = producer.enqueue(vec![job("x", json!([1]))]).await.unwrap();
    let rec = producer
        .wait(&before[0].id, Some(Duration::from_secs(10)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.status, JobStatus::Succeeded);

    server.kill().unwrap();
    server.wait().unwrap();
    server = start().unwrap();
    up(&url);
    // The first command on a dropped connection may fail; the manager then reconnects.
    let deadline = Instant::now() + Duration::from_secs(15);
    let after = loop {
        match producer.enqueue(vec![job("x", json!([2]))]).await {
            Ok(ids) => break ids,
            Err(e) => assert!(Instant::now() < deadline, "never reconnected: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let rec = producer
        .wait(&after[0].id, Some(Duration::from_secs(15)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.status, JobStatus::Succeeded);
    let kept = producer.get(&before[0].id).await.unwrap().unwrap();
    assert_eq!(kept.status, JobStatus::Succeeded);
    worker.stop().await.unwrap();
    server.kill().unwrap();
    server.wait().unwrap();
}

/// Three schedulers on one backend enqueue exactly one job per tick.
#[cfg(feature = "cron")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_schedulers_fire_each_tick_once() {
    use spikard_tasks::cron::CronSchedule;
    use spikard_tasks::scheduler::spawn_scheduler;

    let dir = tempfile::tempdir().unwrap();
    for url in urls(&dir) {
        if url == "memory://" {
            continue; // one process only; covered by the file backends
        }
        let cfg = config(url.clone());
        let queue = cfg.queue.clone();
        let clients = [
            TaskQueueClient::connect(cfg.clone()).await.unwrap(),
            TaskQueueClient::connect(cfg.clone()).await.unwrap(),
            TaskQueueClient::connect(cfg.clone()).await.unwrap(),
        ];
        let name = format!("every-second-{queue}");
        let schedule = CronSchedule {
            name: name.clone(),
            expression: "* * * * * *".into(),
            task: "tick".into(),
            args: json!([]),
            kwargs: json!({}),
            timezone: "UTC".into(),
            enabled: true,
            missed: Default::default(),
            options: JobOptions {
                queue: Some(queue.clone()),
                ..Default::default()
            },
        };
        for c in &clients {
            c.save_schedule(&schedule).await.unwrap(); // idempotent
        }
        let start = spikard_tasks::time::now_ms();
        let mut schedulers: Vec<_> = clients
            .iter()
            .map(|c| spawn_scheduler(c, Duration::from_millis(200)))
            .collect();
        tokio::time::sleep(Duration::from_millis(4200)).await;
        for s in &mut schedulers {
            s.stop().await;
        }
        let end = spikard_tasks::time::now_ms();
        let counts = clients[0].counts(None).await.unwrap();
        let jobs = counts.pending;
        // Ticks are whole seconds in (start, end]; allow the one that may straddle stop.
        let ticks = (end / 1000 - start / 1000) as u64;
        assert!(
            jobs >= ticks.saturating_sub(1) && jobs <= ticks,
            "{url}: {jobs} jobs for {ticks} ticks"
        );
        let info = clients[0].schedules().await.unwrap();
        let mine = info.iter().find(|s| s.schedule.name == name).unwrap();
        assert!(mine.next_run_ms.is_some());
        assert!(clients[0].remove_schedule(&name).await.unwrap());
    }
}

/// Server stores read the database's clock: on this machine it agrees with ours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_read_the_database_clock() {
    let dir = tempfile::tempdir().unwrap();
    for url in urls(&dir) {
        let store = spikard_tasks::store::open(&url).await.unwrap();
        let offset = store.sync_clock().await.unwrap();
        assert!(offset.abs() < 2_000, "{url}: offset {offset} ms");
        let drift = store.now_ms() - spikard_tasks::time::now_ms();
        assert!((drift - offset).abs() < 50, "{url}: {drift} vs {offset}");
    }
}

/// A handler reports its job's progress through the client: out-of-range, non-finite
/// or over-long reports are refused with a `Config` error and write nothing, the last
/// report stays with the finished job, and a finished or unknown job takes none. The
/// claimed job carries its enqueue time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_report_progress_and_bad_reports_are_refused() {
    let (_dir, clients) = clients().await;
    for client in clients {
        let refused = Arc::new(Mutex::new(Vec::<String>::new()));
        let (c, r) = (client.clone(), refused.clone());
        let handler = Arc::new(FnHandler(move |job: ClaimedJob| {
            let (c, r) = (c.clone(), r.clone());
            async move {
                let long = "é".repeat(1001);
                let bad: [(f64, Option<&str>); 7] = [
                    (f64::NAN, None),
                    (f64::INFINITY, None),
                    (f64::NEG_INFINITY, None),
                    (-0.001, None),
                    (1.001, None),
                    (0.5, Some(long.as_str())),
                    (0.5, Some("a\0b")),
                ];
                for (fraction, message) in bad {
                    let answer = match c.set_progress(&job.id, fraction, message).await {
                        Err(CoreError::Config(text)) => text,
                        other => format!("not refused: {other:?}"),
                    };
                    r.lock().unwrap().push(answer);
                }
                let longest = "é".repeat(1000);
                let first = c.set_progress(&job.id, 0.2, Some(&longest)).await;
                let last = c.set_progress(&job.id, 0.8, Some("step 4 of 5")).await;
                TaskOutcome::Success(json!({
                    "enqueued_at_ms": job.enqueued_at_ms,
                    "set": [first.ok(), last.ok()],
                }))
            }
        }));
        let id = client.enqueue(vec![job("p", json!([]))]).await.unwrap()[0]
            .id
            .clone();
        let opts = WorkerOptions::from_config(client.config());
        let mut worker = spawn_worker(&client, handler, opts).unwrap();
        let rec = client
            .wait(&id, Some(Duration::from_secs(10)))
            .await
            .unwrap()
            .unwrap();
        worker.stop().await.unwrap();
        assert_eq!(rec.status, JobStatus::Succeeded, "{rec:?}");
        let expected = json!({"enqueued_at_ms": rec.enqueued_at_ms, "set": [true, true]});
        assert_eq!(rec.result, Some(expected));
        let refused = refused.lock().unwrap().clone();
        assert_eq!(refused.len(), 7);
        for (text, start) in refused.iter().zip([
            "progress must be",
            "progress must be",
            "progress must be",
            "progress must be",
            "progress must be",
            "progress message must be at most 1000",
            "progress message must not contain a NUL",
        ]) {
            assert!(text.starts_with(start), "{text}");
        }
        let progress = rec.progress.expect("the last report");
        assert_eq!(progress["fraction"], json!(0.8));
        assert_eq!(progress["message"], json!("step 4 of 5"));
        let at = progress["at_ms"].as_i64().expect("at_ms");
        assert!(rec.enqueued_at_ms <= at && at <= rec.finished_at_ms.unwrap());
        // Finished, unknown and impossible ids take no report.
        for other in [id.as_str(), "no-such-id", "a\0b"] {
            assert!(!client.set_progress(other, 1.0, None).await.unwrap());
        }
        let again = client.get(&id).await.unwrap().unwrap();
        assert_eq!(again.progress, Some(progress));
    }
}

/// A job enqueued with a trace context reaches its handler with it (a job without one
/// with none) and its record keeps it; a trace context longer than 512 characters, not
/// ASCII or with a NUL is refused with a `Config` error naming the field, and nothing
/// of its batch is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_contexts_reach_the_handler_and_bad_ones_are_refused() {
    let trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01;congo=t61rcWkgMzE";
    let traced = |text: &str| {
        job("t", json!([])).options(JobOptions {
            trace_context: Some(text.to_owned()),
            ..JobOptions::default()
        })
    };
    let (_dir, clients) = clients().await;
    for client in clients {
        let long = "a".repeat(513);
        for bad in [long.as_str(), "00-abc\0def", "00-café"] {
            let batch = vec![job("t", json!([])), traced(bad)];
            match client.enqueue(batch).await {
                Err(CoreError::Config(text)) => {
                    assert!(text.starts_with("trace_context must"), "{text}")
                }
                other => panic!("not refused: {other:?}"),
            }
        }
        let counts = client.counts(None).await.unwrap();
        assert_eq!(counts.unfinished(), 0, "nothing written: {counts:?}");

        let longest = format!("{trace};{}", "k".repeat(512 - trace.len() - 1));
        let ids: Vec<String> = client
            .enqueue(vec![traced(trace), job("t", json!([])), traced(&longest)])
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        let handler = Arc::new(FnHandler(|job: ClaimedJob| {
            std::future::ready(TaskOutcome::Success(json!(job.trace_context)))
        }));
        let opts = WorkerOptions::from_config(client.config());
        let mut worker = spawn_worker(&client, handler, opts).unwrap();
        for (id, expected) in ids.iter().zip([Some(trace), None, Some(longest.as_str())]) {
            let rec = client
                .wait(id, Some(Duration::from_secs(10)))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(rec.status, JobStatus::Succeeded, "{rec:?}");
            assert_eq!(rec.result, Some(json!(expected)));
            assert_eq!(rec.trace_context.as_deref(), expected);
        }
        worker.stop().await.unwrap();
    }
}
