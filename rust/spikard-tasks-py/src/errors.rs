//! Errors crossing into Python: one conversion from the engine's `CoreError`.
//!
//! The exception classes are declared once, in `spikard_tasks/exceptions.py`; this
//! module looks them up there so Python and Rust raise the very same classes.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;
use spikard_tasks::CoreError;

/// The bindings' error: an engine error or an error already raised in Python.
pub enum Error {
    /// From the engine.
    Core(CoreError),
    /// Already a Python exception.
    Py(PyErr),
}

/// Result alias for binding functions.
pub type Result<T> = std::result::Result<T, Error>;

impl From<CoreError> for Error {
    fn from(e: CoreError) -> Self {
        Self::Core(e)
    }
}

impl From<PyErr> for Error {
    fn from(e: PyErr) -> Self {
        Self::Py(e)
    }
}

static EXCEPTIONS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// Looks up an exception class of `spikard_tasks.exceptions` by name.
pub fn exception_class<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyType>> {
    let module = EXCEPTIONS.get_or_try_init(py, || {
        Ok::<_, PyErr>(py.import("spikard_tasks.exceptions")?.unbind())
    })?;
    Ok(module.bind(py).getattr(name)?.cast_into::<PyType>()?)
}

/// Raises `name` from `spikard_tasks.exceptions` with `message`.
pub fn raise(py: Python<'_>, name: &str, message: String) -> PyErr {
    match exception_class(py, name) {
        Ok(cls) => PyErr::from_type(cls, message),
        Err(e) => e,
    }
}

impl From<Error> for PyErr {
    fn from(err: Error) -> Self {
        match err {
            Error::Py(e) => e,
            Error::Core(e) => Python::attach(|py| {
                let name = match &e {
                    CoreError::Config(_) => "ConfigError",
                    CoreError::UnknownTask(_) => "UnknownTask",
                    CoreError::Serialization(_) => "SerializationError",
                    CoreError::Backend(_) => "BackendError",
                    CoreError::Worker(_) => "SpikardTasksError",
                };
                let message = e.to_string();
                match exception_class(py, name) {
                    Ok(cls) => PyErr::from_type(cls, message),
                    Err(_) => PyRuntimeError::new_err(message),
                }
            }),
        }
    }
}
