//! Flow control (`LimitStore`): stored limits, and the limited claim obeying caps on
//! running jobs, rates and the worker's room per queue. Limits are global to a
//! database: each test names its tasks and queues after its own queue, looks only at
//! those limits, and removes them at the end.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use spikard_tasks::job::JobRow;
use spikard_tasks::store::{ClaimPlan, Limit, LimitScope, LimitState, LimitedClaim, Rate, Store};
use spikard_tasks::time::now_ms;
use spikard_tasks::{AttemptError, ClaimedJob, Completion, JobStatus};

use crate::support::{ids_of, open, sorted, Fixture, Kind, LEASE};

/// A limit on `name`.
fn limit(scope: LimitScope, name: &str, rate: Option<&str>, max_running: Option<u32>) -> Limit {
    Limit {
        scope,
        name: name.to_owned(),
        rate: rate.map(|r| Rate::parse(r).unwrap()),
        max_running,
    }
}

/// A plan respecting these limits, with no room per queue.
fn plan(limits: &[&Limit]) -> ClaimPlan {
    ClaimPlan {
        limits: limits.iter().map(|l| (*l).clone()).collect(),
        queue_room: Vec::new(),
    }
}

/// A task name of this test.
fn task(fx: &Fixture, tag: &str) -> String {
    format!("{}.{tag}", fx.queue)
}

/// A row of this test for `task`, with `priority`.
fn job(fx: &Fixture, task: &str, priority: i32) -> JobRow {
    JobRow {
        task: task.to_owned(),
        priority,
        ..fx.row()
    }
}

/// `n` rows of `task` with `priority`.
fn jobs(fx: &Fixture, task: &str, priority: i32, n: usize) -> Vec<JobRow> {
    (0..n).map(|_| job(fx, task, priority)).collect()
}

/// The stored limits of this test (named after its queue), in the store's order.
async fn mine(fx: &Fixture, usage: bool) -> Vec<LimitState> {
    let all = fx.store.limits(usage).await.unwrap();
    all.into_iter()
        .filter(|s| s.limit.name.starts_with(&fx.queue))
        .collect()
}

/// This test's stored limit of `key`.
async fn state(fx: &Fixture, key: &str, usage: bool) -> LimitState {
    mine(fx, usage)
        .await
        .into_iter()
        .find(|s| s.limit.key() == key)
        .unwrap_or_else(|| panic!("{:?}: no limit {key}", fx.kind))
}

/// Stores limits (each must be stored).
async fn set(fx: &Fixture, limits: &[&Limit]) {
    for l in limits {
        assert!(fx.store.set_limit(l).await.unwrap(), "{:?}: {l:?}", fx.kind);
    }
}

/// Removes every limit of this test.
async fn clear(fx: &Fixture) {
    for s in mine(fx, false).await {
        let none = Limit {
            rate: None,
            max_running: None,
            ..s.limit
        };
        fx.store.set_limit(&none).await.unwrap();
    }
}

/// A limited claim of this test's queue.
async fn claim(fx: &Fixture, worker: &str, n: usize, plan: &ClaimPlan) -> LimitedClaim {
    claim_of(fx, &fx.queues(), worker, n, plan).await
}

async fn claim_of(
    fx: &Fixture,
    queues: &[String],
    worker: &str,
    n: usize,
    plan: &ClaimPlan,
) -> LimitedClaim {
    fx.store
        .claim_limited(queues, worker, n, LEASE, plan)
        .await
        .unwrap_or_else(|e| panic!("{:?}: claim_limited: {e}", fx.kind))
}

/// How many of the claimed jobs are of `task`.
fn of(jobs: &[ClaimedJob], task: &str) -> usize {
    jobs.iter().filter(|j| j.task == task).count()
}

/// Finishes claimed jobs of `worker`.
async fn succeed(fx: &Fixture, worker: &str, jobs: &[ClaimedJob]) {
    let done = jobs
        .iter()
        .map(|j| (j.clone(), Completion::Succeeded(json!(null))))
        .collect();
    assert_eq!(
        fx.store.complete(worker, done).await.unwrap(),
        jobs.len(),
        "{:?}",
        fx.kind
    );
}

