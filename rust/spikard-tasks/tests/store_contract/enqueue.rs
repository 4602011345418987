//! `enqueue` and `get`.

use serde_json::json;
use spikard_tasks::job::JobRow;
use spikard_tasks::time::now_ms;
use spikard_tasks::{Enqueued, JobStatus};

use crate::support::{open, Kind};

/// Rows go in as `pending` with every field kept; ids come back in order, created.
pub async fn enqueue_stores_pending_jobs_and_returns_their_ids(kind: Kind) {
    let fx = open!(shared(kind));
    let now = now_ms();
    let full = JobRow {
        task: "contract.full".into(),
        args: r#"[1,"two",{"three":3}]"#.into(),
        kwargs: r#"{"k":[true,null]}"#.into(),
        priority: -7,
        max_attempts: 5,
        run_at_ms: now - 1_000,
        timeout_ms: Some(2_500),
        unique_key: Some("full".into()),
        enqueued_at_ms: now - 2_000,
        ..fx.row()
    };
    let rows = vec![full.clone(), fx.row(), fx.row()];
    let ids = fx.enqueue(rows).await;
    let rec = fx.get(&ids[0]).await;
    assert_eq!(rec.id, full.id);
    assert_eq!(rec.queue, fx.queue);
    assert_eq!(rec.task, "contract.full");
    assert_eq!(rec.status, JobStatus::Pending, "{kind:?}");
    assert_eq!(rec.attempts, 0);
    assert_eq!(rec.max_attempts, 5);
    assert_eq!(rec.priority, -7);
    assert_eq!(rec.run_at_ms, now - 1_000);
    assert_eq!(rec.args, json!([1, "two", {"three": 3}]));
    assert_eq!(rec.kwargs, json!({"k": [true, null]}));
    assert_eq!(rec.unique_key.as_deref(), Some("full"));
    assert_eq!(rec.enqueued_at_ms, now - 2_000);
    assert_eq!(
        (rec.result, rec.errors.len(), rec.cancel_reason),
        (None, 0, None),
        "{kind:?}"
    );
    assert_eq!((rec.started_at_ms, rec.finished_at_ms), (None, None));
    for id in &ids[1..] {
        assert_eq!(fx.get(id).await.status, JobStatus::Pending, "{kind:?}");
    }
    let counts = fx.store.counts(&fx.queue).await.unwrap();
    assert_eq!(counts.pending, 3, "{kind:?}");
    // The timeout is kept too: a claim hands it out in seconds.
    let claimed = fx.claim(&fx.worker(), 3).await;
    let job = claimed.iter().find(|j| j.id == full.id).unwrap();
    assert_eq!(job.timeout, Some(2.5), "{kind:?}");
}

/// An empty batch inserts nothing and returns no ids.
pub async fn enqueue_of_no_rows_inserts_nothing(kind: Kind) {
    let fx = open!(shared(kind));
    let out = fx.store.enqueue(Vec::new()).await;
    assert!(
        matches!(&out, Ok(v) if v.is_empty()),
        "{kind:?}: enqueue(vec![]) returned {out:?}"
    );
    assert_eq!(fx.store.counts(&fx.queue).await.unwrap().pending, 0);
}

/// A row whose unique key an unfinished job of its queue holds is not inserted; that
/// job's id comes back with `created: false` (also against an earlier row of the batch).
pub async fn enqueue_returns_the_unfinished_job_holding_a_unique_key(kind: Kind) {
    let fx = open!(shared(kind));
    let keyed = |key: &str| JobRow {
        unique_key: Some(key.into()),
        ..fx.row()
    };
    let first = keyed("k");
    let ids = fx.enqueue(vec![first.clone()]).await;
    let dup = keyed("k");
    let out = fx.store.enqueue(vec![dup.clone()]).await.unwrap();
    assert_eq!(
        out,
        [Enqueued {
            id: ids[0].clone(),
            created: false
        }],
        "{kind:?}"
    );
    assert!(fx.store.get(&dup.id).await.unwrap().is_none(), "{kind:?}");

    // Within one batch, the second row of a key gets the first one's id.
    let (a, b, plain) = (keyed("batch"), keyed("batch"), fx.row());
    let out = fx
        .store
        .enqueue(vec![a.clone(), b.clone(), plain.clone()])
        .await
        .unwrap();
    let expected = [
        Enqueued {
            id: a.id.clone(),
            created: true,
        },
        Enqueued {
            id: a.id.clone(),
            created: false,
        },
        Enqueued {
            id: plain.id.clone(),
            created: true,
        },
    ];
    assert_eq!(out, expected, "{kind:?}");
    assert!(fx.store.get(&b.id).await.unwrap().is_none(), "{kind:?}");

    // Keys are per queue.
    let elsewhere = JobRow {
        queue: format!("{}-other", fx.queue),
        ..keyed("k")
    };
    let out = fx.store.enqueue(vec![elsewhere.clone()]).await.unwrap();
    assert_eq!(
        (out[0].id.as_str(), out[0].created),
        (elsewhere.id.as_str(), true)
    );

    // Running and retrying jobs are unfinished: they still hold their key.
    let w = fx.worker();
    let claimed = fx.claim(&w, 10).await;
    let held = claimed.iter().find(|j| j.id == first.id).unwrap().clone();
    let out = fx.store.enqueue(vec![keyed("k")]).await.unwrap();
    assert_eq!(
        (out[0].id.as_str(), out[0].created),
        (first.id.as_str(), false),
        "{kind:?}"
    );
    let retry = spikard_tasks::Completion::Retry {
        run_at_ms: now_ms() + 3_600_000,
        error: spikard_tasks::AttemptError {
            attempt: 1,
            error: "E: later".into(),
            traceback: None,
            at_ms: now_ms(),
        },
    };
    assert_eq!(fx.store.complete(&w, vec![(held, retry)]).await.unwrap(), 1);
    let out = fx.store.enqueue(vec![keyed("k")]).await.unwrap();
    assert_eq!(
        (out[0].id.as_str(), out[0].created),
        (first.id.as_str(), false),
        "{kind:?}"
    );
}

