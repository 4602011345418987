//! The dedicated Python threads that run handlers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use spikard_tasks::TaskOutcome;

use super::outcome::{error_outcome, value_outcome};
use super::reply::ReplySlot;
use super::work_queue::WorkQueue;
use super::{BridgeState, Work};
use crate::convert::{json_to_args, json_to_kwargs};

/// What each thread needs to submit `async def` handlers.
pub struct AsyncLoop {
    /// `EventLoopThread.submit(fn, args, kwargs, done)` of `spikard_tasks._bridge`:
    /// returns an attempt handle with a thread-safe `cancel()`.
    pub submit: Py<PyAny>,
}

/// What each thread needs to tell a handler which job it runs (`current_job()`).
pub struct JobContextVar {
    /// The `contextvars.ContextVar` that `spikard_tasks.current_job()` reads.
    pub var: Py<PyAny>,
    /// Passed along with each job's fields: what `progress()` reports to.
    pub reporter: Py<PyAny>,
}

impl JobContextVar {
    /// `(reporter, id, task, queue, attempt, max_attempts, enqueued_at_ms, timeout,
    /// trace_context)`.
    fn fields<'py>(
        &self,
        py: Python<'py>,
        job: &spikard_tasks::ClaimedJob,
    ) -> PyResult<Bound<'py, pyo3::types::PyTuple>> {
        (
            self.reporter.clone_ref(py),
            job.id.as_str(),
            job.task.as_str(),
            job.queue.as_str(),
            job.attempt,
            job.max_attempts,
            job.enqueued_at_ms,
            job.timeout,
            job.trace_context.as_deref(),
        )
            .into_pyobject(py)
    }
}

/// A pool of Python threads fed by one [`WorkQueue`].
///
/// A sync handler that runs past its timeout cannot be interrupted: its thread is
/// abandoned to finish on its own and a replacement thread is started, so the pool keeps
/// its size; the abandoned thread retires once its handler returns (never, if it blocks
/// forever: the pool still has its full size of live threads).
pub struct PythonThreads {
    queue: Arc<WorkQueue<Work>>,
    state: Arc<BridgeState>,
    async_loop: Option<Arc<AsyncLoop>>,
    context: Option<Arc<JobContextVar>>,
    spawned: AtomicUsize,
    /// Abandoned threads still stuck in a timed-out handler.
    stuck: Arc<AtomicUsize>,
    /// How many may be stuck before the worker stops claiming.
    stuck_cap: usize,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// Abandoned threads allowed at least (the pool's size when larger) before the worker
/// stops claiming: a few stuck handlers must not stop a small worker.
const MIN_STUCK_CAP: usize = 16;

/// How long shutdown waits for threads still running a handler before leaving them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

impl PythonThreads {
    /// Starts `n` threads.
    pub fn start(
        n: usize,
        state: Arc<BridgeState>,
        async_loop: Option<Arc<AsyncLoop>>,
        context: Option<Arc<JobContextVar>>,
    ) -> std::io::Result<Self> {
        let pool = Self {
            queue: Arc::new(WorkQueue::new()),
            state,
            async_loop,
            context,
            spawned: AtomicUsize::new(0),
            stuck: Arc::new(AtomicUsize::new(0)),
            stuck_cap: n.max(MIN_STUCK_CAP),
            threads: Mutex::new(Vec::with_capacity(n)),
        };
        for _ in 0..n.max(1) {
            pool.spawn_one()?;
        }
        Ok(pool)
    }

    fn spawn_one(&self) -> std::io::Result<()> {
        let i = self.spawned.fetch_add(1, Ordering::Relaxed);
        let ctx = ThreadContext {
            queue: self.queue.clone(),
            state: self.state.clone(),
            async_loop: self.async_loop.clone(),
            context: self.context.clone(),
            stuck: self.stuck.clone(),
        };
        let handle = std::thread::Builder::new()
            .name(format!("spikard-py-{i}"))
            .spawn(move || thread_main(ctx))?;
        if let Ok(mut threads) = self.threads.lock() {
            threads.retain(|t| !t.is_finished());
            threads.push(handle);
        }
        Ok(())
    }

    /// Replaces the thread stuck in a timed-out sync handler.
    pub(crate) fn replace_abandoned(&self) {
        self.stuck.fetch_add(1, Ordering::AcqRel);
        if let Err(e) = self.spawn_one() {
            tracing::error!(error = %e, "cannot start a replacement handler thread");
        }
    }

    /// Why no more jobs should start: the cap of abandoned threads stuck in timed-out
    /// sync handlers is reached (each still holds memory and whatever the handler holds;
    /// their number would grow without bound when handlers hang).
    pub(crate) fn unavailable(&self) -> Option<String> {
        let stuck = self.stuck.load(Ordering::Acquire);
        (stuck >= self.stuck_cap).then(|| {
            format!(
                "{stuck} sync handlers are still running past their timeouts on abandoned \
                 threads (a sync handler cannot be interrupted; at most {} may be left \
                 running); new jobs wait until one of them returns",
                self.stuck_cap
            )
        })
    }

    /// Queues work; false once the pool is shut down.
    pub(crate) fn send(&self, work: Work) -> bool {
        self.queue.send(work)
    }

