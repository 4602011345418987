//! What only the Redis store promises about its operations (the shared rules are in
//! `store_contract/ops.rs`): the job list's scan budget, every index a purge leaves,
//! jobs of an earlier version indexed at open, stats forgetting emptied queues.
//!
//! Runs against `SPIKARD_TASKS_TEST_REDIS` (default `redis://127.0.0.1:6379/0`); returns
//! early when nothing answers there, unless `SPIKARD_TASKS_REQUIRE_BACKENDS=1`.
#![cfg(feature = "redis")]

use std::sync::Arc;
use std::time::Duration;

use spikard_tasks::job::JobRow;
use spikard_tasks::store::{self, Cursor, JobFilter, Store};
use spikard_tasks::time::now_ms;
use spikard_tasks::{AttemptError, Completion, JobStatus};

/// The database the earlier-version test writes old-style jobs into (no other test uses it).
const OLD_DB: &str = "/12";

fn url() -> Option<String> {
    let url = std::env::var("SPIKARD_TASKS_TEST_REDIS")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/0".to_owned());
    let parsed = url::Url::parse(&url).unwrap();
    let addr = (
        parsed.host_str().unwrap_or("127.0.0.1").to_owned(),
        parsed.port().unwrap_or(6379),
    );
    let up = std::net::ToSocketAddrs::to_socket_addrs(&addr)
        .map(|mut a| {
            a.any(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(1)).is_ok())
        })
        .unwrap_or(false);
    if up {
        return Some(url);
    }
    if std::env::var("SPIKARD_TASKS_REQUIRE_BACKENDS").as_deref() == Ok("1") {
        panic!("no Redis at {url} and SPIKARD_TASKS_REQUIRE_BACKENDS=1");
    }
    eprintln!("skipping: no Redis at {url}");
    None
}

/// A store on the test server and a queue of this test's own, cleaned up afterwards.
struct Fx {
    store: Arc<dyn Store>,
    url: String,
    queue: String,
}

impl Fx {
    async fn open() -> Option<Self> {
        let url = url()?;
        Some(Self {
            store: store::open(&url).await.unwrap(),
            url,
            queue: format!("redis-ops-{}", uuid::Uuid::now_v7().simple()),
        })
    }

    fn row(&self, task: &str, enqueued_at_ms: i64) -> JobRow {
        JobRow {
            id: uuid::Uuid::now_v7().to_string(),
            queue: self.queue.clone(),
            task: task.into(),
            args: "[]".into(),
            kwargs: "{}".into(),
            priority: 0,
            max_attempts: 1,
            run_at_ms: enqueued_at_ms,
            timeout_ms: None,
            unique_key: None,
            enqueued_at_ms,
            trace_context: None,
        }
    }

    fn only_mine(&self) -> JobFilter {
        JobFilter {
            queue: Some(self.queue.clone()),
            ..JobFilter::default()
        }
    }

    async fn conn(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    /// Cancels and purges this test's jobs, then deletes its queue's keys.
    async fn clean(&self) {
        let mine = self.only_mine();
        while self
            .store
            .cancel_batch(&mine, now_ms(), 1000)
            .await
            .unwrap()
            > 0
        {}
        while self
            .store
            .purge_batch(&mine, now_ms() + 1, 1000)
            .await
            .unwrap()
            > 0
        {}
        let mut conn = self.conn().await;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("spikard:q:{}*", self.queue))
            .query_async(&mut conn)
            .await
            .unwrap();
        if !keys.is_empty() {
            redis::cmd("DEL")
                .arg(keys)
                .query_async::<()>(&mut conn)
                .await
                .unwrap();
        }
    }

