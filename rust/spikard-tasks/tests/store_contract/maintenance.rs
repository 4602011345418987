//! `purge_finished` and `maintain`. Both act on every job of a database: each test
//! has its own.

use std::time::Duration;

use serde_json::json;
use spikard_tasks::job::JobRow;
use spikard_tasks::store::{Maintenance, Store, MAINTENANCE_BATCH};
use spikard_tasks::time::now_ms;
use spikard_tasks::{AttemptError, Completion, JobStatus, QueueCounts};

use crate::support::{ids_of, lapse, open, Fixture, Kind};

/// Six jobs: succeeded, failed, cancelled, running, retrying and pending (ids in that
/// order).
async fn every_state(fx: &Fixture) -> Vec<String> {
    let urgent = || JobRow {
        priority: 5,
        ..fx.row()
    };
    let ids = fx
        .enqueue(vec![
            urgent(),
            urgent(),
            fx.row(),
            urgent(),
            urgent(),
            fx.row(),
        ])
        .await;
    let w = fx.worker();
    let claimed = fx.claim(&w, 4).await;
    let job = |i: usize| claimed.iter().find(|j| j.id == ids[i]).unwrap().clone();
    let error = AttemptError {
        attempt: 1,
        error: "E: x".into(),
        traceback: None,
        at_ms: now_ms(),
    };
    let done = vec![
        (job(0), Completion::Succeeded(json!(0))),
        (job(1), Completion::Failed(error.clone())),
        (
            job(4),
            Completion::Retry {
                run_at_ms: now_ms() + 3_600_000,
                error,
            },
        ),
    ];
    assert_eq!(fx.store.complete(&w, done).await.unwrap(), 3);
    assert!(fx.store.cancel(&ids[2]).await.unwrap());
    ids
}

/// `purge_finished` deletes finished jobs (succeeded, failed, cancelled) that finished
/// strictly before the cutoff, returns how many, and never touches unfinished jobs.
pub async fn purge_finished_deletes_only_jobs_finished_before_the_cutoff(kind: Kind) {
    let fx = open!(private(kind));
    let ids = every_state(&fx).await;
    let mut finished = Vec::new();
    for id in &ids[..3] {
        finished.push(fx.get(id).await.finished_at_ms.expect("finished_at"));
    }
    let (first, last) = (
        *finished.iter().min().unwrap(),
        *finished.iter().max().unwrap(),
    );
    assert_eq!(
        fx.store.purge_finished(first, 100).await.unwrap(),
        0,
        "{kind:?}"
    );
    assert_eq!(
        fx.store.purge_finished(last + 1, 100).await.unwrap(),
        3,
        "{kind:?}"
    );
    for id in &ids[..3] {
        assert!(fx.store.get(id).await.unwrap().is_none(), "{kind:?}");
    }
    let states: Vec<JobStatus> = {
        let mut s = Vec::new();
        for id in &ids[3..] {
            s.push(fx.get(id).await.status);
        }
        s
    };
    assert_eq!(
        states,
        [JobStatus::Running, JobStatus::Retrying, JobStatus::Pending],
        "{kind:?}"
    );
    let counts = fx.store.counts(&fx.queue).await.unwrap();
    let expected = QueueCounts {
        pending: 1,
        running: 1,
        retrying: 1,
        ..QueueCounts::default()
    };
    assert_eq!(counts, expected, "{kind:?}");
    assert_eq!(fx.store.purge_finished(now_ms() + 1, 100).await.unwrap(), 0);
}

