//! The completer: writes what a worker learns about the jobs it holds — that an attempt
//! started, and how it ended — in batches, at most [`MAX_WRITES`] batches at a time.
//!
//! Each job's service future hands its outcome to the completer and waits for the
//! acknowledgement, so a concurrency slot frees only once the outcome is stored; under
//! load many outcomes share one transaction.
//!
//! A claim does not count as a start: a job claimed ahead of a free slot may wait in the
//! worker, and if the worker dies it must not lose an attempt it never ran. When an
//! attempt starts, the service sends a start mark; the completer writes it at most
//! [`MARK_DELAY`] later, unless the outcome came first (then the outcome carries the
//! start time and no mark is written: under load, most marks are never written).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::job::{ClaimedJob, Completion};
use crate::store::Store;

/// Most outcomes written in one transaction.
const MAX_BATCH: usize = 512;
/// Batches written at once. Two keep the store busy (one is written while the next
/// fills) without splitting outcomes into many small transactions: in-process drains of
/// 20,000 jobs went from 10.1k to 14.2k jobs/s on PostgreSQL and 36k to 44k on Redis
/// (four writes gained nothing more; SQLite, which has one writer, was unchanged).
const MAX_WRITES: usize = 2;
/// Attempts to write a batch before giving up (the leases then expire and the jobs are
/// rescued: at-least-once).
const WRITE_ATTEMPTS: u32 = 8;
/// How long a start mark may wait for its job's outcome before it is written alone.
/// A worker that dies within this time of starting a job may leave that start
/// unrecorded (see the store's rescue rule for what follows).
pub(crate) const MARK_DELAY: Duration = Duration::from_millis(20);

enum Item {
    /// An attempt began running at `at_ms`.
    Started { id: String, at_ms: i64 },
    /// An attempt ended; `ack` is answered once it is written (or given up on).
    Done(Box<(ClaimedJob, Completion)>, oneshot::Sender<()>),
}

/// Sends start marks and outcomes to the completer task.
#[derive(Clone)]
pub(crate) struct Completer {
    tx: mpsc::UnboundedSender<Item>,
}

impl Completer {
    /// Starts the completer task for `worker`.
    pub(crate) fn spawn(store: Arc<dyn Store>, worker: Arc<str>) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(store, worker, rx));
        (Self { tx }, task)
    }

    /// Records that the attempt of job `id` started at `at_ms` (returns at once).
    pub(crate) fn started(&self, id: String, at_ms: i64) {
        let _ = self.tx.send(Item::Started { id, at_ms });
    }

    /// Stores an outcome; returns once it is written (or given up on).
    pub(crate) async fn complete(&self, job: ClaimedJob, completion: Completion) {
        let (ack, done) = oneshot::channel();
        if self
            .tx
            .send(Item::Done(Box::new((job, completion)), ack))
            .is_ok()
        {
            let _ = done.await;
        }
    }
}

/// Start marks waiting for their outcome or their deadline.
#[derive(Default)]
struct Marks {
    /// (id, started at ms, when it must be written), oldest first.
    waiting: Vec<(String, i64, Instant)>,
}

impl Marks {
    fn deadline(&self) -> Option<Instant> {
        self.waiting.first().map(|m| m.2)
    }

    /// Forgets the marks of jobs whose outcome is being written.
    fn forget(&mut self, done: &HashSet<&str>) {
        self.waiting
            .retain(|(id, _, _)| !done.contains(id.as_str()));
    }

    /// Every waiting mark, sorted by id (one lock order for every statement).
    fn take(&mut self) -> Vec<(String, i64)> {
        let mut marks: Vec<_> = self.waiting.drain(..).map(|(id, at, _)| (id, at)).collect();
        marks.sort_unstable();
        marks
    }
}

