//! `complete`: writing the outcome of an attempt.

use serde_json::json;
use spikard_tasks::time::now_ms;
use spikard_tasks::{AttemptError, Completion, JobStatus};

use crate::support::{open, started, Kind, LEASE};

fn error(attempt: u32, text: &str) -> AttemptError {
    AttemptError {
        attempt,
        error: text.into(),
        traceback: Some("Traceback (most recent call last): ...".into()),
        at_ms: now_ms(),
    }
}

/// `Succeeded` stores the result, finishes the job and writes the attempt's start
/// (`ClaimedJob.started_at_ms`); the job is no longer held.
pub async fn complete_succeeded_stores_result_and_start(kind: Kind) {
    let fx = open!(shared(kind));
    let id = fx.add(1).await.remove(0);
    let w = fx.worker();
    let claimed = fx.claim(&w, 1).await;
    let start = now_ms() - 3;
    let result = json!({"answer": 42, "list": [1, 2.5, "x", null]});
    let before = now_ms();
    let done = vec![(
        started(&claimed, &id, start),
        Completion::Succeeded(result.clone()),
    )];
    assert_eq!(fx.store.complete(&w, done).await.unwrap(), 1, "{kind:?}");
    let rec = fx.get(&id).await;
    assert_eq!(rec.status, JobStatus::Succeeded, "{kind:?}");
    assert_eq!(rec.result, Some(result), "{kind:?}");
    assert_eq!(rec.started_at_ms, Some(start), "{kind:?}");
    let finished = rec.finished_at_ms.expect("finished_at");
    assert!(finished >= before && finished <= now_ms(), "{kind:?}");
    assert_eq!((rec.attempts, rec.errors.len()), (1, 0), "{kind:?}");
    assert!(fx
        .store
        .heartbeat(&w, &[id], LEASE)
        .await
        .unwrap()
        .is_empty());
}

/// `Retry` moves the job to `retrying` with the given run_at and appends the attempt's
/// error; it is not finished and is claimed again at its run_at.
pub async fn complete_retry_schedules_the_next_attempt(kind: Kind) {
    let fx = open!(shared(kind));
    let id = fx.add(1).await.remove(0);
    let w = fx.worker();
    let claimed = fx.claim(&w, 1).await;
    let start = now_ms() - 2;
    let next = now_ms() + 3_600_000;
    let err = error(1, "ValueError: try again");
    let done = vec![(
        started(&claimed, &id, start),
        Completion::Retry {
            run_at_ms: next,
            error: err.clone(),
        },
    )];
    assert_eq!(fx.store.complete(&w, done).await.unwrap(), 1, "{kind:?}");
    let rec = fx.get(&id).await;
    assert_eq!(rec.status, JobStatus::Retrying, "{kind:?}");
    assert_eq!(rec.run_at_ms, next, "{kind:?}");
    assert_eq!(rec.errors, [err], "{kind:?}");
    assert_eq!((rec.finished_at_ms, rec.result), (None, None), "{kind:?}");
    assert_eq!(
        (rec.attempts, rec.started_at_ms),
        (1, Some(start)),
        "{kind:?}"
    );
    assert!(
        fx.claim(&w, 1).await.is_empty(),
        "{kind:?}: its run_at is ahead"
    );

    // A retry due now is claimed at once, as the next attempt; errors accumulate.
    let other = fx.add(1).await.remove(0);
    let first = fx.claim(&w, 1).await;
    let errors = [error(1, "E: one"), error(2, "E: two")];
    let retry = |e: &AttemptError| Completion::Retry {
        run_at_ms: now_ms(),
        error: e.clone(),
    };
    let done = vec![(first[0].clone(), retry(&errors[0]))];
    assert_eq!(fx.store.complete(&w, done).await.unwrap(), 1);
    let second = fx.claim(&w, 1).await;
    assert_eq!(
        (second[0].id.as_str(), second[0].attempt),
        (other.as_str(), 2)
    );
    let done = vec![(second[0].clone(), retry(&errors[1]))];
    assert_eq!(fx.store.complete(&w, done).await.unwrap(), 1);
    assert_eq!(fx.get(&other).await.errors, errors, "{kind:?}");
}

/// `Failed` finishes the job as `failed` with the attempt's error entry.
pub async fn complete_failed_finishes_with_an_error_entry(kind: Kind) {
    let fx = open!(shared(kind));
    let id = fx.add(1).await.remove(0);
    let w = fx.worker();
    let claimed = fx.claim(&w, 1).await;
    let start = now_ms();
    let err = error(1, "RuntimeError: broken");
    let before = now_ms();
    let done = vec![(
        started(&claimed, &id, start),
        Completion::Failed(err.clone()),
    )];
    assert_eq!(fx.store.complete(&w, done).await.unwrap(), 1, "{kind:?}");
    let rec = fx.get(&id).await;
    assert_eq!(rec.status, JobStatus::Failed, "{kind:?}");
    assert_eq!(rec.errors, [err], "{kind:?}");
    let finished = rec.finished_at_ms.expect("finished_at");
    assert!(finished >= before && finished <= now_ms(), "{kind:?}");
    assert_eq!(
        (rec.result, rec.started_at_ms),
        (None, Some(start)),
        "{kind:?}"
    );
    assert!(fx.claim(&w, 1).await.is_empty(), "{kind:?}");
}

