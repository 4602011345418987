//! The operations (`OpsStore`): stats, the job list, retry, bulk cancel and purge,
//! pause and the worker registry. Stats, pauses and workers are global to a database:
//! tests on the shared one look only at their own queues and workers, and leave no
//! pause or worker row behind; tests that must see every job get a database of their own.

use std::collections::HashSet;

use serde_json::json;
use spikard_tasks::job::JobRow;
use spikard_tasks::store::{Cursor, JobFilter, QueueStats, WorkerInfo};
use spikard_tasks::time::now_ms;
use spikard_tasks::{AttemptError, Completion, JobRecord, JobStatus, QueueCounts};

use crate::support::{open, Fixture, Kind, LEASE};

const HOUR: i64 = 3_600_000;

fn error(attempt: u32) -> AttemptError {
    AttemptError {
        attempt,
        error: "Boom: attempt failed".into(),
        traceback: Some("Traceback (most recent call last): ...".into()),
        at_ms: now_ms(),
    }
}

/// Stores `row` and brings it to the (shown) `state`; returns its id. Jobs that must
/// run get priority 1000 and are due a second ago, so the claim takes them before the
/// queue's other ready jobs; retrying jobs wait an hour (no later claim takes them).
async fn make(fx: &Fixture, mut row: JobRow, state: JobStatus) -> String {
    let id = row.id.clone();
    let queue = row.queue.clone();
    match state {
        JobStatus::Pending => {
            // Due a second ago: also on a database clock a little behind ours.
            row.run_at_ms = now_ms() - 1000;
            fx.enqueue(vec![row]).await;
        }
        JobStatus::Scheduled => {
            row.run_at_ms = now_ms() + HOUR;
            fx.enqueue(vec![row]).await;
        }
        JobStatus::Cancelled => {
            row.run_at_ms = now_ms() + HOUR;
            fx.enqueue(vec![row]).await;
            assert!(fx.store.cancel(&id).await.unwrap());
        }
        _ => {
            row.priority = 1000;
            row.run_at_ms = now_ms() - 1000;
            fx.enqueue(vec![row]).await;
            let w = fx.worker();
            let claimed = fx.store.claim(&[queue], &w, 1, LEASE).await.unwrap();
            assert_eq!(claimed.len(), 1, "{:?}: claim for {state:?}", fx.kind);
            assert_eq!(claimed[0].id, id, "{:?}: claim for {state:?}", fx.kind);
            let outcome = match state {
                JobStatus::Running => None,
                JobStatus::Retrying => Some(Completion::Retry {
                    run_at_ms: now_ms() + HOUR,
                    error: error(1),
                }),
                JobStatus::Succeeded => Some(Completion::Succeeded(json!({"ok": true}))),
                JobStatus::Failed => Some(Completion::Failed(error(1))),
                other => unreachable!("{other:?}"),
            };
            if let Some(outcome) = outcome {
                let done = vec![(claimed[0].clone(), outcome)];
                assert_eq!(fx.store.complete(&w, done).await.unwrap(), 1);
            }
        }
    }
    assert_eq!(fx.get(&id).await.status, state, "{:?}", fx.kind);
    id
}

/// A row of this test for `queue`.
fn row_in(fx: &Fixture, queue: &str) -> JobRow {
    JobRow {
        queue: queue.to_owned(),
        ..fx.row()
    }
}

/// The stats of `queues` only (other tests share the database), in the store's order.
async fn stats_of(fx: &Fixture, now: i64, queues: &[&str]) -> Vec<QueueStats> {
    let all = fx.store.stats(now).await.unwrap();
    let names: Vec<&str> = all.iter().map(|s| s.queue.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted, "{:?}: stats are by queue name", fx.kind);
    all.into_iter()
        .filter(|s| queues.contains(&s.queue.as_str()))
        .collect()
}

fn in_queue(queue: &str) -> JobFilter {
    JobFilter {
        queue: Some(queue.to_owned()),
        ..JobFilter::default()
    }
}

/// Every page of `filter` (pages of `limit`), checking each holds `limit` jobs but the
/// last.
async fn all_pages(fx: &Fixture, filter: &JobFilter, limit: usize, now: i64) -> Vec<JobRecord> {
    let mut out: Vec<JobRecord> = Vec::new();
    let mut after: Option<Cursor> = None;
    loop {
        let page = fx
            .store
            .list_jobs(filter, after.as_ref(), limit, now)
            .await
            .unwrap();
        assert!(page.len() <= limit, "{:?}", fx.kind);
        let full = page.len() == limit;
        if let Some(last) = page.last() {
            after = Some(Cursor {
                enqueued_at_ms: last.enqueued_at_ms,
                id: last.id.clone(),
            });
        }
        out.extend(page);
        if !full {
            return out;
        }
    }
}

fn ids(records: &[JobRecord]) -> Vec<String> {
    records.iter().map(|r| r.id.clone()).collect()
}

/// Newest first: by enqueue time, then id, both descending.
fn newest_first(mut jobs: Vec<(i64, String)>) -> Vec<String> {
    jobs.sort_by(|a, b| b.cmp(a));
    jobs.into_iter().map(|(_, id)| id).collect()
}

// ---------------------------------------------------------------- stats

