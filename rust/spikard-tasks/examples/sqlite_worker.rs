//! A complete Rust program on the engine: a `TaskHandler`, a SQLite queue in a temporary
//! file, a few jobs (one fails once and is retried), a worker that runs them, and a
//! graceful stop.
//!
//! Run it with `cargo run -p spikard-tasks --example sqlite_worker`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use spikard_tasks::{
    spawn_worker, Backoff, ClaimedJob, JobOptions, JobStatus, NewJob, TaskHandler, TaskOutcome,
    TaskQueueClient, TaskQueueConfig, WorkerOptions,
};

/// Runs the tasks `add`, `greet` and `flaky` (which fails its first attempt). A handler
/// gets every job the worker claims; it must not panic (a panic is recorded as a failed
/// attempt) and should return rather than block the async runtime.
struct ExampleHandler {
    /// Attempts run by this handler (a handler may keep any shared state).
    attempts: AtomicU32,
}

#[async_trait]
impl TaskHandler for ExampleHandler {
    async fn handle(&self, job: ClaimedJob) -> TaskOutcome {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        match job.task.as_str() {
            "add" => {
                let sum: i64 = job
                    .args
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_i64)
                    .sum();
                TaskOutcome::Success(json!(sum))
            }
            "greet" => {
                let name = job.kwargs["name"].as_str().unwrap_or("stranger");
                TaskOutcome::Success(json!(format!("hello, {name}")))
            }
            // Fails once; the queue's backoff schedules the retry, which succeeds.
            "flaky" if job.attempt == 1 => TaskOutcome::fail("ConnectionError: upstream not ready"),
            "flaky" => TaskOutcome::Success(json!({ "attempt": job.attempt })),
            other => TaskOutcome::Fail {
                error: format!("UnknownTask: {other}"),
                traceback: None,
                retryable: false,
            },
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The queue lives in a SQLite file in a temporary directory (removed on exit).
    let dir = tempfile::tempdir()?;
    let config = TaskQueueConfig {
        url: format!("sqlite:///{}", dir.path().join("jobs.db").display()),
        queue: "example".into(),
        concurrency: 4,
        max_attempts: 3,
        // Short delays so that the example finishes at once.
        poll_interval: 0.05,
        backoff: Backoff {
            initial: 0.1,
            max: 1.0,
            multiplier: 2.0,
            jitter: 0.0,
        },
        drain_timeout: 5.0,
        ..TaskQueueConfig::default()
    };
    let client = TaskQueueClient::connect(config).await?;

    let mut greet = NewJob::new("greet");
    greet.kwargs = json!({ "name": "Ada" });
    let jobs = vec![
        NewJob::new("add").args(json!([1, 2, 3])),
        greet,
        NewJob::new("flaky").options(JobOptions {
            max_attempts: Some(2),
            ..JobOptions::default()
        }),
        NewJob::new("add").args(json!([40, 2])).options(JobOptions {
            priority: Some(10),
            ..JobOptions::default()
        }),
    ];
    let enqueued = client.enqueue(jobs).await?;
    println!("enqueued {} jobs", enqueued.len());

    let handler = Arc::new(ExampleHandler {
        attempts: AtomicU32::new(0),
    });
    let mut worker = spawn_worker(
        &client,
        handler.clone(),
        WorkerOptions::from_config(client.config()),
    )?;

    let mut all_ok = true;
    for e in &enqueued {
        let Some(job) = client.wait(&e.id, Some(Duration::from_secs(10))).await? else {
            println!("{}: not finished after 10 s", e.id);
            all_ok = false;
            continue;
        };
        let result = job.result.as_ref().map_or("-".to_owned(), Value::to_string);
        println!(
            "{:<6} {:<9} attempts={} result={}",
            job.task,
            job.status.as_str(),
            job.attempts,
            result
        );
        for err in &job.errors {
            println!("       attempt {} failed: {}", err.attempt, err.error);
        }
        all_ok &= job.status == JobStatus::Succeeded;
    }

    // Graceful stop: claims nothing more, waits for running jobs, then reports.
    let report = worker.stop().await?;
    println!(
        "worker stopped: succeeded={} retried={} failed={} (handler ran {} attempts)",
        report.succeeded,
        report.retried,
        report.failed,
        handler.attempts.load(Ordering::Relaxed)
    );
    println!("counts: {:?}", client.counts(None).await?);
    client.close().await;

    if all_ok {
        Ok(())
    } else {
        Err("some jobs did not succeed".into())
    }
}
