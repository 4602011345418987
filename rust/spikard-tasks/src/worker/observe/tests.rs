//! The per-attempt events and counts, and what they cost.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};

use super::*;
use crate::job::AttemptError;

/// One captured event: level, target and fields (`message` included) as text.
type Captured = (Level, String, BTreeMap<String, String>);

/// Keeps the events of `max` level or more severe; counts them.
struct Capture {
    max: Level,
    events: Mutex<Vec<Captured>>,
    seen: AtomicU64,
    keep: bool,
}

impl Capture {
    fn new(max: Level, keep: bool) -> Arc<Self> {
        Arc::new(Self {
            max,
            events: Mutex::new(Vec::new()),
            seen: AtomicU64::new(0),
            keep,
        })
    }
}

struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
}

impl Subscriber for Capture {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::sometimes()
    }
    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(self.max.into())
    }
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= self.max
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        self.seen.fetch_add(1, Ordering::Relaxed);
        if self.keep {
            let mut fields = Fields(BTreeMap::new());
            event.record(&mut fields);
            let meta = event.metadata();
            let entry = (*meta.level(), meta.target().to_owned(), fields.0);
            self.events.lock().unwrap().push(entry);
        }
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

fn job(task: &str, attempt: u32) -> ClaimedJob {
    ClaimedJob {
        id: format!("id-{task}"),
        queue: "observe-q".into(),
        task: task.into(),
        attempt,
        max_attempts: 3,
        enqueued_at_ms: Some(1_000),
        run_at_ms: 1_000,
        ..ClaimedJob::default()
    }
}

fn failure(traceback: Option<&str>) -> AttemptError {
    AttemptError {
        attempt: 1,
        error: "ValueError: bad".into(),
        traceback: traceback.map(Into::into),
        at_ms: 0,
    }
}

#[test]
fn a_job_is_due_at_its_enqueue_time_or_later_run_at() {
    let mut j = job("due", 1);
    assert_eq!(due_ms(&j), Some(1_000));
    j.run_at_ms = 5_000;
    assert_eq!(due_ms(&j), Some(5_000));
    j.run_at_ms = 0;
    assert_eq!(due_ms(&j), Some(1_000));
    // A retry without its run_at: its due time is unknown.
    j.attempt = 2;
    assert_eq!(due_ms(&j), None);
    j.enqueued_at_ms = None;
    j.run_at_ms = 7;
    assert_eq!(due_ms(&j), Some(7));
}

#[test]
fn each_outcome_is_logged_with_its_fields_and_level() {
    let capture = Capture::new(Level::TRACE, true);
    let outcomes = [
        Completion::Succeeded(Value::Null),
        Completion::Retry {
            run_at_ms: 3_500,
            error: failure(None),
        },
        Completion::Failed(failure(Some("Traceback (most recent call last):\n  boom"))),
        Completion::Cancelled {
            reason: Some("no".into()),
        },
    ];
    tracing::subscriber::with_default(capture.clone(), || {
        for outcome in &outcomes {
            let j = job("observe-events", 2);
            Attempt::start(&j, 1_500).finish(&j, outcome, 1_000);
        }
    });
    let events = capture.events.lock().unwrap();
    let ours: Vec<&Captured> = events.iter().filter(|e| e.1 == TARGET).collect();
    let messages: Vec<(Level, &str)> = ours
        .iter()
        .map(|(l, _, f)| (*l, f["message"].as_str()))
        .collect();
    let started = (Level::DEBUG, "job started");
    assert_eq!(
        messages,
        [
            started,
            (Level::DEBUG, "job succeeded"),
            started,
            (Level::WARN, "job attempt failed, retrying"),
            started,
            (Level::ERROR, "job failed"),
            started,
            (Level::INFO, "job cancelled"),
        ]
    );
    for (_, _, fields) in &ours {
        assert_eq!(fields["job_id"], "id-observe-events");
        assert_eq!(fields["task"], "observe-events");
        assert_eq!(fields["queue"], "observe-q");
        assert_eq!(fields["attempt"], "2");
        assert_eq!(fields["max_attempts"], "3");
    }
    let retry = &ours[3].2;
    assert_eq!(retry["error"], "ValueError: bad");
    assert_eq!(retry["retry_in"], "2.5");
    assert!(retry["duration"].parse::<f64>().unwrap() >= 0.0);
    let failed = &ours[5].2;
    assert_eq!(
        failed["traceback"],
        "Traceback (most recent call last):\n  boom"
    );
    assert_eq!(ours[7].2["reason"], "no");
}

#[test]
fn attempts_are_counted_in_the_process_metrics() {
    let j = job("observe-counted", 1);
    Attempt::start(&j, 1_020).finish(&j, &Completion::Failed(failure(None)), 1_030);
    let text = crate::metrics::render();
    let pair = r#"{task="observe-counted",queue="observe-q"}"#;
    assert!(text.contains(&format!("spikard_tasks_jobs_started_total{pair} 1\n")));
    assert!(text.contains(&format!("spikard_tasks_jobs_failed_total{pair} 1\n")));
    assert!(text.contains(&format!("spikard_tasks_jobs_succeeded_total{pair} 0\n")));
    let count =
        r#"spikard_tasks_job_duration_seconds_count{task="observe-counted",queue="observe-q"} 1"#;
    assert!(text.contains(count), "{text}");
}

/// ns per job of counting and logging a start and an outcome, 10 tasks, with the DEBUG
/// events disabled by an INFO subscriber (and enabled, for comparison):
/// `cargo test --release -p spikard-tasks --lib observe_cost -- --ignored --nocapture`.
#[test]
#[ignore]
fn observe_cost() {
    let jobs: Vec<ClaimedJob> = (0..10).map(|i| job(&format!("cost-{i}"), 1)).collect();
    let done = Completion::Succeeded(Value::Null);
    let n = 2_000_000u32;
    let time = |f: &dyn Fn(&ClaimedJob)| {
        for j in &jobs {
            f(j);
        }
        let start = Instant::now();
        for i in 0..n {
            f(std::hint::black_box(&jobs[i as usize % 10]));
        }
        start.elapsed().as_nanos() as f64 / f64::from(n)
    };
    let counting = time(&|j| {
        let s = metrics::series(&j.task, &j.queue);
        s.started(Some(Duration::from_millis(3)));
        s.finished(&done, Duration::from_micros(50));
    });
    let attempt = |j: &ClaimedJob| Attempt::start(j, 1_003).finish(j, &done, 1_004);
    let info = Capture::new(Level::INFO, false);
    let quiet = tracing::subscriber::with_default(info.clone(), || time(&attempt));
    // The two DEBUG events of a succeeded job alone, disabled.
    let events = |j: &ClaimedJob| {
        tracing::debug!(target: TARGET, job_id = j.id.as_str(), task = j.task.as_str(), "job started");
        log_outcome(j, &done, 0.5, 1_004);
    };
    let disabled = tracing::subscriber::with_default(info.clone(), || time(&events));
    assert_eq!(info.seen.load(Ordering::Relaxed), 0);
    let debug = Capture::new(Level::DEBUG, false);
    let loud = tracing::subscriber::with_default(debug.clone(), || time(&attempt));
    assert!(debug.seen.load(Ordering::Relaxed) >= u64::from(n) * 2);
    println!(
        "metrics only: {counting:.1} ns/job; start+outcome (metrics, clock, events) with DEBUG \
         off: {quiet:.1} ns/job, of which the two disabled DEBUG events: {disabled:.1} ns; \
         with DEBUG on (a subscriber that only counts): {loud:.1} ns/job"
    );
}
