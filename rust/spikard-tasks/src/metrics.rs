//! Job metrics of this process, in the Prometheus text exposition format (0.0.4).
//!
//! One process-wide registry counts what the producers and workers of this process do:
//!
//! | family | labels | counts |
//! |---|---|---|
//! | `spikard_tasks_jobs_enqueued_total` | `task`, `queue` | jobs created by an enqueue or a cron tick (not a unique-key hit) |
//! | `spikard_tasks_jobs_started_total` | `task`, `queue` | attempts a worker started |
//! | `spikard_tasks_jobs_succeeded_total` | `task`, `queue` | jobs that succeeded |
//! | `spikard_tasks_jobs_failed_total` | `task`, `queue` | jobs that failed for good |
//! | `spikard_tasks_jobs_retried_total` | `task`, `queue` | attempts that failed with another one scheduled |
//! | `spikard_tasks_jobs_cancelled_total` | `task`, `queue` | jobs a worker ended cancelled |
//! | `spikard_tasks_job_duration_seconds` | `task`, `queue` | histogram of attempt run times |
//! | `spikard_tasks_job_start_latency_seconds` | `queue` | histogram of the time from when a job was due (enqueued, or its `run_at` when later) to the start of its attempt |
//!
//! Histogram buckets (upper bounds, seconds): 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
//! 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300 and `+Inf`.
//!
//! Cardinality is capped: at most 1000 (`task`, `queue`) pairs get series of their own.
//! Once that many exist, every new pair is counted under `task="_other",queue="_other"`
//! (and its start latency under `queue="_other"`).
//!
//! Counting costs a few atomic additions per job: a worker looks its series up once per
//! attempt (a read lock and two hash lookups, no allocation once the series exists).
//!
//! ```
//! let text = spikard_tasks::metrics::render();
//! assert!(text.contains("# TYPE spikard_tasks_jobs_enqueued_total counter"));
//! ```

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, LazyLock, RwLock};
use std::time::Duration;

use crate::job::Completion;

#[cfg(test)]
mod tests;

/// Finite histogram bucket bounds, in nanoseconds (the `+Inf` bucket follows them).
const BOUNDS_NS: [u64; 16] = [
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
    60_000_000_000,
    300_000_000_000,
];

/// The same bounds as they appear in `le` labels.
const BOUNDS_TEXT: [&str; 16] = [
    "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5",
    "10", "30", "60", "300",
];

/// Most (`task`, `queue`) pairs with series of their own.
const MAX_PAIRS: usize = 1000;

/// The label value of the pair that collects the pairs beyond [`MAX_PAIRS`].
const OTHER: &str = "_other";

/// A histogram of durations: per-bucket counts (not cumulative; summed when rendered) and
/// the sum in nanoseconds.
#[derive(Default)]
pub(crate) struct Histogram {
    buckets: [AtomicU64; 17],
    sum_ns: AtomicU64,
}

impl Histogram {
    /// Counts one observation.
    pub(crate) fn observe(&self, value: Duration) {
        let ns = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
        let i = BOUNDS_NS.iter().position(|&b| ns <= b).unwrap_or(16);
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
    }

    /// Cumulative bucket counts (the last is the total) and the sum in seconds.
    fn read(&self) -> ([u64; 17], f64) {
        let mut out = [0; 17];
        let mut total = 0u64;
        for (slot, bucket) in out.iter_mut().zip(&self.buckets) {
            total = total.saturating_add(bucket.load(Relaxed));
            *slot = total;
        }
        (out, self.sum_ns.load(Relaxed) as f64 / 1e9)
    }
}

/// The counters and the duration histogram of one (`task`, `queue`) pair, plus the start
/// latency histogram of its queue.
#[derive(Default)]
pub(crate) struct Series {
    enqueued: AtomicU64,
    started: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    cancelled: AtomicU64,
    duration: Histogram,
    latency: Arc<Histogram>,
}

impl Series {
    /// Counts `n` jobs created.
    pub(crate) fn enqueued(&self, n: u64) {
        self.enqueued.fetch_add(n, Relaxed);
    }