async fn run(store: Arc<dyn Store>, worker: Arc<str>, mut rx: mpsc::UnboundedReceiver<Item>) {
    // Up to MAX_WRITES batches are written at once: outcomes that arrive while a write
    // is in flight go out in the next one instead of waiting for it to finish.
    let mut writing = FuturesUnordered::new();
    let mut marks = Marks::default();
    let mut open = true;
    loop {
        let mut items: Vec<Item> = Vec::new();
        let deadline = marks.deadline();
        let room = writing.len() < MAX_WRITES;
        tokio::select! {
            n = rx.recv_many(&mut items, MAX_BATCH), if open && room => {
                if n == 0 {
                    open = false;
                    // Closing: what is still marked goes out now.
                    if !marks.waiting.is_empty() {
                        writing.push(write_batch(store.clone(), worker.clone(), marks.take(), Vec::new()));
                    }
                    continue;
                }
                let mut done = Vec::new();
                for item in items {
                    match item {
                        Item::Started { id, at_ms } => {
                            marks.waiting.push((id, at_ms, Instant::now() + MARK_DELAY));
                        }
                        Item::Done(outcome, ack) => {
                            let (job, completion) = *outcome;
                            done.push((job, completion, ack));
                        }
                    }
                }
                if done.is_empty() {
                    continue;
                }
                let ids: HashSet<&str> = done.iter().map(|(j, _, _)| j.id.as_str()).collect();
                marks.forget(&ids);
                // Marks ride along with outcomes once they are due anyway.
                let due = marks.deadline().is_some_and(|d| d <= Instant::now() + MARK_DELAY / 2);
                let with = if due { marks.take() } else { Vec::new() };
                writing.push(write_batch(store.clone(), worker.clone(), with, done));
            }
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() && room => {
                writing.push(write_batch(store.clone(), worker.clone(), marks.take(), Vec::new()));
            }
            Some(()) = writing.next(), if !writing.is_empty() => {}
            else => return,
        }
    }
}

type Outcome = (ClaimedJob, Completion, oneshot::Sender<()>);

async fn write_batch(
    store: Arc<dyn Store>,
    worker: Arc<str>,
    marks: Vec<(String, i64)>,
    batch: Vec<Outcome>,
) {
    let (mut outcomes, acks): (Vec<(ClaimedJob, Completion)>, Vec<oneshot::Sender<()>>) = batch
        .into_iter()
        .map(|(job, completion, ack)| ((job, completion), ack))
        .unzip();
    // One lock order (by id) for every statement that touches several jobs.
    outcomes.sort_unstable_by(|a, b| a.0.id.cmp(&b.0.id));
    if !marks.is_empty() {
        write_marks(&*store, &worker, &marks).await;
    }
    if !outcomes.is_empty() {
        write(&*store, &worker, outcomes).await;
    }
    for ack in acks {
        let _ = ack.send(());
    }
}

async fn write_marks(store: &dyn Store, worker: &str, marks: &[(String, i64)]) {
    let mut pause = Duration::from_millis(50);
    for attempt in 1..=WRITE_ATTEMPTS {
        match store.mark_started(worker, marks).await {
            Ok(_) => return,
            Err(err) if attempt < WRITE_ATTEMPTS => {
                tracing::warn!(error = %err, retry_in = ?pause, "recording job starts failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            Err(err) => tracing::error!(
                error = %err,
                jobs = marks.len(),
                "giving up recording job starts; a rescue may not count those attempts"
            ),
        }
    }
}

async fn write(store: &dyn Store, worker: &str, outcomes: Vec<(ClaimedJob, Completion)>) {
    let mut pause = Duration::from_millis(50);
    for attempt in 1..=WRITE_ATTEMPTS {
        match store.complete(worker, outcomes.clone()).await {
            Ok(written) => {
                if written < outcomes.len() {
                    tracing::warn!(
                        lost = outcomes.len() - written,
                        "outcomes not written: this worker no longer held those jobs' leases"
                    );
                }
                return;
            }
            Err(err) if attempt < WRITE_ATTEMPTS => {
                tracing::warn!(error = %err, retry_in = ?pause, "writing outcomes failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            Err(err) => tracing::error!(
                error = %err,
                jobs = outcomes.len(),
                "giving up writing outcomes; those jobs run again when their leases expire"
            ),
        }
    }
}
