//! The engine's log events, handed to Python's `logging` (never printed behind its back).
//!
//! A `tracing` layer turns each event into a small record (target, level, message and
//! fields, every text scrubbed of the password of each URL this process opened) and puts
//! it on a bounded channel: the thread that logged never touches the interpreter, so a
//! tokio thread never waits for the GIL. One forwarding thread, started by
//! `spikard_tasks._logging` at import, attaches to Python per batch and passes the records
//! to a Python function, which logs them under `spikard_tasks.engine.*`. The layer's level
//! follows the effective level of that logger (read again every half second), so a
//! disabled event costs one atomic load.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use pyo3::prelude::*;
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

/// Records waiting for the forwarding thread; beyond this, records are dropped (and
/// counted) rather than making a logging thread wait.
const CAPACITY: usize = 16_384;
/// Records handed to Python per attach.
const BATCH: usize = 512;
/// How often the forwarding thread wakes when idle (to read the level again).
const TICK: Duration = Duration::from_millis(500);

/// The most verbose level passed on: 0 off, 1 error, 2 warn, 3 info, 4 debug, 5 trace.
/// Warnings until Python says otherwise.
static MAX_LEVEL: AtomicU8 = AtomicU8::new(2);
static DROPPED: AtomicU64 = AtomicU64::new(0);
static STOP: AtomicBool = AtomicBool::new(false);
static SENDER: OnceLock<SyncSender<Message>> = OnceLock::new();
static RECEIVER: Mutex<Option<Receiver<Message>>> = Mutex::new(None);
static FORWARDER: Mutex<Option<JoinHandle<()>>> = Mutex::new(None);

/// A field's value.
enum Value {
    Str(String),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
}

/// What the forwarding thread receives.
enum Message {
    Record(Record),
    /// Hand over what is queued, then stop.
    Stop,
}

