//! Wall-clock helpers: the engine stores instants as milliseconds since the Unix epoch.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Converts seconds (as users write them) to whole milliseconds, rounding up so a job
/// delayed by a fraction of a millisecond never starts early.
pub fn secs_to_ms(secs: f64) -> i64 {
    (secs * 1000.0).ceil() as i64
}

/// Converts seconds to a [`Duration`], treating negative or non-finite values as zero.
pub fn secs(secs: f64) -> Duration {
    if secs.is_finite() && secs > 0.0 {
        Duration::from_secs_f64(secs)
    } else {
        Duration::ZERO
    }
}
