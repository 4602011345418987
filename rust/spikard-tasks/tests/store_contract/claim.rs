//! `claim`.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;
use spikard_tasks::job::JobRow;
use spikard_tasks::time::now_ms;
use spikard_tasks::{AttemptError, Completion, JobStatus};

use crate::support::{ids_of, open, sorted, Kind, LEASE};

/// A claim makes the job `running`, counts the attempt (returned as `attempt`), and
/// records no start: a claim is not a start.
pub async fn claim_runs_the_job_counting_the_attempt_without_a_start(kind: Kind) {
    let fx = open!(shared(kind));
    let row = JobRow {
        task: "contract.claimed".into(),
        args: "[42]".into(),
        kwargs: r#"{"x":"y"}"#.into(),
        priority: 3,
        max_attempts: 4,
        ..fx.row()
    };
    let id = fx.enqueue(vec![row]).await.remove(0);
    let w = fx.worker();
    let claimed = fx.claim(&w, 5).await;
    assert_eq!(claimed.len(), 1, "{kind:?}");
    let job = &claimed[0];
    assert_eq!(job.id, id);
    assert_eq!(job.queue, fx.queue);
    assert_eq!(job.task, "contract.claimed");
    assert_eq!(
        (job.args.clone(), job.kwargs.clone()),
        (json!([42]), json!({"x": "y"}))
    );
    assert_eq!(
        (job.attempt, job.max_attempts, job.priority),
        (1, 4, 3),
        "{kind:?}"
    );
    assert_eq!((job.timeout, job.started_at_ms), (None, None), "{kind:?}");
    let rec = fx.get(&id).await;
    assert_eq!(rec.status, JobStatus::Running, "{kind:?}");
    assert_eq!(rec.attempts, 1, "{kind:?}");
    assert_eq!(rec.started_at_ms, None, "{kind:?}: a claim is not a start");
    assert_eq!(rec.finished_at_ms, None);
    // A running job is not claimed again.
    assert!(fx.claim(&fx.worker(), 5).await.is_empty(), "{kind:?}");
}

/// Among ready jobs the highest priority goes first, then the oldest run_at.
pub async fn claim_takes_highest_priority_then_oldest_run_at(kind: Kind) {
    let fx = open!(shared(kind));
    let now = now_ms();
    let job = |priority: i32, age_ms: i64| JobRow {
        priority,
        run_at_ms: now - age_ms,
        ..fx.row()
    };
    // Enqueued out of order; ids (time ordered) must not decide.
    let rows = vec![
        job(0, 10),
        job(5, 1_000),
        job(i32::MIN, 50_000),
        job(5, 5_000),
        job(i32::MAX, 0),
        job(0, 20),
        job(-3, 90_000),
    ];
    let ids = fx.enqueue(rows).await;
    let expected: Vec<String> = [4, 3, 1, 5, 0, 6, 2].map(|i| ids[i].clone()).to_vec();
    let w = fx.worker();
    let mut order = Vec::new();
    for _ in 0..ids.len() {
        let got = fx.claim(&w, 1).await;
        assert_eq!(got.len(), 1, "{kind:?}");
        order.push(got[0].id.clone());
    }
    assert_eq!(order, expected, "{kind:?}: claim order");
    // A claim of several takes the best ones of the queue.
    let more = fx
        .enqueue(vec![job(1, 0), job(9, 0), job(2, 0), job(9, 10)])
        .await;
    let top = fx.claim(&w, 2).await;
    assert_eq!(
        ids_of(&top),
        sorted(&[more[1].clone(), more[3].clone()]),
        "{kind:?}"
    );
}

