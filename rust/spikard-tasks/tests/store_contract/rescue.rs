//! `rescue_expired`. It acts on every job of a database: each test has its own.

use std::time::Duration;

use spikard_tasks::job::JobRow;
use spikard_tasks::store::{LOST, LOST_UNSTARTED};
use spikard_tasks::time::now_ms;
use spikard_tasks::{AttemptError, ClaimedJob, Completion, JobRecord, JobStatus};

use crate::support::{ids_of, lapse, open, sorted, Fixture, Kind, LEASE};

/// Records the start of `jobs` for `worker`.
async fn mark(fx: &Fixture, w: &str, jobs: &[ClaimedJob]) {
    let marks: Vec<(String, i64)> = ids_of(jobs).into_iter().map(|id| (id, now_ms())).collect();
    assert_eq!(
        fx.store.mark_started(w, &marks).await.unwrap(),
        jobs.len() as u64
    );
}

/// Lets the leases of `jobs` run out.
async fn expire(fx: &Fixture, w: &str, jobs: &[ClaimedJob]) {
    fx.store
        .heartbeat(w, &ids_of(jobs), Duration::ZERO)
        .await
        .unwrap();
    lapse().await;
}

/// Fails the current attempt of `job` with a retry due now.
async fn retry_now(fx: &Fixture, w: &str, job: &ClaimedJob) {
    let retry = Completion::Retry {
        run_at_ms: now_ms(),
        error: AttemptError {
            attempt: job.attempt,
            error: "Flaky: again".into(),
            traceback: None,
            at_ms: now_ms(),
        },
    };
    assert_eq!(
        fx.store
            .complete(w, vec![(job.clone(), retry)])
            .await
            .unwrap(),
        1
    );
}

/// The latest error entry of `rec`, checked to be `text` for `attempt`.
fn assert_last_entry(kind: Kind, rec: &JobRecord, attempt: u32, text: &str, since: i64) {
    let last = rec.errors.last().expect("an error entry");
    assert_eq!(
        (last.attempt, last.error.as_str(), last.traceback.as_deref()),
        (attempt, text, None),
        "{kind:?}: {:?}",
        rec.errors
    );
    assert!(last.at_ms >= since && last.at_ms <= now_ms(), "{kind:?}");
}

/// An expired job whose start was recorded used its attempt: `retrying` with a
/// `LOST` entry, claimed again as the next attempt.
pub async fn rescue_expired_counts_started_attempts_as_lost(kind: Kind) {
    let fx = open!(private(kind));
    let id = fx.add(1).await.remove(0);
    let w = fx.worker();
    let claimed = fx.claim(&w, 1).await;
    mark(&fx, &w, &claimed).await;
    expire(&fx, &w, &claimed).await;
    let since = now_ms();
    assert_eq!(fx.store.rescue_expired(100).await.unwrap(), 1, "{kind:?}");
    let rec = fx.get(&id).await;
    assert_eq!(
        (rec.status, rec.attempts),
        (JobStatus::Retrying, 1),
        "{kind:?}"
    );
    assert_eq!(rec.errors.len(), 1, "{kind:?}");
    assert_last_entry(kind, &rec, 1, LOST, since);
    assert_eq!(rec.finished_at_ms, None, "{kind:?}");
    // The worker lost it: its late outcome is not written.
    let late = vec![(
        claimed[0].clone(),
        Completion::Succeeded(serde_json::json!(1)),
    )];
    assert_eq!(fx.store.complete(&w, late).await.unwrap(), 0, "{kind:?}");
    let again = fx.claim(&fx.worker(), 1).await;
    assert_eq!(
        (again[0].id.as_str(), again[0].attempt),
        (id.as_str(), 2),
        "{kind:?}"
    );
}

/// A started job without attempts left is `failed`, finished, with a `LOST` entry.
pub async fn rescue_expired_fails_a_started_job_without_attempts_left(kind: Kind) {
    let fx = open!(private(kind));
    let once = JobRow {
        max_attempts: 1,
        ..fx.row()
    };
    let twice = JobRow {
        max_attempts: 2,
        ..fx.row()
    };
    let ids = fx.enqueue(vec![once, twice]).await;
    let w = fx.worker();
    let claimed = fx.claim(&w, 2).await;
    // The second job is on its last attempt.
    let second = claimed.iter().find(|j| j.id == ids[1]).unwrap();
    retry_now(&fx, &w, second).await;
    let mut held = fx.claim(&w, 1).await;
    assert_eq!(held[0].attempt, 2);
    held.extend(claimed.into_iter().filter(|j| j.id == ids[0]));
    mark(&fx, &w, &held).await;
    expire(&fx, &w, &held).await;
    let since = now_ms();
    assert_eq!(fx.store.rescue_expired(100).await.unwrap(), 2, "{kind:?}");
    for (id, attempts) in [(&ids[0], 1), (&ids[1], 2)] {
        let rec = fx.get(id).await;
        assert_eq!(
            (rec.status, rec.attempts),
            (JobStatus::Failed, attempts),
            "{kind:?}"
        );
        let finished = rec.finished_at_ms.expect("finished_at of a failed job");
        assert!(finished >= since && finished <= now_ms(), "{kind:?}");
        assert_last_entry(kind, &rec, attempts, LOST, since);
        assert_eq!(rec.errors.len(), attempts as usize, "{kind:?}");
    }
    assert!(fx.claim(&w, 10).await.is_empty(), "{kind:?}");
}

