//! The Redis store's operations at scale, and its hot path.
//!
//! `cargo run --release -p spikard-tasks --features redis --example redis_ops_scale -- URL [JOBS]`
//! fills the database of URL (which must hold no key at all: use a spare index such
//! as `redis://127.0.0.1:6379/11`) through the store with JOBS jobs (default
//! 1,000,000) over 3 queues and 5 tasks, enqueued over the past week, 90% succeeded, 4%
//! failed, 1% cancelled, 5% left pending; then times `stats` and `list_page` (median of
//! 5) for the usual filters; then deletes every key it wrote.
//!
//! `... --example redis_ops_scale -- URL hot [JOBS]` times only the hot path: enqueue
//! in batches of 100, then claim and complete 50 at a time (default 100,000 jobs), in
//! the same empty database, and cleans up.

use std::time::{Duration, Instant};

use spikard_tasks::job::JobRow;
use spikard_tasks::store::{self, JobFilter, Store};
use spikard_tasks::time::now_ms;
use spikard_tasks::{AttemptError, Completion, JobStatus};

const QUEUES: [&str; 3] = ["default", "mail", "reports"];
const TASKS: [&str; 5] = [
    "app.send",
    "app.resize",
    "app.sync",
    "app.report",
    "app.cleanup",
];
const LEASE: Duration = Duration::from_secs(600);

