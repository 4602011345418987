//! The tokio runtime the bindings own, and blocking on it without starving Python.
//!
//! Not to be confused with the Python `BackgroundRuntime` (`spikard_tasks.runtime`): this
//! is the engine's async runtime, which runs stores, workers and schedulers.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use pyo3::prelude::*;
use tokio::runtime::Runtime;

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// The process-wide multi-threaded runtime (created on first use).
pub fn runtime() -> &'static Runtime {
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8)))
            .thread_name("spikard-tasks-io")
            .enable_all()
            .build()
            .expect("failed to start the tokio runtime")
    })
}

/// Runs `fut` to completion with the interpreter released (other Python threads run).
pub fn block_on<F: Future + Send>(py: Python<'_>, fut: F) -> F::Output
where
    F::Output: Send,
{
    py.detach(|| runtime().block_on(fut))
}

/// Like [`block_on`], but wakes every 100 ms to let Python deliver signals
/// (Ctrl-C raises `KeyboardInterrupt` here instead of hanging).
pub fn block_on_interruptible<F>(py: Python<'_>, fut: F) -> PyResult<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    let mut fut = Box::pin(fut);
    loop {
        let step = py.detach(|| {
            runtime().block_on(async {
                tokio::time::timeout(Duration::from_millis(100), &mut fut).await
            })
        });
        match step {
            Ok(out) => return Ok(out),
            Err(_) => py.check_signals()?,
        }
    }
}
