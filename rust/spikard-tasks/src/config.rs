//! `TaskQueueConfig` and `Backoff`: plain serde DTOs shared by every binding.
//!
//! Durations are seconds (`f64`), as users write them in Python.

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, CoreResult};
use crate::time::check_secs;

/// The most attempts a job may have (the SQL stores keep a 32-bit integer).
pub const MAX_ATTEMPTS: u32 = i32::MAX as u32;

/// Exponential backoff between attempts of a failing job.
///
/// The delay before attempt `n + 1` (after `n` failed attempts) is
/// `min(max, initial * multiplier^(n-1))`, then spread by `± jitter` (a fraction).
///
/// ```
/// use spikard_tasks::Backoff;
///
/// let backoff = Backoff {
///     initial: 2.0,
///     max: 10.0,
///     ..Backoff::default() // multiplier 2, jitter 0.1
/// };
/// backoff.validate()?;
/// assert_eq!(backoff.base_delay(1), 2.0);
/// assert_eq!(backoff.base_delay(2), 4.0);
/// assert_eq!(backoff.base_delay(4), 10.0); // capped at max
/// let d = backoff.delay(2); // with jitter
/// assert!((3.6..=4.4).contains(&d));
/// # Ok::<(), spikard_tasks::CoreError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Backoff {
    /// Delay after the first failed attempt, in seconds.
    pub initial: f64,
    /// Upper bound of any delay, in seconds.
    pub max: f64,
    /// Growth factor per failed attempt.
    pub multiplier: f64,
    /// Random spread as a fraction of the delay (0.1 = ±10 %).
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: 1.0,
            max: 300.0,
            multiplier: 2.0,
            jitter: 0.1,
        }
    }
}

impl Backoff {
    /// The delay (seconds) after `failed_attempts` failures, before jitter.
    pub fn base_delay(&self, failed_attempts: u32) -> f64 {
        let exp = failed_attempts.saturating_sub(1).min(64) as i32;
        (self.initial * self.multiplier.powi(exp)).min(self.max)
    }

    /// The delay (seconds) after `failed_attempts` failures, with jitter applied.
    pub fn delay(&self, failed_attempts: u32) -> f64 {
        let base = self.base_delay(failed_attempts);
        if self.jitter <= 0.0 || base <= 0.0 {
            return base;
        }
        let spread: f64 = rand::random::<f64>() * 2.0 - 1.0;
        (base * (1.0 + self.jitter * spread)).clamp(0.0, self.max)
    }

    /// Checks every field: delays of 0 to 100 years, `multiplier` from 1 to 1000,
    /// `jitter` from 0 to 1.
    pub fn validate(&self) -> CoreResult<()> {
        check_secs("backoff initial", self.initial, true)?;
        check_secs("backoff max", self.max, true)?;
        let ok = (1.0..=1000.0).contains(&self.multiplier) && (0.0..=1.0).contains(&self.jitter);
        if ok {
            Ok(())
        } else {
            Err(CoreError::config(format!(
                "invalid backoff {self:?}: multiplier must be from 1 to 1000, jitter from 0 to 1"
            )))
        }
    }
}

/// Configuration of one task queue: where jobs live and how workers run them.
///
/// Its `Debug` form shows the URL with the password masked.
///
/// ```
/// use spikard_tasks::{Backoff, TaskQueueConfig};
///
/// // Set what differs from the defaults; durations are seconds.
/// let config = TaskQueueConfig {
///     url: "sqlite:///jobs.db".into(), // or postgres://, mysql://, redis:// (features)
///     queue: "emails".into(),
///     concurrency: 8,
///     max_attempts: 5,
///     backoff: Backoff {
///         initial: 5.0,
///         ..Backoff::default()
///     },
///     ..TaskQueueConfig::default()
/// };
/// config.validate()?;
/// // Bindings pass it as JSON; unknown fields are refused.
/// let parsed = TaskQueueConfig::from_json(r#"{"url": "memory://", "concurrency": 4}"#)?;
/// assert_eq!(parsed.concurrency, 4);
/// assert!(TaskQueueConfig::from_json(r#"{"concurency": 4}"#).is_err());
/// # Ok::<(), spikard_tasks::CoreError>(())
/// ```
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskQueueConfig {
    /// Backend URL (`sqlite:///path.db`, `sqlite::memory:`, `memory://`, `postgres://…`, …).
    pub url: String,
    /// Queue name: jobs are enqueued to it and workers consume it.
    pub queue: String,
    /// How many jobs one worker runs at once.
    pub concurrency: usize,
    /// Attempts a job gets unless its task or enqueue call says otherwise.
    pub max_attempts: u32,
    /// Backoff between failed attempts.
    pub backoff: Backoff,
    /// Priority of jobs that do not set one (higher runs first).
    pub default_priority: i32,
    /// How often an idle worker looks for new jobs written by other processes (seconds).
    pub poll_interval: f64,
    /// How long a running job's lease lasts without a heartbeat (seconds). A job whose
    /// worker died is run again once its lease has expired.
    pub lease: f64,
    /// How often a worker renews the leases of its running jobs (seconds).
    pub heartbeat: f64,
    /// How long finished jobs (and their results) are kept (seconds); `None` keeps them.
    pub result_ttl: Option<f64>,
    /// How long a stopping worker waits for in-flight jobs before releasing them (seconds).
    pub drain_timeout: f64,
}

