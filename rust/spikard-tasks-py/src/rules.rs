//! The engine's queue rules for the Python fast path (`inprocess://`): it calls these
//! rather than restating them, so that both paths take the same decisions.

use pyo3::prelude::*;
use spikard_tasks::retry::{next_attempt_delay as engine_next_attempt_delay, AttemptFailure};
use spikard_tasks::{Backoff, TaskQueueConfig};

use crate::errors;

/// Validates a configuration (JSON of `TaskQueueConfig`) as the engine does;
/// `ConfigError` names the offending field.
#[pyfunction]
pub fn check_config(config_json: &str) -> errors::Result<()> {
    TaskQueueConfig::from_json(config_json)?;
    Ok(())
}

/// Seconds to wait after `failed_attempts` failures under this backoff, jitter applied
/// (the engine's formula).
#[pyfunction]
pub fn backoff_delay(
    initial: f64,
    max: f64,
    multiplier: f64,
    jitter: f64,
    failed_attempts: u32,
) -> f64 {
    backoff(initial, max, multiplier, jitter).delay(failed_attempts)
}

/// The engine's retry decision: seconds until the next attempt of a job whose attempt
/// `attempt` of `max_attempts` did not succeed, or `None` when it fails for good.
/// `retry_after` is set when the handler raised `Retry(after=...)`; `retryable` is false
/// for a failure a retry cannot fix.
#[pyfunction]
#[pyo3(signature = (initial, max, multiplier, jitter, attempt, max_attempts, retry_after, retryable))]
#[allow(clippy::too_many_arguments)]
pub fn next_attempt_delay(
    initial: f64,
    max: f64,
    multiplier: f64,
    jitter: f64,
    attempt: u32,
    max_attempts: u32,
    retry_after: Option<f64>,
    retryable: bool,
) -> Option<f64> {
    let failure = match retry_after {
        Some(after_secs) => AttemptFailure::RetryRequested { after_secs },
        None => AttemptFailure::Failed { retryable },
    };
    engine_next_attempt_delay(
        &backoff(initial, max, multiplier, jitter),
        attempt,
        max_attempts,
        failure,
    )
}

fn backoff(initial: f64, max: f64, multiplier: f64, jitter: f64) -> Backoff {
    Backoff {
        initial,
        max,
        multiplier,
        jitter,
    }
}