/// `stats` counts each queue's jobs per state as readers see them (a pending job due
/// later is `scheduled`), by queue name.
pub async fn stats_counts_each_state_per_queue(kind: Kind) {
    let fx = open!(shared(kind));
    let (a, b) = (fx.queue.clone(), format!("{}-b", fx.queue));
    use JobStatus::*;
    for state in [
        Pending, Pending, Scheduled, Running, Retrying, Succeeded, Succeeded, Failed, Cancelled,
    ] {
        make(&fx, row_in(&fx, &a), state).await;
    }
    for state in [Pending, Scheduled, Scheduled, Failed] {
        make(&fx, row_in(&fx, &b), state).await;
    }
    let now = fx.store.now_ms();
    let stats = stats_of(&fx, now, &[&a, &b]).await;
    assert_eq!(stats.len(), 2, "{kind:?}: {stats:?}");
    assert_eq!(
        (stats[0].queue.as_str(), stats[1].queue.as_str()),
        (&*a, &*b)
    );
    let expect_a = QueueCounts {
        pending: 2,
        scheduled: 1,
        running: 1,
        retrying: 1,
        succeeded: 2,
        failed: 1,
        cancelled: 1,
    };
    let expect_b = QueueCounts {
        pending: 1,
        scheduled: 2,
        failed: 1,
        ..QueueCounts::default()
    };
    assert_eq!(stats[0].counts, expect_a, "{kind:?}");
    assert_eq!(stats[1].counts, expect_b, "{kind:?}");
    assert!(!stats[0].paused && !stats[1].paused, "{kind:?}");
    // As counts() sees them.
    assert_eq!(fx.store.counts(&a).await.unwrap(), expect_a, "{kind:?}");
    // Two hours later the scheduled jobs are due: pending.
    let later = stats_of(&fx, now + 2 * HOUR, &[&b]).await;
    assert_eq!(
        (later[0].counts.pending, later[0].counts.scheduled),
        (3, 0),
        "{kind:?}"
    );
}

/// `oldest_ready_ms` is the smallest `run_at` of a pending or retrying job due at
/// `now`; `None` when nothing is ready.
pub async fn stats_reports_the_oldest_ready_job(kind: Kind) {
    let fx = open!(shared(kind));
    let q = fx.queue.clone();
    make(&fx, fx.row(), JobStatus::Scheduled).await;
    make(&fx, fx.row(), JobStatus::Running).await;
    make(&fx, fx.row(), JobStatus::Succeeded).await;
    let now = fx.store.now_ms();
    let stats = stats_of(&fx, now, &[&q]).await;
    assert_eq!(stats[0].oldest_ready_ms, None, "{kind:?}");

    let base = now_ms();
    let at = |ms: i64| JobRow {
        run_at_ms: base - ms,
        ..fx.row()
    };
    fx.enqueue(vec![at(2_000), at(5_000), at(1_000)]).await;
    let now = fx.store.now_ms();
    let stats = stats_of(&fx, now, &[&q]).await;
    assert_eq!(stats[0].oldest_ready_ms, Some(base - 5_000), "{kind:?}");
    // A retrying job due long ago is the oldest now.
    let w = fx.worker();
    let first = JobRow {
        priority: 1000,
        ..fx.row()
    };
    let id = fx.enqueue(vec![first]).await.remove(0);
    let job = fx.claim(&w, 1).await.remove(0);
    assert_eq!(job.id, id);
    let retry = Completion::Retry {
        run_at_ms: base - 7_000,
        error: error(1),
    };
    assert_eq!(fx.store.complete(&w, vec![(job, retry)]).await.unwrap(), 1);
    let stats = stats_of(&fx, fx.store.now_ms(), &[&q]).await;
    assert_eq!(stats[0].oldest_ready_ms, Some(base - 7_000), "{kind:?}");
    // Seen from before any of them was due: nothing is ready.
    let stats = stats_of(&fx, base - 8_000, &[&q]).await;
    assert_eq!(stats[0].oldest_ready_ms, None, "{kind:?}");
}

/// `succeeded_last_minute` / `failed_last_minute` count jobs that finished so within
/// the minute before `now` (by `finished_at`); cancelled ones count in neither.
pub async fn stats_counts_jobs_finished_in_the_last_minute(kind: Kind) {
    let fx = open!(shared(kind));
    let q = fx.queue.clone();
    let mut finished = Vec::new();
    for state in [
        JobStatus::Succeeded,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ] {
        let id = make(&fx, fx.row(), state).await;
        finished.push(fx.get(&id).await.finished_at_ms.expect("finished_at"));
    }
    let (first, last) = (
        *finished.iter().min().unwrap(),
        *finished.iter().max().unwrap(),
    );
    let figures = |s: &[QueueStats]| (s[0].succeeded_last_minute, s[0].failed_last_minute);
    let now = fx.store.now_ms().max(last);
    assert_eq!(
        figures(&stats_of(&fx, now, &[&q]).await),
        (2, 1),
        "{kind:?}"
    );
    assert_eq!(
        figures(&stats_of(&fx, last + 59_000, &[&q]).await),
        (2, 1),
        "{kind:?}"
    );
    assert_eq!(
        figures(&stats_of(&fx, last + 61_000, &[&q]).await),
        (0, 0),
        "{kind:?}"
    );
    // Nothing had finished yet a moment before the first.
    assert_eq!(
        figures(&stats_of(&fx, first - 1, &[&q]).await),
        (0, 0),
        "{kind:?}"
    );
}