/// Asserts that none of `ids` was claimed: still pending, no attempt used.
async fn untouched(fx: &Fixture, ids: &[String], claimed: &[String]) {
    for id in ids.iter().filter(|id| !claimed.contains(id)) {
        let rec = fx.get(id).await;
        assert_eq!(
            (rec.status, rec.attempts),
            (JobStatus::Pending, 0),
            "{:?}: held-back job {id}",
            fx.kind
        );
    }
}

/// A limit is stored, listed by key, replaced keeping its rate's next start, and removed
/// by storing it without rate or cap (which reports whether one was there); a cap of 0
/// or an empty name is refused.
pub async fn set_limit_stores_replaces_and_removes_limits(kind: Kind) {
    let fx = open!(shared(kind));
    let t = task(&fx, "rated");
    let by_task = limit(LimitScope::Task, &t, Some("10/s"), Some(3));
    let by_queue = limit(LimitScope::Queue, &fx.queue, None, Some(2));
    set(&fx, &[&by_task, &by_queue]).await;
    let listed = mine(&fx, false).await;
    let keys: Vec<String> = listed.iter().map(|s| s.limit.key()).collect();
    assert_eq!(keys, [by_queue.key(), by_task.key()], "{kind:?}: by key");
    assert_eq!(listed[0].limit, by_queue, "{kind:?}");
    assert_eq!(listed[1].limit, by_task, "{kind:?}");
    assert!(
        listed
            .iter()
            .all(|s| s.running == 0 && s.next_start_ms == 0),
        "{kind:?}: {listed:?}"
    );
    // A start under the rate moves its next start on; replacing the limit keeps it.
    fx.enqueue(vec![job(&fx, &t, 0)]).await;
    let before = fx.store.now_ms();
    let got = claim(&fx, &fx.worker(), 5, &plan(&[&by_task])).await;
    assert_eq!(got.jobs.len(), 1, "{kind:?}");
    let next = state(&fx, &by_task.key(), false).await.next_start_ms;
    assert!(
        next >= before + 100 && next <= fx.store.now_ms() + 100,
        "{kind:?}: next start {next}, claimed at {before}"
    );
    let replaced = limit(LimitScope::Task, &t, Some("5/m"), None);
    set(&fx, &[&replaced]).await;
    assert!(
        !fx.store.set_limit(&replaced).await.unwrap(),
        "{kind:?}: the same limit again changes nothing"
    );
    let s = state(&fx, &by_task.key(), false).await;
    assert_eq!((s.limit, s.next_start_ms), (replaced, next), "{kind:?}");
    // Removal.
    let none = limit(LimitScope::Task, &t, None, None);
    assert!(fx.store.set_limit(&none).await.unwrap(), "{kind:?}");
    assert!(
        !fx.store.set_limit(&none).await.unwrap(),
        "{kind:?}: nothing left"
    );
    let keys: Vec<String> = mine(&fx, false)
        .await
        .iter()
        .map(|s| s.limit.key())
        .collect();
    assert_eq!(keys, [by_queue.key()], "{kind:?}");
    // A limit stored again starts afresh.
    set(&fx, &[&by_task]).await;
    assert_eq!(
        state(&fx, &by_task.key(), false).await.next_start_ms,
        0,
        "{kind:?}"
    );
    // Refused.
    for bad in [
        limit(LimitScope::Task, &t, None, Some(0)),
        limit(LimitScope::Queue, "", Some("1/s"), None),
        limit(LimitScope::Task, &"x".repeat(201), None, Some(1)),
    ] {
        assert!(fx.store.set_limit(&bad).await.is_err(), "{kind:?}: {bad:?}");
    }
    assert_eq!(
        state(&fx, &by_task.key(), false).await.limit,
        by_task,
        "{kind:?}"
    );
    clear(&fx).await;
    assert!(mine(&fx, false).await.is_empty(), "{kind:?}");
}

