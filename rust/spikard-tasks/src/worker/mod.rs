//! The worker: an apalis worker over `StoreBackend` (`backend.rs`) running `JobService`
//! (`service.rs`), plus the maintenance loop (lease heartbeat, rescue of expired leases,
//! result expiry) and a graceful drain.

mod backend;
mod completer;
mod held;
mod limits;
mod observe;
mod paused;
mod registry;
mod service;
mod stats;

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use apalis::layers::WorkerBuilderExt;
use apalis_core::worker::builder::WorkerBuilder;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use stats::{WorkerReport, WorkerStats};

use crate::config::{Backoff, TaskQueueConfig};
use crate::error::{CoreError, CoreResult};
use crate::handler::TaskHandler;
use crate::queue::TaskQueueClient;
use crate::store::{Limit, LimitScope, Store};
use crate::time::{check_secs, duration_ms, secs};
use backend::{BackendParts, StoreBackend};
use completer::Completer;
use held::HeldJobs;
use limits::WorkerLimits;
use paused::ActiveQueues;
use registry::Registry;
use service::JobService;

/// How a worker runs. Build it with [`WorkerOptions::from_config`] and adjust.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerOptions {
    /// Queues to consume.
    pub queues: Vec<String>,
    /// Jobs run at once.
    pub concurrency: usize,
    /// Idle poll interval.
    pub poll_interval: Duration,
    /// Lease of a running job.
    pub lease: Duration,
    /// Lease renewal interval.
    pub heartbeat: Duration,
    /// How long a stop waits for in-flight jobs.
    pub drain_timeout: Duration,
    /// Backoff between failed attempts.
    pub backoff: Backoff,
    /// Backoff of particular tasks, by task name (instead of `backoff`).
    pub task_backoff: HashMap<String, Backoff>,
    /// Finished jobs older than this are deleted.
    pub result_ttl: Option<Duration>,
    /// Worker name (unique: host, pid and a random suffix by default).
    pub name: String,
    /// Host name shown in the worker registry (`TaskQueueClient::workers`); by default
    /// the kernel's host name ([`default_host`]).
    pub host: String,
    /// The limits of the tasks this worker runs, stored when it starts (an entry that
    /// limits nothing removes a stored one). Only the stored limits of these tasks (all
    /// stored task limits, when empty) and of the worker's queues bound its claims.
    pub task_limits: Vec<Limit>,
    /// Per-queue concurrency inside this worker (`emails=4,reports=1`): it holds at most
    /// that many jobs of the queue at once; queues not named share `concurrency`.
    pub queue_concurrency: Vec<(String, usize)>,
}

impl WorkerOptions {
    /// Options from a queue's configuration.
    pub fn from_config(cfg: &TaskQueueConfig) -> Self {
        Self {
            queues: vec![cfg.queue.clone()],
            concurrency: cfg.concurrency,
            poll_interval: secs(cfg.poll_interval),
            lease: secs(cfg.lease),
            heartbeat: secs(cfg.heartbeat),
            drain_timeout: secs(cfg.drain_timeout),
            backoff: cfg.backoff.clone(),
            task_backoff: HashMap::new(),
            result_ttl: cfg.result_ttl.map(secs),
            name: default_worker_name(),
            host: default_host(),
            task_limits: Vec::new(),
            queue_concurrency: Vec::new(),
        }
    }
}