    /// Counts an attempt started `latency` after the job was due (`None`: not known).
    pub(crate) fn started(&self, latency: Option<Duration>) {
        self.started.fetch_add(1, Relaxed);
        if let Some(latency) = latency {
            self.latency.observe(latency);
        }
    }

    /// Counts an attempt that ran `duration` and ended with `completion`.
    pub(crate) fn finished(&self, completion: &Completion, duration: Duration) {
        let counter = match completion {
            Completion::Succeeded(_) => &self.succeeded,
            Completion::Retry { .. } => &self.retried,
            Completion::Failed(_) => &self.failed,
            Completion::Cancelled { .. } => &self.cancelled,
        };
        counter.fetch_add(1, Relaxed);
        self.duration.observe(duration);
    }
}

/// Series by queue, then task (two lookups by `&str`, no key to build).
#[derive(Default)]
struct Pairs {
    by_queue: HashMap<String, HashMap<String, Arc<Series>>>,
    /// Pairs in `by_queue`, the overflow pair not included.
    count: usize,
    latency: HashMap<String, Arc<Histogram>>,
}

impl Pairs {
    fn get(&self, task: &str, queue: &str) -> Option<Arc<Series>> {
        self.by_queue.get(queue)?.get(task).cloned()
    }
}

/// A registry of series (the process has one, [`REGISTRY`]; tests make their own).
#[derive(Default)]
pub(crate) struct Registry(RwLock<Pairs>);

static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::default);

impl Registry {
    /// The series of (`task`, `queue`), created on first use (the overflow pair's once
    /// [`MAX_PAIRS`] pairs exist).
    pub(crate) fn series(&self, task: &str, queue: &str) -> Arc<Series> {
        {
            let pairs = self.0.read().unwrap_or_else(|e| e.into_inner());
            if let Some(found) = pairs.get(task, queue) {
                return found;
            }
        }
        let mut pairs = self.0.write().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = pairs.get(task, queue) {
            return found;
        }
        let (task, queue) = if pairs.count < MAX_PAIRS {
            pairs.count += 1;
            (task, queue)
        } else {
            // The overflow pair (a real task "_other" of queue "_other" shares it).
            if let Some(found) = pairs.get(OTHER, OTHER) {
                return found;
            }
            (OTHER, OTHER)
        };
        let latency = pairs.latency.entry(queue.to_owned()).or_default().clone();
        let made = Arc::new(Series {
            latency,
            ..Series::default()
        });
        pairs
            .by_queue
            .entry(queue.to_owned())
            .or_default()
            .insert(task.to_owned(), made.clone());
        made
    }

    /// The pairs' series sorted by task then queue, and the queues' latency sorted.
    #[allow(clippy::type_complexity)]
    fn sorted(
        &self,
    ) -> (
        Vec<(String, String, Arc<Series>)>,
        Vec<(String, Arc<Histogram>)>,
    ) {
        let pairs = self.0.read().unwrap_or_else(|e| e.into_inner());
        let mut series: Vec<(String, String, Arc<Series>)> = pairs
            .by_queue
            .iter()
            .flat_map(|(q, tasks)| tasks.iter().map(|(t, s)| (t.clone(), q.clone(), s.clone())))
            .collect();
        series.sort_unstable_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        let mut queues: Vec<(String, Arc<Histogram>)> = pairs
            .latency
            .iter()
            .map(|(q, h)| (q.clone(), h.clone()))
            .collect();
        queues.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        (series, queues)
    }
}

/// The process registry's series of (`task`, `queue`), see [`Registry::series`].
pub(crate) fn series(task: &str, queue: &str) -> Arc<Series> {
    REGISTRY.series(task, queue)
}

