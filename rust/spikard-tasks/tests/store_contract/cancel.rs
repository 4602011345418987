//! `cancel` and `counts`.

use serde_json::json;
use spikard_tasks::job::JobRow;
use spikard_tasks::time::now_ms;
use spikard_tasks::{AttemptError, Completion, JobStatus, QueueCounts};

use crate::support::{open, started, Kind};

fn retry_now(attempt: u32) -> Completion {
    Completion::Retry {
        run_at_ms: now_ms(),
        error: AttemptError {
            attempt,
            error: "Flaky: once".into(),
            traceback: None,
            at_ms: now_ms(),
        },
    }
}

/// A job that has not started (pending, scheduled or retrying) is cancelled at once:
/// `true`, `cancelled`, finished.
pub async fn cancel_finishes_a_pending_scheduled_or_retrying_job(kind: Kind) {
    let fx = open!(shared(kind));
    let later = JobRow {
        run_at_ms: now_ms() + 3_600_000,
        ..fx.row()
    };
    let ids = fx.enqueue(vec![fx.row(), later, fx.row()]).await;
    // The third becomes retrying.
    let w = fx.worker();
    assert!(fx.store.cancel(&ids[0]).await.unwrap(), "{kind:?}");
    let claimed = fx.claim(&w, 1).await;
    assert_eq!(claimed[0].id, ids[2]);
    let done = vec![(claimed[0].clone(), retry_now(1))];
    assert_eq!(fx.store.complete(&w, done).await.unwrap(), 1);
    assert_eq!(fx.get(&ids[2]).await.status, JobStatus::Retrying);

    let before = now_ms();
    for id in &ids {
        if id != &ids[0] {
            assert!(fx.store.cancel(id).await.unwrap(), "{kind:?}");
        }
        let rec = fx.get(id).await;
        assert_eq!(rec.status, JobStatus::Cancelled, "{kind:?}");
        let finished = rec.finished_at_ms.expect("finished_at of a cancelled job");
        assert!(
            finished >= before - 60_000 && finished <= now_ms(),
            "{kind:?}"
        );
    }
    // Cancelled jobs are finished: never claimed.
    assert!(fx.claim(&w, 10).await.is_empty(), "{kind:?}");
    let counts = fx.store.counts(&fx.queue).await.unwrap();
    assert_eq!(counts.cancelled, 3, "{kind:?}");
    assert_eq!(counts.unfinished(), 0, "{kind:?}");
}

/// Cancelling a running job only asks it to stop (`true`): it stays running and the
/// heartbeat of its worker reports it.
pub async fn cancel_asks_a_running_job_to_stop(kind: Kind) {
    let fx = open!(shared(kind));
    let id = fx.add(1).await.remove(0);
    let w = fx.worker();
    let claimed = fx.claim(&w, 1).await;
    assert!(fx.store.cancel(&id).await.unwrap(), "{kind:?}");
    let rec = fx.get(&id).await;
    assert_eq!(
        (rec.status, rec.finished_at_ms),
        (JobStatus::Running, None),
        "{kind:?}"
    );
    let held = [id.clone()];
    let asked = fx
        .store
        .heartbeat(&w, &held, crate::support::LEASE)
        .await
        .unwrap();
    assert_eq!(asked, held, "{kind:?}");
    // Asking twice is still a yes; the worker then writes its outcome.
    assert!(fx.store.cancel(&id).await.unwrap(), "{kind:?}");
    let outcome = Completion::Cancelled {
        reason: Some("asked".into()),
    };
    let done = vec![(started(&claimed, &id, now_ms()), outcome)];
    assert_eq!(fx.store.complete(&w, done).await.unwrap(), 1);
    assert_eq!(fx.get(&id).await.status, JobStatus::Cancelled, "{kind:?}");
}