/// An expired job whose start was never recorded gets its attempt back: `pending`
/// (or `retrying` after earlier attempts) with a `LOST_UNSTARTED` entry.
pub async fn rescue_expired_gives_unstarted_attempts_back(kind: Kind) {
    let fx = open!(private(kind));
    let ids = fx.add(2).await;
    let w = fx.worker();
    let claimed = fx.claim(&w, 2).await;
    // The second job failed a first attempt; its second attempt is claimed, not started.
    let second = claimed.iter().find(|j| j.id == ids[1]).unwrap();
    retry_now(&fx, &w, second).await;
    let mut held = fx.claim(&w, 1).await;
    assert_eq!((held[0].id.as_str(), held[0].attempt), (ids[1].as_str(), 2));
    held.extend(claimed.into_iter().filter(|j| j.id == ids[0]));
    expire(&fx, &w, &held).await;
    let since = now_ms();
    assert_eq!(fx.store.rescue_expired(100).await.unwrap(), 2, "{kind:?}");
    let first = fx.get(&ids[0]).await;
    assert_eq!(
        (first.status, first.attempts),
        (JobStatus::Pending, 0),
        "{kind:?}"
    );
    assert_eq!(first.errors.len(), 1, "{kind:?}");
    assert_last_entry(kind, &first, 1, LOST_UNSTARTED, since);
    assert_eq!((first.started_at_ms, first.finished_at_ms), (None, None));
    let second = fx.get(&ids[1]).await;
    assert_eq!(
        (second.status, second.attempts),
        (JobStatus::Retrying, 1),
        "{kind:?}"
    );
    assert_eq!(second.errors.len(), 2, "{kind:?}");
    assert_last_entry(kind, &second, 2, LOST_UNSTARTED, since);
    assert_eq!(second.finished_at_ms, None, "{kind:?}");
    // Both are claimed again with the attempt numbers they had.
    let mut again = fx.claim(&fx.worker(), 10).await;
    again.sort_by(|a, b| a.id.cmp(&b.id));
    let got: Vec<(String, u32)> = again.iter().map(|j| (j.id.clone(), j.attempt)).collect();
    assert_eq!(got, [(ids[0].clone(), 1), (ids[1].clone(), 2)], "{kind:?}");
}

/// A job lost unstarted twice in a row at the same attempt has that attempt counted the
/// second time (`LOST`; `failed` without attempts left); an earlier `LOST_UNSTARTED`
/// of another attempt does not count.
pub async fn rescue_expired_counts_a_second_unstarted_loss_of_one_attempt(kind: Kind) {
    let fx = open!(private(kind));
    let last_chance = JobRow {
        max_attempts: 1,
        ..fx.row()
    };
    let ids = fx.enqueue(vec![fx.row(), last_chance]).await;
    let w = fx.worker();
    // Attempt 1 of both is lost unstarted: given back.
    let claimed = fx.claim_expired(&w, 2).await;
    assert_eq!(claimed.len(), 2);
    assert_eq!(fx.store.rescue_expired(100).await.unwrap(), 2, "{kind:?}");
    for id in &ids {
        let rec = fx.get(id).await;
        assert_eq!(
            (rec.status, rec.attempts),
            (JobStatus::Pending, 0),
            "{kind:?}"
        );
    }
    // Attempt 1 is lost unstarted again: now it counts.
    let claimed = fx.claim_expired(&w, 2).await;
    assert!(claimed.iter().all(|j| j.attempt == 1), "{kind:?}");
    let since = now_ms();
    assert_eq!(fx.store.rescue_expired(100).await.unwrap(), 2, "{kind:?}");
    let rec = fx.get(&ids[0]).await;
    assert_eq!(
        (rec.status, rec.attempts),
        (JobStatus::Retrying, 1),
        "{kind:?}"
    );
    assert_eq!(rec.errors.len(), 2, "{kind:?}");
    assert_last_entry(kind, &rec, 1, LOST, since);
    let rec = fx.get(&ids[1]).await;
    assert_eq!(
        (rec.status, rec.attempts),
        (JobStatus::Failed, 1),
        "{kind:?}"
    );
    assert!(rec.finished_at_ms.is_some(), "{kind:?}");
    assert_last_entry(kind, &rec, 1, LOST, since);

    // Attempt 2 fails normally and attempt 3 is lost unstarted: given back, as the
    // latest entry is not a LOST_UNSTARTED of attempt 3…
    let claimed = fx.claim(&w, 1).await;
    assert_eq!(claimed[0].attempt, 2);
    retry_now(&fx, &w, &claimed[0]).await;
    let claimed = fx.claim_expired(&w, 1).await;
    assert_eq!(claimed[0].attempt, 3);
    assert_eq!(fx.store.rescue_expired(100).await.unwrap(), 1, "{kind:?}");
    let rec = fx.get(&ids[0]).await;
    assert_eq!(
        (rec.status, rec.attempts),
        (JobStatus::Retrying, 2),
        "{kind:?}"
    );
    assert_last_entry(kind, &rec, 3, LOST_UNSTARTED, since);
    // …and a started attempt counts whatever came before.
    let claimed = fx.claim(&w, 1).await;
    assert_eq!(claimed[0].attempt, 3);
    mark(&fx, &w, &claimed).await;
    expire(&fx, &w, &claimed).await;
    assert_eq!(fx.store.rescue_expired(100).await.unwrap(), 1, "{kind:?}");
    let rec = fx.get(&ids[0]).await;
    assert_eq!(
        (rec.status, rec.attempts),
        (JobStatus::Failed, 3),
        "{kind:?}"
    );
    assert_last_entry(kind, &rec, 3, LOST, since);
    assert_eq!(rec.errors.len(), 5, "{kind:?}: {:?}", rec.errors);
}