impl WorkerOptions {
    /// Checks the intervals: each from 0 (`lease` and `heartbeat` more than 0) to 100
    /// years. A heartbeat at least as long as the lease is allowed here (it lets the
    /// leases lapse, as a dead worker's do); [`TaskQueueConfig`] refuses it.
    pub fn validate(&self) -> CoreResult<()> {
        let s = |d: Duration| d.as_secs_f64();
        check_secs("poll_interval", s(self.poll_interval), true)?;
        check_secs("drain_timeout", s(self.drain_timeout), true)?;
        check_secs("lease", s(self.lease), false)?;
        check_secs("heartbeat", s(self.heartbeat), false)?;
        for backoff in self.task_backoff.values() {
            backoff.validate()?;
        }
        for limit in &self.task_limits {
            if limit.scope != LimitScope::Task {
                return Err(CoreError::config("a worker's task limits must be task limits"));
            }
            limit.validate()?;
        }
        for (queue, n) in &self.queue_concurrency {
            if !self.queues.contains(queue) {
                return Err(CoreError::Config(format!(
                    "queue {queue:?} has a concurrency but is not one of the worker's queues"
                )));
            }
            if *n == 0 {
                return Err(CoreError::Config(format!(
                    "the concurrency of queue {queue:?} must be at least 1"
                )));
            }
        }
        self.backoff.validate()
    }
}

/// This machine's host name: the kernel's (`/proc/sys/kernel/hostname`), else
/// `"localhost"`.
pub fn default_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// `host-pid-random`: unique across processes and restarts.
pub fn default_worker_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "host".into());
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// Asks a worker to stop; cheap to clone and usable while another task awaits
/// [`WorkerHandle::join`].
#[derive(Clone, Debug)]
pub struct WorkerStopper(Arc<watch::Sender<bool>>);

impl WorkerStopper {
    /// Requests a graceful stop (idempotent).
    pub fn stop(&self) {
        let _ = self.0.send(true);
    }
}

/// A running worker. Dropping it does not stop it; call [`WorkerHandle::stop`].
pub struct WorkerHandle {
    name: String,
    stop: Arc<watch::Sender<bool>>,
    stats: Arc<WorkerStats>,
    in_flight: InFlight,
    join: Option<JoinHandle<CoreResult<WorkerReport>>>,
}

impl WorkerHandle {
    /// The worker's name (as stored in `locked_by`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Asks the worker to stop: it claims nothing more and drains in-flight jobs.
    pub fn request_stop(&self) {
        let _ = self.stop.send(true);
    }

    /// A handle that can request a stop independently of this one.
    pub fn stopper(&self) -> WorkerStopper {
        WorkerStopper(self.stop.clone())
    }

    /// How many jobs run in the handler right now (claimed-ahead jobs not included),
    /// readable from anywhere while the worker runs.
    pub fn in_flight(&self) -> InFlight {
        self.in_flight.clone()
    }

    /// Live counters.
    pub fn stats(&self) -> WorkerReport {
        self.stats.snapshot()
    }

    /// True once the worker has exited.
    pub fn is_finished(&self) -> bool {
        self.join.as_ref().is_none_or(|j| j.is_finished())
    }

    /// Requests a stop and waits for the drain to finish.
    pub async fn stop(&mut self) -> CoreResult<WorkerReport> {
        self.request_stop();
        self.join().await
    }

    /// Waits for the worker to exit (after a stop request or a fatal error). Safe to
    /// cancel (e.g. under a timeout) and call again.
    pub async fn join(&mut self) -> CoreResult<WorkerReport> {
        // Cancel-safe: the join handle is dropped only once the worker has exited.
        let Some(join) = self.join.as_mut() else {
            return Ok(self.stats.snapshot());
        };
        let result = join.await;
        self.join = None;
        result.map_err(|e| CoreError::Worker(format!("worker task failed: {e}")))?
    }
}

