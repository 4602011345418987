//! # spikard-tasks engine
//!
//! A durable task queue on [apalis]: persisted jobs with retries, backoff, priorities,
//! delays, results and leases. Host languages plug in through the [`TaskHandler`] trait;
//! no apalis type appears in this crate's public API.
//!
//! [apalis]: https://docs.rs/apalis

#![deny(missing_docs)]

pub mod config;
#[cfg(feature = "cron")]
pub mod cron;
pub mod error;
pub mod handler;
pub mod job;
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
pub use queue::TaskQueueClient;
pub use worker::{spawn_worker, WorkerHandle, WorkerOptions, WorkerReport, WorkerStopper};
