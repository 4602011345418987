//! `NativeQueue`: the producer API and the worker factory, for Python.

use std::collections::HashMap;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};
use serde_json::Value;
use spikard_tasks::{JobOptions, NewJob, TaskQueueClient, TaskQueueConfig, WorkerOptions};

use crate::bridge::{
    AsyncLoop, BridgeState, HandlerEntry, JobContextVar, PyTaskHandler, PythonThreads,
};
use crate::convert::{json_to_py, py_to_json};
use crate::errors::{raise, Error, Result};
use crate::tokio_rt::{block_on, block_on_interruptible, runtime};
use crate::worker::NativeWorker;

/// A connection to one task queue (store + configuration).
#[pyclass(frozen, module = "spikard_tasks._native")]
pub struct NativeQueue {
    client: TaskQueueClient,
}

fn to_py_value<T: serde::Serialize>(py: Python<'_>, value: &T) -> Result<Py<PyAny>> {
    let json = serde_json::to_value(value).map_err(spikard_tasks::CoreError::from)?;
    Ok(json_to_py(py, &json)?.unbind())
}

fn job_options(options: Option<&Bound<'_, PyAny>>) -> Result<JobOptions> {
    let Some(options) = options.filter(|o| !o.is_none()) else {
        return Ok(JobOptions::default());
    };
    // Names and keys in the options are configuration: a bad one is a ConfigError.
    let json = py_to_json(options, "options").map_err(|e| {
        raise(
            options.py(),
            "ConfigError",
            e.value(options.py()).to_string(),
        )
    })?;
    serde_json::from_value(json).map_err(|e| {
        Error::Core(spikard_tasks::CoreError::config(format!(
            "invalid job options: {e}"
        )))
    })
}

/// The text of a name (task, queue): `ConfigError` when it is not valid Unicode.
fn name_text(name: &Bound<'_, PyString>, field: &str) -> Result<String> {
    match name.to_str() {
        Ok(text) => Ok(text.to_owned()),
        Err(_) => Err(Error::Py(raise(
            name.py(),
            "ConfigError",
            format!("{field} holds a lone surrogate (not valid Unicode)"),
        ))),
    }
}

#[pymethods]
impl NativeQueue {
    /// Opens the queue described by `config_json` (a `TaskQueueConfig` as JSON) and
    /// sets up its schema.
    #[new]
    fn new(py: Python<'_>, config_json: &str) -> Result<Self> {
        let config = TaskQueueConfig::from_json(config_json)?;
        let client = block_on(py, TaskQueueClient::connect(config))?;
        Ok(Self { client })
    }

    /// The backend URL with any password masked.
    #[getter]
    fn url(&self) -> String {
        spikard_tasks::url::redact(&self.client.config().url)
    }

    /// The configured queue name.
    #[getter]
    fn queue(&self) -> String {
        self.client.config().queue.clone()
    }

    /// Enqueues `(task, args, kwargs, options)` tuples in one transaction; returns
    /// `(id, created)` per job, in order.
    fn enqueue(&self, py: Python<'_>, jobs: &Bound<'_, PyList>) -> Result<Vec<(String, bool)>> {
        let mut new_jobs = Vec::with_capacity(jobs.len());
        for item in jobs.iter() {
            let (task, args, kwargs, options): (
                Bound<'_, PyString>,
                Bound<'_, PyAny>,
                Bound<'_, PyAny>,
                Option<Bound<'_, PyAny>>,
            ) = item.extract()?;
            let args = if args.is_none() {
                Value::Array(vec![])
            } else {
                py_to_json(&args, "args")?
            };
            let kwargs = if kwargs.is_none() {
                Value::Object(Default::default())
            } else {
                py_to_json(&kwargs, "kwargs")?
            };
            new_jobs.push(NewJob {
                task: name_text(&task, "task name")?,
                args,
                kwargs,
                options: job_options(options.as_ref())?,
            });
        }
        let client = self.client.clone();
        let rows = client.resolve_all(new_jobs)?;
        // The insert runs on this thread when the store can (SQLite files), else on the
        // runtime; either way without holding the interpreter.
        let out = py.detach(|| match client.enqueue_rows_blocking(&rows) {
            Some(out) => out,
            None => runtime().block_on(client.enqueue_rows(rows)),
        })?;
        Ok(out.into_iter().map(|e| (e.id, e.created)).collect())
    }

