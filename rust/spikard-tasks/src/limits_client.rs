//! Flow control on the client: store, remove and read the limits every worker of the
//! store obeys (`store/limits.rs` has the model; the claim enforces them).

use crate::error::CoreResult;
use crate::queue::TaskQueueClient;
use crate::store::{Limit, LimitScope, LimitState, Rate};

impl TaskQueueClient {
    /// Stores the limit of `scope`/`name` (replacing one there), or removes it when it
    /// limits nothing. Every worker of the store applies it within its poll interval.
    /// Returns whether anything changed (`false`: there was nothing to remove).
    ///
    /// A malformed rate (see [`Rate::parse`]), a `max_running` of 0 or a bad name is a
    /// [`crate::error::CoreError::Config`].
    pub async fn set_limit(
        &self,
        scope: LimitScope,
        name: &str,
        rate: Option<&str>,
        max_running: Option<u32>,
    ) -> CoreResult<bool> {
        let limit = Limit {
            scope,
            name: name.to_owned(),
            rate: rate.map(Rate::parse).transpose()?,
            max_running,
        };
        crate::job::check_text("limit name", name)?;
        limit.validate()?;
        self.store.set_limit(&limit).await
    }

    /// Every stored limit with the jobs running under it now, by key.
    pub async fn limits(&self) -> CoreResult<Vec<LimitState>> {
        self.store.limits(true).await
    }
}
