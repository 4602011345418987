//! `ScheduleStore`: `save_schedule`, `schedules`, `remove_schedule`, `fire_schedule`.
//! Schedules are per database: each test uses names of its own.

use spikard_tasks::job::JobRow;
use spikard_tasks::store::StoredSchedule;
use spikard_tasks::{Enqueued, JobStatus};

use crate::support::{open, Fixture, Kind};

/// A schedule name of this test (after its queue).
fn name(fx: &Fixture, suffix: &str) -> String {
    format!("{}-{suffix}", fx.queue)
}

/// The stored schedule `name`, if there is one.
async fn find(fx: &Fixture, name: &str) -> Option<StoredSchedule> {
    fx.store
        .schedules()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.name == name)
}

/// A new schedule's last tick is the time it was saved (earlier ticks never fire);
/// saving it again replaces its definition and keeps its last tick.
pub async fn save_schedule_creates_at_now_and_keeps_the_last_tick_on_replace(kind: Kind) {
    let fx = open!(shared(kind));
    let n = name(&fx, "every-minute");
    fx.store
        .save_schedule(&n, r#"{"v":1}"#, 1_000_000)
        .await
        .unwrap();
    let saved = find(&fx, &n).await.expect("saved schedule");
    let expected = StoredSchedule {
        name: n.clone(),
        definition: r#"{"v":1}"#.into(),
        last_tick_ms: 1_000_000,
        updated_at_ms: 1_000_000,
    };
    assert_eq!(saved, expected, "{kind:?}");
    // Ticks up to its creation never fire.
    assert_eq!(
        fx.store
            .fire_schedule(&n, 999_000, Some(fx.row()))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        fx.store.fire_schedule(&n, 1_000_000, None).await.unwrap(),
        None
    );
    assert!(find(&fx, &n).await.unwrap().last_tick_ms == 1_000_000);

    fx.store
        .save_schedule(&n, r#"{"v":2}"#, 2_000_000)
        .await
        .unwrap();
    let replaced = find(&fx, &n).await.unwrap();
    let expected = StoredSchedule {
        definition: r#"{"v":2}"#.into(),
        updated_at_ms: 2_000_000,
        ..expected
    };
    assert_eq!(replaced, expected, "{kind:?}: the last tick is kept");
    // A fired tick is kept across a replace too.
    let fired = fx
        .store
        .fire_schedule(&n, 1_500_000, Some(fx.row()))
        .await
        .unwrap();
    assert!(fired.is_some_and(|e| e.created), "{kind:?}");
    fx.store
        .save_schedule(&n, r#"{"v":3}"#, 3_000_000)
        .await
        .unwrap();
    let again = find(&fx, &n).await.unwrap();
    assert_eq!(
        (again.last_tick_ms, again.updated_at_ms),
        (1_500_000, 3_000_000)
    );
    assert_eq!(again.definition, r#"{"v":3}"#, "{kind:?}");
    assert!(fx.store.remove_schedule(&n).await.unwrap());
}

/// `schedules` lists every stored schedule, ordered by name.
pub async fn schedules_lists_every_schedule_by_name(kind: Kind) {
    let fx = open!(shared(kind));
    let names = [name(&fx, "c"), name(&fx, "a"), name(&fx, "b")];
    for (i, n) in names.iter().enumerate() {
        let def = format!(r#"{{"i":{i}}}"#);
        fx.store
            .save_schedule(n, &def, 5_000 + i as i64)
            .await
            .unwrap();
    }
    let listed = fx.store.schedules().await.unwrap();
    let mine: Vec<&StoredSchedule> = listed.iter().filter(|s| names.contains(&s.name)).collect();
    let order: Vec<&str> = mine.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        order,
        [names[1].as_str(), names[2].as_str(), names[0].as_str()],
        "{kind:?}"
    );
    assert_eq!(mine[0].definition, r#"{"i":1}"#);
    assert_eq!(
        (mine[2].last_tick_ms, mine[2].updated_at_ms),
        (5_000, 5_000)
    );
    for n in &names {
        assert!(fx.store.remove_schedule(n).await.unwrap());
    }
    let listed = fx.store.schedules().await.unwrap();
    assert!(listed.iter().all(|s| !names.contains(&s.name)), "{kind:?}");
}

/// `remove_schedule` deletes a schedule (`true`), `false` when there was none; a removed
/// schedule fires no more.
pub async fn remove_schedule_reports_whether_one_existed(kind: Kind) {
    let fx = open!(shared(kind));
    let n = name(&fx, "gone");
    assert!(!fx.store.remove_schedule(&n).await.unwrap(), "{kind:?}");
    fx.store.save_schedule(&n, "{}", 10).await.unwrap();
    assert!(fx.store.remove_schedule(&n).await.unwrap(), "{kind:?}");
    assert!(find(&fx, &n).await.is_none(), "{kind:?}");
    assert!(!fx.store.remove_schedule(&n).await.unwrap(), "{kind:?}");
    let row = fx.row();
    assert_eq!(
        fx.store
            .fire_schedule(&n, 20, Some(row.clone()))
            .await
            .unwrap(),
        None
    );
    assert!(fx.store.get(&row.id).await.unwrap().is_none(), "{kind:?}");
}

/// `fire_schedule` wins a tick newer than the last one and enqueues its job
/// (`created: true`); the same tick or an older one is lost (`None`, nothing enqueued).
pub async fn fire_schedule_enqueues_one_job_per_newer_tick(kind: Kind) {
    let fx = open!(shared(kind));
    let n = name(&fx, "ticks");
    fx.store.save_schedule(&n, "{}", 100_000).await.unwrap();
    let tick = |ms: i64| (ms, fx.row());
    let (t1, job1) = tick(160_000);
    let won = fx
        .store
        .fire_schedule(&n, t1, Some(job1.clone()))
        .await
        .unwrap();
    let expected = Enqueued {
        id: job1.id.clone(),
        created: true,
    };
    assert_eq!(won, Some(expected), "{kind:?}");
    assert_eq!(
        fx.get(&job1.id).await.status,
        JobStatus::Pending,
        "{kind:?}"
    );
    assert_eq!(find(&fx, &n).await.unwrap().last_tick_ms, t1, "{kind:?}");
    // Another scheduler on the same tick, or a late one on an older tick, loses.
    for (t, job) in [tick(t1), tick(t1 - 60_000), tick(t1 - 1)] {
        assert_eq!(
            fx.store
                .fire_schedule(&n, t, Some(job.clone()))
                .await
                .unwrap(),
            None,
            "{kind:?}: tick {t}"
        );
        assert!(fx.store.get(&job.id).await.unwrap().is_none(), "{kind:?}");
    }
    let other = fx.second_handle().await;
    let (t2, job2) = tick(220_000);
    let won = other
        .fire_schedule(&n, t2, Some(job2.clone()))
        .await
        .unwrap();
    assert_eq!(
        won.map(|e| (e.id, e.created)),
        Some((job2.id.clone(), true))
    );
    assert_eq!(
        other.fire_schedule(&n, t2, Some(fx.row())).await.unwrap(),
        None
    );
    assert_eq!(find(&fx, &n).await.unwrap().last_tick_ms, t2, "{kind:?}");
    let counts = fx.store.counts(&fx.queue).await.unwrap();
    assert_eq!(counts.pending, 2, "{kind:?}: one job per won tick");
    assert!(fx.store.remove_schedule(&n).await.unwrap());
}

/// When the tick's job has a unique key an unfinished job holds, the tick is still
/// claimed and that job comes back (`created: false`); nothing new is enqueued.
pub async fn fire_schedule_returns_the_unfinished_job_of_a_unique_key(kind: Kind) {
    let fx = open!(shared(kind));
    let n = name(&fx, "unique");
    fx.store.save_schedule(&n, "{}", 1_000).await.unwrap();
    let keyed = || JobRow {
        unique_key: Some("nightly".into()),
        ..fx.row()
    };
    let holder = keyed();
    fx.enqueue(vec![holder.clone()]).await;
    let job = keyed();
    let fired = fx
        .store
        .fire_schedule(&n, 2_000, Some(job.clone()))
        .await
        .unwrap();
    let expected = Enqueued {
        id: holder.id.clone(),
        created: false,
    };
    assert_eq!(fired, Some(expected.clone()), "{kind:?}");
    assert!(fx.store.get(&job.id).await.unwrap().is_none(), "{kind:?}");
    assert_eq!(
        find(&fx, &n).await.unwrap().last_tick_ms,
        2_000,
        "{kind:?}: tick claimed"
    );
    assert_eq!(
        fx.store
            .fire_schedule(&n, 2_000, Some(keyed()))
            .await
            .unwrap(),
        None
    );
    // Still so while the holder runs; once it finished the next tick creates a job.
    let w = fx.worker();
    assert_eq!(fx.claim(&w, 1).await[0].id, holder.id);
    let fired = fx
        .store
        .fire_schedule(&n, 3_000, Some(keyed()))
        .await
        .unwrap();
    assert_eq!(fired, Some(expected), "{kind:?}");
    assert!(fx.store.release(&w, None).await.unwrap() == 1);
    assert!(fx.store.cancel(&holder.id).await.unwrap());
    let fresh = keyed();
    let fired = fx
        .store
        .fire_schedule(&n, 4_000, Some(fresh.clone()))
        .await
        .unwrap();
    assert_eq!(
        fired.map(|e| (e.id, e.created)),
        Some((fresh.id, true)),
        "{kind:?}"
    );
    assert!(fx.store.remove_schedule(&n).await.unwrap());
}

/// Without a job, a won tick is still claimed and the answer is `None`; an unknown
/// schedule claims nothing and enqueues nothing.
pub async fn fire_schedule_without_a_job_claims_the_tick(kind: Kind) {
    let fx = open!(shared(kind));
    let n = name(&fx, "paused");
    fx.store.save_schedule(&n, "{}", 50).await.unwrap();
    assert_eq!(fx.store.fire_schedule(&n, 60, None).await.unwrap(), None);
    assert_eq!(find(&fx, &n).await.unwrap().last_tick_ms, 60, "{kind:?}");
    let row = fx.row();
    assert_eq!(
        fx.store
            .fire_schedule(&n, 60, Some(row.clone()))
            .await
            .unwrap(),
        None
    );
    assert!(fx.store.get(&row.id).await.unwrap().is_none(), "{kind:?}");
    let fired = fx
        .store
        .fire_schedule(&n, 70, Some(row.clone()))
        .await
        .unwrap();
    assert_eq!(fired.map(|e| e.created), Some(true), "{kind:?}");

    let unknown = name(&fx, "never-saved");
    let stray = fx.row();
    assert_eq!(
        fx.store
            .fire_schedule(&unknown, 80, Some(stray.clone()))
            .await
            .unwrap(),
        None
    );
    assert!(fx.store.get(&stray.id).await.unwrap().is_none(), "{kind:?}");
    assert!(find(&fx, &unknown).await.is_none(), "{kind:?}");
    assert!(fx.store.remove_schedule(&n).await.unwrap());
}

/// Claiming the tick and enqueueing its job is one atomic step: when the job cannot be
/// inserted (its id is taken) the call fails and the tick stays unclaimed.
pub async fn fire_schedule_claims_no_tick_when_its_job_cannot_be_inserted(kind: Kind) {
    let fx = open!(shared(kind));
    let n = name(&fx, "atomic");
    fx.store.save_schedule(&n, "{}", 1_000).await.unwrap();
    let existing = fx.row();
    fx.enqueue(vec![existing.clone()]).await;
    let clash = JobRow {
        task: "contract.clash".into(),
        ..existing.clone()
    };
    assert!(
        fx.store
            .fire_schedule(&n, 2_000, Some(clash))
            .await
            .is_err(),
        "{kind:?}: a taken job id must fail the call"
    );
    assert_eq!(
        find(&fx, &n).await.unwrap().last_tick_ms,
        1_000,
        "{kind:?}: tick unclaimed"
    );
    assert_eq!(fx.get(&existing.id).await.task, existing.task, "{kind:?}");
    // The tick can still be won.
    let job = fx.row();
    let fired = fx
        .store
        .fire_schedule(&n, 2_000, Some(job.clone()))
        .await
        .unwrap();
    assert_eq!(
        fired.map(|e| (e.id, e.created)),
        Some((job.id, true)),
        "{kind:?}"
    );
    assert!(fx.store.remove_schedule(&n).await.unwrap());
}
