//! The operations surface through the engine's client and real workers, on every
//! backend: the worker registry, pause and resume, the paged job list and the bulk
//! operations that loop over more than one batch.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
mod common;
use common::urls;
use spikard_tasks::store::OPS_BATCH;
use spikard_tasks::{
    spawn_worker, Backoff, ClaimedJob, CoreError, FnHandler, JobFilter, JobOptions, JobStatus,
    NewJob, TaskOutcome, TaskQueueClient, TaskQueueConfig, WorkerOptions,
};
use tokio::sync::watch;

const WAIT: Duration = Duration::from_secs(20);

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
}

async fn clients() -> (tempfile::TempDir, Vec<TaskQueueClient>) {
    let dir = tempfile::tempdir().unwrap();
    let mut out = Vec::new();
    for url in urls(&dir) {
        let config = TaskQueueConfig {
            url,
            queue: unique("ops"),
            concurrency: 4,
            poll_interval: 0.05,
            lease: 2.0,
            heartbeat: 0.1,
            drain_timeout: 5.0,
            backoff: Backoff {
                initial: 0.01,
                max: 0.05,
                multiplier: 2.0,
                jitter: 0.0,
            },
            ..TaskQueueConfig::default()
        };
        out.push(TaskQueueClient::connect(config).await.unwrap());
    }
    (dir, out)
}

fn kind(client: &TaskQueueClient) -> &'static str {
    spikard_tasks::url::BackendUrl::parse(&client.config().url)
        .unwrap()
        .kind()
}

fn in_queue(task: &str, queue: &str) -> NewJob {
    NewJob::new(task).options(JobOptions {
        queue: Some(queue.to_owned()),
        ..JobOptions::default()
    })
}

fn queue_filter(queue: &str) -> JobFilter {
    JobFilter {
        queue: Some(queue.to_owned()),
        ..JobFilter::default()
    }
}

/// Polls `check` until it is true; panics with `what` after [`WAIT`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Succeeds, but a job of task `block` only once `gate` turns true.
#[allow(clippy::type_complexity)]
fn gated_handler(
    gate: watch::Receiver<bool>,
) -> Arc<
    FnHandler<impl Fn(ClaimedJob) -> std::pin::Pin<Box<dyn Future<Output = TaskOutcome> + Send>>>,
> {
    Arc::new(FnHandler(move |job: ClaimedJob| {
        let mut gate = gate.clone();
        Box::pin(async move {
            if job.task == "block" {
                let _ = gate.wait_for(|open| *open).await;
            }
            if job.task == "fail" {
                return TaskOutcome::fail("RuntimeError: no");
            }
            TaskOutcome::Success(json!(job.task))
        }) as std::pin::Pin<Box<dyn Future<Output = TaskOutcome> + Send>>
    }))
}