/// Counts jobs created, one per item of `created` (task, queue).
pub(crate) fn count_enqueued<'a>(created: impl IntoIterator<Item = (&'a str, &'a str)>) {
    let mut last: Option<(&str, &str, Arc<Series>)> = None;
    for (task, queue) in created {
        match &last {
            Some((t, q, s)) if *t == task && *q == queue => s.enqueued(1),
            _ => {
                let s = series(task, queue);
                s.enqueued(1);
                last = Some((task, queue, s));
            }
        }
    }
}

/// A label value escaped for the text format (backslash, double quote, newline).
fn escape(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// `{task="…",queue="…"` (no closing brace: a histogram appends `le`).
fn labels(task: Option<&str>, queue: &str, out: &mut String) {
    out.push('{');
    if let Some(task) = task {
        out.push_str("task=\"");
        escape(task, out);
        out.push_str("\",");
    }
    out.push_str("queue=\"");
    escape(queue, out);
    out.push('"');
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn histogram(out: &mut String, name: &str, task: Option<&str>, queue: &str, h: &Histogram) {
    let (cumulative, sum) = h.read();
    let mut base = String::new();
    labels(task, queue, &mut base);
    for (i, count) in cumulative.iter().enumerate() {
        let le = BOUNDS_TEXT.get(i).copied().unwrap_or("+Inf");
        let _ = writeln!(out, "{name}_bucket{base},le=\"{le}\"}} {count}");
    }
    let _ = writeln!(out, "{name}_sum{base}}} {sum}");
    let _ = writeln!(out, "{name}_count{base}}} {}", cumulative[16]);
}

/// The counter families: name, help, and the counter of a series.
type CounterFamily = (&'static str, &'static str, fn(&Series) -> &AtomicU64);

const COUNTERS: [CounterFamily; 6] = [
    (
        "spikard_tasks_jobs_enqueued_total",
        "Jobs created by an enqueue or a cron tick in this process (unique-key hits not counted).",
        |s| &s.enqueued,
    ),
    (
        "spikard_tasks_jobs_started_total",
        "Attempts started by the workers of this process.",
        |s| &s.started,
    ),
    (
        "spikard_tasks_jobs_succeeded_total",
        "Jobs that succeeded.",
        |s| &s.succeeded,
    ),
    (
        "spikard_tasks_jobs_failed_total",
        "Jobs that failed for good (no attempts left, or a non-retryable error).",
        |s| &s.failed,
    ),
    (
        "spikard_tasks_jobs_retried_total",
        "Attempts that failed with another attempt scheduled.",
        |s| &s.retried,
    ),
    (
        "spikard_tasks_jobs_cancelled_total",
        "Jobs a worker ended cancelled (a handler's Cancel, or cancel() while running).",
        |s| &s.cancelled,
    ),
];

/// Every metric of this process in the Prometheus text exposition format 0.0.4
/// (`Content-Type: text/plain; version=0.0.4`): one `# HELP`/`# TYPE` block per family in
/// a fixed order, series sorted by task, then queue. Histogram buckets are cumulative.
pub fn render() -> String {
    render_registry(&REGISTRY)
}

fn render_registry(registry: &Registry) -> String {
    let (pairs, queues) = registry.sorted();
    let mut out = String::with_capacity(1024 + pairs.len() * 2048);
    for (name, help, counter) in COUNTERS {
        header(&mut out, name, "counter", help);
        for (task, queue, series) in &pairs {
            out.push_str(name);
            labels(Some(task), queue, &mut out);
            let _ = writeln!(out, "}} {}", counter(series).load(Relaxed));
        }
    }
    let name = "spikard_tasks_job_duration_seconds";
    header(
        &mut out,
        name,
        "histogram",
        "Run time of attempts, in seconds.",
    );
    for (task, queue, series) in &pairs {
        histogram(&mut out, name, Some(task), queue, &series.duration);
    }
    let name = "spikard_tasks_job_start_latency_seconds";
    let help = "Seconds from when a job was due (enqueued, or its run_at when later) \
                to the start of its attempt.";
    header(&mut out, name, "histogram", help);
    for (queue, latency) in &queues {
        histogram(&mut out, name, None, queue, latency);
    }
    out
}