    /// The job as a dict, or `None` for an unknown id.
    fn get(&self, py: Python<'_>, job_id: &Bound<'_, PyString>) -> Result<Option<Py<PyAny>>> {
        let (client, job_id) = (self.client.clone(), job_id.to_string_lossy());
        let rec = block_on(py, async move { client.get(&job_id).await })?;
        rec.map(|r| to_py_value(py, &r)).transpose()
    }

    /// Cancels a job; false for finished or unknown ones.
    fn cancel(&self, py: Python<'_>, job_id: &Bound<'_, PyString>) -> Result<bool> {
        let (client, job_id) = (self.client.clone(), job_id.to_string_lossy());
        Ok(block_on(py, async move { client.cancel(&job_id).await })?)
    }

    /// Reports a running job's progress (`fraction` from 0.0 to 1.0, an optional
    /// `message` of at most 1,000 characters); false when the job is not running.
    #[pyo3(signature = (job_id, fraction, message=None))]
    fn set_progress(
        &self,
        py: Python<'_>,
        job_id: &Bound<'_, PyString>,
        fraction: f64,
        message: Option<&Bound<'_, PyString>>,
    ) -> Result<bool> {
        let message = message
            .map(|m| name_text(m, "progress message"))
            .transpose()?;
        let (client, job_id) = (self.client.clone(), job_id.to_string_lossy());
        Ok(block_on(py, async move {
            client
                .set_progress(&job_id, fraction, message.as_deref())
                .await
        })?)
    }

    /// Waits for the job to finish; returns it as a dict, or `None` on timeout.
    #[pyo3(signature = (job_id, timeout=None))]
    fn wait(
        &self,
        py: Python<'_>,
        job_id: &Bound<'_, PyString>,
        timeout: Option<f64>,
    ) -> Result<Option<Py<PyAny>>> {
        let (client, job_id) = (self.client.clone(), job_id.to_string_lossy());
        let limit = wait_limit(timeout)?;
        let rec = block_on_interruptible(py, async move { client.wait(&job_id, limit).await })??;
        rec.map(|r| to_py_value(py, &r)).transpose()
    }

    /// Closes every connection of this queue (idempotent); stop its workers first.
    fn close(&self, py: Python<'_>) {
        let client = self.client.clone();
        block_on(py, async move { client.close().await });
    }

    /// Job counts per state of `queue` (the configured one by default).
    #[pyo3(signature = (queue=None))]
    fn counts(&self, py: Python<'_>, queue: Option<String>) -> Result<Py<PyAny>> {
        let client = self.client.clone();
        let counts = block_on(py, async move { client.counts(queue.as_deref()).await })?;
        to_py_value(py, &counts)
    }

    /// Figures per queue: `{"now_ms", "queues": [{"queue", "counts", "oldest_ready_ms",
    /// "succeeded_last_minute", "failed_last_minute", "paused"}]}`.
    fn stats(&self, py: Python<'_>) -> Result<Py<PyAny>> {
        crate::ops::stats(py, &self.client)
    }

    /// A page of jobs matching the filter (JSON of a `JobFilter`), newest first:
    /// `{"jobs": [record, …], "next_cursor": str | None}`.
    #[pyo3(signature = (filter_json, limit, cursor=None))]
    fn list_jobs(
        &self,
        py: Python<'_>,
        filter_json: &str,
        limit: usize,
        cursor: Option<String>,
    ) -> Result<Py<PyAny>> {
        crate::ops::list_jobs(py, &self.client, filter_json, limit, cursor)
    }

    /// Puts a failed or cancelled job back to pending with a fresh attempt budget.
    fn retry(&self, py: Python<'_>, job_id: &Bound<'_, PyString>) -> Result<bool> {
        crate::ops::retry(py, &self.client, job_id.to_string_lossy().into_owned())
    }

    /// Retries every failed or cancelled job matching the filter; returns how many.
    fn retry_jobs(&self, py: Python<'_>, filter_json: &str) -> Result<u64> {
        crate::ops::retry_jobs(py, &self.client, filter_json)
    }

    /// Cancels (or asks to stop) every unfinished job matching the filter; returns how
    /// many.
    fn cancel_jobs(&self, py: Python<'_>, filter_json: &str) -> Result<u64> {
        crate::ops::cancel_jobs(py, &self.client, filter_json)
    }

    /// Deletes the finished jobs matching the filter that finished more than
    /// `older_than` seconds ago; returns how many.
    fn purge(&self, py: Python<'_>, filter_json: &str, older_than: f64) -> Result<u64> {
        crate::ops::purge(py, &self.client, filter_json, older_than)
    }