    /// Claims every ready job of the queue and fails it for good.
    async fn fail_all(&self) -> usize {
        let worker = format!("w-{}", uuid::Uuid::now_v7().simple());
        let jobs = self
            .store
            .claim(
                std::slice::from_ref(&self.queue),
                &worker,
                1000,
                Duration::from_secs(60),
            )
            .await
            .unwrap();
        let n = jobs.len();
        let done = jobs
            .into_iter()
            .map(|j| {
                let error = AttemptError {
                    attempt: j.attempt,
                    error: "boom".into(),
                    traceback: None,
                    at_ms: now_ms(),
                };
                (j, Completion::Failed(error))
            })
            .collect();
        assert_eq!(self.store.complete(&worker, done).await.unwrap(), n);
        n
    }
}

async fn zscore(conn: &mut redis::aio::MultiplexedConnection, key: &str, id: &str) -> Option<f64> {
    redis::cmd("ZSCORE")
        .arg(key)
        .arg(id)
        .query_async(conn)
        .await
        .unwrap()
}

/// A filter matching nothing within the scan budget ends the page early, empty, with a
/// cursor; the next page goes on from there and finds the job. `list_jobs` itself goes
/// on until it has its page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_page_stops_at_the_scan_budget_with_a_cursor_to_go_on_from() {
    let Some(fx) = Fx::open().await else { return };
    let t0 = now_ms() - 10_000;
    let rare = fx.row("rare.task", t0);
    let rare_id = rare.id.clone();
    fx.store.enqueue(vec![rare]).await.unwrap();
    let common: Vec<JobRow> = (0..6000)
        .map(|i| fx.row("common.task", t0 + 1 + i))
        .collect();
    fx.store.enqueue(common).await.unwrap();
    let filter = JobFilter {
        task: Some("rare.task".into()),
        ..fx.only_mine()
    };
    let now = now_ms();

    let first = fx.store.list_page(&filter, None, 10, now).await.unwrap();
    assert!(first.jobs.is_empty(), "{:?}", first.jobs);
    let cursor = first.next.expect("a cursor at the last entry examined");
    assert!(cursor.enqueued_at_ms > t0, "{cursor:?}");
    let second = fx
        .store
        .list_page(&filter, Some(&cursor), 10, now)
        .await
        .unwrap();
    let ids: Vec<&str> = second.jobs.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, [rare_id.as_str()]);

    let all = fx.store.list_jobs(&filter, None, 10, now).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].id, rare_id);
    fx.clean().await;
}

/// Jobs enqueued in one batch share their enqueue time: pages of them follow the id
/// order (descending), never repeating or skipping one, also when the job at the cursor
/// was purged between pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_through_equal_enqueue_times_by_id_even_when_the_cursor_job_is_gone() {
    let Some(fx) = Fx::open().await else { return };
    let at = now_ms() - 5_000;
    let rows: Vec<JobRow> = (0..700).map(|_| fx.row("same.time", at)).collect();
    let mut want: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    want.sort();
    want.reverse();
    fx.store.enqueue(rows).await.unwrap();
    let filter = fx.only_mine();
    let now = now_ms();
    let first = fx.store.list_page(&filter, None, 300, now).await.unwrap();
    let cursor = first.next.clone().unwrap();
    assert_eq!(
        cursor,
        Cursor {
            enqueued_at_ms: at,
            id: want[299].clone()
        }
    );
    // The cursor's job goes: cancelled, then purged.
    assert!(fx.store.cancel(&want[299]).await.unwrap());
    let gone = JobFilter {
        statuses: vec![JobStatus::Cancelled],
        ..fx.only_mine()
    };
    assert_eq!(
        fx.store.purge_batch(&gone, now_ms() + 1, 10).await.unwrap(),
        1
    );
    let second = fx
        .store
        .list_page(&filter, Some(&cursor), 300, now)
        .await
        .unwrap();
    let third = fx
        .store
        .list_page(&filter, second.next.as_ref(), 300, now)
        .await
        .unwrap();
    assert_eq!(third.next, None);
    let seen: Vec<String> = first
        .jobs
        .iter()
        .chain(&second.jobs)
        .chain(&third.jobs)
        .map(|j| j.id.clone())
        .collect();
    let mut expected = want.clone();
    expected.remove(299);
    let mut got = seen.clone();
    got.remove(299);
    assert_eq!(seen[..299], want[..299]);
    assert_eq!(seen.len(), 700);
    // The first page still holds the purged job; the later ones follow it exactly.
    assert_eq!(got, expected);
    fx.clean().await;
}

