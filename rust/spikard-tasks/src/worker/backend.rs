//! `StoreBackend`: our store as an apalis [`Backend`], so apalis' worker drives fetching.
//!
//! apalis only asks for a job when its concurrency limit has a free slot; the backend
//! hands out buffered jobs one by one and keeps the buffer filled: one query claims
//! jobs for every free slot plus up to `concurrency` ahead, on its own task, started
//! while the buffer still holds jobs so that freed slots never wait for it. When nothing
//! is ready it sleeps until the poll interval passes or a wake-up (a producer in this
//! process, or the store's listener) comes. Claims skip the worker's paused queues
//! (`paused.rs`); when all of them are paused it waits a poll interval (at least 50 ms)
//! and looks again. On shutdown, jobs claimed but not yet started are released back to
//! the queue.
//!
//! Flow control (`limits.rs`, the store's limited claim): while stored limits or
//! per-queue concurrency bound the worker, it claims only for free slots (nothing ahead,
//! so a rate-limited job starts when its token is taken) and, when a rate held jobs
//! back, looks again when the rate allows the next start rather than after a full poll
//! interval.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use apalis_core::backend::finalize::Ephemeral;
use apalis_core::backend::{Backend, BackendConfig};
use apalis_core::task::Task;
use apalis_core::worker::context::WorkerContext;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tower::layer::util::Identity;

use super::held::HeldJobs;
use super::limits::WorkerLimits;
use super::paused::ActiveQueues;
use crate::error::{CoreError, CoreResult};
use crate::handler::TaskHandler;
use crate::job::ClaimedJob;
use crate::store::{ClaimPlan, Store};

/// Pause after a failed claim (e.g. the database is restarting), doubled up to 5 s.
const ERROR_PAUSE: Duration = Duration::from_millis(100);

enum Phase {
    /// Ready to claim.
    Idle,
    /// A claim query is in flight, on its own task so that it runs while jobs do
    /// (`None` from it: every queue of the worker is paused, nothing was asked).
    Claiming(JoinHandle<CoreResult<Option<Claimed>>>),
    /// Nothing was ready (or the store failed): waiting before the next claim.
    Waiting(BoxFuture<'static, ()>),
    /// Shutting down: buffered jobs are being released.
    Releasing(BoxFuture<'static, CoreResult<u64>>),
}

/// What a claim took, and how soon a rate allows the jobs it held back.
pub(crate) struct Claimed {
    jobs: Vec<ClaimedJob>,
    retry_in: Option<Duration>,
}

/// Everything the backend needs to claim jobs.
pub(crate) struct BackendParts {
    pub store: Arc<dyn Store>,
    /// The worker's queues that are not paused.
    pub queues: Arc<ActiveQueues>,
    /// The stored limits that bound its claims.
    pub limits: Arc<WorkerLimits>,
    /// Per-queue concurrency inside this worker.
    pub queue_concurrency: Arc<[(String, usize)]>,
    pub worker: Arc<str>,
    pub concurrency: usize,
    pub lease: Duration,
    pub poll_interval: Duration,
    pub wake: Arc<Notify>,
    pub inflight: Arc<AtomicUsize>,
    pub held: Arc<HeldJobs>,
    pub handler: Arc<dyn TaskHandler>,
}

/// Our job store as an apalis backend.
pub(crate) struct StoreBackend {
    parts: BackendParts,
    buffer: VecDeque<ClaimedJob>,
    phase: Phase,
    error_pause: Duration,
    /// Why the handler takes no jobs right now (logged once per episode).
    unavailable: Option<String>,
}

impl StoreBackend {
    pub(crate) fn new(parts: BackendParts) -> Self {
        Self {
            parts,
            buffer: VecDeque::new(),
            phase: Phase::Idle,
            error_pause: ERROR_PAUSE,
            unavailable: None,
        }
    }

    /// How many jobs the next claim may take: every free slot plus up to `concurrency`
    /// jobs ahead, so that under load one query feeds many slots. Jobs claimed ahead
    /// are held (their leases renewed) and released on shutdown.
    fn room(&self) -> usize {
        let busy = self.parts.inflight.load(Ordering::Acquire) + self.buffer.len();
        (2 * self.parts.concurrency).saturating_sub(busy)
    }

    /// Whether to claim ahead while jobs are still buffered: once there is room for at
    /// least half a round, so the next jobs are on their way before the slots free and
    /// no slot waits for a query.
    fn wants_prefetch(&self) -> bool {
        self.room() >= (self.parts.concurrency / 2).max(1)
    }

    fn start_claim(&mut self) {
        match (self.parts.handler.unavailable(), self.unavailable.is_some()) {
            (Some(reason), false) => {
                tracing::error!(reason = %reason, "not claiming new jobs");
                self.unavailable = Some(reason);
            }
            (None, true) => {
                tracing::warn!("claiming new jobs again");
                self.unavailable = None;
            }
            _ => {}
        }
        if self.unavailable.is_some() {
            self.start_wait(self.parts.poll_interval.max(Duration::from_millis(50)));
            return;
        }
        let limit = self.room().max(1);
        let busy = self.parts.inflight.load(Ordering::Acquire) + self.buffer.len();
        let free = self.parts.concurrency.saturating_sub(busy).max(1);
        let store = self.parts.store.clone();
        let queues = self.parts.queues.clone();
        let limits = self.parts.limits.clone();
        let caps = self.parts.queue_concurrency.clone();
        let worker = self.parts.worker.clone();
        let lease = self.parts.lease;
        let held = self.parts.held.clone();
        self.phase = Phase::Claiming(tokio::spawn(async move {
            let queues = queues.get().await;
            if queues.is_empty() {
                return Ok(None);
            }
            let plan = ClaimPlan {
                limits: limits.get().await.to_vec(),
                queue_room: caps
                    .iter()
                    .filter(|(q, _)| queues.contains(q))
                    .map(|(q, n)| (q.clone(), n.saturating_sub(held.in_queue(q))))
                    .collect(),
            };
            let (jobs, retry_in) = if plan.is_empty() {
                (store.claim(&queues, &worker, limit, lease).await?, None)
            } else {
                let got = store
                    .claim_limited(&queues, &worker, free, lease, &plan)
                    .await?;
                let retry_in = got.retry_at_ms.map(|at| {
                    Duration::from_millis(at.saturating_sub(store.now_ms()).max(1) as u64)
                });
                (got.jobs, retry_in)
            };
            // Held (and so heartbeated) from the moment the claim returns, not from when
            // apalis next asks for a job: with every slot busy that may be long after
            // the claim's lease ran out.
            held.add(jobs.iter().map(|j| (j.id.as_str(), j.queue.as_str())));
            Ok(Some(Claimed { jobs, retry_in }))
        }));
    }

    /// Takes the result of a finished claim.
    fn claimed(&mut self, result: CoreResult<Option<Claimed>>) {
        match result {
            Ok(None) => {
                self.error_pause = ERROR_PAUSE;
                self.start_wait(self.parts.queues.refresh_interval());
            }
            Ok(Some(got)) if got.jobs.is_empty() => {
                self.error_pause = ERROR_PAUSE;
                let wait = got
                    .retry_in
                    .map_or(self.parts.poll_interval, |r| r.min(self.parts.poll_interval));
                self.start_wait(wait);
            }
            Ok(Some(got)) => {
                self.error_pause = ERROR_PAUSE;
                self.buffer.extend(got.jobs);
                self.phase = Phase::Idle;
            }
            Err(err) => {
                tracing::warn!(error = %err, retry_in = ?self.error_pause, "claiming jobs failed");
                let pause = self.error_pause;
                self.error_pause = (self.error_pause * 2).min(Duration::from_secs(5));
                self.start_wait(pause);
            }
        }
    }

    fn start_wait(&mut self, pause: Duration) {
        let wake = self.parts.wake.clone();
        self.phase = Phase::Waiting(
            async move {
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(pause) => {}
                }
            }
            .boxed(),
        );
    }
}

impl Backend for StoreBackend {
    type Task = Task<ClaimedJob>;
    type Error = CoreError;

