//! # spikard-tasks engine
//!
//! A durable task queue on [apalis]: persisted jobs with retries, backoff, priorities,
//! delays, results and leases. Host languages plug in through the [`TaskHandler`] trait;
//! no apalis type appears in this crate's public API.
//!
//! [apalis]: https://docs.rs/apalis
//!
//! # Example
//!
//! Enqueue two jobs in a SQLite queue, run them with a worker and stop it (the
//! `sqlite_worker` example in `examples/` is a longer version, with a retry):
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use serde_json::json;
//! use spikard_tasks::{
//!     spawn_worker, ClaimedJob, FnHandler, JobStatus, NewJob, TaskOutcome, TaskQueueClient,
//!     TaskQueueConfig, WorkerOptions,
//! };
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), spikard_tasks::CoreError> {
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("jobs.db");
//! // `sqlite:///relative.db` or `sqlite:////absolute/path.db`.
//! let url = format!("sqlite:///{}", path.display());
//! let client = TaskQueueClient::connect(TaskQueueConfig {
//!     url,
//!     ..TaskQueueConfig::default()
//! })
//! .await?;
//!
//! // Producer: jobs are rows in the store until a worker runs them.
//! let ids = client
//!     .enqueue(vec![
//!         NewJob::new("add").args(json!([1, 2])),
//!         NewJob::new("add").args(json!([3, 4])),
//!     ])
//!     .await?;
//!
//! // Worker: any `TaskHandler`; here a closure that sums the arguments.
//! let handler = Arc::new(FnHandler(|job: ClaimedJob| async move {
//!     let sum: i64 = job.args.as_array().into_iter().flatten().filter_map(|v| v.as_i64()).sum();
//!     TaskOutcome::Success(json!(sum))
//! }));
//! let mut worker = spawn_worker(&client, handler, WorkerOptions::from_config(client.config()))?;
//!
//! let job = client.wait(&ids[1].id, Some(Duration::from_secs(10))).await?.expect("finished");
//! assert_eq!(job.status, JobStatus::Succeeded);
//! assert_eq!(job.result, Some(json!(7)));
//!
//! // Graceful stop: nothing more is claimed, running jobs finish.
//! worker.stop().await?;
//! client.close().await;
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

pub mod config;
#[cfg(feature = "cron")]
pub mod cron;
pub mod error;
pub mod handler;
pub mod job;
pub mod metrics;
pub mod limits_client;
pub mod ops_client;
pub mod queue;
pub mod redact;
pub mod retry;
#[cfg(feature = "cron")]
pub mod scheduler;
pub mod store;
pub mod time;
pub mod url;
pub mod worker;

pub use config::{Backoff, TaskQueueConfig};
pub use error::{CoreError, CoreResult};
pub use handler::{FnHandler, TaskHandler, TaskOutcome};
pub use job::{
    AttemptError, ClaimedJob, Completion, Enqueued, JobOptions, JobRecord, JobStatus, NewJob,
    QueueCounts,
};
pub use ops_client::{JobPage, Stats};
pub use queue::TaskQueueClient;
pub use store::{Cursor, JobFilter, QueueStats, WorkerInfo};
pub use worker::{
    spawn_worker, InFlight, WorkerHandle, WorkerOptions, WorkerReport, WorkerStopper,
};
