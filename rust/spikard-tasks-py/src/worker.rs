//! `NativeWorker`: a running worker, for Python.

use std::sync::Arc;

use pyo3::prelude::*;
use spikard_tasks::{InFlight, WorkerHandle, WorkerStopper};
use tokio::sync::Mutex;

use crate::bridge::PythonThreads;
use crate::convert::json_to_py;
use crate::errors::Result;
use crate::tokio_rt::block_on_interruptible;

/// A worker running on the bindings' tokio runtime.
#[pyclass(frozen, module = "spikard_tasks._native")]
pub struct NativeWorker {
    handle: Arc<Mutex<WorkerHandle>>,
    stopper: WorkerStopper,
    in_flight: InFlight,
    threads: Arc<PythonThreads>,
    name: String,
    scheduler: Option<Scheduler>,
}

#[cfg(feature = "cron")]
type Scheduler = crate::schedule::NativeScheduler;
#[cfg(not(feature = "cron"))]
type Scheduler = std::convert::Infallible;

impl NativeWorker {
    pub(crate) fn new(
        handle: WorkerHandle,
        threads: Arc<PythonThreads>,
        scheduler: Option<Scheduler>,
    ) -> Self {
        Self {
            scheduler,
            name: handle.name().to_owned(),
            stopper: handle.stopper(),
            in_flight: handle.in_flight(),
            handle: Arc::new(Mutex::new(handle)),
            threads,
        }
    }
}

fn report_to_py(py: Python<'_>, report: &spikard_tasks::WorkerReport) -> Result<Py<PyAny>> {
    let json = serde_json::to_value(report).map_err(spikard_tasks::CoreError::from)?;
    Ok(json_to_py(py, &json)?.unbind())
}

#[pymethods]
impl NativeWorker {
    /// The worker's unique name.
    #[getter]
    fn name(&self) -> String {
        self.name.clone()
    }

    /// How many jobs run in a handler right now (claimed-ahead ones not included).
    fn in_flight(&self) -> usize {
        self.in_flight.get()
    }

    /// Asks the worker to stop (returns at once).
    fn request_stop(&self) {
        self.stopper.stop();
    }

    /// Waits up to `timeout` seconds (forever with `None`) for the worker to exit.
    /// Returns its report, or `None` if it is still running.
    #[pyo3(signature = (timeout=None))]
    fn join(&self, py: Python<'_>, timeout: Option<f64>) -> Result<Option<Py<PyAny>>> {
        let handle = self.handle.clone();
        let limit = crate::queue::wait_limit(timeout)?;
        let outcome = block_on_interruptible(py, async move {
            let mut h = handle.lock().await;
            match limit {
                Some(t) => tokio::time::timeout(t, h.join()).await.ok(),
                None => Some(h.join().await),
            }
        })?;
        #[cfg(feature = "cron")]
        if outcome.is_some() {
            if let Some(scheduler) = &self.scheduler {
                crate::tokio_rt::block_on(py, scheduler.shutdown());
            }
        }
        match outcome {
            None => Ok(None),
            Some(report) => {
                let report = report?;
                let threads = self.threads.clone();
                py.detach(move || threads.shutdown());
                Ok(Some(report_to_py(py, &report)?))
            }
        }
    }

    /// True if this worker also runs the cron scheduler.
    fn runs_scheduler(&self) -> bool {
        self.scheduler.is_some()
    }

    /// True while the worker runs.
    fn is_running(&self) -> bool {
        match self.handle.try_lock() {
            Ok(h) => !h.is_finished(),
            Err(_) => true,
        }
    }

    /// Live counters (`succeeded`, `retried`, `failed`, `cancelled`, `released`).
    fn stats(&self, py: Python<'_>) -> Result<Py<PyAny>> {
        let report = match self.handle.try_lock() {
            Ok(h) => h.stats(),
            Err(_) => Default::default(),
        };
        report_to_py(py, &report)
    }
}
