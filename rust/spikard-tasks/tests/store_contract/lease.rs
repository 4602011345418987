//! `mark_started`, `heartbeat` and `release`: what a worker does with the jobs it holds.

use std::time::Duration;

use spikard_tasks::time::now_ms;
use spikard_tasks::{AttemptError, Completion, JobStatus};

use crate::support::{ids_of, lapse, open, sorted, Kind, LEASE};

/// `mark_started` sets `started_at` of the jobs `worker` holds in `running` and returns
/// how many; other workers' jobs, jobs not running and unknown ids are left alone.
pub async fn mark_started_records_starts_of_jobs_the_worker_holds(kind: Kind) {
    let fx = open!(shared(kind));
    let ids = fx.add(4).await;
    let (w, other) = (fx.worker(), fx.worker());
    let mine = fx.claim(&w, 2).await;
    let theirs = fx.claim(&other, 1).await;
    let idle = ids
        .iter()
        .find(|id| !mine.iter().chain(&theirs).any(|j| &j.id == *id))
        .unwrap()
        .clone();
    assert_eq!(fx.store.mark_started(&w, &[]).await.unwrap(), 0);
    let at = now_ms() - 7;
    let mut marks: Vec<(String, i64)> = mine.iter().map(|j| (j.id.clone(), at)).collect();
    marks.push((theirs[0].id.clone(), at));
    marks.push((idle.clone(), at));
    marks.push(("no-such-job".into(), at));
    marks.sort();
    assert_eq!(
        fx.store.mark_started(&w, &marks).await.unwrap(),
        2,
        "{kind:?}"
    );
    for job in &mine {
        let rec = fx.get(&job.id).await;
        assert_eq!(rec.started_at_ms, Some(at), "{kind:?}");
        assert_eq!(
            (rec.status, rec.attempts),
            (JobStatus::Running, 1),
            "{kind:?}"
        );
    }
    assert_eq!(fx.get(&theirs[0].id).await.started_at_ms, None, "{kind:?}");
    let rec = fx.get(&idle).await;
    assert_eq!(
        (rec.status, rec.started_at_ms),
        (JobStatus::Pending, None),
        "{kind:?}"
    );
    // A later mark moves the start; a finished job is no longer marked.
    let marks = [(mine[0].id.clone(), at + 5)];
    assert_eq!(fx.store.mark_started(&w, &marks).await.unwrap(), 1);
    assert_eq!(fx.get(&mine[0].id).await.started_at_ms, Some(at + 5));
    let done = vec![(mine[0].clone(), Completion::Cancelled { reason: None })];
    assert_eq!(fx.store.complete(&w, done).await.unwrap(), 1);
    assert_eq!(
        fx.store.mark_started(&w, &marks).await.unwrap(),
        0,
        "{kind:?}"
    );
}

/// `heartbeat` returns the listed jobs `worker` holds whose cancellation was requested,
/// and nothing for jobs it does not hold or did not list.
pub async fn heartbeat_returns_running_jobs_whose_cancel_was_requested(kind: Kind) {
    let fx = open!(shared(kind));
    fx.add(3).await;
    let (w, other) = (fx.worker(), fx.worker());
    let mine = ids_of(&fx.claim(&w, 2).await);
    let theirs = ids_of(&fx.claim(&other, 1).await);
    assert!(fx
        .store
        .heartbeat(&w, &mine, LEASE)
        .await
        .unwrap()
        .is_empty());
    assert!(fx.store.heartbeat(&w, &[], LEASE).await.unwrap().is_empty());
    for id in mine.iter().chain(&theirs) {
        assert!(fx.store.cancel(id).await.unwrap());
    }
    let all = sorted(&[mine.clone(), theirs.clone()].concat());
    assert_eq!(
        sorted(&fx.store.heartbeat(&w, &all, LEASE).await.unwrap()),
        mine,
        "{kind:?}: only the worker's own jobs"
    );
    assert_eq!(
        fx.store.heartbeat(&w, &mine[1..], LEASE).await.unwrap(),
        mine[1..],
        "{kind:?}: only the listed jobs"
    );
    assert_eq!(
        fx.store.heartbeat(&other, &theirs, LEASE).await.unwrap(),
        theirs
    );
    assert!(fx
        .store
        .heartbeat(&w, &["no-such-job".to_owned()], LEASE)
        .await
        .unwrap()
        .is_empty());
}

/// `heartbeat` renews the leases of the listed jobs `worker` holds, and only those:
/// an unlisted job of the worker and a listed job of another worker expire.
pub async fn heartbeat_renews_only_listed_jobs_the_worker_holds(kind: Kind) {
    let fx = open!(private(kind));
    fx.add(3).await;
    let (w, other) = (fx.worker(), fx.worker());
    let mine = ids_of(&fx.claim(&w, 2).await);
    let theirs = ids_of(&fx.claim(&other, 1).await);
    // Every lease ends now…
    fx.store.heartbeat(&w, &mine, Duration::ZERO).await.unwrap();
    fx.store
        .heartbeat(&other, &theirs, Duration::ZERO)
        .await
        .unwrap();
    // …then the worker renews its first job and, by mistake, the other worker's.
    let renew = sorted(&[mine[0].clone(), theirs[0].clone()]);
    assert!(fx
        .store
        .heartbeat(&w, &renew, LEASE)
        .await
        .unwrap()
        .is_empty());
    lapse().await;
    assert_eq!(fx.store.rescue_expired(100).await.unwrap(), 2, "{kind:?}");
    assert_eq!(
        fx.get(&mine[0]).await.status,
        JobStatus::Running,
        "{kind:?}"
    );
    assert_eq!(
        fx.get(&mine[1]).await.status,
        JobStatus::Pending,
        "{kind:?}"
    );
    assert_eq!(
        fx.get(&theirs[0]).await.status,
        JobStatus::Pending,
        "{kind:?}"
    );
    // A renewed lease really is extended: nothing more to rescue.
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(fx.store.rescue_expired(100).await.unwrap(), 0, "{kind:?}");
}