/// A paused queue is listed even without a job, with zero counts; a paused queue with
/// jobs shows the flag; resumed and empty, it is gone from the list.
pub async fn stats_lists_a_paused_queue_without_jobs(kind: Kind) {
    let fx = open!(shared(kind));
    let (busy, empty) = (fx.queue.clone(), format!("{}-empty", fx.queue));
    fx.add(2).await;
    let now = fx.store.now_ms();
    assert!(fx.store.set_paused(&empty, true, now).await.unwrap());
    assert!(fx.store.set_paused(&busy, true, now).await.unwrap());
    let stats = stats_of(&fx, fx.store.now_ms(), &[&busy, &empty]).await;
    let expect_empty = QueueStats {
        queue: empty.clone(),
        paused: true,
        ..QueueStats::default()
    };
    assert_eq!(stats.len(), 2, "{kind:?}: {stats:?}");
    assert_eq!(stats[0].queue, busy, "{kind:?}");
    assert!(stats[0].paused, "{kind:?}");
    assert_eq!(stats[0].counts.pending, 2, "{kind:?}");
    assert_eq!(stats[1], expect_empty, "{kind:?}");
    assert!(fx.store.set_paused(&empty, false, now).await.unwrap());
    assert!(fx.store.set_paused(&busy, false, now).await.unwrap());
    let stats = stats_of(&fx, fx.store.now_ms(), &[&busy, &empty]).await;
    assert_eq!(stats.len(), 1, "{kind:?}: {stats:?}");
    assert!(!stats[0].paused, "{kind:?}");
}

// ---------------------------------------------------------------- list_jobs

/// `list_jobs` returns whole records newest first: by `enqueued_at` descending, jobs
/// enqueued at the same time by id descending; at most `limit`.
pub async fn list_jobs_orders_newest_first_then_by_id(kind: Kind) {
    let fx = open!(shared(kind));
    let t = now_ms() - 10_000;
    let mut model = Vec::new();
    let mut rows = Vec::new();
    for offset in [0, 10, 10, 20, 10, 5, 20] {
        let row = JobRow {
            enqueued_at_ms: t + offset,
            args: format!("[{offset}]"),
            ..fx.row()
        };
        model.push((row.enqueued_at_ms, row.id.clone()));
        rows.push(row);
    }
    // Stored in an order unlike the list's.
    rows.reverse();
    fx.enqueue(rows).await;
    let expect = newest_first(model);
    let now = fx.store.now_ms();
    let filter = in_queue(&fx.queue);
    let listed = fx.store.list_jobs(&filter, None, 100, now).await.unwrap();
    assert_eq!(ids(&listed), expect, "{kind:?}");
    for rec in &listed {
        assert_eq!(rec, &fx.get(&rec.id).await, "{kind:?}");
    }
    let three = fx.store.list_jobs(&filter, None, 3, now).await.unwrap();
    assert_eq!(ids(&three), expect[..3], "{kind:?}");
    let one = fx.store.list_jobs(&filter, None, 1, now).await.unwrap();
    assert_eq!(ids(&one), expect[..1], "{kind:?}");
}

/// Each filter narrows alone and combined: statuses (`scheduled` and `pending` as shown
/// at `now`), task, queue, since (inclusive), until (exclusive).
pub async fn list_jobs_filters_by_status_task_queue_and_time(kind: Kind) {
    let fx = open!(private(kind));
    let (a, b) = (fx.queue.clone(), format!("{}-b", fx.queue));
    let t = now_ms() - 100_000;
    use JobStatus::*;
    let plan = [
        (&a, "m.one", Pending),
        (&a, "m.one", Scheduled),
        (&a, "m.two", Running),
        (&a, "m.two", Retrying),
        (&a, "m.one", Succeeded),
        (&a, "m.two", Failed),
        (&a, "m.one", Cancelled),
        (&b, "m.one", Pending),
        (&b, "m.two", Scheduled),
        (&b, "m.two", Succeeded),
        (&b, "m.one", Failed),
        (&b, "m.two", Failed),
        (&b, "m.one", Succeeded),
    ];
    // (queue, task, state, enqueued_at, id)
    let mut model = Vec::new();
    for (i, (queue, task, state)) in plan.into_iter().enumerate() {
        let row = JobRow {
            task: task.into(),
            enqueued_at_ms: t + 1000 * (i as i64 % 5),
            ..row_in(&fx, queue)
        };
        let enqueued = row.enqueued_at_ms;
        let id = make(&fx, row, state).await;
        model.push((queue.clone(), task, state, enqueued, id));
    }
    let now = fx.store.now_ms();
    let check = |filter: JobFilter| {
        let expect = newest_first(
            model
                .iter()
                .filter(|(q, task, state, at, _)| {
                    (filter.statuses.is_empty() || filter.statuses.contains(state))
                        && filter.task.as_deref().is_none_or(|x| x == *task)
                        && filter.queue.as_deref().is_none_or(|x| x == q.as_str())
                        && filter.since_ms.is_none_or(|s| *at >= s)
                        && filter.until_ms.is_none_or(|u| *at < u)
                })
                .map(|(_, _, _, at, id)| (*at, id.clone()))
                .collect(),
        );
        let fx = &fx;
        async move {
            let got = fx.store.list_jobs(&filter, None, 1000, now).await.unwrap();
            assert_eq!(ids(&got), expect, "{:?}: {filter:?}", fx.kind);
            // The same in pages of two.
            let paged = all_pages(fx, &filter, 2, now).await;
            assert_eq!(ids(&paged), expect, "{:?}: {filter:?} in pages", fx.kind);
            assert!(
                !expect.is_empty() || filter.statuses.is_empty(),
                "{filter:?}"
            );
        }
    };
    let statuses = |s: &[JobStatus]| JobFilter {
        statuses: s.to_vec(),
        ..JobFilter::default()
    };
    check(JobFilter::default()).await;
    for state in [
        Pending, Scheduled, Running, Retrying, Succeeded, Failed, Cancelled,
    ] {
        check(statuses(&[state])).await;
    }
    check(statuses(&[Pending, Scheduled])).await;
    check(statuses(&[Failed, Cancelled, Succeeded])).await;
    let task = JobFilter {
        task: Some("m.two".into()),
        ..JobFilter::default()
    };
    check(task.clone()).await;
    check(in_queue(&b)).await;
    let since = JobFilter {
        since_ms: Some(t + 2000),
        ..JobFilter::default()
    };
    check(since.clone()).await;
    let until = JobFilter {
        until_ms: Some(t + 2000),
        ..JobFilter::default()
    };
    check(until.clone()).await;
    check(JobFilter {
        since_ms: Some(t + 1000),
        until_ms: Some(t + 3000),
        ..JobFilter::default()
    })
    .await;
    check(JobFilter {
        statuses: vec![Failed, Succeeded],
        task: Some("m.one".into()),
        queue: Some(b.clone()),
        ..JobFilter::default()
    })
    .await;
    check(JobFilter {
        statuses: vec![Failed],
        queue: Some(b.clone()),
        since_ms: Some(t + 1000),
        until_ms: Some(t + 4000),
        ..task.clone()
    })
    .await;
    // Nothing matches: an unknown task, an empty time range.
    let none = JobFilter {
        task: Some("m.unknown".into()),
        ..JobFilter::default()
    };
    let got = fx.store.list_jobs(&none, None, 10, now).await.unwrap();
    assert!(got.is_empty(), "{kind:?}");
    let empty = JobFilter {
        since_ms: Some(t + 3000),
        until_ms: Some(t + 3000),
        ..JobFilter::default()
    };
    assert!(fx
        .store
        .list_jobs(&empty, None, 10, now)
        .await
        .unwrap()
        .is_empty());
    // Seen from two hours later, the scheduled jobs are pending.
    let later = fx
        .store
        .list_jobs(&statuses(&[Scheduled]), None, 10, now + 2 * HOUR)
        .await
        .unwrap();
    assert!(later.is_empty(), "{kind:?}: {later:?}");
    let pending = fx
        .store
        .list_jobs(&statuses(&[Pending]), None, 10, now + 2 * HOUR)
        .await
        .unwrap();
    assert_eq!(pending.len(), 4, "{kind:?}");
}

