//! Wall-clock helpers and the limits of every duration and instant the engine accepts.
//!
//! The engine stores instants as milliseconds since the Unix epoch. Every duration a
//! user gives (delays, timeouts, leases, intervals, `Retry(after=…)`) is checked against
//! [`MAX_SECONDS`] and every instant against [`MIN_INSTANT_MS`]..=[`MAX_INSTANT_MS`]
//! where it enters, so no later arithmetic can overflow, wrap or panic.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{CoreError, CoreResult};

/// The longest duration accepted anywhere, in seconds: 100 years.
pub const MAX_SECONDS: f64 = 100.0 * 365.25 * 86_400.0;
/// The earliest instant accepted (`0001-01-01T00:00:00Z`), ms since the epoch.
pub const MIN_INSTANT_MS: i64 = -62_135_596_800_000;
/// The latest instant accepted (`9999-12-31T23:59:59.999Z`), ms since the epoch.
pub const MAX_INSTANT_MS: i64 = 253_402_300_799_999;

/// Clock differences up to this many ms are not corrected (see [`DbClock::observe`]).
pub const CLOCK_TOLERANCE_MS: i64 = 10;

/// A database's clock as this process sees it: the local clock plus an offset measured
/// against the database (half a round trip of error at most). Stores with a server
/// compare leases and `run_at` on it, so hosts whose clocks disagree still agree on
/// when a lease ran out or a delayed job is due.
#[derive(Debug, Default)]
pub struct DbClock {
    offset_ms: AtomicI64,
}

impl DbClock {
    /// The database's time now, ms since the epoch.
    pub fn now_ms(&self) -> i64 {
        now_ms().saturating_add(self.offset_ms.load(Ordering::Relaxed))
    }

    /// Records a reading `db_ms` of the database's clock taken between the local times
    /// `sent_ms` and `received_ms`; returns the offset in force. Readings within
    /// [`CLOCK_TOLERANCE_MS`] of the offset in force (or of 0) do not move it: one
    /// reading is only as exact as its round trip and the millisecond rounding, and a
    /// jittering offset would let two processes on one host disagree by that much.
    pub fn observe(&self, sent_ms: i64, db_ms: i64, received_ms: i64) -> i64 {
        let reading = db_ms - (sent_ms + (received_ms - sent_ms) / 2);
        let current = self.offset_ms.load(Ordering::Relaxed);
        // A slow round trip (a busy machine) says too little: keep what is in force.
        if received_ms - sent_ms > CLOCK_TOLERANCE_MS
            || (reading - current).abs() <= CLOCK_TOLERANCE_MS
        {
            return current;
        }
        let offset = if reading.abs() <= CLOCK_TOLERANCE_MS {
            0
        } else {
            reading
        };
        self.offset_ms.store(offset, Ordering::Relaxed);
        offset
    }

    /// The last measured offset (database minus local), ms.
    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::Relaxed)
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Converts seconds (as users write them) to whole milliseconds, rounding up so a job
/// delayed by a fraction of a millisecond never starts early. Saturates (`NaN` is 0).
pub fn secs_to_ms(secs: f64) -> i64 {
    (secs * 1000.0).ceil() as i64
}

/// Converts seconds to a [`Duration`]: negative or `NaN` is zero, anything above
/// [`MAX_SECONDS`] (infinity included) is [`MAX_SECONDS`]. Never panics.
pub fn secs(secs: f64) -> Duration {
    if secs > 0.0 {
        Duration::from_secs_f64(secs.min(MAX_SECONDS))
    } else {
        Duration::ZERO
    }
}

/// A duration in whole milliseconds, saturating at `i64::MAX`.
pub fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Checks a duration given in seconds: finite, `>= 0` (`> 0` unless `zero_ok`) and at
/// most [`MAX_SECONDS`]. The error names `what` and the limit.
pub fn check_secs(what: &str, value: f64, zero_ok: bool) -> CoreResult<f64> {
    let low_ok = if zero_ok { value >= 0.0 } else { value > 0.0 };
    if value.is_finite() && low_ok && value <= MAX_SECONDS {
        Ok(value)
    } else {
        let low = if zero_ok { "0" } else { "more than 0" };
        Err(CoreError::config(format!(
            "{what} must be a number of seconds from {low} to {MAX_SECONDS:.0} (100 years), got {value}"
        )))
    }
}

/// Checks an instant (ms since the epoch) against the years 1 to 9999.
pub fn check_instant(what: &str, ms: i64) -> CoreResult<i64> {
    if (MIN_INSTANT_MS..=MAX_INSTANT_MS).contains(&ms) {
        Ok(ms)
    } else {
        Err(CoreError::config(format!(
            "{what} must lie between the years 1 and 9999 (got {ms} ms since the epoch)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_clock_takes_the_middle_of_the_round_trip() {
        let clock = DbClock::default();
        // Within the tolerance of 0: no correction.
        assert_eq!(clock.observe(1_000, 1_012, 1_010), 0);
        assert_eq!(clock.observe(1_000, 6_000, 1_010), 4_995);
        // A reading near the offset in force keeps it.
        assert_eq!(clock.observe(1_000, 6_003, 1_010), 4_995);
        assert_eq!(clock.observe(1_000, -4_000, 1_010), -5_005);
        // A reading that took longer than the tolerance is ignored.
        assert_eq!(clock.observe(1_000, 9_000, 1_100), -5_005);
        let local = now_ms();
        assert!((clock.now_ms() - local + 5_005).abs() < 1_000);
    }

    #[test]
    fn secs_never_panics() {
        for v in [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e300,
            -1.0,
            0.0,
            1e20,
        ] {
            let d = secs(v);
            assert!(d <= Duration::from_secs_f64(MAX_SECONDS), "{v}: {d:?}");
        }
        assert_eq!(secs(1.5), Duration::from_millis(1500));
    }

    #[test]
    fn checks_name_the_limit() {
        assert!(check_secs("delay", 1e16, true)
            .unwrap_err()
            .to_string()
            .contains("100 years"));
        assert!(check_secs("delay", f64::NAN, true).is_err());
        assert!(check_secs("timeout", 0.0, false).is_err());
        assert_eq!(check_secs("delay", 0.0, true).unwrap(), 0.0);
        assert!(check_instant("run_at", MAX_INSTANT_MS + 1).is_err());
        assert!(check_instant("run_at", 0).is_ok());
        assert_eq!(secs_to_ms(f64::INFINITY), i64::MAX);
        assert_eq!(duration_ms(Duration::MAX), i64::MAX);
    }
}