impl Default for TaskQueueConfig {
    fn default() -> Self {
        Self {
            url: "sqlite:///spikard_tasks.db".to_owned(),
            queue: "default".to_owned(),
            concurrency: 16,
            max_attempts: 3,
            backoff: Backoff::default(),
            default_priority: 0,
            poll_interval: 0.05,
            lease: 30.0,
            heartbeat: 5.0,
            result_ttl: Some(7.0 * 24.0 * 3600.0),
            drain_timeout: 30.0,
        }
    }
}

impl std::fmt::Debug for TaskQueueConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskQueueConfig")
            .field("url", &crate::redact::redact(&self.url))
            .field("queue", &self.queue)
            .field("concurrency", &self.concurrency)
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .field("default_priority", &self.default_priority)
            .field("poll_interval", &self.poll_interval)
            .field("lease", &self.lease)
            .field("heartbeat", &self.heartbeat)
            .field("result_ttl", &self.result_ttl)
            .field("drain_timeout", &self.drain_timeout)
            .finish()
    }
}

impl TaskQueueConfig {
    /// Parses a config from JSON (the form bindings pass it in).
    pub fn from_json(text: &str) -> CoreResult<Self> {
        let cfg: Self = serde_json::from_str(text)
            .map_err(|e| CoreError::config(format!("invalid configuration: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks every field; the error names the offending one.
    pub fn validate(&self) -> CoreResult<()> {
        if self.queue.is_empty() || self.queue.len() > 200 {
            return Err(CoreError::config("queue name must be 1 to 200 characters"));
        }
        crate::job::check_text("queue name", &self.queue)?;
        if self.concurrency == 0 {
            return Err(CoreError::config("concurrency must be at least 1"));
        }
        if self.max_attempts == 0 {
            return Err(CoreError::config("max_attempts must be at least 1"));
        }
        if self.max_attempts > MAX_ATTEMPTS {
            return Err(CoreError::config(format!(
                "max_attempts must be at most {MAX_ATTEMPTS}"
            )));
        }
        check_secs("poll_interval", self.poll_interval, true)?;
        check_secs("drain_timeout", self.drain_timeout, true)?;
        check_secs("lease", self.lease, false)?;
        check_secs("heartbeat", self.heartbeat, false)?;
        if self.heartbeat >= self.lease {
            return Err(CoreError::config(
                "heartbeat must be shorter than lease (leases are renewed every heartbeat)",
            ));
        }
        if let Some(ttl) = self.result_ttl {
            check_secs("result_ttl", ttl, true)?;
        }
        self.backoff.validate()?;
        crate::url::BackendUrl::parse(&self.url)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let b = Backoff {
            initial: 1.0,
            max: 10.0,
            multiplier: 2.0,
            jitter: 0.0,
        };
        assert_eq!(b.delay(1), 1.0);
        assert_eq!(b.delay(2), 2.0);
        assert_eq!(b.delay(3), 4.0);
        assert_eq!(b.delay(10), 10.0);
    }

    #[test]
    fn jitter_stays_in_band() {
        let b = Backoff::default();
        for _ in 0..1000 {
            let d = b.delay(3);
            assert!((3.6..=4.4).contains(&d), "{d}");
        }
    }

    #[test]
    fn rejects_unknown_fields_and_bad_values() {
        assert!(TaskQueueConfig::from_json(r#"{"nope": 1}"#).is_err());
        assert!(TaskQueueConfig::from_json(r#"{"concurrency": 0}"#).is_err());
        assert!(TaskQueueConfig::from_json(r#"{"url": "bogus://x"}"#).is_err());
        assert!(TaskQueueConfig::from_json(r#"{"url": "sqlite::memory:"}"#).is_ok());
    }
}