/// Pages continue strictly after their cursor: every job present when the listing began
/// is listed exactly once, in order, although jobs are enqueued between pages (newer
/// ones are not listed; one enqueued earlier than the cursor is, once).
pub async fn list_jobs_pages_by_cursor_without_repeats_or_gaps(kind: Kind) {
    let fx = open!(shared(kind));
    let t = now_ms() - 60_000;
    let mut model = Vec::new();
    let mut rows = Vec::new();
    for i in 0..23 {
        // Runs of equal enqueue times, so pages also break inside a tie.
        let row = JobRow {
            enqueued_at_ms: t + 100 * (i / 4),
            ..fx.row()
        };
        model.push((row.enqueued_at_ms, row.id.clone()));
        rows.push(row);
    }
    fx.enqueue(rows).await;
    let filter = in_queue(&fx.queue);
    let now = fx.store.now_ms();
    let mut listed: Vec<String> = Vec::new();
    let mut after: Option<Cursor> = None;
    let mut old_one = None;
    for page_no in 0.. {
        let page = fx
            .store
            .list_jobs(&filter, after.as_ref(), 5, now)
            .await
            .unwrap();
        listed.extend(ids(&page));
        let Some(last) = page.last() else { break };
        after = Some(Cursor {
            enqueued_at_ms: last.enqueued_at_ms,
            id: last.id.clone(),
        });
        // Between pages: a new job (newest: before every cursor) and, once, a job
        // enqueued long before (after the cursor: the listing reaches it).
        fx.add(1).await;
        if page_no == 1 {
            let old = JobRow {
                enqueued_at_ms: t - 1_000,
                ..fx.row()
            };
            old_one = Some((old.enqueued_at_ms, old.id.clone()));
            fx.enqueue(vec![old]).await;
        }
        if page.len() < 5 {
            break;
        }
    }
    model.push(old_one.expect("more than two pages"));
    let expect = newest_first(model.clone());
    let unique: HashSet<&String> = listed.iter().collect();
    assert_eq!(
        unique.len(),
        listed.len(),
        "{kind:?}: a job was listed twice"
    );
    assert_eq!(listed, expect, "{kind:?}");
    // Past the last job: nothing.
    let last = Cursor {
        enqueued_at_ms: t - 1_000,
        id: expect.last().unwrap().clone(),
    };
    let rest = fx.store.list_jobs(&filter, Some(&last), 5, now).await;
    assert!(rest.unwrap().is_empty(), "{kind:?}");
    // A cursor that is no job: the jobs strictly after its place (enqueued before
    // t + 250; nothing at that time, so the id does not matter).
    let mid = Cursor {
        enqueued_at_ms: t + 250,
        id: String::new(),
    };
    let got = fx.store.list_jobs(&filter, Some(&mid), 1000, now).await;
    let expect_mid = newest_first(model.into_iter().filter(|(at, _)| *at < t + 250).collect());
    assert_eq!(expect_mid.len(), 13);
    assert_eq!(ids(&got.unwrap()), expect_mid, "{kind:?}");
}

// ---------------------------------------------------------------- retry_batch

fn failed_or_cancelled(queue: &str) -> JobFilter {
    JobFilter {
        statuses: vec![JobStatus::Failed, JobStatus::Cancelled],
        ..in_queue(queue)
    }
}

