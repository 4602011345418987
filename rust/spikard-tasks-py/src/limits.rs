//! Flow control for Python (`NativeQueue.set_limit`, `limits`, and the worker options
//! `limits` and `queue_concurrency`): limits arrive as plain values, leave as dicts.

use std::collections::BTreeMap;

use pyo3::prelude::*;
use pyo3::types::PyDict;
use spikard_tasks::store::{Limit, LimitScope, Rate};
use spikard_tasks::{CoreError, TaskQueueClient};

use crate::errors::Result;
use crate::ops::to_py;
use crate::tokio_rt::block_on;

/// A cap from Python: 1 to 2^32 - 1.
fn cap(max_running: Option<i64>) -> Result<Option<u32>> {
    max_running
        .map(|n| {
            u32::try_from(n).ok().filter(|n| *n >= 1).ok_or_else(|| {
                CoreError::config(format!(
                    "max_running must be from 1 to {}, not {n}",
                    u32::MAX
                ))
                .into()
            })
        })
        .transpose()
}

pub fn set_limit(
    py: Python<'_>,
    client: &TaskQueueClient,
    scope: &str,
    name: String,
    rate: Option<String>,
    max_running: Option<i64>,
) -> Result<bool> {
    let scope = LimitScope::parse(scope)?;
    let max_running = cap(max_running)?;
    let client = client.clone();
    Ok(block_on(py, async move {
        client
            .set_limit(scope, &name, rate.as_deref(), max_running)
            .await
    })?)
}

pub fn limits(py: Python<'_>, client: &TaskQueueClient) -> Result<Py<PyAny>> {
    let client = client.clone();
    let limits = block_on(py, async move { client.limits().await })?;
    to_py(py, &limits)
}

/// The worker option `limits`: `[{"scope": "task", "name", "rate", "max_running"}]`.
pub fn task_limits(value: &Bound<'_, PyAny>) -> Result<Vec<Limit>> {
    let mut out = Vec::new();
    for item in value.try_iter()? {
        let item = item?;
        let entry = item.cast::<PyDict>().map_err(|_| {
            CoreError::config("each worker limit must be a dict of scope, name, rate, max_running")
        })?;
        let get = |key: &str| entry.get_item(key).ok().flatten().filter(|v| !v.is_none());
        let scope: String = match get("scope") {
            Some(v) => v.extract()?,
            None => "task".to_owned(),
        };
        let name: String = get("name")
            .ok_or_else(|| CoreError::config("a worker limit needs a name"))?
            .extract()?;
        let rate = get("rate")
            .map(|v| v.extract::<String>())
            .transpose()?
            .map(|r| Rate::parse(&r))
            .transpose()?;
        let max_running = cap(get("max_running").map(|v| v.extract::<i64>()).transpose()?)?;
        let limit = Limit {
            scope: LimitScope::parse(&scope)?,
            name,
            rate,
            max_running,
        };
        limit.validate()?;
        out.push(limit);
    }
    Ok(out)
}

/// The worker option `queue_concurrency`: `{"emails": 4, "reports": 1}`.
pub fn queue_concurrency(caps: BTreeMap<String, i64>) -> Result<Vec<(String, usize)>> {
    caps.into_iter()
        .map(|(queue, n)| match usize::try_from(n) {
            Ok(n) if n >= 1 => Ok((queue, n)),
            _ => Err(CoreError::config(format!(
                "the concurrency of queue {queue:?} must be at least 1, not {n}"
            ))
            .into()),
        })
        .collect()
}
