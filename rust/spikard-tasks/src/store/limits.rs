//! Flow control kept in the store and enforced in the claim, so every worker on every
//! host obeys it together: per-task and per-queue **rate limits** (a token bucket of one
//! token, refilled at the rate: starts are spaced evenly, as Celery's `rate_limit`) and
//! **caps on running jobs** (`max_running`: jobs `running` across all workers, claimed
//! ahead included). A job held back by a limit stays `pending`: no attempt is used and
//! it never fails for its limit. Every store implements [`LimitStore`] and passes
//! `tests/store_contract/limits.rs`.

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, CoreResult};
use crate::job::ClaimedJob;

/// The most starts per second a rate may allow (one every microsecond).
pub const MAX_RATE_PER_SECOND: u64 = 1_000_000;

/// What a limit applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitScope {
    /// Every job of one task (by name), in any queue.
    Task,
    /// Every job of one queue.
    Queue,
}

impl LimitScope {
    /// `task` or `queue`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Task => "task",
            Self::Queue => "queue",
        }
    }

    /// The scope named `name` (`task` or `queue`).
    pub fn parse(name: &str) -> CoreResult<Self> {
        match name {
            "task" => Ok(Self::Task),
            "queue" => Ok(Self::Queue),
            other => Err(CoreError::Config(format!(
                "a limit applies to a 'task' or a 'queue', not {other:?}"
            ))),
        }
    }
}

/// A rate: at most `count` starts per `period_ms`, spaced evenly (`"100/s"`, `"600/m"`,
/// `"10/h"`); written as that text in JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Rate {
    /// Starts per period (≥ 1).
    pub count: u32,
    /// The period in ms: 1,000 (`s`), 60,000 (`m`), 3,600,000 (`h`) or 86,400,000 (`d`).
    pub period_ms: u32,
}

impl Rate {
    /// Parses `N/s`, `N/m`, `N/h` or `N/d` (also `N/second`, `N/minute`, …).
    pub fn parse(text: &str) -> CoreResult<Self> {
        let bad = |why: &str| {
            CoreError::Config(format!(
                "rate_limit {text:?} {why}; write it as N/s, N/m, N/h or N/d (e.g. \"100/s\")"
            ))
        };
        let (count, unit) = text.trim().split_once('/').ok_or_else(|| bad("has no '/'"))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| bad("does not start with a whole number"))?;
        if count == 0 {
            return Err(bad("allows nothing (0)"));
        }
        let period_ms = match unit.trim() {
            "s" | "sec" | "second" => 1_000,
            "m" | "min" | "minute" => 60_000,
            "h" | "hour" => 3_600_000,
            "d" | "day" => 86_400_000,
            _ => return Err(bad("has an unknown unit")),
        };
        let rate = Self { count, period_ms };
        if u64::from(count) * 1000 > MAX_RATE_PER_SECOND * u64::from(period_ms) {
            return Err(bad("is above 1,000,000 per second"));
        }
        Ok(rate)
    }

    /// The spacing of two starts in µs, rounded up (never faster than the rate).
    pub fn interval_us(&self) -> i64 {
        let period_us = i64::from(self.period_ms) * 1000;
        let count = i64::from(self.count);
        (period_us + count - 1) / count
    }
}

impl TryFrom<String> for Rate {
    type Error = CoreError;

    fn try_from(text: String) -> CoreResult<Self> {
        Self::parse(&text)
    }
}

