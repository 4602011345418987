//! The dedicated Python threads that run handlers.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use pyo3::prelude::*;
use spikard_tasks::TaskOutcome;

use super::completion::Completion;
use super::outcome::{error_outcome, value_outcome};
use super::{BridgeState, Work};
use crate::convert::{json_to_args, json_to_kwargs};

/// What each thread needs to submit `async def` handlers.
pub struct AsyncLoop {
    /// `spikard_tasks._bridge.submit(loop, fn, args, kwargs, done)`.
    pub submit: Py<PyAny>,
    /// The worker's event loop.
    pub event_loop: Py<PyAny>,
}

/// A pool of Python threads fed by one channel.
pub struct PythonThreads {
    tx: Mutex<Option<Sender<Work>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl PythonThreads {
    /// Starts `n` threads.
    pub fn start(
        n: usize,
        state: Arc<BridgeState>,
        async_loop: Option<Arc<AsyncLoop>>,
    ) -> std::io::Result<Self> {
        let (tx, rx) = crossbeam_channel::unbounded::<Work>();
        let mut threads = Vec::with_capacity(n);
        for i in 0..n.max(1) {
            let rx = rx.clone();
            let state = state.clone();
            let async_loop = async_loop.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("spikard-py-{i}"))
                    .spawn(move || thread_main(rx, state, async_loop))?,
            );
        }
        Ok(Self {
            tx: Mutex::new(Some(tx)),
            threads: Mutex::new(threads),
        })
    }

    /// Queues work; false once the pool is shut down.
    pub(crate) fn send(&self, work: Work) -> bool {
        match self.tx.lock().ok().and_then(|tx| tx.clone()) {
            Some(tx) => tx.send(work).is_ok(),
            None => false,
        }
    }

    /// Closes the channel and waits for the threads (call with the interpreter released).
    pub fn shutdown(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        let threads: Vec<_> = self
            .threads
            .lock()
            .map(|mut t| t.drain(..).collect())
            .unwrap_or_default();
        for t in threads {
            let _ = t.join();
        }
    }
}

fn thread_main(rx: Receiver<Work>, state: Arc<BridgeState>, async_loop: Option<Arc<AsyncLoop>>) {
    Python::attach(|py| loop {
        let Ok(work) = py.detach(|| rx.recv()) else {
            break;
        };
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run(py, work, &state, async_loop.as_deref())
        }));
        if caught.is_err() {
            // The reply sender was dropped with the panic: the awaiting task records a
            // failed attempt. The thread itself keeps serving.
            eprintln!("spikard-tasks: a panic in the handler bridge was caught");
        }
    });
}

fn run(py: Python<'_>, work: Work, state: &Arc<BridgeState>, async_loop: Option<&AsyncLoop>) {
    match work {
        Work::Cancel { job_id } => {
            if let Some(fut) = state.forget_async(&job_id) {
                let _ = fut.bind(py).call_method0("cancel");
            }
        }
        Work::Run { job, entry, reply } => {
            let call = || -> PyResult<(Bound<'_, pyo3::types::PyTuple>, Bound<'_, pyo3::types::PyDict>)> {
                Ok((json_to_args(py, &job.args)?, json_to_kwargs(py, &job.kwargs)?))
            };
            let (args, kwargs) = match call() {
                Ok(v) => v,
                Err(e) => {
                    let _ = reply.send(error_outcome(py, e, false));
                    return;
                }
            };
            if !entry.is_async {
                let outcome = match entry.func.bind(py).call(args, Some(&kwargs)) {
                    Ok(value) => value_outcome(&value),
                    Err(err) => error_outcome(py, err, false),
                };
                let _ = reply.send(outcome);
                return;
            }
            let Some(lp) = async_loop else {
                let _ = reply.send(TaskOutcome::fail(
                    "WorkerError: no event loop for async handlers in this worker",
                ));
                return;
            };
            let done = match Py::new(py, Completion::new(reply, job.id.clone(), state.clone())) {
                Ok(d) => d,
                Err(_) => return,
            };
            match lp.submit.bind(py).call1((
                lp.event_loop.bind(py),
                entry.func.bind(py),
                args,
                kwargs,
                done.bind(py),
            )) {
                Ok(fut) => {
                    state.track_async(job.id.clone(), fut.unbind());
                    if done.get().is_finished() {
                        state.forget_async(&job.id);
                    }
                }
                Err(err) => done.get().finish(error_outcome(py, err, false)),
            }
        }
    }
}
