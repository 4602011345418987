//! Python bindings of the spikard-tasks engine (`spikard_tasks._native`).
//!
//! Thin by design: conversions, the handler bridge, the tokio runtime owner and the
//! error mapping. Everything else lives in the engine crate or in Python.

mod bridge;
mod convert;
mod errors;
mod logging;
mod limits;
mod ops;
mod queue;
mod rules;
#[cfg(feature = "cron")]
mod schedule;
mod tokio_rt;
mod worker;

use pyo3::prelude::*;

/// Masks the password of a URL.
#[pyfunction]
fn redact_url(url: &str) -> String {
    spikard_tasks::url::redact(url)
}

/// The backend kind a URL selects (`sqlite`, `memory`, `postgres`, …); raises
/// `ConfigError` for a malformed URL or a backend not compiled in.
#[pyfunction]
fn backend_kind(url: &str) -> errors::Result<&'static str> {
    Ok(spikard_tasks::url::BackendUrl::parse(url)?.kind())
}

/// Converts a Python value to JSON text with the same strict rules as job arguments.
#[pyfunction]
fn to_json(obj: &Bound<'_, PyAny>) -> PyResult<String> {
    let value = convert::py_to_json(obj, "value")?;
    Ok(value.to_string())
}

/// The job metrics of this process in the Prometheus text exposition format 0.0.4
/// (counters and histograms by task and queue; see `spikard_tasks::metrics`).
#[pyfunction]
fn metrics_text() -> String {
    spikard_tasks::metrics::render()
}

/// The engine's default configuration as JSON.
#[pyfunction]
fn default_config_json() -> String {
    serde_json::to_string(&spikard_tasks::TaskQueueConfig::default()).unwrap_or_default()
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    logging::init();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add(
        "FEATURES",
        vec![
            #[cfg(feature = "sqlite")]
            "sqlite",
            #[cfg(feature = "postgres")]
            "postgres",
            #[cfg(feature = "mysql")]
            "mysql",
            #[cfg(feature = "redis")]
            "redis",
            #[cfg(feature = "cron")]
            "cron",
        ],
    )?;
    m.add_class::<queue::NativeQueue>()?;
    m.add_class::<worker::NativeWorker>()?;
    m.add_class::<bridge::ReplySlot>()?;
    m.add_function(wrap_pyfunction!(redact_url, m)?)?;
    m.add_function(wrap_pyfunction!(backend_kind, m)?)?;
    m.add_function(wrap_pyfunction!(to_json, m)?)?;
    m.add_function(wrap_pyfunction!(default_config_json, m)?)?;
    m.add_function(wrap_pyfunction!(logging::start_log_forwarding, m)?)?;
    m.add_function(wrap_pyfunction!(logging::stop_log_forwarding, m)?)?;
    m.add_function(wrap_pyfunction!(metrics_text, m)?)?;
    m.add_function(wrap_pyfunction!(rules::check_config, m)?)?;
    m.add_function(wrap_pyfunction!(rules::backoff_delay, m)?)?;
    m.add_function(wrap_pyfunction!(rules::next_attempt_delay, m)?)?;
    #[cfg(feature = "cron")]
    {
        m.add_class::<schedule::NativeScheduler>()?;
        m.add_function(wrap_pyfunction!(schedule::validate_schedule, m)?)?;
    }
    Ok(())
}