/// `limits(true)` counts the running jobs under each limit (jobs running before it was
/// stored included, finished ones not); `limits(false)` does not count.
pub async fn limits_with_usage_count_running_jobs(kind: Kind) {
    let fx = open!(shared(kind));
    let (a, b) = (task(&fx, "a"), task(&fx, "b"));
    fx.enqueue(jobs(&fx, &a, 0, 2)).await;
    // Two jobs of `a` run before any limit exists.
    let w = fx.worker();
    let early = fx.store.claim(&fx.queues(), &w, 2, LEASE).await.unwrap();
    assert_eq!(of(&early, &a), 2, "{kind:?}");
    let capped = limit(LimitScope::Task, &a, None, Some(5));
    let rated = limit(LimitScope::Task, &b, Some("1000/s"), None);
    let whole = limit(LimitScope::Queue, &fx.queue, None, Some(100));
    set(&fx, &[&capped, &rated, &whole]).await;
    fx.enqueue(jobs(&fx, &a, 0, 2)).await;
    fx.enqueue(jobs(&fx, &b, 0, 3)).await;
    let p = plan(&[&capped, &rated, &whole]);
    let got = claim(&fx, &w, 10, &p).await.jobs;
    // All of `a` (cap 5, 2 running) and one of `b` (its rate's one token).
    assert_eq!((of(&got, &a), of(&got, &b)), (2, 1), "{kind:?}");
    let running = |states: &[LimitState]| -> Vec<(String, u64)> {
        states.iter().map(|s| (s.limit.key(), s.running)).collect()
    };
    let expect = |na: u64, nb: u64, nq: u64| {
        let mut v = vec![(capped.key(), na), (rated.key(), nb), (whole.key(), nq)];
        v.sort();
        v
    };
    assert_eq!(running(&mine(&fx, true).await), expect(4, 1, 5), "{kind:?}");
    assert_eq!(
        running(&mine(&fx, false).await),
        expect(0, 0, 0),
        "{kind:?}"
    );
    // Finished jobs are not running.
    succeed(&fx, &w, &early).await;
    let b_job: Vec<ClaimedJob> = got.iter().filter(|j| j.task == b).cloned().collect();
    succeed(&fx, &w, &b_job).await;
    assert_eq!(running(&mine(&fx, true).await), expect(2, 0, 2), "{kind:?}");
    clear(&fx).await;
}

/// A task capped at 2 runs at most 2 jobs across workers; the jobs of other tasks behind
/// its held-back ones are still claimed (no head-of-line blocking); a finished job frees
/// its place.
pub async fn max_running_caps_a_task_without_blocking_the_others(kind: Kind) {
    let fx = open!(shared(kind));
    let (capped, free) = (task(&fx, "capped"), task(&fx, "free"));
    let cap = limit(LimitScope::Task, &capped, None, Some(2));
    set(&fx, &[&cap]).await;
    let p = plan(&[&cap]);
    let held = fx.enqueue(jobs(&fx, &capped, 10, 5)).await;
    let w1 = fx.worker();
    let first = claim(&fx, &w1, 10, &p).await;
    assert_eq!(of(&first.jobs, &capped), 2, "{kind:?}: {:?}", first.jobs);
    assert_eq!(first.jobs.len(), 2, "{kind:?}");
    assert_eq!(
        first.retry_at_ms, None,
        "{kind:?}: no rate held anything back"
    );
    for j in &first.jobs {
        assert_eq!(
            (j.attempt, j.queue.as_str()),
            (1, fx.queue.as_str()),
            "{kind:?}"
        );
        let rec = fx.get(&j.id).await;
        assert_eq!(
            (rec.status, rec.attempts),
            (JobStatus::Running, 1),
            "{kind:?}"
        );
    }
    // Behind the three held-back jobs (lower priority, enqueued later).
    let behind = fx.enqueue(jobs(&fx, &free, 0, 3)).await;
    let w2 = fx.worker();
    let second = claim(&fx, &w2, 10, &p).await;
    assert_eq!(ids_of(&second.jobs), sorted(&behind), "{kind:?}");
    let claimed: Vec<String> = first.jobs.iter().map(|j| j.id.clone()).collect();
    untouched(&fx, &held, &claimed).await;
    assert!(
        claim(&fx, &fx.worker(), 10, &p).await.jobs.is_empty(),
        "{kind:?}"
    );
    // One finishes: one more may run.
    succeed(&fx, &w1, &first.jobs[..1]).await;
    let w3 = fx.worker();
    let third = claim(&fx, &w3, 10, &p).await;
    assert_eq!(of(&third.jobs, &capped), 1, "{kind:?}");
    assert_eq!(third.jobs.len(), 1, "{kind:?}");
    assert!(claim(&fx, &w3, 10, &p).await.jobs.is_empty(), "{kind:?}");
    assert_eq!(state(&fx, &cap.key(), true).await.running, 2, "{kind:?}");
    clear(&fx).await;
}

