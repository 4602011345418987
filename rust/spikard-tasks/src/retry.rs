//! The retry rule: whether a job whose attempt did not succeed runs again, and when.
//!
//! The worker applies it to every outcome (`worker/service.rs`); the Python fast path
//! calls the same function through the bindings, so both paths decide alike.

use crate::config::Backoff;

/// Why an attempt did not succeed, as the retry rule sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AttemptFailure {
    /// The handler asked to run again after this many seconds (`Retry(after=...)`).
    RetryRequested {
        /// The requested delay, in seconds.
        after_secs: f64,
    },
    /// The handler failed; `retryable` is false for a failure that a retry cannot fix
    /// (a result that is not JSON).
    Failed {
        /// Whether another attempt may succeed.
        retryable: bool,
    },
}

/// Seconds until the next attempt of a job whose attempt number `attempt` (1 for the
/// first) of `max_attempts` ended with `failure`; `None` when the job fails for good.
///
/// ```
/// use spikard_tasks::retry::{next_attempt_delay, AttemptFailure};
/// use spikard_tasks::Backoff;
///
/// let backoff = Backoff { initial: 1.0, max: 60.0, multiplier: 2.0, jitter: 0.0 };
/// let failed = AttemptFailure::Failed { retryable: true };
/// assert_eq!(next_attempt_delay(&backoff, 1, 3, failed), Some(1.0));
/// assert_eq!(next_attempt_delay(&backoff, 2, 3, failed), Some(2.0));
/// assert_eq!(next_attempt_delay(&backoff, 3, 3, failed), None); // no attempts left
/// let asked = AttemptFailure::RetryRequested { after_secs: 5.0 };
/// assert_eq!(next_attempt_delay(&backoff, 1, 3, asked), Some(5.0));
/// ```
pub fn next_attempt_delay(
    backoff: &Backoff,
    attempt: u32,
    max_attempts: u32,
    failure: AttemptFailure,
) -> Option<f64> {
    if attempt >= max_attempts {
        return None;
    }
    match failure {
        AttemptFailure::RetryRequested { after_secs } => Some(after_secs),
        AttemptFailure::Failed { retryable: true } => Some(backoff.delay(attempt)),
        AttemptFailure::Failed { retryable: false } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_a_retry_cannot_fix_is_final() {
        let b = Backoff::default();
        let f = AttemptFailure::Failed { retryable: false };
        assert_eq!(next_attempt_delay(&b, 1, 5, f), None);
    }

    #[test]
    fn a_requested_retry_needs_an_attempt_left() {
        let b = Backoff::default();
        let r = AttemptFailure::RetryRequested { after_secs: 0.5 };
        assert_eq!(next_attempt_delay(&b, 1, 2, r), Some(0.5));
        assert_eq!(next_attempt_delay(&b, 2, 2, r), None);
    }
}