fn worker_options(
    client: &TaskQueueClient,
    queues: &[&str],
    host: &str,
    n: usize,
) -> WorkerOptions {
    let mut options = WorkerOptions::from_config(client.config());
    options.queues = queues.iter().map(|q| (*q).to_owned()).collect();
    options.host = host.to_owned();
    options.concurrency = n;
    options.name = unique("worker");
    options
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_register_report_held_jobs_and_leave_when_stopped() {
    let (_dir, clients) = clients().await;
    for client in clients {
        let backend = kind(&client);
        let (q1, q2) = (unique("q1"), unique("q2"));
        let (open, gate) = watch::channel(false);
        let a_opts = worker_options(&client, &[&q1], "host-a", 2);
        let b_opts = worker_options(&client, &[&q2, &q1], "host-b", 3);
        let (a_name, b_name) = (a_opts.name.clone(), b_opts.name.clone());
        let mut a = spawn_worker(&client, gated_handler(gate.clone()), a_opts).unwrap();
        let mut b = spawn_worker(&client, gated_handler(gate), b_opts).unwrap();

        eventually(&format!("{backend}: both workers listed"), || async {
            let names: HashSet<String> = client
                .workers()
                .await
                .unwrap()
                .into_iter()
                .map(|w| w.name)
                .collect();
            names.contains(&a_name) && names.contains(&b_name)
        })
        .await;
        let listed = client.workers().await.unwrap();
        let wa = listed.iter().find(|w| w.name == a_name).unwrap();
        let wb = listed.iter().find(|w| w.name == b_name).unwrap();
        assert_eq!(wa.host, "host-a", "{backend}");
        assert_eq!(wb.host, "host-b", "{backend}");
        assert_eq!(wa.pid, std::process::id(), "{backend}");
        assert_eq!(wa.queues, vec![q1.clone()], "{backend}");
        assert_eq!(wb.queues, vec![q2.clone(), q1.clone()], "{backend}");
        assert_eq!((wa.concurrency, wb.concurrency), (2, 3), "{backend}");
        assert_eq!(wa.heartbeat_interval_ms, 100, "{backend}");
        assert_eq!(wa.version, env!("CARGO_PKG_VERSION"), "{backend}");
        assert!(wa.started_at_ms <= wa.heartbeat_at_ms, "{backend}");

        // A job held in its handler shows in the held count of the worker running it.
        let id = client.enqueue(vec![in_queue("block", &q2)]).await.unwrap()[0]
            .id
            .clone();
        eventually(&format!("{backend}: worker b holds the job"), || async {
            let listed = client.workers().await.unwrap();
            listed.iter().any(|w| w.name == b_name && w.jobs_held == 1)
        })
        .await;
        let job = client.get(&id).await.unwrap().unwrap();
        assert_eq!(job.status, JobStatus::Running, "{backend}");
        open.send(true).unwrap();
        let done = client.wait(&id, Some(WAIT)).await.unwrap().unwrap();
        assert_eq!(done.status, JobStatus::Succeeded, "{backend}");
        eventually(&format!("{backend}: held count back to 0"), || async {
            let listed = client.workers().await.unwrap();
            listed.iter().any(|w| w.name == b_name && w.jobs_held == 0)
        })
        .await;

        // A stopped worker removes its row: gone at once, the other one stays.
        b.stop().await.unwrap();
        let names: Vec<String> = client
            .workers()
            .await
            .unwrap()
            .into_iter()
            .map(|w| w.name)
            .collect();
        assert!(!names.contains(&b_name), "{backend}: {names:?}");
        assert!(names.contains(&a_name), "{backend}: {names:?}");
        a.stop().await.unwrap();
        let names: Vec<String> = client
            .workers()
            .await
            .unwrap()
            .into_iter()
            .map(|w| w.name)
            .collect();
        assert!(!names.contains(&a_name), "{backend}: {names:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_stops_claims_within_a_poll_interval_and_resume_restarts_them() {
    let (_dir, clients) = clients().await;
    for client in clients {
        let backend = kind(&client);
        let (paused_q, busy_q) = (unique("paused"), unique("busy"));
        let (_open, gate) = watch::channel(false);
        let opts = worker_options(&client, &[&paused_q, &busy_q], "h", 2);
        let mut worker = spawn_worker(&client, gated_handler(gate), opts).unwrap();

        // The worker claims from both queues before the pause.
        let first = client
            .enqueue(vec![in_queue("ok", &paused_q)])
            .await
            .unwrap();
        let done = client
            .wait(&first[0].id, Some(WAIT))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(done.status, JobStatus::Succeeded, "{backend}");

        assert!(client.pause(&paused_q).await.unwrap(), "{backend}");
        assert!(!client.pause(&paused_q).await.unwrap(), "{backend}: twice");
        assert!(
            client.paused().await.unwrap().contains(&paused_q),
            "{backend}"
        );
        let stats = client.stats().await.unwrap();
        let row = stats.queues.iter().find(|q| q.queue == paused_q).unwrap();
        assert!(row.paused, "{backend}");
        // One poll interval (50 ms) and a margin: the worker has re-read the set.
        tokio::time::sleep(Duration::from_millis(300)).await;

        let held = client
            .enqueue(vec![in_queue("ok", &paused_q)])
            .await
            .unwrap();
        let other = client.enqueue(vec![in_queue("ok", &busy_q)]).await.unwrap();
        let ran = client
            .wait(&other[0].id, Some(WAIT))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            ran.status,
            JobStatus::Succeeded,
            "{backend}: other queue drains"
        );
        // Several poll intervals more: the paused queue's job is still waiting.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let waiting = client.get(&held[0].id).await.unwrap().unwrap();
        assert_eq!(
            waiting.status,
            JobStatus::Pending,
            "{backend}: paused queue"
        );

        assert!(client.resume(&paused_q).await.unwrap(), "{backend}");
        assert!(!client.resume(&paused_q).await.unwrap(), "{backend}: twice");
        assert!(
            !client.paused().await.unwrap().contains(&paused_q),
            "{backend}"
        );
        let ran = client.wait(&held[0].id, Some(WAIT)).await.unwrap().unwrap();
        assert_eq!(ran.status, JobStatus::Succeeded, "{backend}: resumed");
        worker.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_jobs_pages_through_every_job_exactly_once() {
    let (_dir, clients) = clients().await;
    for client in clients {
        let backend = kind(&client);
        let queue = unique("list");
        let mut enqueued = HashSet::new();
        // Five enqueues of 500: ties on enqueue time within each, distinct times between.
        for round in 0..5 {
            let jobs = (0..500)
                .map(|i| {
                    in_queue(if i % 2 == 0 { "even" } else { "odd" }, &queue)
                        .args(json!([round, i]))
                })
                .collect();
            for e in client.enqueue(jobs).await.unwrap() {
                enqueued.insert(e.id);
            }
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        let mut seen = Vec::new();
        let mut pages = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = client
                .list_jobs(queue_filter(&queue), 1000, cursor.as_deref())
                .await
                .unwrap();
            pages.push(page.jobs.len());
            seen.extend(page.jobs.iter().map(|j| (j.enqueued_at_ms, j.id.clone())));
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
            assert!(pages.len() < 10, "{backend}: runaway paging");
        }
        assert_eq!(pages, vec![1000, 1000, 500], "{backend}");
        let ids: HashSet<String> = seen.iter().map(|(_, id)| id.clone()).collect();
        assert_eq!(ids.len(), seen.len(), "{backend}: a job listed twice");
        assert_eq!(ids, enqueued, "{backend}");
        let mut sorted = seen.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        assert_eq!(seen, sorted, "{backend}: newest first, then id descending");

        // Filters through the client: a task, and a window of enqueue times.
        let even = JobFilter {
            task: Some("even".into()),
            ..queue_filter(&queue)
        };
        let page = client.list_jobs(even, 1000, None).await.unwrap();
        assert_eq!(page.jobs.len(), 1000, "{backend}");
        assert!(page.next_cursor.is_some(), "{backend}: 1,250 even jobs");
        assert!(page.jobs.iter().all(|j| j.task == "even"), "{backend}");
        // Exactly a page: no next page.
        let mut exact = client
            .list_jobs(queue_filter(&queue), 500, None)
            .await
            .unwrap();
        let first_at = exact.jobs[0].enqueued_at_ms;
        let window = JobFilter {
            since_ms: Some(first_at),
            ..queue_filter(&queue)
        };
        exact = client.list_jobs(window, 500, None).await.unwrap();
        assert_eq!(exact.jobs.len(), 500, "{backend}");
        assert_eq!(
            exact.next_cursor, None,
            "{backend}: a page of exactly the limit"
        );
        let gone = client.cancel_jobs(queue_filter(&queue)).await.unwrap();
        assert_eq!(gone, 2500, "{backend}");
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(
            client
                .purge(queue_filter(&queue), Duration::ZERO)
                .await
                .unwrap(),
            2500,
            "{backend}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_cancel_retry_and_purge_loop_over_batches() {
    let (_dir, clients) = clients().await;
    let total = 2 * OPS_BATCH as u64 + 500;
    for client in clients {
        let backend = kind(&client);
        let queue = unique("bulk");
        let jobs = (0..total)
            .map(|i| in_queue("t", &queue).args(json!([i])))
            .collect();
        client.enqueue(jobs).await.unwrap();

        // Three rounds of cancel: every pending job, none twice.
        assert_eq!(
            client.cancel_jobs(queue_filter(&queue)).await.unwrap(),
            total,
            "{backend}"
        );
        assert_eq!(
            client.cancel_jobs(queue_filter(&queue)).await.unwrap(),
            0,
            "{backend}"
        );
        let counts = client.counts(Some(&queue)).await.unwrap();
        assert_eq!(counts.cancelled, total, "{backend}");

        // Retry narrows the statuses to failed and cancelled: a pending filter matches
        // nothing; then every cancelled job goes back to pending.
        let pending_only = JobFilter {
            statuses: vec![JobStatus::Pending],
            ..queue_filter(&queue)
        };
        assert_eq!(
            client.retry_jobs(pending_only).await.unwrap(),
            0,
            "{backend}"
        );
        assert_eq!(
            client.retry_jobs(queue_filter(&queue)).await.unwrap(),
            total,
            "{backend}"
        );
        let counts = client.counts(Some(&queue)).await.unwrap();
        assert_eq!((counts.pending, counts.cancelled), (total, 0), "{backend}");

        // Purge touches finished jobs only, and only those finished long enough ago.
        assert_eq!(
            client
                .purge(queue_filter(&queue), Duration::ZERO)
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            client.cancel_jobs(queue_filter(&queue)).await.unwrap(),
            total
        );
        let hour = Duration::from_secs(3600);
        assert_eq!(
            client.purge(queue_filter(&queue), hour).await.unwrap(),
            0,
            "{backend}"
        );
        let running_only = JobFilter {
            statuses: vec![JobStatus::Running],
            ..queue_filter(&queue)
        };
        assert_eq!(client.purge(running_only, Duration::ZERO).await.unwrap(), 0);
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(
            client
                .purge(queue_filter(&queue), Duration::ZERO)
                .await
                .unwrap(),
            total,
            "{backend}"
        );
        let counts = client.counts(Some(&queue)).await.unwrap();
        assert_eq!(counts, Default::default(), "{backend}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_one_job_among_siblings_enqueued_together() {
    let (_dir, clients) = clients().await;
    for client in clients {
        let backend = kind(&client);
        let queue = unique("one");
        let (_open, gate) = watch::channel(false);
        // One enqueue: the same task, queue and enqueue time for all three.
        let once = JobOptions {
            queue: Some(queue.clone()),
            max_attempts: Some(1),
            ..JobOptions::default()
        };
        let ids: Vec<String> = client
            .enqueue(
                (0..3)
                    .map(|_| NewJob::new("fail").options(once.clone()))
                    .collect(),
            )
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        let mut worker = spawn_worker(
            &client,
            gated_handler(gate),
            worker_options(&client, &[&queue], "h", 2),
        )
        .unwrap();
        for id in &ids {
            let job = client.wait(id, Some(WAIT)).await.unwrap().unwrap();
            assert_eq!(job.status, JobStatus::Failed, "{backend}");
        }
        worker.stop().await.unwrap();

        assert!(client.retry(&ids[1]).await.unwrap(), "{backend}");
        let again = client.get(&ids[1]).await.unwrap().unwrap();
        assert_eq!(again.status, JobStatus::Pending, "{backend}");
        assert_eq!((again.attempts, again.max_attempts), (0, 1), "{backend}");
        assert_eq!(again.errors.len(), 1, "{backend}: history kept");
        assert_eq!(again.finished_at_ms, None, "{backend}");
        for sibling in [&ids[0], &ids[2]] {
            let job = client.get(sibling).await.unwrap().unwrap();
            assert_eq!(
                job.status,
                JobStatus::Failed,
                "{backend}: only the named job"
            );
        }
        // A filter naming jobs reaches those alone, in the list and in bulk operations.
        let named = JobFilter {
            ids: vec![ids[1].clone(), "no-such-job".into()],
            ..queue_filter(&queue)
        };
        let page = client.list_jobs(named.clone(), 10, None).await.unwrap();
        let listed: Vec<&str> = page.jobs.iter().map(|j| j.id.as_str()).collect();
        assert_eq!(listed, vec![ids[1].as_str()], "{backend}");
        assert_eq!(
            client.cancel_jobs(named.clone()).await.unwrap(),
            1,
            "{backend}"
        );
        let failed = client.counts(Some(&queue)).await.unwrap().failed;
        assert_eq!(failed, 2, "{backend}: the siblings stay failed");
        assert_eq!(client.retry_jobs(named).await.unwrap(), 1, "{backend}");
        // Not failed or cancelled (any more), unknown, or an impossible id: false.
        assert!(!client.retry(&ids[1]).await.unwrap(), "{backend}");
        assert!(!client.retry("no-such-job").await.unwrap(), "{backend}");
        assert!(!client.retry("a\0b").await.unwrap(), "{backend}");
        client.cancel_jobs(queue_filter(&queue)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(
            client
                .purge(queue_filter(&queue), Duration::ZERO)
                .await
                .unwrap(),
            3
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_limits_cursors_windows_and_names_are_config_errors() {
    let (_dir, clients) = clients().await;
    for client in clients {
        let backend = kind(&client);
        let any = JobFilter::default;
        let config_error = |r: Result<_, CoreError>, what: &str| match r {
            Err(CoreError::Config(message)) => message,
            Err(other) => panic!("{backend}: {what}: {other}"),
            Ok(_) => panic!("{backend}: {what}: accepted"),
        };
        for limit in [0, 1001] {
            let m = config_error(
                client.list_jobs(any(), limit, None).await.map(|_| ()),
                "limit",
            );
            assert!(m.contains("limit"), "{m}");
        }
        for cursor in ["", "nope", "12", "x:y", "12:"] {
            let r = client.list_jobs(any(), 10, Some(cursor)).await.map(|_| ());
            let m = config_error(r, cursor);
            assert!(m.contains("malformed cursor"), "{m}");
        }
        let backwards = JobFilter {
            since_ms: Some(10),
            until_ms: Some(5),
            ..JobFilter::default()
        };
        config_error(
            client
                .list_jobs(backwards.clone(), 10, None)
                .await
                .map(|_| ()),
            "window",
        );
        config_error(
            client.purge(backwards, Duration::ZERO).await.map(|_| ()),
            "window",
        );
        config_error(client.pause("").await.map(|_| ()), "empty queue");
        config_error(client.resume("a\0").await.map(|_| ()), "NUL queue");
        let empty_queue = JobFilter {
            queue: Some(String::new()),
            ..JobFilter::default()
        };
        config_error(
            client.cancel_jobs(empty_queue).await.map(|_| ()),
            "empty queue",
        );
        // A well-formed cursor past every job: an empty last page.
        let queue = queue_filter(&unique("none"));
        let page = client.list_jobs(queue, 10, Some("0:0")).await.unwrap();
        assert!(
            page.jobs.is_empty() && page.next_cursor.is_none(),
            "{backend}"
        );
    }
}