/// A queue's cap bounds its running jobs; the worker's room per queue bounds what one
/// claim takes of it, and a queue without room gives nothing while the others still do.
pub async fn queue_max_running_and_local_room_bound_a_queue(kind: Kind) {
    let fx = open!(shared(kind));
    let cap = limit(LimitScope::Queue, &fx.queue, None, Some(3));
    set(&fx, &[&cap]).await;
    let p = plan(&[&cap]);
    fx.add(5).await;
    let w = fx.worker();
    assert_eq!(claim(&fx, &w, 10, &p).await.jobs.len(), 3, "{kind:?}");
    assert!(
        claim(&fx, &fx.worker(), 10, &p).await.jobs.is_empty(),
        "{kind:?}"
    );
    assert_eq!(state(&fx, &cap.key(), true).await.running, 3, "{kind:?}");
    // Room inside the worker: two queues, one of them bounded to 2, the other not.
    let (qb, qc) = (format!("{}-b", fx.queue), format!("{}-c", fx.queue));
    let in_queue = |q: &str| JobRow {
        queue: q.to_owned(),
        ..fx.row()
    };
    let ids_b = fx.enqueue((0..4).map(|_| in_queue(&qb)).collect()).await;
    let ids_c = fx.enqueue((0..3).map(|_| in_queue(&qc)).collect()).await;
    let both = vec![qb.clone(), qc.clone()];
    let room = |n: usize| ClaimPlan {
        limits: Vec::new(),
        queue_room: vec![(qb.clone(), n)],
    };
    let got = claim_of(&fx, &both, &fx.worker(), 10, &room(2)).await.jobs;
    let from =
        |q: &str| -> Vec<ClaimedJob> { got.iter().filter(|j| j.queue == q).cloned().collect() };
    assert_eq!(from(&qb).len(), 2, "{kind:?}: {got:?}");
    assert_eq!(ids_of(&from(&qc)), sorted(&ids_c), "{kind:?}: {got:?}");
    let got = claim_of(&fx, &both, &fx.worker(), 10, &room(0)).await.jobs;
    assert!(got.is_empty(), "{kind:?}: no room for {qb}: {got:?}");
    let claimed_b: Vec<String> = claim_of(&fx, &both, &fx.worker(), 1, &room(5))
        .await
        .jobs
        .iter()
        .map(|j| j.id.clone())
        .collect();
    assert_eq!(claimed_b.len(), 1, "{kind:?}");
    assert!(ids_b.contains(&claimed_b[0]), "{kind:?}");
    clear(&fx).await;
}

/// A task's cap and its queue's cap both hold: the claim takes what the tighter allows.
pub async fn task_and_queue_limits_hold_together(kind: Kind) {
    let fx = open!(shared(kind));
    let (a, b) = (task(&fx, "a"), task(&fx, "b"));
    let by_task = limit(LimitScope::Task, &a, None, Some(2));
    let by_queue = limit(LimitScope::Queue, &fx.queue, None, Some(3));
    set(&fx, &[&by_task, &by_queue]).await;
    let p = plan(&[&by_task, &by_queue]);
    fx.enqueue(jobs(&fx, &a, 5, 4)).await;
    fx.enqueue(jobs(&fx, &b, 0, 4)).await;
    let w = fx.worker();
    let got = claim(&fx, &w, 10, &p).await.jobs;
    assert_eq!((of(&got, &a), of(&got, &b)), (2, 1), "{kind:?}: {got:?}");
    assert!(
        claim(&fx, &fx.worker(), 10, &p).await.jobs.is_empty(),
        "{kind:?}"
    );
    // A job of `a` finishes: the queue allows one more, and `a` one more (it is ahead).
    let done: Vec<ClaimedJob> = got
        .iter()
        .filter(|j| j.task == a)
        .take(1)
        .cloned()
        .collect();
    succeed(&fx, &w, &done).await;
    let next = claim(&fx, &fx.worker(), 10, &p).await.jobs;
    assert_eq!((of(&next, &a), of(&next, &b)), (1, 0), "{kind:?}: {next:?}");
    // A job of `b` finishes: `a` is at its cap, so a job of `b` goes.
    let done: Vec<ClaimedJob> = got.iter().filter(|j| j.task == b).cloned().collect();
    succeed(&fx, &w, &done).await;
    let next = claim(&fx, &fx.worker(), 10, &p).await.jobs;
    assert_eq!((of(&next, &a), of(&next, &b)), (0, 1), "{kind:?}: {next:?}");
    clear(&fx).await;
}