/// `retry_batch` puts failed and cancelled jobs back to `pending`, due now, with a
/// fresh budget (attempts 0, same max_attempts) and their error history; result,
/// finish, start, cancel reason and cancel request cleared. Other states are untouched.
pub async fn retry_batch_puts_failed_and_cancelled_jobs_back(kind: Kind) {
    let fx = open!(shared(kind));
    let failed = make(
        &fx,
        JobRow {
            max_attempts: 4,
            ..fx.row()
        },
        JobStatus::Failed,
    )
    .await;
    let cancelled = make(&fx, fx.row(), JobStatus::Cancelled).await;
    let running = make(&fx, fx.row(), JobStatus::Running).await;
    let others = [
        make(&fx, fx.row(), JobStatus::Succeeded).await,
        make(&fx, fx.row(), JobStatus::Pending).await,
        make(&fx, fx.row(), JobStatus::Scheduled).await,
        make(&fx, fx.row(), JobStatus::Retrying).await,
    ];
    let before: Vec<JobRecord> = {
        let mut v = Vec::new();
        for id in &others {
            v.push(fx.get(id).await);
        }
        v
    };
    let now = fx.store.now_ms();
    let n = fx
        .store
        .retry_batch(&failed_or_cancelled(&fx.queue), now, 100)
        .await
        .unwrap();
    assert_eq!(n, 2, "{kind:?}");
    for (id, errors, max) in [(&failed, 1, 4), (&cancelled, 0, 3)] {
        let rec = fx.get(id).await;
        assert_eq!(rec.status, JobStatus::Pending, "{kind:?}");
        assert_eq!(rec.run_at_ms, now, "{kind:?}");
        assert_eq!((rec.attempts, rec.max_attempts), (0, max), "{kind:?}");
        assert_eq!(rec.errors.len(), errors, "{kind:?}: history kept");
        assert_eq!(rec.result, None, "{kind:?}");
        assert_eq!(rec.finished_at_ms, None, "{kind:?}");
        assert_eq!(rec.started_at_ms, None, "{kind:?}");
        assert_eq!(rec.cancel_reason, None, "{kind:?}");
    }
    for (id, rec) in others.iter().zip(&before) {
        assert_eq!(&fx.get(id).await, rec, "{kind:?}: untouched");
    }
    assert_eq!(
        fx.get(&running).await.status,
        JobStatus::Running,
        "{kind:?}"
    );
    // Nothing left to retry.
    let filter = failed_or_cancelled(&fx.queue);
    let again = fx.store.retry_batch(&filter, now, 100).await.unwrap();
    assert_eq!(again, 0, "{kind:?}");
    // The retried jobs run again from their first attempt.
    let w = fx.worker();
    let claimed = fx.claim(&w, 10).await;
    let mut got: Vec<(String, u32)> = claimed.iter().map(|j| (j.id.clone(), j.attempt)).collect();
    got.sort();
    let mut expect = vec![
        (failed.clone(), 1),
        (cancelled.clone(), 1),
        (others[1].clone(), 1),
    ];
    expect.sort();
    assert_eq!(got, expect, "{kind:?}");
}

/// A job cancelled while running (its cancel request granted) comes back without the
/// request: its next worker is not asked to stop.
pub async fn retry_batch_clears_the_cancel_request(kind: Kind) {
    let fx = open!(shared(kind));
    let id = fx.add(1).await.remove(0);
    let w = fx.worker();
    let claimed = fx.claim(&w, 1).await;
    assert!(fx.store.cancel(&id).await.unwrap());
    let held = [id.clone()];
    assert_eq!(fx.store.heartbeat(&w, &held, LEASE).await.unwrap(), held);
    let reason = Some("cancelled by request".to_owned());
    let done = vec![(claimed[0].clone(), Completion::Cancelled { reason })];
    assert_eq!(fx.store.complete(&w, done).await.unwrap(), 1);
    let filter = failed_or_cancelled(&fx.queue);
    let n = fx.store.retry_batch(&filter, fx.store.now_ms(), 10).await;
    assert_eq!(n.unwrap(), 1, "{kind:?}");
    let w2 = fx.worker();
    let again = fx.claim(&w2, 1).await;
    assert_eq!(again.len(), 1, "{kind:?}");
    let asked = fx.store.heartbeat(&w2, &held, LEASE).await.unwrap();
    assert!(
        asked.is_empty(),
        "{kind:?}: cancel request kept over the retry"
    );
}

/// A job whose unique key an unfinished job of its queue holds is skipped; of two
/// failed jobs with one key, one comes back.
pub async fn retry_batch_skips_a_job_whose_unique_key_is_held(kind: Kind) {
    let fx = open!(shared(kind));
    let keyed = |key: &str| JobRow {
        unique_key: Some(key.into()),
        ..fx.row()
    };
    let old = make(&fx, keyed("k1"), JobStatus::Failed).await;
    let holder = make(&fx, keyed("k1"), JobStatus::Scheduled).await;
    let twin_a = make(&fx, keyed("k2"), JobStatus::Failed).await;
    let twin_b = make(&fx, keyed("k2"), JobStatus::Cancelled).await;
    let filter = failed_or_cancelled(&fx.queue);
    let now = fx.store.now_ms();
    assert_eq!(
        fx.store.retry_batch(&filter, now, 100).await.unwrap(),
        1,
        "{kind:?}"
    );
    assert_eq!(fx.get(&old).await.status, JobStatus::Failed, "{kind:?}");
    let twins = [fx.get(&twin_a).await.status, fx.get(&twin_b).await.status];
    let pending = twins.iter().filter(|s| **s == JobStatus::Pending).count();
    assert_eq!(pending, 1, "{kind:?}: {twins:?}");
    assert_eq!(
        fx.store.retry_batch(&filter, now, 100).await.unwrap(),
        0,
        "{kind:?}"
    );
    // Once the holder finished, the key is free again.
    assert!(fx.store.cancel(&holder).await.unwrap());
    let only_old = JobFilter {
        statuses: vec![JobStatus::Failed],
        ..in_queue(&fx.queue)
    };
    let n = fx.store.retry_batch(&only_old, now, 100).await.unwrap();
    assert_eq!(n, 1, "{kind:?}");
    assert_eq!(fx.get(&old).await.status, JobStatus::Pending, "{kind:?}");
}