/// `Cancelled` finishes the job as `cancelled` with its reason.
pub async fn complete_cancelled_finishes_with_the_reason(kind: Kind) {
    let fx = open!(shared(kind));
    let ids = fx.add(2).await;
    let w = fx.worker();
    let claimed = fx.claim(&w, 2).await;
    let start = now_ms();
    let done = vec![
        (
            started(&claimed, &ids[0], start),
            Completion::Cancelled {
                reason: Some("user asked".into()),
            },
        ),
        (
            started(&claimed, &ids[1], start),
            Completion::Cancelled { reason: None },
        ),
    ];
    assert_eq!(fx.store.complete(&w, done).await.unwrap(), 2, "{kind:?}");
    let rec = fx.get(&ids[0]).await;
    assert_eq!(rec.status, JobStatus::Cancelled, "{kind:?}");
    assert_eq!(rec.cancel_reason.as_deref(), Some("user asked"), "{kind:?}");
    assert!(rec.finished_at_ms.is_some(), "{kind:?}");
    assert_eq!((rec.result, rec.errors.len()), (None, 0), "{kind:?}");
    assert_eq!(rec.started_at_ms, Some(start), "{kind:?}");
    let rec = fx.get(&ids[1]).await;
    assert_eq!(rec.status, JobStatus::Cancelled, "{kind:?}");
    assert!(rec.finished_at_ms.is_some(), "{kind:?}");
}

/// An outcome is written only while `worker` holds that attempt: not for another
/// worker, another attempt, a released or an already finished job; the count says how
/// many were written.
pub async fn complete_writes_only_attempts_the_worker_holds(kind: Kind) {
    let fx = open!(shared(kind));
    let ids = fx.add(4).await;
    let w = fx.worker();
    let claimed = fx.claim(&w, 4).await;
    let ok = |v: i64| Completion::Succeeded(json!(v));
    let job = |i: usize| claimed.iter().find(|j| j.id == ids[i]).unwrap().clone();
    assert_eq!(fx.store.complete(&w, Vec::new()).await.unwrap(), 0);
    // Another worker, the wrong attempt (either side), an unknown id: nothing written.
    assert_eq!(
        fx.store
            .complete(&fx.worker(), vec![(job(0), ok(1))])
            .await
            .unwrap(),
        0,
        "{kind:?}: another worker"
    );
    let mut later = job(0);
    later.attempt = 2;
    let mut earlier = job(1);
    earlier.attempt = 0;
    let mut unknown = job(2);
    unknown.id = uuid::Uuid::now_v7().to_string();
    let stale = vec![(later, ok(1)), (earlier, ok(1)), (unknown, ok(1))];
    assert_eq!(fx.store.complete(&w, stale).await.unwrap(), 0, "{kind:?}");
    for id in &ids {
        assert_eq!(fx.get(id).await.status, JobStatus::Running, "{kind:?}");
    }
    // A released job is not held any more.
    let released = [ids[3].clone()];
    assert_eq!(fx.store.release(&w, Some(&released)).await.unwrap(), 1);
    // A mixed batch writes the held attempts only.
    let mut wrong = job(1);
    wrong.attempt = 7;
    let batch = vec![
        (job(0), ok(0)),
        (wrong, ok(9)),
        (job(2), ok(2)),
        (job(3), ok(3)),
    ];
    assert_eq!(fx.store.complete(&w, batch).await.unwrap(), 2, "{kind:?}");
    assert_eq!(fx.get(&ids[0]).await.result, Some(json!(0)), "{kind:?}");
    assert_eq!(fx.get(&ids[1]).await.status, JobStatus::Running, "{kind:?}");
    assert_eq!(fx.get(&ids[2]).await.result, Some(json!(2)), "{kind:?}");
    assert_eq!(fx.get(&ids[3]).await.status, JobStatus::Pending, "{kind:?}");
    // A finished attempt is not written twice.
    let again = vec![(job(0), ok(5))];
    assert_eq!(fx.store.complete(&w, again).await.unwrap(), 0, "{kind:?}");
    assert_eq!(fx.get(&ids[0]).await.result, Some(json!(0)), "{kind:?}");
    // Once another worker claimed the released job, the old claim writes nothing.
    let other = fx.worker();
    let reclaimed = fx.claim(&other, 1).await;
    assert_eq!(
        (reclaimed[0].id.as_str(), reclaimed[0].attempt),
        (ids[3].as_str(), 1)
    );
    let done = vec![(job(3), ok(3)), (job(1), ok(1))];
    assert_eq!(fx.store.complete(&w, done).await.unwrap(), 1, "{kind:?}");
    let done = vec![(reclaimed[0].clone(), ok(4))];
    assert_eq!(
        fx.store.complete(&other, done).await.unwrap(),
        1,
        "{kind:?}"
    );
    assert_eq!(fx.get(&ids[3]).await.result, Some(json!(4)), "{kind:?}");
}