/// Once the job holding a key finished, the key is free again.
pub async fn enqueue_frees_a_unique_key_once_its_job_finished(kind: Kind) {
    let fx = open!(shared(kind));
    let keyed = || JobRow {
        unique_key: Some("again".into()),
        ..fx.row()
    };
    let first = fx.enqueue(vec![keyed()]).await;
    assert!(fx.store.cancel(&first[0]).await.unwrap());
    let second = fx.enqueue(vec![keyed()]).await;
    assert_ne!(first, second);
    let w = fx.worker();
    let claimed = fx.claim(&w, 1).await;
    let done = vec![(
        claimed[0].clone(),
        spikard_tasks::Completion::Succeeded(json!(null)),
    )];
    assert_eq!(fx.store.complete(&w, done).await.unwrap(), 1);
    let third = fx.enqueue(vec![keyed()]).await;
    assert_ne!(third, second, "{kind:?}");
}

/// A batch that cannot be inserted whole (an id taken) inserts nothing, unique-key rows
/// included.
pub async fn enqueue_is_all_or_nothing(kind: Kind) {
    let fx = open!(shared(kind));
    let existing = fx.row();
    fx.enqueue(vec![existing.clone()]).await;
    let taken = JobRow {
        task: "contract.clash".into(),
        ..existing.clone()
    };
    let fresh = fx.row();
    assert!(
        fx.store
            .enqueue(vec![fresh.clone(), taken.clone()])
            .await
            .is_err(),
        "{kind:?}: an id that exists must fail the batch"
    );
    assert!(fx.store.get(&fresh.id).await.unwrap().is_none(), "{kind:?}");
    assert_eq!(fx.get(&existing.id).await.task, existing.task, "{kind:?}");

    // The same with a unique-key row first, and with an id twice in one batch.
    let keyed = JobRow {
        unique_key: Some("rolled-back".into()),
        ..fx.row()
    };
    assert!(fx.store.enqueue(vec![keyed.clone(), taken]).await.is_err());
    assert!(fx.store.get(&keyed.id).await.unwrap().is_none(), "{kind:?}");
    let twice = fx.row();
    assert!(fx
        .store
        .enqueue(vec![twice.clone(), twice.clone()])
        .await
        .is_err());
    assert!(fx.store.get(&twice.id).await.unwrap().is_none(), "{kind:?}");
    // A batch larger than any backend's statement chunk is still one transaction.
    let mut big: Vec<JobRow> = (0..1_200).map(|_| fx.row()).collect();
    let first_of_big = big[0].id.clone();
    big.push(JobRow {
        unique_key: Some("big".into()),
        ..fx.row()
    });
    big.push(existing.clone());
    assert!(fx.store.enqueue(big).await.is_err(), "{kind:?}");
    assert!(
        fx.store.get(&first_of_big).await.unwrap().is_none(),
        "{kind:?}"
    );
    // The rolled-back row did not keep its key.
    let again = JobRow {
        unique_key: Some("rolled-back".into()),
        ..fx.row()
    };
    let out = fx.store.enqueue(vec![again.clone()]).await.unwrap();
    assert_eq!(
        (out[0].id.as_str(), out[0].created),
        (again.id.as_str(), true),
        "{kind:?}"
    );
    let counts = fx.store.counts(&fx.queue).await.unwrap();
    assert_eq!(counts.pending, 2, "{kind:?}");
}

/// `get` reads a job; `None` for an unknown id; a pending job whose run_at is ahead
/// reads as `scheduled`.
pub async fn get_reads_a_job_or_none_for_an_unknown_id(kind: Kind) {
    let fx = open!(shared(kind));
    assert!(fx.store.get("no-such-job").await.unwrap().is_none());
    assert!(fx
        .store
        .get(&uuid::Uuid::now_v7().to_string())
        .await
        .unwrap()
        .is_none());
    let later = JobRow {
        run_at_ms: now_ms() + 3_600_000,
        ..fx.row()
    };
    let ids = fx.enqueue(vec![later.clone(), fx.row()]).await;
    let rec = fx.get(&ids[0]).await;
    assert_eq!(rec.status, JobStatus::Scheduled, "{kind:?}");
    assert_eq!(rec.run_at_ms, later.run_at_ms);
    assert_eq!(fx.get(&ids[1]).await.status, JobStatus::Pending, "{kind:?}");
}