/// `retry_batch` respects the filter (task, time) and the limit.
pub async fn retry_batch_respects_filter_and_limit(kind: Kind) {
    let fx = open!(shared(kind));
    let t = now_ms() - 10_000;
    let mut other_task = Vec::new();
    let mut old = Vec::new();
    let mut wanted = Vec::new();
    for i in 0..7 {
        let row = JobRow {
            task: if i % 3 == 0 { "m.other" } else { "m.wanted" }.into(),
            enqueued_at_ms: t + i,
            ..fx.row()
        };
        let (task, at) = (row.task.clone(), row.enqueued_at_ms);
        let id = make(&fx, row, JobStatus::Failed).await;
        match (task.as_str(), at) {
            ("m.other", _) => other_task.push(id),
            (_, at) if at < t + 2 => old.push(id),
            _ => wanted.push(id),
        }
    }
    let filter = JobFilter {
        task: Some("m.wanted".into()),
        since_ms: Some(t + 2),
        ..failed_or_cancelled(&fx.queue)
    };
    let now = fx.store.now_ms();
    assert_eq!(wanted.len(), 3);
    assert_eq!(
        fx.store.retry_batch(&filter, now, 2).await.unwrap(),
        2,
        "{kind:?}"
    );
    assert_eq!(
        fx.store.retry_batch(&filter, now, 2).await.unwrap(),
        1,
        "{kind:?}"
    );
    for id in &wanted {
        assert_eq!(fx.get(id).await.status, JobStatus::Pending, "{kind:?}");
    }
    for id in other_task.iter().chain(&old) {
        assert_eq!(fx.get(id).await.status, JobStatus::Failed, "{kind:?}");
    }
}

// ---------------------------------------------------------------- cancel_batch

/// `cancel_batch` cancels jobs that have not started (pending, scheduled, retrying)
/// and asks running ones to stop, once: a second round counts none. Finished jobs and
/// other queues are untouched; the limit holds.
pub async fn cancel_batch_cancels_waiting_jobs_and_asks_running_ones(kind: Kind) {
    let fx = open!(shared(kind));
    let other = format!("{}-other", fx.queue);
    let waiting = [
        make(&fx, fx.row(), JobStatus::Pending).await,
        make(&fx, fx.row(), JobStatus::Scheduled).await,
        make(&fx, fx.row(), JobStatus::Retrying).await,
    ];
    let running = make(&fx, fx.row(), JobStatus::Running).await;
    let done = make(&fx, fx.row(), JobStatus::Succeeded).await;
    let elsewhere = make(&fx, row_in(&fx, &other), JobStatus::Pending).await;
    let now = fx.store.now_ms();
    let filter = in_queue(&fx.queue);
    // Rounds of at most 3 until one touches nothing: 4 in all (the running job asked
    // once). A SQL store skips rows another transaction holds locked at that moment (other
    // tests share the database), so how the 4 split over rounds is not fixed.
    let mut rounds = Vec::new();
    loop {
        let n = fx.store.cancel_batch(&filter, now, 3).await.unwrap();
        assert!(n <= 3, "{kind:?}: a round of limit 3 touched {n}");
        if n == 0 || rounds.len() == 20 {
            break;
        }
        rounds.push(n);
    }
    assert_eq!(rounds.iter().sum::<u64>(), 4, "{kind:?}: rounds {rounds:?}");
    for id in &waiting {
        let rec = fx.get(id).await;
        assert_eq!(rec.status, JobStatus::Cancelled, "{kind:?}");
        assert_eq!(rec.finished_at_ms, Some(now), "{kind:?}");
        assert_eq!(
            rec.cancel_reason.as_deref(),
            Some("cancelled by request"),
            "{kind:?}"
        );
    }
    assert_eq!(
        fx.get(&running).await.status,
        JobStatus::Running,
        "{kind:?}"
    );
    assert_eq!(fx.get(&done).await.status, JobStatus::Succeeded, "{kind:?}");
    assert_eq!(
        fx.get(&elsewhere).await.status,
        JobStatus::Pending,
        "{kind:?}"
    );
    // The running job's worker hears of it at its heartbeat.
    let counts = fx.store.counts(&fx.queue).await.unwrap();
    assert_eq!((counts.cancelled, counts.running), (3, 1), "{kind:?}");
}

/// `cancel_batch` with statuses: only `scheduled` cancels the jobs due later, only
/// `running` asks running ones (and cancels nothing waiting).
pub async fn cancel_batch_respects_the_status_filter(kind: Kind) {
    let fx = open!(shared(kind));
    let pending = make(&fx, fx.row(), JobStatus::Pending).await;
    let scheduled = make(&fx, fx.row(), JobStatus::Scheduled).await;
    let running = make(&fx, fx.row(), JobStatus::Running).await;
    let now = fx.store.now_ms();
    let only = |s: JobStatus| JobFilter {
        statuses: vec![s],
        ..in_queue(&fx.queue)
    };
    let n = fx
        .store
        .cancel_batch(&only(JobStatus::Scheduled), now, 100)
        .await;
    assert_eq!(n.unwrap(), 1, "{kind:?}");
    assert_eq!(fx.get(&scheduled).await.status, JobStatus::Cancelled);
    assert_eq!(fx.get(&pending).await.status, JobStatus::Pending);
    let n = fx
        .store
        .cancel_batch(&only(JobStatus::Running), now, 100)
        .await;
    assert_eq!(n.unwrap(), 1, "{kind:?}");
    assert_eq!(fx.get(&pending).await.status, JobStatus::Pending);
    assert_eq!(fx.get(&running).await.status, JobStatus::Running);
    let n = fx
        .store
        .cancel_batch(&only(JobStatus::Succeeded), now, 100)
        .await;
    assert_eq!(n.unwrap(), 0, "{kind:?}");
}