    fn poll_ready(&mut self, _cx: &mut Context<'_>, _w: &WorkerContext) -> Poll<CoreResult<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        _w: &WorkerContext,
    ) -> Poll<Option<CoreResult<Self::Task>>> {
        loop {
            if matches!(self.phase, Phase::Idle)
                && (self.buffer.is_empty() || self.wants_prefetch())
            {
                self.start_claim();
            }
            let waiting = match &mut self.phase {
                Phase::Idle => false,
                Phase::Claiming(handle) => match handle.poll_unpin(cx) {
                    Poll::Pending => true,
                    Poll::Ready(joined) => {
                        self.claimed(joined.unwrap_or_else(|e| {
                            Err(CoreError::Worker(format!("the claim task failed: {e}")))
                        }));
                        continue;
                    }
                },
                Phase::Waiting(fut) => match fut.poll_unpin(cx) {
                    Poll::Pending => true,
                    Poll::Ready(()) => {
                        self.phase = Phase::Idle;
                        continue;
                    }
                },
                // Not reached while running: releasing happens in poll_close.
                Phase::Releasing(_) => true,
            };
            if let Some(job) = self.buffer.pop_front() {
                return Poll::Ready(Some(Ok(Task::new(job))));
            }
            if waiting {
                return Poll::Pending;
            }
        }
    }

    fn poll_close(&mut self, cx: &mut Context<'_>, _w: &WorkerContext) -> Poll<CoreResult<()>> {
        loop {
            match &mut self.phase {
                Phase::Releasing(fut) => {
                    return match fut.poll_unpin(cx) {
                        Poll::Pending => Poll::Pending,
                        Poll::Ready(res) => {
                            self.phase = Phase::Idle;
                            Poll::Ready(res.map(|_| ()))
                        }
                    }
                }
                Phase::Claiming(handle) => {
                    // Let an in-flight claim land so its jobs are released, not orphaned.
                    match handle.poll_unpin(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Ok(Ok(Some(got)))) => self.buffer.extend(got.jobs),
                        Poll::Ready(_) => {}
                    }
                    self.phase = Phase::Idle;
                }
                _ => {
                    if self.buffer.is_empty() {
                        return Poll::Ready(Ok(()));
                    }
                    let ids: Vec<String> = self.buffer.drain(..).map(|j| j.id).collect();
                    for id in &ids {
                        self.parts.held.remove(id);
                    }
                    let store = self.parts.store.clone();
                    let worker = self.parts.worker.clone();
                    self.phase = Phase::Releasing(
                        async move { store.release(&worker, Some(&ids)).await }.boxed(),
                    );
                }
            }
        }
    }
}

impl Drop for StoreBackend {
    fn drop(&mut self) {
        // Dropped without a drain (the drain timeout passed): stop claiming. Jobs a
        // claim already took are released by the worker's final release, or rescued
        // when their leases expire.
        if let Phase::Claiming(handle) = &self.phase {
            handle.abort();
        }
    }
}

impl BackendConfig for StoreBackend {
    type Args = ClaimedJob;
    type Id = String;
    type Kind = Ephemeral;
    type Config = ();
    type Layer = Identity;

    fn config(&self) -> &Self::Config {
        &()
    }

    fn middleware(&mut self, _worker: &mut WorkerContext) -> Self::Layer {
        Identity::new()
    }
}