/// A rate of 10/s lets one job start per claim at most, the next one 100 ms later; a
/// claim that finds no token takes nothing of it and says when to look again; jobs held
/// back stay pending without an attempt used.
pub async fn rate_limit_spaces_the_starts(kind: Kind) {
    let fx = open!(shared(kind));
    let t = task(&fx, "rated");
    let rate = limit(LimitScope::Task, &t, Some("10/s"), None);
    set(&fx, &[&rate]).await;
    let p = plan(&[&rate]);
    let ids = fx.enqueue(jobs(&fx, &t, 0, 100)).await;
    let w = fx.worker();
    let started = fx.store.now_ms();
    let first = claim(&fx, &w, 10, &p).await;
    assert_eq!(first.jobs.len(), 1, "{kind:?}");
    let second = claim(&fx, &w, 10, &p).await;
    let after = fx.store.now_ms();
    let mut claimed: Vec<String> = first.jobs.iter().map(|j| j.id.clone()).collect();
    claimed.extend(second.jobs.iter().map(|j| j.id.clone()));
    if after - started < 100 {
        // The second claim came within the interval: no token.
        assert!(second.jobs.is_empty(), "{kind:?}");
        let at = second.retry_at_ms.expect("a rate held jobs back");
        assert!(
            at > after && at <= after + 101,
            "{kind:?}: retry at {at}, claims from {started} to {after}"
        );
    } else {
        assert!(second.jobs.len() <= 1, "{kind:?}: slow run");
    }
    // Once the retry time has come, one more.
    let at = state(&fx, &rate.key(), false).await.next_start_ms + 1;
    let wait = at - fx.store.now_ms();
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait as u64 + 2)).await;
    }
    let before = fx.store.now_ms();
    let third = claim(&fx, &w, 1, &p).await;
    let after = fx.store.now_ms();
    assert_eq!(third.jobs.len(), 1, "{kind:?}");
    assert_eq!(
        third.retry_at_ms, None,
        "{kind:?}: the claim got all it asked for"
    );
    claimed.extend(third.jobs.iter().map(|j| j.id.clone()));
    let next = state(&fx, &rate.key(), false).await.next_start_ms;
    assert!(
        next >= before + 100 && next <= after + 100,
        "{kind:?}: next start {next}, claimed from {before} to {after}"
    );
    assert_eq!(claimed.len(), 2 + second.jobs.len());
    untouched(&fx, &ids, &claimed).await;
    clear(&fx).await;
}

/// Under a cap of 1 the job of the task picked is the first in claim order (highest
/// priority), and the claim returns its jobs in claim order, over every queue it takes.
pub async fn limited_claim_follows_priority(kind: Kind) {
    let fx = open!(shared(kind));
    let (a, b) = (task(&fx, "a"), task(&fx, "b"));
    let one = limit(LimitScope::Task, &a, None, Some(1));
    set(&fx, &[&one]).await;
    let other = format!("{}-b", fx.queue);
    let ids = fx
        .enqueue(vec![
            job(&fx, &a, 0),
            job(&fx, &b, 5),
            job(&fx, &a, 9),
            job(&fx, &b, -1),
            JobRow {
                queue: other.clone(),
                ..job(&fx, &b, 7)
            },
            JobRow {
                queue: other.clone(),
                ..job(&fx, &a, 8)
            },
        ])
        .await;
    let queues = [fx.queue.clone(), other];
    let got = claim_of(&fx, &queues, &fx.worker(), 10, &plan(&[&one]))
        .await
        .jobs;
    let order: Vec<String> = got.iter().map(|j| j.id.clone()).collect();
    let expected: Vec<String> = [2, 4, 1, 3].map(|i| ids[i].clone()).to_vec();
    assert_eq!(order, expected, "{kind:?}");
    untouched(&fx, &[ids[0].clone(), ids[5].clone()], &order).await;
    clear(&fx).await;
}

