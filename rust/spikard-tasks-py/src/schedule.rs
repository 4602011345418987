//! Cron schedules for Python: validation, storage and the standalone scheduler.

use std::sync::Arc;

use pyo3::prelude::*;
use spikard_tasks::cron::CronSchedule;
use spikard_tasks::scheduler::{spawn_scheduler, SchedulerHandle, DEFAULT_RELOAD};
use spikard_tasks::{CoreError, TaskQueueClient};
use tokio::sync::Mutex;

use crate::convert::json_to_py;
use crate::errors::Result;
use crate::tokio_rt::{block_on, block_on_interruptible, runtime};

/// Parses a `CronSchedule` from JSON and validates it (expression, timezone, fields).
pub fn parse_schedule(definition: &str) -> Result<CronSchedule> {
    let schedule: CronSchedule = serde_json::from_str(definition)
        .map_err(|e| CoreError::config(format!("invalid schedule: {e}")))?;
    schedule.parse()?;
    Ok(schedule)
}

/// Validates a schedule (JSON) and returns its next tick after `after_ms` (ms since epoch).
/// A new schedule (`stored=False`) that would never fire from now on is refused; a stored
/// one is only parsed.
#[pyfunction]
#[pyo3(signature = (definition, after_ms, stored = false))]
pub fn validate_schedule(definition: &str, after_ms: i64, stored: bool) -> Result<Option<i64>> {
    let schedule = parse_schedule(definition)?;
    let parsed = if stored {
        schedule.parse()?
    } else {
        schedule.validate(spikard_tasks::time::now_ms())?
    };
    Ok(parsed.next_after(after_ms))
}

pub fn save(py: Python<'_>, client: &TaskQueueClient, definition: &str) -> Result<()> {
    let schedule = parse_schedule(definition)?;
    let client = client.clone();
    Ok(block_on(py, async move {
        client.save_schedule(&schedule).await
    })?)
}

pub fn list(py: Python<'_>, client: &TaskQueueClient) -> Result<Py<PyAny>> {
    let client = client.clone();
    let infos = block_on(py, async move { client.schedules().await })?;
    let json = serde_json::to_value(infos).map_err(CoreError::from)?;
    Ok(json_to_py(py, &json)?.unbind())
}

pub fn remove(py: Python<'_>, client: &TaskQueueClient, name: &str) -> Result<bool> {
    let client = client.clone();
    Ok(block_on(
        py,
        async move { client.remove_schedule(name).await },
    )?)
}

/// Starts a scheduler on the bindings' runtime.
pub fn start(client: &TaskQueueClient) -> NativeScheduler {
    let _guard = runtime().enter();
    NativeScheduler {
        handle: Arc::new(Mutex::new(spawn_scheduler(client, DEFAULT_RELOAD))),
    }
}

/// A running cron scheduler.
#[pyclass(frozen, module = "spikard_tasks._native")]
pub struct NativeScheduler {
    handle: Arc<Mutex<SchedulerHandle>>,
}

impl NativeScheduler {
    /// Stops it from async code (used when a worker that runs it stops).
    pub async fn shutdown(&self) {
        self.handle.lock().await.stop().await;
    }
}

#[pymethods]
impl NativeScheduler {
    /// Stops the scheduler and waits for it.
    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        let handle = self.handle.clone();
        block_on_interruptible(py, async move { handle.lock().await.stop().await })
    }
}