/// A job whose run_at is ahead is never claimed (until it comes); nor is a retry whose
/// next attempt is ahead.
pub async fn claim_never_takes_a_job_whose_run_at_is_ahead(kind: Kind) {
    let fx = open!(shared(kind));
    let now = now_ms();
    let far = JobRow {
        run_at_ms: now + 3_600_000,
        priority: 100,
        ..fx.row()
    };
    let ids = fx.enqueue(vec![far, fx.row()]).await;
    let w = fx.worker();
    let first = fx.claim(&w, 10).await;
    assert_eq!(ids_of(&first), [ids[1].clone()], "{kind:?}");
    // A retry due in an hour is not claimed either.
    let done = vec![(
        first[0].clone(),
        Completion::Retry {
            run_at_ms: now + 3_600_000,
            error: AttemptError {
                attempt: 1,
                error: "Later: again".into(),
                traceback: None,
                at_ms: now,
            },
        },
    )];
    assert_eq!(fx.store.complete(&w, done).await.unwrap(), 1);
    assert!(fx.claim(&w, 10).await.is_empty(), "{kind:?}");
    assert_eq!(
        fx.get(&ids[0]).await.status,
        JobStatus::Scheduled,
        "{kind:?}"
    );
    // A job due in a moment: not claimed before its run_at, claimed once it came.
    let soon_at = now_ms() + 1_000;
    let soon = JobRow {
        run_at_ms: soon_at,
        ..fx.row()
    };
    let soon_id = fx.enqueue(vec![soon]).await.remove(0);
    let early = fx.claim(&w, 10).await;
    if now_ms() < soon_at {
        assert!(early.is_empty(), "{kind:?}: claimed before its run_at");
    }
    let wait = soon_at + 50 - now_ms();
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    }
    let mut got = early;
    got.extend(fx.claim(&w, 10).await);
    assert_eq!(ids_of(&got), [soon_id], "{kind:?}: its run_at came");
}

/// Never more than `limit` jobs; a limit of 0 claims nothing.
pub async fn claim_returns_at_most_limit_jobs(kind: Kind) {
    let fx = open!(shared(kind));
    let ids = fx.add(7).await;
    let w = fx.worker();
    assert!(fx.claim(&w, 0).await.is_empty(), "{kind:?}");
    assert_eq!(fx.claim(&w, 1).await.len(), 1, "{kind:?}");
    assert_eq!(fx.claim(&w, 4).await.len(), 4, "{kind:?}");
    assert_eq!(fx.claim(&w, 4).await.len(), 2, "{kind:?}");
    assert!(fx.claim(&w, 4).await.is_empty(), "{kind:?}");
    for id in &ids {
        assert_eq!(fx.get(id).await.attempts, 1, "{kind:?}");
    }
}

/// Only jobs of the queues asked for are claimed (several queues at once, too).
pub async fn claim_takes_only_from_the_given_queues(kind: Kind) {
    let fx = open!(shared(kind));
    let other = format!("{}-b", fx.queue);
    let third = format!("{}-c", fx.queue);
    let in_queue = |queue: &str, priority: i32| JobRow {
        queue: queue.to_owned(),
        priority,
        ..fx.row()
    };
    let ids = fx
        .enqueue(vec![
            in_queue(&fx.queue, 0),
            in_queue(&other, 9),
            in_queue(&third, 5),
            in_queue(&other, 1),
        ])
        .await;
    let w = fx.worker();
    assert!(fx.store.claim(&[], &w, 10, LEASE).await.unwrap().is_empty());
    let mine = fx.claim(&w, 10).await;
    assert_eq!(ids_of(&mine), [ids[0].clone()], "{kind:?}");
    let both = [other.clone(), third.clone()];
    let first = fx.store.claim(&both, &w, 1, LEASE).await.unwrap();
    assert_eq!(
        ids_of(&first),
        [ids[1].clone()],
        "{kind:?}: best of both queues"
    );
    let rest = fx.store.claim(&both, &w, 10, LEASE).await.unwrap();
    assert_eq!(
        ids_of(&rest),
        sorted(&[ids[2].clone(), ids[3].clone()]),
        "{kind:?}"
    );
}

