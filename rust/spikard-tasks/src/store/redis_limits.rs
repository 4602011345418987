//! Flow control ([`LimitStore`]) of the Redis store, on these keys (under
//! [`PREFIX`](super::redis::PREFIX)):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `limits` | set | the key of every stored limit (`task:NAME`, `queue:NAME`) |
//! | `lim:{key}` | hash | one limit: `scope`, `name`, `rate_count`, `rate_period_ms`, `max_running` (absent for none) and its rate's `next_start_us` |
//! | `limrun:{key}` | set | ids of jobs claimed under the limit; those still `running` are its running count |
//!
//! Running counts: every limited claim adds the jobs it claims to the set of each limit
//! they fall under (with or without a cap, so that [`LimitStore::limits`] counts both
//! alike), and a new limit's set starts with the running jobs it covers. Members whose
//! job is no longer `running` are pruned where the count is read: a limit with a cap
//! has its whole set pruned at each claim that must respect it (the set holds at most
//! about the cap: jobs join it only while the cap has room), a limit without one has a
//! few random members checked per claim (at most one job joins per claim: the bucket of
//! its rate holds one token) and its whole set pruned by `limits(usage)`. A job claimed
//! by a plain [`Store::claim`](super::Store::claim) after the limit was stored (a worker
//! that has not read the limit yet) is not counted.
//!
//! [`LimitStore::claim_limited`] is one script (`claim_limited.lua`), so atomic: it reads
//! the limits as stored, promotes due jobs as the plain claim does, then walks the ready
//! sets merged in claim order, skipping the jobs a limit or the worker's room per queue
//! holds back (they stay ready: no head-of-line blocking) and claiming the others. It
//! examines at most [`WALK_BUDGET`] + `limit` ready jobs per call (stale entries of the
//! ready sets included), so a large backlog of a held-back task at the head of a queue
//! cannot make one call slow. The price: a job that more held-back jobs than that precede
//! in claim order is not reached by this claim, and waits for a later claim after the
//! backlog ahead of it has shrunk (its jobs starting as their limits allow) — unlike the
//! SQL stores, which read the allowed jobs of each limited task apart.

use async_trait::async_trait;

use super::redis::{ClaimRow, RedisStore, PREFIX, PROMOTE_BATCH, SCRIPTS};
use super::rows::claimed_rows;
use super::{fail_corrupt, ClaimPlan, Limit, LimitScope, LimitState, LimitStore, LimitedClaim};
use super::{Rate, Store};
use crate::error::{CoreError, CoreResult};
use crate::time::duration_ms;

/// Ready jobs one limited claim examines besides its `limit`.
pub const WALK_BUDGET: usize = 1000;

/// An optional number as a script argument (`""` for none).
fn opt_num(value: Option<u32>) -> String {
    value.map_or_else(String::new, |v| format!("={v}"))
}

/// One limit of the list script's reply (8 fields); `None` for one this version cannot
/// read.
fn state_from(f: &[String]) -> Option<(String, LimitState)> {
    let num = |s: &str| s.parse::<i64>().ok();
    let scope = LimitScope::parse(&f[1]).ok()?;
    let rate = match (num(&f[3]), num(&f[4])) {
        (Some(c), Some(p)) => Some(Rate {
            count: u32::try_from(c).unwrap_or(u32::MAX).max(1),
            period_ms: u32::try_from(p).unwrap_or(1000).max(1),
        }),
        _ => None,
    };
    let max_running = num(&f[5]).map(|n| u32::try_from(n).unwrap_or(u32::MAX));
    let limit = Limit {
        scope,
        name: f[2].clone(),
        rate,
        max_running,
    };
    Some((
        f[0].clone(),
        LimitState {
            limit,
            running: num(&f[7]).unwrap_or(0).max(0) as u64,
            next_start_ms: num(&f[6]).unwrap_or(0).div_euclid(1000),
        },
    ))
}