// ---------------------------------------------------------------- purge_batch

/// `purge_batch` deletes finished jobs matching the filter that finished before the
/// cut-off, at most `limit` per call; unfinished jobs and other filters' jobs stay.
pub async fn purge_batch_deletes_matching_finished_jobs_before_the_cutoff(kind: Kind) {
    let fx = open!(shared(kind));
    let other = format!("{}-other", fx.queue);
    use JobStatus::*;
    let mut finished = Vec::new();
    for state in [Succeeded, Succeeded, Failed, Cancelled, Succeeded] {
        finished.push(make(&fx, fx.row(), state).await);
    }
    let unfinished = [
        make(&fx, fx.row(), Pending).await,
        make(&fx, fx.row(), Scheduled).await,
        make(&fx, fx.row(), Running).await,
        make(&fx, fx.row(), Retrying).await,
    ];
    let elsewhere = make(&fx, row_in(&fx, &other), Succeeded).await;
    let mut times = Vec::new();
    for id in &finished {
        times.push(fx.get(id).await.finished_at_ms.unwrap());
    }
    let first = *times.iter().min().unwrap();
    let cutoff = fx.store.now_ms().max(*times.iter().max().unwrap()) + 1;
    let filter = in_queue(&fx.queue);
    assert_eq!(fx.store.purge_batch(&filter, first, 100).await.unwrap(), 0);
    // Only failed.
    let failed = JobFilter {
        statuses: vec![Failed],
        ..filter.clone()
    };
    assert_eq!(fx.store.purge_batch(&failed, cutoff, 100).await.unwrap(), 1);
    assert!(
        fx.store.get(&finished[2]).await.unwrap().is_none(),
        "{kind:?}"
    );
    // The limit holds.
    assert_eq!(fx.store.purge_batch(&filter, cutoff, 3).await.unwrap(), 3);
    assert_eq!(fx.store.purge_batch(&filter, cutoff, 3).await.unwrap(), 1);
    assert_eq!(fx.store.purge_batch(&filter, cutoff, 3).await.unwrap(), 0);
    for id in &finished {
        assert!(fx.store.get(id).await.unwrap().is_none(), "{kind:?}");
    }
    for id in &unfinished {
        fx.get(id).await;
    }
    assert_eq!(fx.get(&elsewhere).await.status, Succeeded, "{kind:?}");
    // Every state asked for: still only finished jobs go.
    let all = JobFilter {
        statuses: vec![Pending, Scheduled, Running, Retrying],
        ..filter.clone()
    };
    let far = cutoff + 10 * HOUR;
    assert_eq!(
        fx.store.purge_batch(&all, far, 100).await.unwrap(),
        0,
        "{kind:?}"
    );
}

/// `purge_batch` by task and enqueue time.
pub async fn purge_batch_respects_task_and_time(kind: Kind) {
    let fx = open!(shared(kind));
    let t = now_ms() - 10_000;
    let mut keep = Vec::new();
    let mut gone = Vec::new();
    for i in 0..6 {
        let row = JobRow {
            task: if i % 2 == 0 { "m.a" } else { "m.b" }.into(),
            enqueued_at_ms: t + i,
            ..fx.row()
        };
        let hit = i % 2 == 0 && i < 4;
        let id = make(&fx, row, JobStatus::Succeeded).await;
        if hit {
            gone.push(id)
        } else {
            keep.push(id)
        }
    }
    let filter = JobFilter {
        task: Some("m.a".into()),
        until_ms: Some(t + 4),
        ..in_queue(&fx.queue)
    };
    let cutoff = fx.store.now_ms() + 1000;
    assert_eq!(
        fx.store.purge_batch(&filter, cutoff, 100).await.unwrap(),
        2,
        "{kind:?}"
    );
    for id in &gone {
        assert!(fx.store.get(id).await.unwrap().is_none(), "{kind:?}");
    }
    for id in &keep {
        fx.get(id).await;
    }
}

// ---------------------------------------------------------------- pause

/// `set_paused` persists a pause (seen by another handle), reports whether it changed
/// anything (a second pause or resume is `false`), and enqueueing still works.
pub async fn set_paused_is_persisted_and_idempotent(kind: Kind) {
    let fx = open!(shared(kind));
    let (q, other) = (fx.queue.clone(), format!("{}-other", fx.queue));
    let now = fx.store.now_ms();
    let mine = |all: Vec<String>| -> Vec<String> {
        all.into_iter().filter(|n| n == &q || n == &other).collect()
    };
    assert!(mine(fx.store.paused_queues().await.unwrap()).is_empty());
    assert!(
        fx.store.set_paused(&q, true, now).await.unwrap(),
        "{kind:?}"
    );
    assert!(
        !fx.store.set_paused(&q, true, now).await.unwrap(),
        "{kind:?}"
    );
    assert!(
        fx.store.set_paused(&other, true, now).await.unwrap(),
        "{kind:?}"
    );
    let second = fx.second_handle().await;
    let all = second.paused_queues().await.unwrap();
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted, "{kind:?}: by name");
    assert_eq!(mine(all), vec![q.clone(), other.clone()], "{kind:?}");
    fx.add(1).await;
    assert!(second.set_paused(&q, false, now).await.unwrap(), "{kind:?}");
    assert!(
        !fx.store.set_paused(&q, false, now).await.unwrap(),
        "{kind:?}"
    );
    assert_eq!(
        mine(fx.store.paused_queues().await.unwrap()),
        vec![other.clone()]
    );
    assert!(fx.store.set_paused(&other, false, now).await.unwrap());
    assert!(mine(fx.store.paused_queues().await.unwrap()).is_empty());
}

// ---------------------------------------------------------------- workers