/// `release` puts the worker's jobs back without counting the attempt: `pending` (or
/// `retrying` after earlier attempts), start cleared, claimable again.
pub async fn release_gives_jobs_back_without_counting_the_attempt(kind: Kind) {
    let fx = open!(shared(kind));
    let ids = fx.add(2).await;
    let w = fx.worker();
    let claimed = fx.claim(&w, 2).await;
    // The second job fails its first attempt and is claimed again (attempt 2).
    let second = claimed.iter().find(|j| j.id == ids[1]).unwrap().clone();
    let retry = Completion::Retry {
        run_at_ms: now_ms(),
        error: AttemptError {
            attempt: 1,
            error: "Flaky: once".into(),
            traceback: None,
            at_ms: now_ms(),
        },
    };
    assert_eq!(
        fx.store.complete(&w, vec![(second, retry)]).await.unwrap(),
        1
    );
    let again = fx.claim(&w, 1).await;
    assert_eq!(
        (again[0].id.as_str(), again[0].attempt),
        (ids[1].as_str(), 2)
    );
    let marks: Vec<(String, i64)> = sorted(&ids).into_iter().map(|id| (id, now_ms())).collect();
    assert_eq!(fx.store.mark_started(&w, &marks).await.unwrap(), 2);

    assert_eq!(fx.store.release(&w, None).await.unwrap(), 2, "{kind:?}");
    let first = fx.get(&ids[0]).await;
    assert_eq!(
        (first.status, first.attempts, first.started_at_ms),
        (JobStatus::Pending, 0, None),
        "{kind:?}"
    );
    let second = fx.get(&ids[1]).await;
    assert_eq!(
        (second.status, second.attempts, second.started_at_ms),
        (JobStatus::Retrying, 1, None),
        "{kind:?}"
    );
    assert_eq!(
        second.errors.len(),
        1,
        "{kind:?}: a release adds no error entry"
    );
    // The worker holds nothing now; the jobs are claimable with the same attempt numbers.
    assert!(fx
        .store
        .heartbeat(&w, &sorted(&ids), LEASE)
        .await
        .unwrap()
        .is_empty());
    let mut back = fx.claim(&fx.worker(), 10).await;
    back.sort_by(|a, b| a.id.cmp(&b.id));
    let got: Vec<(String, u32)> = back.iter().map(|j| (j.id.clone(), j.attempt)).collect();
    assert_eq!(got, [(ids[0].clone(), 1), (ids[1].clone(), 2)], "{kind:?}");
}

/// `release` touches only jobs `worker` holds in `running`, only the listed ones when
/// given ids, and returns how many it released.
pub async fn release_touches_only_the_workers_listed_jobs(kind: Kind) {
    let fx = open!(shared(kind));
    fx.add(4).await;
    let (w, other) = (fx.worker(), fx.worker());
    let mine = ids_of(&fx.claim(&w, 3).await);
    let theirs = ids_of(&fx.claim(&other, 1).await);
    assert_eq!(fx.store.release(&w, Some(&[])).await.unwrap(), 0);
    assert_eq!(fx.store.release(&fx.worker(), None).await.unwrap(), 0);
    assert_eq!(
        fx.store.release(&w, Some(&theirs)).await.unwrap(),
        0,
        "{kind:?}"
    );
    assert_eq!(
        fx.get(&theirs[0]).await.status,
        JobStatus::Running,
        "{kind:?}"
    );
    assert_eq!(
        fx.store.release(&w, Some(&mine[..1])).await.unwrap(),
        1,
        "{kind:?}"
    );
    assert_eq!(
        fx.get(&mine[0]).await.status,
        JobStatus::Pending,
        "{kind:?}"
    );
    assert_eq!(
        fx.get(&mine[1]).await.status,
        JobStatus::Running,
        "{kind:?}"
    );
    // Again: that job is no longer held.
    assert_eq!(fx.store.release(&w, Some(&mine[..1])).await.unwrap(), 0);
    assert_eq!(fx.store.release(&w, None).await.unwrap(), 2, "{kind:?}");
    for id in &mine {
        assert_eq!(fx.get(id).await.status, JobStatus::Pending, "{kind:?}");
    }
    assert_eq!(
        fx.get(&theirs[0]).await.status,
        JobStatus::Running,
        "{kind:?}"
    );
    let counts = fx.store.counts(&fx.queue).await.unwrap();
    assert_eq!((counts.pending, counts.running), (3, 1), "{kind:?}");
}