/// The number of jobs a worker is running in its handler right now.
#[derive(Clone, Debug, Default)]
pub struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    /// The current count.
    pub fn get(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// Starts a worker on the current tokio runtime.
pub fn spawn_worker(
    client: &TaskQueueClient,
    handler: Arc<dyn TaskHandler>,
    options: WorkerOptions,
) -> CoreResult<WorkerHandle> {
    if options.concurrency == 0 {
        return Err(CoreError::config("concurrency must be at least 1"));
    }
    if options.queues.is_empty() {
        return Err(CoreError::config("a worker needs at least one queue"));
    }
    for queue in &options.queues {
        crate::job::check_text("queue name", queue)?;
    }
    crate::job::check_text("worker host", &options.host)?;
    options.validate()?;
    let (stop, stop_rx) = watch::channel(false);
    let stats = Arc::new(WorkerStats::default());
    let name = options.name.clone();
    let in_flight = InFlight(Arc::new(AtomicUsize::new(0)));
    let join = tokio::spawn(run(
        client.clone(),
        handler,
        options,
        stop_rx,
        (stats.clone(), in_flight.0.clone()),
    ));
    Ok(WorkerHandle {
        name,
        stop: Arc::new(stop),
        stats,
        in_flight,
        join: Some(join),
    })
}

async fn run(
    client: TaskQueueClient,
    handler: Arc<dyn TaskHandler>,
    options: WorkerOptions,
    mut stop_rx: watch::Receiver<bool>,
    (stats, inflight): (Arc<WorkerStats>, Arc<AtomicUsize>),
) -> CoreResult<WorkerReport> {
    let worker_name: Arc<str> = options.name.clone().into();
    log_start(&client, &options);
    let held = Arc::new(HeldJobs::default());
    let store = client.store.clone();
    for limit in &options.task_limits {
        store.set_limit(limit).await?;
    }
    let backend = StoreBackend::new(BackendParts {
        limits: Arc::new(WorkerLimits::new(store.clone(), &options)),
        queue_concurrency: options.queue_concurrency.clone().into(),
        store: store.clone(),
        queues: Arc::new(ActiveQueues::new(
            store.clone(),
            options.queues.clone().into(),
            options.poll_interval,
        )),
        worker: worker_name.clone(),
        concurrency: options.concurrency,
        lease: options.lease,
        poll_interval: options.poll_interval,
        wake: client.enqueued.clone(),
        inflight: inflight.clone(),
        held: held.clone(),
        handler: handler.clone(),
    });
    let (completer, completer_task) = Completer::spawn(store.clone(), worker_name.clone());
    let service = JobService {
        completer,
        handler: handler.clone(),
        backoff: options.backoff.clone(),
        task_backoff: Arc::new(options.task_backoff.clone()),
        inflight,
        held: held.clone(),
        finished: client.finished.clone(),
        stats: stats.clone(),
        store: store.clone(),
    };
    let worker = WorkerBuilder::new(&*worker_name)
        .backend(backend)
        .concurrency(options.concurrency)
        .build(service);

    let listener = store.spawn_listener(options.queues.clone(), client.enqueued.clone());
    let (maintenance_stop, maintenance_stop_rx) = watch::channel(false);
    let registry = Arc::new(Registry::new(store.clone(), &options));
    let maintenance = tokio::spawn(maintain(
        store.clone(),
        handler,
        worker_name.clone(),
        held.clone(),
        options.clone(),
        registry.clone(),
        maintenance_stop_rx,
    ));

    let stop_for_worker = stop_rx.clone();
    let mut running = Box::pin(worker.run_with_ctx(move |ctx| {
        let mut rx = stop_for_worker.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
            // apalis refuses a stop before it has marked the worker started ("Worker not
            // started"), and a stop asked for right after the start can come first:
            // wait for the start, which follows at once.
            while ctx.is_pending() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            ctx.stop()
        }
    }));

    let outcome = tokio::select! {
        res = &mut running => Some(res),
        _ = stop_rx.wait_for(|stop| *stop) => None,
    };
    let result = match outcome {
        Some(res) => res.map_err(|e| CoreError::Worker(e.to_string())),
        None => match tokio::time::timeout(options.drain_timeout, &mut running).await {
            Ok(res) => res.map_err(|e| CoreError::Worker(e.to_string())),
            Err(_) => {
                tracing::warn!(worker = %worker_name, "drain timeout passed; releasing unfinished jobs");
                Ok(())
            }
        },
    };
    // The worker (and with it every sender to the completer) goes; the completer then
    // flushes what it holds and ends.
    drop(running);
    let _ = completer_task.await;
    // Let the maintenance loop finish its current round (never cut a query short).
    let _ = maintenance_stop.send(true);
    let _ = maintenance.await;
    if let Some(listener) = listener {
        listener.abort();
        // Gone (and its connection closed) before the worker reports it stopped.
        let _ = listener.await;
    }
    // Whatever this worker still holds (jobs cut off by the drain timeout) goes back.
    let released = store.release(&worker_name, None).await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "releasing unfinished jobs failed; their leases will expire");
        0
    });
    // Drained: no longer a live worker.
    registry.remove().await;
    let mut report = stats.snapshot();
    report.released = released;
    tracing::info!(
        target: "spikard_tasks::worker",
        worker = &*worker_name,
        succeeded = report.succeeded,
        retried = report.retried,
        failed = report.failed,
        cancelled = report.cancelled,
        released = report.released,
        error = result.as_ref().err().map(|e| e.to_string()),
        "worker stopped"
    );
    result.map(|_| report)
}