impl From<Rate> for String {
    fn from(rate: Rate) -> Self {
        rate.to_string()
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.period_ms {
            1_000 => "s",
            60_000 => "m",
            3_600_000 => "h",
            _ => "d",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// A limit on one task or queue. With neither `rate` nor `max_running` it is no limit
/// (storing it removes the limit).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limit {
    /// What it applies to.
    pub scope: LimitScope,
    /// The task's or queue's name.
    pub name: String,
    /// Starts allowed, spaced evenly.
    #[serde(default)]
    pub rate: Option<Rate>,
    /// Jobs `running` at once across every worker, at most.
    #[serde(default)]
    pub max_running: Option<u32>,
}

impl Limit {
    /// The store's key of this limit: `task:NAME` or `queue:NAME`.
    pub fn key(&self) -> String {
        format!("{}:{}", self.scope.as_str(), self.name)
    }

    /// Whether it limits anything.
    pub fn is_some(&self) -> bool {
        self.rate.is_some() || self.max_running.is_some()
    }

    /// Checks the name and the cap (a cap of 0 would hold every job forever).
    pub fn validate(&self) -> CoreResult<()> {
        if self.name.is_empty() || self.name.len() > 200 {
            return Err(CoreError::Config(format!(
                "a {} limit needs a name of 1 to 200 characters",
                self.scope.as_str()
            )));
        }
        if self.max_running == Some(0) {
            return Err(CoreError::Config(
                "max_running must be at least 1 (pause the queue to stop it)".into(),
            ));
        }
        Ok(())
    }

    /// Whether a job of `task` in `queue` falls under it.
    pub fn covers(&self, task: &str, queue: &str) -> bool {
        match self.scope {
            LimitScope::Task => self.name == task,
            LimitScope::Queue => self.name == queue,
        }
    }
}

/// A stored limit and how it stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitState {
    /// The limit.
    #[serde(flatten)]
    pub limit: Limit,
    /// Jobs under it `running` now (claimed ahead included); 0 when not counted.
    pub running: u64,
    /// The earliest time its rate allows the next start, ms since epoch (0: now).
    pub next_start_ms: i64,
}

/// What one claim must respect besides the worker's free slots.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClaimPlan {
    /// Stored limits of the tasks and queues the claim may take jobs of.
    pub limits: Vec<Limit>,
    /// Per-queue room inside this worker (`--queues emails=4,reports=1`: the queue's
    /// concurrency minus the jobs of it the worker holds); a queue not named is bounded
    /// by the claim's `limit` only.
    pub queue_room: Vec<(String, usize)>,
}

impl ClaimPlan {
    /// Whether the plain claim does the same.
    pub fn is_empty(&self) -> bool {
        self.limits.is_empty() && self.queue_room.is_empty()
    }
}

/// What a limited claim took, and when to look again if a rate held jobs back.
#[derive(Debug, Default)]
pub struct LimitedClaim {
    /// The claimed jobs in claim order.
    pub jobs: Vec<ClaimedJob>,
    /// The earliest next start a rate allows for jobs it held back this time (ms since
    /// epoch on the store's clock); `None` when no rate held any back.
    pub retry_at_ms: Option<i64>,
}

/// Flow control in a store.
#[async_trait]
pub trait LimitStore {
    /// Stores `limit` (replacing the one of its scope and name, keeping its bucket), or
    /// removes it when it limits nothing. Returns whether anything changed.
    async fn set_limit(&self, limit: &Limit) -> CoreResult<bool>;

    /// Every stored limit, by key; with `usage`, with its running count.
    async fn limits(&self, usage: bool) -> CoreResult<Vec<LimitState>>;

    /// Like [`Store::claim`](super::Store::claim), obeying `plan`: for each limit in it,
    /// at most `max_running` jobs under it are `running` after the claim (counted in the
    /// same transaction, so concurrent claims never overshoot), and a rate's job starts
    /// only when its bucket holds a token (one at most). Jobs held back stay as they
    /// were. Jobs are picked in claim order (priority, then `run_at`) among those the
    /// limits allow, so a limited task never blocks others behind it.
    async fn claim_limited(
        &self,
        queues: &[String],
        worker: &str,
        limit: usize,
        lease: std::time::Duration,
        plan: &ClaimPlan,
    ) -> CoreResult<LimitedClaim>;
}

/// How many jobs one limit still allows now: its cap minus the running ones, and at
/// most one if its rate has a token (`now_us` ≥ its next start), none if not.
pub(crate) fn allowance(limit: &Limit, running: u64, next_start_us: i64, now_us: i64) -> usize {
    let mut room = usize::MAX;
    if let Some(cap) = limit.max_running {
        room = (u64::from(cap).saturating_sub(running)) as usize;
    }
    if limit.rate.is_some() {
        room = room.min(usize::from(now_us >= next_start_us));
    }
    room
}