/// Claims racing on the same jobs (several tasks, two handles) never hand out one job
/// twice, and together take every job.
pub async fn concurrent_claims_never_return_the_same_job(kind: Kind) {
    let fx = open!(shared(kind));
    let ids = fx.add(60).await;
    let stores = [fx.store.clone(), fx.second_handle().await];
    let mut tasks = Vec::new();
    for i in 0..6 {
        let store = stores[i % 2].clone();
        let queues = fx.queues();
        tasks.push(tokio::spawn(async move {
            let w = format!("racer-{i}-{}", uuid::Uuid::now_v7().simple());
            let mut got = Vec::new();
            loop {
                let jobs = store.claim(&queues, &w, 3, LEASE).await.unwrap();
                if jobs.is_empty() {
                    return got;
                }
                got.extend(jobs.into_iter().map(|j| j.id));
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(unique.len(), all.len(), "{kind:?}: a job was claimed twice");
    assert_eq!(sorted(&all), sorted(&ids), "{kind:?}");
    for id in &ids {
        assert_eq!(fx.get(id).await.attempts, 1, "{kind:?}");
    }
}

/// The claim of a retrying job counts its next attempt.
pub async fn claim_counts_the_next_attempt_of_a_retrying_job(kind: Kind) {
    let fx = open!(shared(kind));
    let id = fx.add(1).await.remove(0);
    let w = fx.worker();
    for attempt in 1..=3u32 {
        let claimed = fx.claim(&w, 1).await;
        assert_eq!(claimed.len(), 1, "{kind:?}");
        assert_eq!(claimed[0].attempt, attempt, "{kind:?}");
        assert_eq!(fx.get(&id).await.attempts, attempt, "{kind:?}");
        let retry = Completion::Retry {
            run_at_ms: now_ms(),
            error: AttemptError {
                attempt,
                error: format!("Flaky: {attempt}"),
                traceback: None,
                at_ms: now_ms(),
            },
        };
        assert_eq!(
            fx.store
                .complete(&w, vec![(claimed[0].clone(), retry)])
                .await
                .unwrap(),
            1
        );
        assert_eq!(fx.get(&id).await.status, JobStatus::Retrying, "{kind:?}");
    }
}

/// A claimed job carries its enqueue time and its `run_at` as stored (not the claim's
/// time), on its first attempt and on a retry (the retry's `run_at`).
pub async fn claim_carries_the_jobs_enqueue_time(kind: Kind) {
    let fx = open!(shared(kind));
    let enqueued_at_ms = now_ms() - 123_456;
    let row = JobRow {
        enqueued_at_ms,
        run_at_ms: enqueued_at_ms + 1_000,
        ..fx.row()
    };
    let id = fx.enqueue(vec![row]).await.remove(0);
    let w = fx.worker();
    let claimed = fx.claim(&w, 1).await;
    assert_eq!(claimed.len(), 1, "{kind:?}");
    assert_eq!(claimed[0].enqueued_at_ms, Some(enqueued_at_ms), "{kind:?}");
    assert_eq!(claimed[0].run_at_ms, enqueued_at_ms + 1_000, "{kind:?}");
    let retry_at = now_ms() - 10;
    let retry = Completion::Retry {
        run_at_ms: retry_at,
        error: AttemptError {
            attempt: 1,
            error: "Flaky: 1".into(),
            traceback: None,
            at_ms: now_ms(),
        },
    };
    let done = vec![(claimed[0].clone(), retry)];
    assert_eq!(fx.store.complete(&w, done).await.unwrap(), 1, "{kind:?}");
    let again = fx.claim(&w, 1).await;
    assert_eq!(again.len(), 1, "{kind:?}");
    assert_eq!((again[0].id.as_str(), again[0].attempt), (id.as_str(), 2));
    assert_eq!(again[0].enqueued_at_ms, Some(enqueued_at_ms), "{kind:?}");
    assert_eq!(again[0].run_at_ms, retry_at, "{kind:?}");
    assert_eq!(fx.get(&id).await.enqueued_at_ms, enqueued_at_ms, "{kind:?}");
}

/// Stores are shared by many producers and workers at once: keyed enqueues and claims
/// running side by side on different queues of one database never fail each other.
pub async fn concurrent_enqueues_and_claims_never_fail(kind: Kind) {
    let fx = open!(shared(kind));
    let stores = [fx.store.clone(), fx.second_handle().await];
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = stores[i % 2].clone();
        let queue = format!("{}-{i}", fx.queue);
        let rows: Vec<Vec<JobRow>> = (0..25)
            .map(|n| {
                (0..4)
                    .map(|k| JobRow {
                        queue: queue.clone(),
                        unique_key: (k % 2 == 0).then(|| format!("key-{n}-{k}")),
                        ..fx.row()
                    })
                    .collect()
            })
            .collect();
        let w = fx.worker();
        tasks.push(tokio::spawn(async move {
            let queues = [queue];
            let mut claimed = 0;
            for batch in rows {
                let what = |op| move |e| format!("{op}: {e}");
                store.enqueue(batch).await.map_err(what("enqueue"))?;
                let jobs = store.claim(&queues, &w, 3, LEASE).await;
                claimed += jobs.map_err(what("claim"))?.len();
            }
            Ok::<_, String>(claimed)
        }));
    }
    let mut claimed = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(n) => claimed += n,
            Err(e) => panic!("{kind:?}: a concurrent enqueue or claim failed: {e}"),
        }
    }
    assert_eq!(claimed, 8 * 25 * 3, "{kind:?}");
}