    /// Pauses a queue (no worker claims from it); false if it was paused already.
    fn pause(&self, py: Python<'_>, queue: &Bound<'_, PyString>) -> Result<bool> {
        let queue = name_text(queue, "queue name")?;
        crate::ops::set_paused(py, &self.client, queue, true)
    }

    /// Resumes a paused queue; false if it was not paused.
    fn resume(&self, py: Python<'_>, queue: &Bound<'_, PyString>) -> Result<bool> {
        let queue = name_text(queue, "queue name")?;
        crate::ops::set_paused(py, &self.client, queue, false)
    }

    /// Stores the limit of a task or queue (`scope` "task" or "queue"): a rate such as
    /// "100/s" and/or a cap on running jobs; with neither it removes the stored one.
    /// Returns whether anything changed.
    #[pyo3(signature = (scope, name, rate=None, max_running=None))]
    fn set_limit(
        &self,
        py: Python<'_>,
        scope: &str,
        name: &Bound<'_, PyString>,
        rate: Option<String>,
        max_running: Option<i64>,
    ) -> Result<bool> {
        let name = name_text(name, "limit name")?;
        crate::limits::set_limit(py, &self.client, scope, name, rate, max_running)
    }

    /// Every stored limit: `{"scope", "name", "rate", "max_running", "running",
    /// "next_start_ms"}`.
    fn limits(&self, py: Python<'_>) -> Result<Py<PyAny>> {
        crate::limits::limits(py, &self.client)
    }

    /// The paused queues, by name.
    fn paused(&self, py: Python<'_>) -> Result<Vec<String>> {
        crate::ops::paused(py, &self.client)
    }

    /// The live workers of the store, as dicts of their registry rows.
    fn workers(&self, py: Python<'_>) -> Result<Py<PyAny>> {
        crate::ops::workers(py, &self.client)
    }