/// One call deletes at most `limit` jobs.
pub async fn purge_finished_deletes_at_most_limit_jobs(kind: Kind) {
    let fx = open!(private(kind));
    let ids = fx.add(5).await;
    for id in &ids {
        assert!(fx.store.cancel(id).await.unwrap());
    }
    let cutoff = now_ms() + 1;
    assert_eq!(
        fx.store.purge_finished(cutoff, 0).await.unwrap(),
        0,
        "{kind:?}"
    );
    let mut left = Vec::new();
    for expected in [2, 2, 1, 0] {
        assert_eq!(
            fx.store.purge_finished(cutoff, 2).await.unwrap(),
            expected,
            "{kind:?}"
        );
        let mut n = 0;
        for id in &ids {
            if fx.store.get(id).await.unwrap().is_some() {
                n += 1;
            }
        }
        left.push(n);
    }
    assert_eq!(left, [3, 1, 0, 0], "{kind:?}");
}

/// `maintain`; with a cutoff, retried while another process holds the purge lock
/// (MySQL's lock is server-wide, so other databases' workers may hold it a moment).
async fn maintain(kind: Kind, store: &dyn Store, purge_before: Option<i64>) -> Maintenance {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut rescued = 0;
    loop {
        let done = store.maintain(purge_before).await.unwrap();
        rescued += done.rescued;
        match (purge_before, done.purged) {
            (Some(_), None) if kind == Kind::MySql && std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (Some(_), None) => panic!("{kind:?}: no purge ran with no other worker purging"),
            _ => return Maintenance { rescued, ..done },
        }
    }
}

/// A started job whose lease expired, with `max_attempts` attempts (in a queue of its
/// own, so that no other job of the test is claimed instead).
async fn lost_job(fx: &Fixture, max_attempts: u32) -> String {
    let queue = format!("{}-{}", fx.queue, uuid::Uuid::now_v7().simple());
    let id = fx
        .enqueue(vec![JobRow {
            max_attempts,
            queue: queue.clone(),
            ..fx.row()
        }])
        .await
        .remove(0);
    let w = fx.worker();
    let claimed = fx
        .store
        .claim(&[queue], &w, 1, crate::support::LEASE)
        .await
        .unwrap();
    assert_eq!(claimed[0].id, id);
    let marks = [(id.clone(), now_ms())];
    assert_eq!(fx.store.mark_started(&w, &marks).await.unwrap(), 1);
    fx.store
        .heartbeat(&w, &ids_of(&claimed), Duration::ZERO)
        .await
        .unwrap();
    lapse().await;
    id
}

/// A round of `maintain` rescues expired leases and then (given a cutoff) purges
/// finished jobs, and reports both numbers; without a cutoff nothing is purged.
pub async fn maintain_rescues_then_purges(kind: Kind) {
    let fx = open!(private(kind));
    let retried = lost_job(&fx, 3).await;
    let done = fx.add(1).await.remove(0);
    assert!(fx.store.cancel(&done).await.unwrap());
    let round = maintain(kind, &*fx.store, None).await;
    assert_eq!(
        round,
        Maintenance {
            rescued: 1,
            purged: None
        },
        "{kind:?}"
    );
    assert_eq!(
        fx.get(&retried).await.status,
        JobStatus::Retrying,
        "{kind:?}"
    );
    assert_eq!(fx.get(&done).await.status, JobStatus::Cancelled, "{kind:?}");

    // Rescue comes first: a job it fails is purged by the same round.
    let failed = lost_job(&fx, 1).await;
    let round = maintain(kind, &*fx.store, Some(now_ms() + 60_000)).await;
    assert_eq!(
        round,
        Maintenance {
            rescued: 1,
            purged: Some(2)
        },
        "{kind:?}"
    );
    assert!(fx.store.get(&failed).await.unwrap().is_none(), "{kind:?}");
    assert!(fx.store.get(&done).await.unwrap().is_none(), "{kind:?}");
    assert_eq!(
        fx.get(&retried).await.status,
        JobStatus::Retrying,
        "{kind:?}"
    );
    // A cutoff before the jobs finished purges nothing.
    let old = fx.add(1).await.remove(0);
    assert!(fx.store.cancel(&old).await.unwrap());
    let round = maintain(kind, &*fx.store, Some(now_ms() - 60_000)).await;
    assert_eq!(
        round,
        Maintenance {
            rescued: 0,
            purged: Some(0)
        },
        "{kind:?}"
    );
    assert!(fx.store.get(&old).await.unwrap().is_some(), "{kind:?}");
}

