//! The operations surface for Python (`NativeQueue.stats`, `list_jobs`, `retry`, …):
//! filters arrive as the JSON of a `JobFilter`, answers leave as dicts. Every call
//! waits without holding the interpreter; the bulk ones can be interrupted (Ctrl-C)
//! between their batches.

use pyo3::prelude::*;
use spikard_tasks::{CoreError, JobFilter, TaskQueueClient};

use crate::convert::json_to_py;
use crate::errors::Result;
use crate::tokio_rt::{block_on, block_on_interruptible};

/// A `JobFilter` from its JSON (`{"statuses": ["failed"], "task": …, "queue": …,
/// "since_ms": …, "until_ms": …, "ids": […]}`, absent fields: any); a malformed one
/// (unknown field or status name, wrong type) is a `ConfigError`.
pub fn parse_filter(filter_json: &str) -> Result<JobFilter> {
    serde_json::from_str(filter_json)
        .map_err(|e| CoreError::config(format!("invalid job filter: {e}")).into())
}

/// Any serializable answer as Python objects (dicts, lists, …).
pub(crate) fn to_py<T: serde::Serialize>(py: Python<'_>, value: &T) -> Result<Py<PyAny>> {
    let json = serde_json::to_value(value).map_err(CoreError::from)?;
    Ok(json_to_py(py, &json)?.unbind())
}

pub fn stats(py: Python<'_>, client: &TaskQueueClient) -> Result<Py<PyAny>> {
    let client = client.clone();
    let stats = block_on(py, async move { client.stats().await })?;
    to_py(py, &stats)
}

pub fn list_jobs(
    py: Python<'_>,
    client: &TaskQueueClient,
    filter_json: &str,
    limit: usize,
    cursor: Option<String>,
) -> Result<Py<PyAny>> {
    let filter = parse_filter(filter_json)?;
    let client = client.clone();
    let page = block_on(py, async move {
        client.list_jobs(filter, limit, cursor.as_deref()).await
    })?;
    to_py(py, &page)
}

pub fn retry(py: Python<'_>, client: &TaskQueueClient, job_id: String) -> Result<bool> {
    let client = client.clone();
    Ok(block_on(py, async move { client.retry(&job_id).await })?)
}

pub fn retry_jobs(py: Python<'_>, client: &TaskQueueClient, filter_json: &str) -> Result<u64> {
    let filter = parse_filter(filter_json)?;
    let client = client.clone();
    Ok(block_on_interruptible(py, async move {
        client.retry_jobs(filter).await
    })??)
}

pub fn cancel_jobs(py: Python<'_>, client: &TaskQueueClient, filter_json: &str) -> Result<u64> {
    let filter = parse_filter(filter_json)?;
    let client = client.clone();
    Ok(block_on_interruptible(py, async move {
        client.cancel_jobs(filter).await
    })??)
}

pub fn purge(
    py: Python<'_>,
    client: &TaskQueueClient,
    filter_json: &str,
    older_than: f64,
) -> Result<u64> {
    let filter = parse_filter(filter_json)?;
    let older_than = spikard_tasks::time::check_secs("older_than", older_than, true)?;
    let older_than = spikard_tasks::time::secs(older_than);
    let client = client.clone();
    Ok(block_on_interruptible(py, async move {
        client.purge(filter, older_than).await
    })??)
}

pub fn set_paused(
    py: Python<'_>,
    client: &TaskQueueClient,
    queue: String,
    paused: bool,
) -> Result<bool> {
    let client = client.clone();
    Ok(block_on(py, async move {
        if paused {
            client.pause(&queue).await
        } else {
            client.resume(&queue).await
        }
    })?)
}

pub fn paused(py: Python<'_>, client: &TaskQueueClient) -> Result<Vec<String>> {
    let client = client.clone();
    Ok(block_on(py, async move { client.paused().await })?)
}

pub fn workers(py: Python<'_>, client: &TaskQueueClient) -> Result<Py<PyAny>> {
    let client = client.clone();
    let workers = block_on(py, async move { client.workers().await })?;
    to_py(py, &workers)
}