/// A purged job leaves every index: the job list's, its state's, its queue's
/// finished-by-time set and the result-expiry set; a retried one leaves the finished
/// ones and is listed as pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_and_purge_keep_every_index_in_step() {
    let Some(fx) = Fx::open().await else { return };
    let rows = vec![fx.row("t", now_ms()), fx.row("t", now_ms())];
    let (a, b) = (rows[0].id.clone(), rows[1].id.clone());
    fx.store.enqueue(rows).await.unwrap();
    assert_eq!(fx.fail_all().await, 2);
    let mut conn = fx.conn().await;
    let fin = format!("spikard:q:{}:fin:failed", fx.queue);
    let by_state = format!("spikard:q:{}:s:failed", fx.queue);
    let in_queue = format!("spikard:q:{}:jobs", fx.queue);
    for id in [&a, &b] {
        assert!(zscore(&mut conn, &by_state, id).await.is_some());
        assert!(zscore(&mut conn, &fin, id).await.is_some());
    }
    let only_a = JobFilter {
        statuses: vec![JobStatus::Failed],
        ..fx.only_mine()
    };
    // Retry one (the batch limit), purge the other.
    assert_eq!(fx.store.retry_batch(&only_a, now_ms(), 1).await.unwrap(), 1);
    let retried = if fx.store.get(&a).await.unwrap().unwrap().status == JobStatus::Failed {
        b.clone()
    } else {
        a.clone()
    };
    let purged = if retried == a { b.clone() } else { a.clone() };
    assert_eq!(
        fx.store
            .purge_batch(&fx.only_mine(), now_ms() + 1, 10)
            .await
            .unwrap(),
        1
    );
    let every = [
        in_queue.as_str(),
        by_state.as_str(),
        fin.as_str(),
        "spikard:finished",
    ];
    for key in every {
        assert!(zscore(&mut conn, key, &purged).await.is_none(), "{key}");
    }
    for key in [by_state.as_str(), fin.as_str(), "spikard:finished"] {
        assert!(zscore(&mut conn, key, &retried).await.is_none(), "{key}");
    }
    assert!(zscore(&mut conn, &in_queue, &retried).await.is_some());
    let pending = JobFilter {
        statuses: vec![JobStatus::Pending],
        ..fx.only_mine()
    };
    let listed = fx
        .store
        .list_jobs(&pending, None, 10, now_ms())
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|j| j.id.clone()).collect::<Vec<_>>(),
        [retried]
    );
    fx.clean().await;
}

/// A queue whose jobs were all purged is no longer listed by stats (nor kept known);
/// a paused one is, jobs or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_forgets_a_queue_once_its_last_job_is_purged() {
    let Some(fx) = Fx::open().await else { return };
    fx.store.enqueue(vec![fx.row("t", now_ms())]).await.unwrap();
    let listed =
        |stats: &[spikard_tasks::store::QueueStats]| stats.iter().any(|q| q.queue == fx.queue);
    assert!(listed(&fx.store.stats(now_ms()).await.unwrap()));
    let mine = fx.only_mine();
    assert_eq!(fx.store.cancel_batch(&mine, now_ms(), 10).await.unwrap(), 1);
    assert_eq!(
        fx.store.purge_batch(&mine, now_ms() + 1, 10).await.unwrap(),
        1
    );
    assert!(!listed(&fx.store.stats(now_ms()).await.unwrap()));
    let mut conn = fx.conn().await;
    let known: bool = redis::cmd("SISMEMBER")
        .arg("spikard:queues")
        .arg(&fx.queue)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!known);
    assert!(fx
        .store
        .set_paused(&fx.queue, true, now_ms())
        .await
        .unwrap());
    let stats = fx.store.stats(now_ms()).await.unwrap();
    let q = stats
        .iter()
        .find(|q| q.queue == fx.queue)
        .expect("paused queue listed");
    assert!(q.paused);
    assert!(fx
        .store
        .set_paused(&fx.queue, false, now_ms())
        .await
        .unwrap());
    assert!(!listed(&fx.store.stats(now_ms()).await.unwrap()));
}