    /// Starts a worker in this process.
    ///
    /// `handlers` maps task names to `(callable, is_async)`. `async_submit` is
    /// `submit(fn, args, kwargs, done, fields)` of the worker's event loop thread when
    /// any handler is async. `job_context` is `(context_var, reporter)`: each attempt
    /// runs with `context_var` set to `(reporter, id, task, queue, attempt,
    /// max_attempts, enqueued_at_ms, timeout, trace_context)` (an async attempt gets
    /// that tuple as `fields`). `options` may set `concurrency`, `queues`, `name`,
    /// `host`, `drain_timeout`, `poll_interval`, `lease`, `heartbeat` and
    /// `task_backoff` (JSON: task name → backoff).
    #[pyo3(signature = (handlers, options, async_submit=None, job_context=None))]
    fn start_worker(
        &self,
        py: Python<'_>,
        handlers: &Bound<'_, PyDict>,
        options: &Bound<'_, PyDict>,
        async_submit: Option<&Bound<'_, PyAny>>,
        job_context: Option<(Bound<'_, PyAny>, Bound<'_, PyAny>)>,
    ) -> Result<NativeWorker> {
        let mut entries = HashMap::with_capacity(handlers.len());
        for (name, value) in handlers.iter() {
            let (func, is_async): (Bound<'_, PyAny>, bool) = value.extract()?;
            entries.insert(
                name.extract::<String>()?,
                Arc::new(HandlerEntry {
                    func: func.unbind(),
                    is_async,
                }),
            );
        }
        let mut opts = WorkerOptions::from_config(self.client.config());
        let with_scheduler = match options.get_item("scheduler")? {
            Some(v) => {
                let on: bool = v.extract()?;
                options.del_item("scheduler")?;
                on
            }
            None => false,
        };
        apply_worker_options(&mut opts, options)?;
        let async_loop = async_submit.map(|submit| {
            Arc::new(AsyncLoop {
                submit: submit.clone().unbind(),
            })
        });
        let context = job_context.map(|(var, reporter)| {
            Arc::new(JobContextVar {
                var: var.unbind(),
                reporter: reporter.unbind(),
            })
        });
        let state = Arc::new(BridgeState::default());
        let threads = Arc::new(
            PythonThreads::start(opts.concurrency, state.clone(), async_loop, context).map_err(
                |e| {
                    raise(
                        py,
                        "SpikardTasksError",
                        format!("cannot start threads: {e}"),
                    )
                },
            )?,
        );
        let handler = Arc::new(PyTaskHandler::new(entries, threads.clone(), state));
        let client = self.client.clone();
        let handle = {
            let _guard = runtime().enter();
            spikard_tasks::spawn_worker(&client, handler, opts)?
        };
        #[cfg(feature = "cron")]
        let scheduler = with_scheduler.then(|| crate::schedule::start(&client));
        #[cfg(not(feature = "cron"))]
        let scheduler = {
            if with_scheduler {
                return Err(Error::Core(spikard_tasks::CoreError::config(
                    "this build has no cron support (feature `cron`)",
                )));
            }
            None
        };
        Ok(NativeWorker::new(handle, threads, scheduler))
    }

    /// Validates and stores a schedule given as JSON (replaces one of the same name).
    #[cfg(feature = "cron")]
    fn save_schedule(&self, py: Python<'_>, definition: &str) -> Result<()> {
        crate::schedule::save(py, &self.client, definition)
    }

    /// Every stored schedule with `last_tick_ms`, `next_run_ms` and its definition.
    #[cfg(feature = "cron")]
    fn schedules(&self, py: Python<'_>) -> Result<Py<PyAny>> {
        crate::schedule::list(py, &self.client)
    }

    /// Removes a schedule; false if there was none.
    #[cfg(feature = "cron")]
    fn remove_schedule(&self, py: Python<'_>, name: &str) -> Result<bool> {
        crate::schedule::remove(py, &self.client, name)
    }

    /// Starts a cron scheduler for this backend's schedules.
    #[cfg(feature = "cron")]
    fn start_scheduler(&self) -> crate::schedule::NativeScheduler {
        crate::schedule::start(&self.client)
    }

    fn __repr__(&self) -> String {
        format!(
            "NativeQueue(url={:?}, queue={:?})",
            self.url(),
            self.client.config().queue
        )
    }
}

/// A wait's timeout in seconds (`None`: no limit), checked like every duration.
pub(crate) fn wait_limit(timeout: Option<f64>) -> Result<Option<std::time::Duration>> {
    timeout
        .map(|t| {
            spikard_tasks::time::check_secs("timeout", t, true)?;
            Ok(spikard_tasks::time::secs(t))
        })
        .transpose()
}

fn apply_worker_options(opts: &mut WorkerOptions, options: &Bound<'_, PyDict>) -> Result<()> {
    let secs = |v: Bound<'_, PyAny>, what: &str| -> Result<std::time::Duration> {
        let value = v.extract::<f64>()?;
        let zero_ok = !matches!(what, "lease" | "heartbeat");
        spikard_tasks::time::check_secs(what, value, zero_ok)?;
        Ok(spikard_tasks::time::secs(value))
    };
    for (key, value) in options.iter() {
        if value.is_none() {
            continue;
        }
        let key: String = key.extract()?;
        match key.as_str() {
            "concurrency" => opts.concurrency = value.extract()?,
            "queues" => opts.queues = value.extract()?,
            "name" => opts.name = value.extract()?,
            "host" => opts.host = value.extract()?,
            "drain_timeout" => opts.drain_timeout = secs(value, "drain_timeout")?,
            "poll_interval" => opts.poll_interval = secs(value, "poll_interval")?,
            "lease" => opts.lease = secs(value, "lease")?,
            "heartbeat" => opts.heartbeat = secs(value, "heartbeat")?,
            "limits" => opts.task_limits = crate::limits::task_limits(&value)?,
            "queue_concurrency" => {
                let caps: std::collections::BTreeMap<String, i64> = value.extract()?;
                opts.queue_concurrency = crate::limits::queue_concurrency(caps)?;
            }
            "task_backoff" => {
                let text: String = value.extract()?;
                opts.task_backoff = serde_json::from_str(&text).map_err(|e| {
                    Error::Core(spikard_tasks::CoreError::config(format!(
                        "invalid task backoff: {e}"
                    )))
                })?;
                opts.validate()?;
            }
            other => {
                return Err(Error::Core(spikard_tasks::CoreError::config(format!(
                    "unknown worker option {other:?}"
                ))))
            }
        }
    }
    if opts.concurrency == 0 {
        return Err(Error::Core(spikard_tasks::CoreError::config(
            "concurrency must be at least 1",
        )));
    }
    if opts.heartbeat >= opts.lease {
        return Err(Error::Core(spikard_tasks::CoreError::config(
            "heartbeat must be shorter than lease (leases are renewed every heartbeat)",
        )));
    }
    Ok(())
}