fn row(i: usize, enqueued_at_ms: i64) -> JobRow {
    JobRow {
        id: uuid::Uuid::now_v7().to_string(),
        queue: QUEUES[i % 3].into(),
        task: TASKS[i % 5].into(),
        args: "[1, 2]".into(),
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

async fn conn(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Deletes every key of the (spare) database, by SCAN and UNLINK.
async fn clean(url: &str) {
    let mut c = conn(url).await;
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("spikard:*")
            .arg("COUNT")
            .arg(5000)
            .query_async(&mut c)
            .await
            .unwrap();
        if !keys.is_empty() {
            redis::cmd("UNLINK")
                .arg(keys)
                .query_async::<()>(&mut c)
                .await
                .unwrap();
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
}

/// Claims up to `n` jobs and completes each with `outcome(i)`.
async fn drain(
    store: &dyn Store,
    n: usize,
    chunk: usize,
    outcome: impl Fn(usize) -> Completion,
) -> usize {
    let queues: Vec<String> = QUEUES.iter().map(|q| q.to_string()).collect();
    let mut done = 0;
    while done < n {
        let jobs = store
            .claim(&queues, "bench-worker", chunk.min(n - done), LEASE)
            .await
            .unwrap();
        if jobs.is_empty() {
            break;
        }
        let outcomes = jobs
            .into_iter()
            .enumerate()
            .map(|(i, mut j)| {
                j.started_at_ms = Some(now_ms());
                (j, outcome(done + i))
            })
            .collect::<Vec<_>>();
        done += store.complete("bench-worker", outcomes).await.unwrap();
    }
    done
}

fn failure(i: usize) -> AttemptError {
    AttemptError {
        attempt: 1,
        error: format!("ValueError: bad input {i}"),
        traceback: Some("Traceback (most recent call last):\n  ...".into()),
        at_ms: now_ms(),
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn hot(url: &str, jobs: usize) {
    let store = store::open(url).await.unwrap();
    let now = now_ms();
    let t = Instant::now();
    for start in (0..jobs).step_by(100) {
        let rows = (start..(start + 100).min(jobs))
            .map(|i| row(i, now))
            .collect();
        store.enqueue(rows).await.unwrap();
    }
    let enqueue = t.elapsed();
    let t = Instant::now();
    let n = drain(store.as_ref(), jobs, 50, |_| {
        Completion::Succeeded(serde_json::json!(1))
    })
    .await;
    let claim_complete = t.elapsed();
    assert_eq!(n, jobs);
    let per = |d: Duration| d.as_secs_f64() * 1e6 / jobs as f64;
    println!(
        "hot path, {jobs} jobs: enqueue {:.1} us/job (batches of 100), claim+complete {:.1} us/job (50 at a time)",
        per(enqueue),
        per(claim_complete)
    );
    store.close().await;
}

async fn scale(url: &str, jobs: usize) {
    let store = store::open(url).await.unwrap();
    let now = now_ms();
    let week = 7 * 24 * 3_600_000i64;
    let t = Instant::now();
    // Oldest first, so the 95% drained first are the oldest and 5% recent ones wait.
    for start in (0..jobs).step_by(1000) {
        let rows = (start..(start + 1000).min(jobs))
            .map(|i| row(i, now - week + (i as i64 * week) / jobs as i64))
            .collect();
        store.enqueue(rows).await.unwrap();
    }
    let finished = jobs * 95 / 100;
    let n = drain(store.as_ref(), finished, 1000, |i| match i % 100 {
        0..=3 => Completion::Failed(failure(i)),
        4 => Completion::Cancelled {
            reason: Some("cancelled by request".into()),
        },
        _ => Completion::Succeeded(serde_json::json!({"ok": i})),
    })
    .await;
    println!(
        "filled {jobs} jobs ({n} finished) in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let mut c = conn(url).await;
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut c)
        .await
        .unwrap();
    if let Some(line) = info.lines().find(|l| l.starts_with("used_memory_human")) {
        println!("server memory after the fill: {line}");
    }

    let now = now_ms();
    let runs = 5;
    let time_stats = {
        let mut v = Vec::new();
        for _ in 0..runs {
            let t = Instant::now();
            let s = store.stats(now).await.unwrap();
            v.push(t.elapsed());
            assert_eq!(s.len(), 3);
        }
        median(v)
    };
    println!(
        "{:<36} {:>8.2} ms",
        "stats()",
        time_stats.as_secs_f64() * 1e3
    );
    let status = |s: JobStatus| JobFilter {
        statuses: vec![s],
        ..JobFilter::default()
    };
    // The cursor of the 20th page of the unfiltered list.
    let mut cursor = None;
    for _ in 0..19 {
        let page = store
            .list_page(&JobFilter::default(), cursor.as_ref(), 50, now)
            .await
            .unwrap();
        cursor = page.next;
    }
    let cases: Vec<(&str, JobFilter, bool)> = vec![
        ("list, no filter", JobFilter::default(), false),
        ("list, 20th page", JobFilter::default(), true),
        ("list, status=failed", status(JobStatus::Failed), false),
        (
            "list, status=succeeded",
            status(JobStatus::Succeeded),
            false,
        ),
        ("list, status=pending", status(JobStatus::Pending), false),
        (
            "list, task=app.sync",
            JobFilter {
                task: Some("app.sync".into()),
                ..JobFilter::default()
            },
            false,
        ),
        (
            "list, queue=mail",
            JobFilter {
                queue: Some("mail".into()),
                ..JobFilter::default()
            },
            false,
        ),
        (
            "list, queue=mail status=failed",
            JobFilter {
                queue: Some("mail".into()),
                ..status(JobStatus::Failed)
            },
            false,
        ),
    ];
    for (name, filter, later) in cases {
        let after = if later { cursor.as_ref() } else { None };
        let mut v = Vec::new();
        let mut got = 0;
        for _ in 0..runs {
            let t = Instant::now();
            let page = store.list_page(&filter, after, 50, now).await.unwrap();
            v.push(t.elapsed());
            got = page.jobs.len();
        }
        println!(
            "{name:<36} {:>8.2} ms ({got} jobs)",
            median(v).as_secs_f64() * 1e3
        );
    }
    store.close().await;
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let url = args
        .first()
        .cloned()
        .unwrap_or_else(|| "redis://127.0.0.1:6379/11".into());
    let (hot_path, count) = match args.get(1).map(String::as_str) {
        Some("hot") => (true, args.get(2)),
        _ => (false, args.get(1)),
    };
    let size: Option<usize> = count.map(|n| n.parse().expect("JOBS: a number"));
    let keys: u64 = redis::cmd("DBSIZE")
        .query_async(&mut conn(&url).await)
        .await
        .unwrap();
    assert_eq!(keys, 0, "{url} holds keys: use an empty spare database");
    if hot_path {
        hot(&url, size.unwrap_or(100_000)).await;
    } else {
        scale(&url, size.unwrap_or(1_000_000)).await;
    }
    clean(&url).await;
}