/// One event, ready for Python.
struct Record {
    target: &'static str,
    level: u8,
    message: String,
    fields: Vec<(&'static str, Value)>,
}

/// The level on the engine's scale; sqlx's statement events (one per query, at DEBUG)
/// count as TRACE, so that DEBUG shows what the engine does, not every query.
fn rank_of(metadata: &Metadata<'_>) -> u8 {
    let rank = rank(metadata.level());
    if rank >= 3 && metadata.target().starts_with("sqlx::query") {
        5
    } else {
        rank
    }
}

/// An event at a level Python wants (spans never are).
fn wanted(metadata: &Metadata<'_>) -> bool {
    metadata.is_event() && rank_of(metadata) <= MAX_LEVEL.load(Ordering::Relaxed)
}

fn rank(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

fn scrub(text: String) -> String {
    spikard_tasks::redact::scrub_known(&text).unwrap_or(text)
}

#[derive(Default)]
struct Fields {
    message: String,
    fields: Vec<(&'static str, Value)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = scrub(value.to_owned());
        } else {
            self.fields
                .push((field.name(), Value::Str(scrub(value.to_owned()))));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = scrub(format!("{value:?}"));
        if field.name() == "message" {
            self.message = text;
        } else {
            self.fields.push((field.name(), Value::Str(text)));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.fields.push((field.name(), Value::I64(value)));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.fields.push((field.name(), Value::U64(value)));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.fields.push((field.name(), Value::F64(value)));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.fields.push((field.name(), Value::Bool(value)));
    }
}

/// The layer that queues events for Python.
struct ToPython;

impl<S: Subscriber> Layer<S> for ToPython {
    fn register_callsite(
        &self,
        metadata: &'static Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        // Cached per callsite until the level changes (`set_level` rebuilds the cache):
        // a disabled event then costs one comparison where it is written. Spans are never
        // wanted: only events are handed over, and a span per job (apalis opens one at
        // INFO) would cost the registry an allocation and bookkeeping per job.
        if wanted(metadata) {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(match MAX_LEVEL.load(Ordering::Relaxed) {
            0 => LevelFilter::OFF,
            1 => LevelFilter::ERROR,
            2 => LevelFilter::WARN,
            3 => LevelFilter::INFO,
            4 => LevelFilter::DEBUG,
            _ => LevelFilter::TRACE,
        })
    }

    fn enabled(&self, metadata: &Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        wanted(metadata)
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let Some(sender) = SENDER.get() else {
            return;
        };
        let mut visitor = Fields::default();
        event.record(&mut visitor);
        let record = Record {
            target: event.metadata().target(),
            level: rank_of(event.metadata()),
            message: visitor.message,
            fields: visitor.fields,
        };
        if let Err(TrySendError::Full(_)) = sender.try_send(Message::Record(record)) {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Makes `rank` the most verbose level passed on; when it changes, every callsite's
/// cached interest is computed again.
fn set_level(rank: u8) {
    if MAX_LEVEL.swap(rank, Ordering::Relaxed) != rank {
        tracing::callsite::rebuild_interest_cache();
    }
}

/// Installs the layer (once per process; later calls do nothing).
pub fn init() {
    let (tx, rx) = sync_channel(CAPACITY);
    if SENDER.set(tx).is_err() {
        return;
    }
    if let Ok(mut slot) = RECEIVER.lock() {
        *slot = Some(rx);
    }
    let subscriber = tracing_subscriber::registry().with(ToPython);
    let _ = tracing::subscriber::set_global_default(subscriber);
}

fn to_python<'py>(py: Python<'py>, record: Record) -> PyResult<Bound<'py, PyAny>> {
    let fields = pyo3::types::PyDict::new(py);
    for (name, value) in record.fields {
        match value {
            Value::Str(s) => fields.set_item(name, s)?,
            Value::I64(v) => fields.set_item(name, v)?,
            Value::U64(v) => fields.set_item(name, v)?,
            Value::F64(v) => fields.set_item(name, v)?,
            Value::Bool(v) => fields.set_item(name, v)?,
        }
    }
    Ok((record.target, record.level, record.message, fields)
        .into_pyobject(py)?
        .into_any())
}

fn forward(rx: Receiver<Message>, emit: Py<PyAny>, level: Py<PyAny>) {
    let mut batch: Vec<Record> = Vec::with_capacity(BATCH);
    loop {
        let mut stop = STOP.load(Ordering::Acquire);
        match rx.recv_timeout(TICK) {
            Ok(Message::Record(record)) => batch.push(record),
            Ok(Message::Stop) => stop = true,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        // When stopping, everything queued goes out before the thread ends.
        while stop || batch.len() < BATCH {
            match rx.try_recv() {
                Ok(Message::Record(record)) => batch.push(record),
                Ok(Message::Stop) => stop = true,
                Err(_) => break,
            }
        }
        Python::attach(|py| {
            let dropped = DROPPED.swap(0, Ordering::Relaxed);
            let records = batch
                .drain(..)
                .filter_map(|r| to_python(py, r).ok())
                .collect::<Vec<_>>();
            if !records.is_empty() || dropped > 0 {
                if let Err(err) = emit.bind(py).call1((records, dropped)) {
                    err.print(py);
                }
            }
            if let Ok(rank) = level.bind(py).call0().and_then(|v| v.extract::<u8>()) {
                set_level(rank);
            }
        });
        if stop {
            return;
        }
    }
}

/// Starts handing the engine's log events to `emit(records, dropped)`, where each record
/// is `(target, level, message, fields)` with `level` 1 (error) to 5 (trace); `level()`
/// returns the most verbose level wanted, in the same scale (read now and every half
/// second). Once per process: later calls only update the level.
#[pyfunction]
pub fn start_log_forwarding(py: Python<'_>, emit: Py<PyAny>, level: Py<PyAny>) -> PyResult<()> {
    let rank: u8 = level.bind(py).call0()?.extract()?;
    set_level(rank);
    let Some(rx) = RECEIVER.lock().ok().and_then(|mut slot| slot.take()) else {
        return Ok(());
    };
    let handle = std::thread::Builder::new()
        .name("spikard-log".into())
        .spawn(move || forward(rx, emit, level))
        .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(e.to_string()))?;
    if let Ok(mut slot) = FORWARDER.lock() {
        *slot = Some(handle);
    }
    Ok(())
}

/// Hands over what is queued and stops forwarding (at interpreter exit: the thread must
/// not attach to an interpreter that is finalizing).
#[pyfunction]
pub fn stop_log_forwarding(py: Python<'_>) {
    STOP.store(true, Ordering::Release);
    if let Some(sender) = SENDER.get() {
        let _ = sender.try_send(Message::Stop);
    }
    let handle = FORWARDER.lock().ok().and_then(|mut slot| slot.take());
    if let Some(handle) = handle {
        py.detach(|| {
            let _ = handle.join();
        });
    }
}
