//! Python return values and exceptions → [`TaskOutcome`].

use pyo3::exceptions::asyncio::CancelledError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use spikard_tasks::TaskOutcome;

use crate::convert::py_to_json;
use crate::errors::exception_class;

static FORMAT_EXCEPTION: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// A handler's return value: stored as JSON, or a non-retryable serialization failure.
pub fn value_outcome(value: &Bound<'_, PyAny>) -> TaskOutcome {
    match py_to_json(value, "result") {
        Ok(json) => TaskOutcome::Success(json),
        Err(err) => TaskOutcome::Fail {
            error: format!("SerializationError: {}", err.value(value.py())),
            traceback: None,
            retryable: false,
        },
    }
}

/// A handler's exception: `Retry`, `Cancel`, a cancellation, or a failed attempt with
/// its text and traceback.
pub fn error_outcome(py: Python<'_>, err: PyErr, cancel_requested: bool) -> TaskOutcome {
    let exc = err.value(py);
    if let Ok(retry) = exception_class(py, "Retry") {
        if exc.is_instance(&retry).unwrap_or(false) {
            let after: f64 = exc
                .getattr("after")
                .and_then(|a| a.extract())
                .unwrap_or(0.0);
            let reason: Option<String> = exc
                .getattr("reason")
                .and_then(|r| r.extract())
                .ok()
                .flatten();
            // `Retry` checks `after` itself; a subclass or a changed attribute may not.
            return match spikard_tasks::time::check_secs("Retry(after=...)", after, true) {
                Ok(after) => TaskOutcome::Retry {
                    after: spikard_tasks::time::secs(after),
                    reason,
                },
                Err(bad) => TaskOutcome::Fail {
                    error: format!("ConfigError: {bad}"),
                    traceback: format_traceback(py, &err),
                    retryable: true,
                },
            };
        }
    }
    if let Ok(cancel) = exception_class(py, "Cancel") {
        if exc.is_instance(&cancel).unwrap_or(false) {
            let reason: Option<String> = exc
                .getattr("reason")
                .and_then(|r| r.extract())
                .ok()
                .flatten();
            return TaskOutcome::Cancel { reason };
        }
    }
    if cancel_requested && err.is_instance_of::<CancelledError>(py) {
        return TaskOutcome::Cancel {
            reason: Some("cancelled by request".into()),
        };
    }
    let type_name = exc
        .get_type()
        .qualname()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "Exception".into());
    let text = exc.str().map(|s| s.to_string()).unwrap_or_default();
    let error = if text.is_empty() {
        type_name
    } else {
        format!("{type_name}: {text}")
    };
    // A task's `retry_on` / `dont_retry_on` marks an exception no retry may follow.
    let retryable = !exc
        .getattr(NO_RETRY)
        .and_then(|v| v.is_truthy())
        .unwrap_or(false);
    TaskOutcome::Fail {
        error,
        traceback: format_traceback(py, &err),
        retryable,
    }
}

/// The attribute `spikard_tasks._chain` sets on an exception that must not be retried.
const NO_RETRY: &str = "_spikard_no_retry";

fn format_traceback(py: Python<'_>, err: &PyErr) -> Option<String> {
    let format = FORMAT_EXCEPTION
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(
                py.import("traceback")?
                    .getattr("format_exception")?
                    .unbind(),
            )
        })
        .ok()?;
    let lines = format
        .bind(py)
        .call1((err.get_type(py), err.value(py), err.traceback(py)))
        .ok()?;
    let lines: Vec<String> = lines.extract().ok()?;
    Some(lines.concat())
}