/// Only expired leases are rescued: live leases, jobs not running and finished jobs
/// are left alone.
pub async fn rescue_expired_leaves_live_leases_alone(kind: Kind) {
    let fx = open!(private(kind));
    let ids = fx.add(4).await;
    let (w, live) = (fx.worker(), fx.worker());
    let lost = fx.claim(&w, 1).await;
    let kept = fx.claim(&live, 1).await;
    let finished = fx.claim(&live, 1).await;
    let ok = Completion::Succeeded(serde_json::json!("done"));
    let done = vec![(finished[0].clone(), ok)];
    assert_eq!(fx.store.complete(&live, done).await.unwrap(), 1);
    mark(&fx, &w, &lost).await;
    mark(&fx, &live, &kept).await;
    expire(&fx, &w, &lost).await;
    assert_eq!(fx.store.rescue_expired(100).await.unwrap(), 1, "{kind:?}");
    assert_eq!(
        fx.get(&lost[0].id).await.status,
        JobStatus::Retrying,
        "{kind:?}"
    );
    let rec = fx.get(&kept[0].id).await;
    assert_eq!(
        (rec.status, rec.errors.len()),
        (JobStatus::Running, 0),
        "{kind:?}"
    );
    assert_eq!(fx.get(&finished[0].id).await.status, JobStatus::Succeeded);
    let idle = ids
        .iter()
        .find(|id| ![&lost, &kept, &finished].iter().any(|j| &j[0].id == *id))
        .unwrap();
    assert_eq!(fx.get(idle).await.status, JobStatus::Pending, "{kind:?}");
    assert_eq!(fx.store.rescue_expired(100).await.unwrap(), 0, "{kind:?}");
    // The live lease is renewed by its worker and is still held.
    let held = sorted(&[kept[0].id.clone()]);
    assert!(fx
        .store
        .heartbeat(&live, &held, LEASE)
        .await
        .unwrap()
        .is_empty());
    let marks = [(kept[0].id.clone(), now_ms())];
    assert_eq!(fx.store.mark_started(&live, &marks).await.unwrap(), 1);
}

/// One call rescues at most `limit` jobs and returns how many it rescued.
pub async fn rescue_expired_rescues_at_most_limit_jobs(kind: Kind) {
    let fx = open!(private(kind));
    let ids = fx.add(5).await;
    let claimed = fx.claim_expired(&fx.worker(), 5).await;
    assert_eq!(claimed.len(), 5);
    assert_eq!(fx.store.rescue_expired(0).await.unwrap(), 0, "{kind:?}");
    let mut rescued = Vec::new();
    for expected in [2, 2, 1, 0] {
        assert_eq!(
            fx.store.rescue_expired(2).await.unwrap(),
            expected,
            "{kind:?}"
        );
        let mut now_pending = 0;
        for id in &ids {
            if fx.get(id).await.status == JobStatus::Pending {
                now_pending += 1;
            }
        }
        rescued.push(now_pending);
    }
    assert_eq!(rescued, [2, 4, 5, 5], "{kind:?}");
}