/// Picks, from candidates in claim order, at most `limit` whose every limit has room;
/// returns their indexes. `allow` holds each limit's room (same order as `limits`),
/// `room` each local queue's; both are spent as jobs are picked.
pub(crate) fn pick(
    candidates: &[(&str, &str)],
    limits: &[Limit],
    allow: &mut [usize],
    room: &mut [(String, usize)],
    limit: usize,
) -> Vec<usize> {
    let mut out = Vec::new();
    for (i, (task, queue)) in candidates.iter().enumerate() {
        if out.len() >= limit {
            break;
        }
        let under: Vec<usize> = (0..limits.len())
            .filter(|&k| limits[k].covers(task, queue))
            .collect();
        let local = room.iter().position(|(q, _)| q == queue);
        if under.iter().any(|&k| allow[k] == 0) || local.is_some_and(|l| room[l].1 == 0) {
            continue;
        }
        for &k in &under {
            allow[k] -= 1;
        }
        if let Some(l) = local {
            room[l].1 -= 1;
        }
        out.push(i);
    }
    out
}

/// The next start of a rate limit after `taken` starts from `now_us` on (the bucket
/// holds one token at most: time not used is not saved up).
pub(crate) fn next_start_us(rate: &Rate, previous_us: i64, now_us: i64, taken: usize) -> i64 {
    previous_us
        .max(now_us)
        .saturating_add(rate.interval_us().saturating_mul(taken as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_print() {
        let r = Rate::parse("100/s").unwrap();
        assert_eq!((r.count, r.period_ms, r.interval_us()), (100, 1000, 10_000));
        assert_eq!(Rate::parse(" 600/m ").unwrap().to_string(), "600/m");
        assert_eq!(Rate::parse("10/hour").unwrap().interval_us(), 360_000_000);
        assert_eq!(Rate::parse("3/s").unwrap().interval_us(), 333_334);
        for bad in ["", "100", "0/s", "-1/s", "1.5/s", "10/w", "2000000/s", "x/s"] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pick_respects_every_limit_in_claim_order() {
        let limits = vec![
            Limit {
                scope: LimitScope::Task,
                name: "a".into(),
                rate: None,
                max_running: Some(1),
            },
            Limit {
                scope: LimitScope::Queue,
                name: "q2".into(),
                rate: None,
                max_running: Some(2),
            },
        ];
        let candidates = [("a", "q1"), ("a", "q1"), ("b", "q1"), ("b", "q2"), ("b", "q2")];
        let mut allow = vec![1, 1];
        let mut room = vec![];
        assert_eq!(pick(&candidates, &limits, &mut allow, &mut room, 10), [0, 2, 3]);
        let mut allow = vec![1, 2];
        let mut room = vec![("q1".to_string(), 1)];
        assert_eq!(pick(&candidates, &limits, &mut allow, &mut room, 10), [0, 3, 4]);
        assert_eq!(
            pick(&candidates, &limits, &mut [1, 2], &mut vec![], 2),
            [0, 2]
        );
    }

    #[test]
    fn allowance_of_rates_and_caps() {
        let mut l = Limit {
            scope: LimitScope::Task,
            name: "t".into(),
            rate: Some(Rate::parse("10/s").unwrap()),
            max_running: Some(3),
        };
        assert_eq!(allowance(&l, 0, 0, 5), 1);
        assert_eq!(allowance(&l, 0, 10, 5), 0);
        assert_eq!(allowance(&l, 3, 0, 5), 0);
        l.rate = None;
        assert_eq!(allowance(&l, 1, 0, 5), 2);
        assert_eq!(allowance(&l, 7, 0, 5), 0);
        let r = Rate::parse("10/s").unwrap();
        assert_eq!(next_start_us(&r, 0, 1_000, 1), 101_000);
        assert_eq!(next_start_us(&r, 200_000, 1_000, 2), 400_000);
    }
}