#[async_trait]
impl LimitStore for RedisStore {
    async fn set_limit(&self, limit: &Limit) -> CoreResult<bool> {
        limit.validate()?;
        let mut inv = SCRIPTS.limits.prepare_invoke();
        inv.arg(PREFIX);
        if !limit.is_some() {
            inv.arg("remove").arg(limit.key());
            return Ok(self.invoke_script::<i64>(false, &inv).await? > 0);
        }
        if self.limits(false).await?.iter().any(|s| &s.limit == limit) {
            return Ok(false);
        }
        inv.arg("set")
            .arg(limit.key())
            .arg(limit.scope.as_str())
            .arg(&limit.name)
            .arg(opt_num(limit.rate.map(|r| r.count)))
            .arg(opt_num(limit.rate.map(|r| r.period_ms)))
            .arg(opt_num(limit.max_running));
        self.invoke_script::<i64>(false, &inv).await?;
        Ok(true)
    }

    async fn limits(&self, usage: bool) -> CoreResult<Vec<LimitState>> {
        let mut inv = SCRIPTS.limits.prepare_invoke();
        inv.arg(PREFIX)
            .arg("list")
            .arg(if usage { "1" } else { "0" });
        let flat: Vec<String> = self.invoke_script(false, &inv).await?;
        let mut out: Vec<(String, LimitState)> =
            flat.chunks_exact(8).filter_map(state_from).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out.into_iter().map(|(_, s)| s).collect())
    }

    async fn claim_limited(
        &self,
        queues: &[String],
        worker: &str,
        limit: usize,
        lease: std::time::Duration,
        plan: &ClaimPlan,
    ) -> CoreResult<LimitedClaim> {
        if limit == 0 || queues.is_empty() {
            return Ok(LimitedClaim::default());
        }
        let now = Store::now_ms(self);
        let mut inv = SCRIPTS.claim_limited.prepare_invoke();
        inv.arg(PREFIX)
            .arg(now)
            .arg(now.saturating_add(duration_ms(lease)))
            .arg(worker)
            .arg(limit)
            .arg(PROMOTE_BATCH)
            .arg(WALK_BUDGET.saturating_add(limit))
            .arg(plan.limits.len());
        for l in &plan.limits {
            inv.arg(l.key());
        }
        inv.arg(plan.queue_room.len());
        for (queue, room) in &plan.queue_room {
            inv.arg(queue).arg(room);
        }
        for queue in queues {
            inv.arg(queue);
        }
        let (rows, retry_at): (Vec<Vec<Option<String>>>, Option<String>) =
            self.invoke_script(true, &inv).await?;
        let retry_at_ms = match retry_at {
            Some(at) => Some(at.parse::<i64>().map_err(|_| {
                CoreError::Backend(format!(
                    "unexpected retry time of the limited claim: {at:?}"
                ))
            })?),
            None => None,
        };
        let rows: Vec<ClaimRow> = rows.into_iter().map(ClaimRow).collect();
        let (jobs, broken) = claimed_rows(&rows, 0, now)?;
        fail_corrupt(self, worker, broken).await;
        Ok(LimitedClaim {
            jobs: jobs.into_iter().map(|(job, _)| job).collect(),
            retry_at_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(fields: [&str; 8]) -> Vec<String> {
        fields.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn list_replies_are_read_and_unknown_scopes_skipped() {
        let (key, s) = state_from(&reply([
            "task:t", "task", "t", "10", "1000", "", "2500999", "4",
        ]))
        .unwrap();
        assert_eq!(key, "task:t");
        assert_eq!(s.limit.rate, Some(Rate::parse("10/s").unwrap()));
        assert_eq!(
            (s.limit.max_running, s.running, s.next_start_ms),
            (None, 4, 2500)
        );
        let (_, s) = state_from(&reply(["queue:q", "queue", "q", "", "", "3", "0", "0"])).unwrap();
        assert_eq!(
            (s.limit.scope, s.limit.rate, s.limit.max_running),
            (LimitScope::Queue, None, Some(3))
        );
        assert!(state_from(&reply(["x:q", "worker", "q", "", "", "3", "0", "0"])).is_none());
    }
}