/// The INFO event of a worker's start: who it is, where it works (the URL without its
/// password) and how.
fn log_start(client: &TaskQueueClient, options: &WorkerOptions) {
    let url = &client.config().url;
    let backend = crate::url::BackendUrl::parse(url).map_or("unknown", |u| u.kind());
    tracing::info!(
        target: "spikard_tasks::worker",
        worker = options.name.as_str(),
        backend,
        url = crate::url::redact(url).as_str(),
        queues = options.queues.join(",").as_str(),
        concurrency = options.concurrency,
        version = env!("CARGO_PKG_VERSION"),
        "worker started"
    );
}

/// Registers this worker and beats its registry row, heartbeats its leases, forwards
/// cancel requests and, when no other worker of the store is doing it, rescues expired
/// leases of dead workers and expires old results (in bounded batches).
async fn maintain(
    store: Arc<dyn Store>,
    handler: Arc<dyn TaskHandler>,
    worker: Arc<str>,
    held: Arc<HeldJobs>,
    options: WorkerOptions,
    registry: Arc<Registry>,
    mut stop: watch::Receiver<bool>,
) {
    let mut registered = false;
    let mut tick = tokio::time::interval(options.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_purge = 0i64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let mut ids = held.snapshot();
        // An idle worker holds nothing: no leases to renew, no cancellations to hear of.
        if !ids.is_empty() {
            // One lock order (by id) for every statement that touches several jobs.
            ids.sort_unstable();
            match store.heartbeat(&worker, &ids, options.lease).await {
                Ok(cancel_ids) => {
                    for id in cancel_ids {
                        handler.cancel_requested(&id);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "lease heartbeat failed"),
            }
        }
        // The first tick (at once) registers; a failed registration is made good by a
        // beat, which re-creates a missing row.
        if registered {
            registry.beat(ids.len()).await;
        } else {
            registry.register().await;
            registered = true;
        }
        // Keep the offset to the database's clock fresh (clocks drift).
        if let Err(e) = store.sync_clock().await {
            tracing::debug!(error = %e, "reading the database's clock failed");
        }
        let now = store.now_ms();
        let purge_before = match options.result_ttl {
            Some(ttl) if now - last_purge > 60_000 => Some(now.saturating_sub(duration_ms(ttl))),
            _ => None,
        };
        match store.maintain(purge_before).await {
            Ok(done) => {
                if done.purged.is_some() {
                    last_purge = now;
                }
                if done.rescued > 0 {
                    tracing::warn!(
                        rescued = done.rescued,
                        "re-queued jobs whose worker stopped heartbeating"
                    );
                }
                if let Some(purged @ 1..) = done.purged {
                    tracing::debug!(purged, "expired old results");
                }
            }
            Err(e) => tracing::warn!(error = %e, "maintenance (rescue, expiry) failed"),
        }
    }
}