/// Finished and unknown jobs cannot be cancelled: `false`, and nothing changes.
pub async fn cancel_returns_false_for_finished_and_unknown_jobs(kind: Kind) {
    let fx = open!(shared(kind));
    let ids = fx.add(3).await;
    let w = fx.worker();
    let claimed = fx.claim(&w, 2).await;
    let error = AttemptError {
        attempt: 1,
        error: "Fatal: no".into(),
        traceback: None,
        at_ms: now_ms(),
    };
    let done = vec![
        (claimed[0].clone(), Completion::Succeeded(json!("ok"))),
        (claimed[1].clone(), Completion::Failed(error)),
    ];
    assert_eq!(fx.store.complete(&w, done).await.unwrap(), 2);
    let pending = ids
        .iter()
        .find(|id| !claimed.iter().any(|j| &j.id == *id))
        .unwrap();
    assert!(fx.store.cancel(pending).await.unwrap());
    for (job, status) in [
        (&claimed[0].id, JobStatus::Succeeded),
        (&claimed[1].id, JobStatus::Failed),
        (pending, JobStatus::Cancelled),
    ] {
        let before = fx.get(job).await;
        assert!(!fx.store.cancel(job).await.unwrap(), "{kind:?}: {status:?}");
        let after = fx.get(job).await;
        assert_eq!(after.status, status, "{kind:?}");
        assert_eq!(after, before, "{kind:?}: a refused cancel changes nothing");
    }
    assert!(!fx.store.cancel("no-such-job").await.unwrap(), "{kind:?}");
}

/// `counts` reports every state of one queue, a pending job whose run_at is ahead as
/// `scheduled`, and nothing of other queues.
pub async fn counts_reports_each_state_of_one_queue(kind: Kind) {
    let fx = open!(shared(kind));
    assert_eq!(
        fx.store.counts(&fx.queue).await.unwrap(),
        QueueCounts::default()
    );
    let now = now_ms();
    let urgent = || JobRow {
        priority: 9,
        ..fx.row()
    };
    let later = JobRow {
        run_at_ms: now + 3_600_000,
        ..fx.row()
    };
    let elsewhere = JobRow {
        queue: format!("{}-other", fx.queue),
        ..fx.row()
    };
    let ids = fx
        .enqueue(vec![
            urgent(),
            urgent(),
            urgent(),
            urgent(),
            urgent(),
            fx.row(),
            fx.row(),
            fx.row(),
            later,
            elsewhere,
        ])
        .await;
    let w = fx.worker();
    let claimed = fx.claim(&w, 5).await;
    assert!(claimed.iter().all(|j| j.priority == 9), "{kind:?}");
    let error = |attempt| AttemptError {
        attempt,
        error: "Broken: yes".into(),
        traceback: None,
        at_ms: now,
    };
    let done = vec![
        (claimed[0].clone(), Completion::Succeeded(json!(1))),
        (claimed[1].clone(), Completion::Failed(error(1))),
        (
            claimed[2].clone(),
            Completion::Retry {
                run_at_ms: now + 3_600_000,
                error: error(1),
            },
        ),
        (claimed[3].clone(), Completion::Cancelled { reason: None }),
    ];
    assert_eq!(fx.store.complete(&w, done).await.unwrap(), 4);
    assert!(fx.store.cancel(&ids[7]).await.unwrap());
    let counts = fx.store.counts(&fx.queue).await.unwrap();
    let expected = QueueCounts {
        pending: 2,
        scheduled: 1,
        running: 1,
        retrying: 1,
        succeeded: 1,
        failed: 1,
        cancelled: 2,
    };
    assert_eq!(counts, expected, "{kind:?}");
    let other = fx
        .store
        .counts(&format!("{}-other", fx.queue))
        .await
        .unwrap();
    assert_eq!(
        other,
        QueueCounts {
            pending: 1,
            ..QueueCounts::default()
        },
        "{kind:?}"
    );
    assert_eq!(
        fx.store.counts("contract-no-such-queue").await.unwrap(),
        QueueCounts::default()
    );
}