/// Every call runs a round, one after the other (a purge when no other worker purges).
pub async fn maintain_runs_each_time_it_is_called(kind: Kind) {
    let fx = open!(private(kind));
    let first = maintain(kind, &*fx.store, Some(now_ms())).await;
    assert_eq!(
        first,
        Maintenance {
            rescued: 0,
            purged: Some(0)
        },
        "{kind:?}"
    );
    lost_job(&fx, 3).await;
    let second = maintain(kind, &*fx.store, None).await;
    assert_eq!(second.rescued, 1, "{kind:?}");
    let third = maintain(kind, &*fx.store, None).await;
    assert_eq!(third, Maintenance::default(), "{kind:?}");
    // Another handle on the same database runs its own rounds too.
    let other = fx.second_handle().await;
    lost_job(&fx, 3).await;
    let fourth = maintain(kind, &*other, None).await;
    assert_eq!(fourth.rescued, 1, "{kind:?}");
}

/// A round works through more than one batch ([`MAINTENANCE_BATCH`]) of expired leases
/// and of finished jobs.
pub async fn maintain_works_through_more_than_one_batch(kind: Kind) {
    let fx = open!(private(kind));
    let n = MAINTENANCE_BATCH + 7;
    let ids = fx.add(n).await;
    let w = fx.worker();
    assert_eq!(fx.claim_expired(&w, n).await.len(), n);
    let round = maintain(kind, &*fx.store, None).await;
    assert_eq!(
        round,
        Maintenance {
            rescued: n as u64,
            purged: None
        },
        "{kind:?}"
    );
    assert_eq!(fx.store.counts(&fx.queue).await.unwrap().pending, n as u64);
    let claimed = fx.claim(&w, n).await;
    assert_eq!(claimed.len(), n, "{kind:?}");
    let done: Vec<_> = claimed
        .into_iter()
        .map(|j| (j, Completion::Succeeded(json!(null))))
        .collect();
    assert_eq!(fx.store.complete(&w, done).await.unwrap(), n, "{kind:?}");
    let round = maintain(kind, &*fx.store, Some(now_ms() + 1)).await;
    assert_eq!(
        round,
        Maintenance {
            rescued: 0,
            purged: Some(n as u64)
        },
        "{kind:?}"
    );
    assert!(fx.store.get(&ids[0]).await.unwrap().is_none(), "{kind:?}");
    assert!(
        fx.store.get(&ids[n - 1]).await.unwrap().is_none(),
        "{kind:?}"
    );
}

/// Rounds started at the same moment (two handles) never rescue one job twice: their
/// rescues add up to the expired jobs.
pub async fn maintain_calls_at_the_same_time_rescue_each_job_once(kind: Kind) {
    let fx = open!(private(kind));
    let n = 300;
    fx.add(n).await;
    assert_eq!(fx.claim_expired(&fx.worker(), n).await.len(), n);
    let stores = [fx.store.clone(), fx.second_handle().await];
    let rounds = (0..4).map(|i| {
        let store = stores[i % 2].clone();
        tokio::spawn(async move { store.maintain(None).await.unwrap() })
    });
    let mut rescued = 0;
    for round in rounds.collect::<Vec<_>>() {
        rescued += round.await.unwrap().rescued;
    }
    // (A round skips rows another is rescuing: whatever it skipped, the next one takes.)
    rescued += maintain(kind, &*fx.store, None).await.rescued;
    assert_eq!(
        rescued, n as u64,
        "{kind:?}: every expired job rescued once"
    );
    let counts = fx.store.counts(&fx.queue).await.unwrap();
    assert_eq!((counts.pending, counts.running), (n as u64, 0), "{kind:?}");
}