    /// Closes the queue and waits for the threads (call with the interpreter
    /// released). Threads still stuck in a handler after a short grace are left to
    /// finish on their own.
    pub fn shutdown(&self) {
        self.queue.close();
        let threads: Vec<_> = self
            .threads
            .lock()
            .map(|mut t| t.drain(..).collect())
            .unwrap_or_default();
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        for t in threads {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

struct ThreadContext {
    queue: Arc<WorkQueue<Work>>,
    state: Arc<BridgeState>,
    async_loop: Option<Arc<AsyncLoop>>,
    context: Option<Arc<JobContextVar>>,
    stuck: Arc<AtomicUsize>,
}

fn thread_main(ctx: ThreadContext) {
    Python::attach(|py| loop {
        let Some(mut work) = py.detach(|| ctx.queue.recv()) else {
            break;
        };
        // While work is already queued (every other thread is busy), keep the
        // interpreter and run it: one attach per burst, not one per job.
        loop {
            if run_caught(py, work, &ctx) {
                // Abandoned in a timed-out handler that has now returned: retire.
                ctx.stuck.fetch_sub(1, Ordering::AcqRel);
                return;
            }
            match ctx.queue.try_recv() {
                Some(next) => work = next,
                None => break,
            }
        }
    });
}

/// Runs one piece of work, catching panics; true if this thread must retire.
fn run_caught(py: Python<'_>, work: Work, ctx: &ThreadContext) -> bool {
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run(
            py,
            work,
            &ctx.state,
            ctx.async_loop.as_deref(),
            ctx.context.as_deref(),
        )
    }));
    match caught {
        // This thread was abandoned in a timed-out handler and replaced: retire.
        Ok(retire) => retire,
        // The reply sender was dropped with the panic: the awaiting task records a
        // failed attempt. The thread itself keeps serving.
        Err(_) => {
            tracing::error!("a panic in the handler bridge was caught");
            false
        }
    }
}

/// Does one piece of work; true if this thread must retire (see [`PythonThreads`]).
fn run(
    py: Python<'_>,
    work: Work,
    state: &Arc<BridgeState>,
    async_loop: Option<&AsyncLoop>,
    context: Option<&JobContextVar>,
) -> bool {
    match work {
        Work::Cancel { job_id } => {
            if let Some(fut) = state.forget_async(&job_id) {
                let _ = fut.bind(py).call_method0("cancel");
            }
            false
        }
        Work::Run { job, entry, reply } => {
            type Call<'py> = (
                Bound<'py, pyo3::types::PyTuple>,
                Bound<'py, pyo3::types::PyDict>,
                Option<Bound<'py, pyo3::types::PyTuple>>,
            );
            let call = || -> PyResult<Call<'_>> {
                let fields = context.map(|c| c.fields(py, &job)).transpose()?;
                Ok((
                    json_to_args(py, &job.args)?,
                    json_to_kwargs(py, &job.kwargs)?,
                    fields,
                ))
            };
            let (args, kwargs, fields) = match call() {
                Ok(v) => v,
                Err(e) => {
                    let _ = reply.send(error_outcome(py, e, false));
                    return false;
                }
            };
            if !entry.is_async {
                state.sync_started(&job.id, job.attempt);
                // A panic here (e.g. PyO3 resuming one when the handler raised
                // `PanicException`) becomes this attempt's error, with its message.
                let called = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let token = match (context, &fields) {
                        (Some(c), Some(f)) => match c.var.bind(py).call_method1("set", (f,)) {
                            Ok(token) => Some(token),
                            Err(err) => return error_outcome(py, err, false),
                        },
                        _ => None,
                    };
                    let outcome = match entry.func.bind(py).call(args, Some(&kwargs)) {
                        Ok(value) => value_outcome(&value),
                        Err(err) => error_outcome(py, err, false),
                    };
                    if let (Some(c), Some(token)) = (context, token) {
                        let _ = c.var.bind(py).call_method1("reset", (token,));
                    }
                    outcome
                }));
                let abandoned = state.sync_finished(&job.id, job.attempt);
                let outcome = called.unwrap_or_else(|panic| {
                    TaskOutcome::fail(format!(
                        "PanicException: a panic in the handler bridge: {}",
                        panic_text(panic.as_ref())
                    ))
                });
                let _ = reply.send(outcome);
                return abandoned;
            }
            let Some(lp) = async_loop else {
                let _ = reply.send(TaskOutcome::fail(
                    "WorkerError: no event loop for async handlers in this worker",
                ));
                return false;
            };
            let done = match Py::new(py, ReplySlot::new(reply, job.id.clone(), state.clone())) {
                Ok(d) => d,
                Err(_) => return false,
            };
            match lp.submit.bind(py).call1((
                entry.func.bind(py),
                args,
                kwargs,
                done.bind(py),
                fields,
            )) {
                Ok(fut) => {
                    state.track_async(job.id.clone(), fut.unbind());
                    if done.get().is_finished() {
                        state.forget_async(&job.id);
                    }
                }
                Err(err) => done.get().finish(error_outcome(py, err, false)),
            }
            false
        }
    }
}

/// The message of a caught panic.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}