fn worker_info(fx: &Fixture, now: i64) -> WorkerInfo {
    WorkerInfo {
        name: fx.worker(),
        host: "host-a".into(),
        pid: 4242,
        queues: vec![fx.queue.clone(), "second".into()],
        concurrency: 8,
        started_at_ms: now - 5_000,
        heartbeat_at_ms: now,
        heartbeat_interval_ms: 1_000,
        jobs_held: 0,
        version: "9.9.9".into(),
    }
}

async fn listed(fx: &Fixture, now: i64, names: &[&str]) -> Vec<WorkerInfo> {
    let all = fx.store.workers(now).await.unwrap();
    let order: Vec<&str> = all.iter().map(|w| w.name.as_str()).collect();
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(order, sorted, "{:?}: workers by name", fx.kind);
    all.into_iter()
        .filter(|w| names.contains(&w.name.as_str()))
        .collect()
}

/// A registered worker is listed as it registered; registering again replaces its row;
/// `remove_worker` takes it out.
pub async fn register_worker_lists_it_until_removed(kind: Kind) {
    let fx = open!(shared(kind));
    let now = fx.store.now_ms();
    let a = worker_info(&fx, now);
    let b = WorkerInfo {
        queues: vec![],
        ..worker_info(&fx, now)
    };
    fx.store.register_worker(&a).await.unwrap();
    fx.store.register_worker(&b).await.unwrap();
    let mut expect = vec![a.clone(), b.clone()];
    expect.sort_by(|x, y| x.name.cmp(&y.name));
    assert_eq!(
        listed(&fx, now, &[&a.name, &b.name]).await,
        expect,
        "{kind:?}"
    );
    let replaced = WorkerInfo {
        concurrency: 2,
        host: "host-b".into(),
        started_at_ms: now,
        ..a.clone()
    };
    fx.store.register_worker(&replaced).await.unwrap();
    assert_eq!(
        listed(&fx, now, &[&a.name]).await,
        vec![replaced],
        "{kind:?}"
    );
    fx.store.remove_worker(&a.name).await.unwrap();
    fx.store.remove_worker(&a.name).await.unwrap(); // twice: no error
    assert_eq!(listed(&fx, now, &[&a.name, &b.name]).await, vec![b.clone()]);
    fx.store.remove_worker(&b.name).await.unwrap();
    assert!(listed(&fx, now, &[&b.name]).await.is_empty(), "{kind:?}");
}

/// `beat_worker` updates the heartbeat and the held count (nothing else); a worker that
/// missed two heartbeats is not listed, and is again once it beats; a beat re-creates a
/// removed row.
pub async fn beat_worker_keeps_a_worker_listed(kind: Kind) {
    let fx = open!(shared(kind));
    let now = fx.store.now_ms();
    let w = worker_info(&fx, now);
    fx.store.register_worker(&w).await.unwrap();
    let names = [w.name.as_str()];
    // Two intervals late is still live; later than that it is gone.
    assert_eq!(listed(&fx, now + 2_000, &names).await.len(), 1, "{kind:?}");
    assert!(
        listed(&fx, now + 2_001, &names).await.is_empty(),
        "{kind:?}"
    );
    let beat = WorkerInfo {
        heartbeat_at_ms: now + 5_000,
        jobs_held: 3,
        ..w.clone()
    };
    fx.store.beat_worker(&beat).await.unwrap();
    assert_eq!(listed(&fx, now + 6_000, &names).await, vec![beat.clone()]);
    // The beat carries the registration too, but only heartbeat and held are written.
    let odd = WorkerInfo {
        concurrency: 99,
        heartbeat_at_ms: now + 6_000,
        jobs_held: 1,
        ..w.clone()
    };
    fx.store.beat_worker(&odd).await.unwrap();
    let expect = WorkerInfo {
        heartbeat_at_ms: now + 6_000,
        jobs_held: 1,
        ..w.clone()
    };
    assert_eq!(
        listed(&fx, now + 6_000, &names).await,
        vec![expect],
        "{kind:?}"
    );
    // Removed, then a beat: listed again.
    fx.store.remove_worker(&w.name).await.unwrap();
    assert!(listed(&fx, now + 6_000, &names).await.is_empty());
    fx.store.beat_worker(&beat).await.unwrap();
    assert_eq!(
        listed(&fx, now + 6_000, &names).await,
        vec![beat],
        "{kind:?}"
    );
    fx.store.remove_worker(&w.name).await.unwrap();
}

/// `workers` deletes the rows of workers gone for more than an hour: a later look,
/// even from an earlier `now`, no longer finds them. A worker gone for less stays.
pub async fn workers_deletes_rows_gone_for_an_hour(kind: Kind) {
    let fx = open!(private(kind));
    let now = fx.store.now_ms();
    let old = worker_info(&fx, now);
    let recent = WorkerInfo {
        heartbeat_at_ms: now + 2 * HOUR,
        ..worker_info(&fx, now)
    };
    fx.store.register_worker(&old).await.unwrap();
    fx.store.register_worker(&recent).await.unwrap();
    let names = [old.name.as_str(), recent.name.as_str()];
    // At now + 1h the old one is gone (not listed) but kept.
    let at = now + HOUR;
    assert_eq!(listed(&fx, at, &names).await, vec![recent.clone()]);
    assert_eq!(listed(&fx, now, &names).await.len(), 2, "{kind:?}");
    // At now + 2h it has been gone for more than an hour: deleted.
    let at = now + 2 * HOUR;
    assert_eq!(listed(&fx, at, &names).await, vec![recent.clone()]);
    assert_eq!(
        listed(&fx, now, &names).await,
        vec![recent.clone()],
        "{kind:?}"
    );
    fx.store.remove_worker(&recent.name).await.unwrap();
}
