//! Flow control of the Redis store (being written: every call fails for now).

use async_trait::async_trait;

use super::redis::RedisStore;
use super::{ClaimPlan, Limit, LimitState, LimitStore, LimitedClaim};
use crate::error::{CoreError, CoreResult};

fn unsupported() -> CoreError {
    CoreError::Config("rate limits and max_running are not supported on Redis yet".into())
}

#[async_trait]
impl LimitStore for RedisStore {
    async fn set_limit(&self, _limit: &Limit) -> CoreResult<bool> {
        Err(unsupported())
    }

    async fn limits(&self, _usage: bool) -> CoreResult<Vec<LimitState>> {
        Ok(Vec::new())
    }

    async fn claim_limited(
        &self,
        _queues: &[String],
        _worker: &str,
        _limit: usize,
        _lease: std::time::Duration,
        _plan: &ClaimPlan,
    ) -> CoreResult<LimitedClaim> {
        Err(unsupported())
    }
}