/// The limits of the plan that are no longer stored are not obeyed, and the limited
/// claim takes jobs that came due (a scheduled job, a retry) like the plain claim,
/// counting the retry's attempt.
pub async fn limited_claim_ignores_removed_limits_and_takes_due_jobs(kind: Kind) {
    let fx = open!(shared(kind));
    let t = task(&fx, "t");
    let gone = limit(LimitScope::Task, &t, None, Some(1));
    set(&fx, &[&gone]).await;
    let none = limit(LimitScope::Task, &t, None, None);
    assert!(fx.store.set_limit(&none).await.unwrap(), "{kind:?}");
    let p = plan(&[&gone]);
    fx.enqueue(jobs(&fx, &t, 0, 3)).await;
    let w = fx.worker();
    let got = claim(&fx, &w, 10, &p).await;
    assert_eq!((got.jobs.len(), got.retry_at_ms), (3, None), "{kind:?}");
    // Due soon: a scheduled job and a retry of one of those.
    let soon = now_ms() + 300;
    let scheduled = JobRow {
        run_at_ms: soon,
        ..job(&fx, &t, 0)
    };
    let scheduled = fx.enqueue(vec![scheduled]).await.remove(0);
    let retried = got.jobs[0].id.clone();
    let retry = vec![(
        got.jobs[0].clone(),
        Completion::Retry {
            run_at_ms: soon,
            error: AttemptError {
                attempt: 1,
                error: "Later: again".into(),
                traceback: None,
                at_ms: now_ms(),
            },
        },
    )];
    assert_eq!(fx.store.complete(&w, retry).await.unwrap(), 1, "{kind:?}");
    let early = claim(&fx, &w, 10, &p).await.jobs;
    if now_ms() < soon {
        assert!(early.is_empty(), "{kind:?}: {early:?}");
    }
    tokio::time::sleep(Duration::from_millis((soon + 50 - now_ms()).max(0) as u64)).await;
    let late = claim(&fx, &w, 10, &p).await.jobs;
    let mut taken: Vec<(String, u32)> = early
        .iter()
        .chain(&late)
        .map(|j| (j.id.clone(), j.attempt))
        .collect();
    taken.sort();
    let mut expected = vec![(scheduled, 1), (retried, 2)];
    expected.sort();
    assert_eq!(taken, expected, "{kind:?}");
}

/// Concurrent limited claims (separate handles and workers) never run more jobs under a
/// cap than it allows, together.
pub async fn concurrent_limited_claims_never_exceed_the_cap(kind: Kind) {
    let fx = open!(shared(kind));
    let t = task(&fx, "contended");
    let cap = limit(LimitScope::Task, &t, None, Some(3));
    set(&fx, &[&cap]).await;
    fx.enqueue(jobs(&fx, &t, 0, 20)).await;
    let start = Arc::new(tokio::sync::Barrier::new(6));
    let mut handles = Vec::new();
    for _ in 0..6 {
        let store: Arc<dyn Store> = fx.second_handle().await;
        let (queues, worker, p) = (fx.queues(), fx.worker(), plan(&[&cap]));
        let start = Arc::clone(&start);
        handles.push(tokio::spawn(async move {
            start.wait().await;
            store.claim_limited(&queues, &worker, 10, LEASE, &p).await
        }));
    }
    let mut total = 0;
    for h in handles {
        total += h.await.unwrap().unwrap().jobs.len();
    }
    assert_eq!(total, 3, "{kind:?}: claimed under a cap of 3");
    assert_eq!(state(&fx, &cap.key(), true).await.running, 3, "{kind:?}");
    assert_eq!(
        fx.store.counts(&fx.queue).await.unwrap().running,
        3,
        "{kind:?}"
    );
    clear(&fx).await;
}