/// Jobs written by an earlier version (no operations indexes) are indexed when a store
/// opens the database: listed, counted in the last-minute figures, retried and purged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_of_an_earlier_version_are_indexed_when_the_store_opens() {
    let Some(base) = url() else { return };
    let mut parsed = url::Url::parse(&base).unwrap();
    parsed.set_path(OLD_DB);
    let url = parsed.to_string();
    let queue = format!("redis-old-{}", uuid::Uuid::now_v7().simple());
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let now = now_ms();
    let (pending, failed) = (
        uuid::Uuid::now_v7().to_string(),
        uuid::Uuid::now_v7().to_string(),
    );
    // As the earlier version wrote them: hashes, the ready set, counters, `finished`.
    let job = |id: &str, status: &str| {
        let mut c = redis::cmd("HSET");
        c.arg(format!("spikard:job:{id}"))
            .arg(&[
                "queue", &queue, "task", "old.task", "args", "[]", "kwargs", "{}",
            ])
            .arg(&[
                "status",
                status,
                "priority",
                "0",
                "attempts",
                "1",
                "max_attempts",
                "1",
            ])
            .arg("run_at")
            .arg(now - 2000)
            .arg("enqueued_at")
            .arg(now - 2000);
        if status == "failed" {
            c.arg("finished_at").arg(now - 1000).arg("errors").arg("[]");
        }
        c
    };
    job(&pending, "pending")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    job(&failed, "failed")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    redis::pipe()
        .cmd("ZADD")
        .arg(format!("spikard:q:{queue}:ready"))
        .arg(0)
        .arg(format!(
            "2147483647{:016}{pending}",
            now - 2000 + 1_000_000_000_000_000
        ))
        .cmd("HSET")
        .arg(format!("spikard:q:{queue}:counts"))
        .arg(&["pending", "1", "failed", "1"])
        .cmd("ZADD")
        .arg("spikard:finished")
        .arg(now - 1000)
        .arg(&failed)
        .cmd("DEL")
        .arg("spikard:ops_index")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();

    let store = store::open(&url).await.unwrap();
    let mine = JobFilter {
        queue: Some(queue.clone()),
        ..JobFilter::default()
    };
    let listed = store.list_jobs(&mine, None, 10, now_ms()).await.unwrap();
    let mut ids: Vec<String> = listed.iter().map(|j| j.id.clone()).collect();
    ids.sort();
    let mut want = vec![pending.clone(), failed.clone()];
    want.sort();
    assert_eq!(ids, want);
    let only_failed = JobFilter {
        statuses: vec![JobStatus::Failed],
        ..mine.clone()
    };
    let listed = store
        .list_jobs(&only_failed, None, 10, now_ms())
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, failed);
    let stats = store.stats(now_ms()).await.unwrap();
    let q = stats
        .iter()
        .find(|q| q.queue == queue)
        .expect("queue listed");
    assert_eq!(
        (q.counts.pending, q.counts.failed, q.failed_last_minute),
        (1, 1, 1)
    );
    assert_eq!(q.oldest_ready_ms, Some(now - 2000));
    assert_eq!(
        store.retry_batch(&only_failed, now_ms(), 10).await.unwrap(),
        1
    );

    while store.cancel_batch(&mine, now_ms(), 1000).await.unwrap() > 0 {}
    assert_eq!(
        store.purge_batch(&mine, now_ms() + 1, 1000).await.unwrap(),
        2
    );
    assert!(store
        .list_jobs(&mine, None, 10, now_ms())
        .await
        .unwrap()
        .is_empty());
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("spikard:q:{queue}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        redis::cmd("DEL")
            .arg(keys)
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
    }
}
