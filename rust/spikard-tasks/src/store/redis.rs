//! Redis store (`redis://`, `rediss://` over rustls), on a [`ConnectionManager`] that
//! reconnects with backoff after a server restart.
//!
//! Same semantics as the SQLite store; every multi-key change is one Lua script
//! (`redis_scripts/*.lua`, each behind a shared prelude, run with EVALSHA and reloaded
//! on NOSCRIPT), so it is atomic. Key layout, all under [`PREFIX`]:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `job:{id}` | hash | the job: the SQLite columns, times in ms, JSON as text |
//! | `q:{queue}:ready` | zset, all scores 0 | ready jobs; members `(i32::MAX - priority)` as 10 digits, `run_at + 1e15` as 16 digits, then the id, so `ZRANGE BYLEX` yields priority DESC, run_at ASC, id ASC over the full `i32` range |
//! | `q:{queue}:scheduled` | zset by run_at | pending jobs enqueued with a future run_at |
//! | `q:{queue}:retry` | zset by run_at | retrying jobs waiting for their next attempt |
//! | `q:{queue}:unique` | hash | unique_key → id of the unfinished job holding it |
//! | `q:{queue}:counts` | hash | stored state → number of jobs (kept by the scripts) |
//! | `running` | zset by lease_until | running jobs of every queue |
//! | `worker:{name}` | set | ids a worker holds (heartbeat, release) |
//! | `finished` | zset by finished_at | finished jobs (result expiry) |
//!
//! The operations (stats, job list, bulk retry/cancel/purge, pause, workers) keep a few
//! more keys, described in `redis_ops.rs`: the hot path adds one ZADD per enqueued job
//! (and one SADD per batch) and two ZADDs per finished job.
//!
//! The claim script first moves due scheduled/retrying jobs (at most [`PROMOTE_BATCH`]
//! per set per call, oldest first) into the ready set, comparing with the caller's
//! clock like every backend. Enqueues (and retries, rescues and releases that make a
//! job ready) `PUBLISH` on `wake:{queue}`; [`Store::spawn_listener`] subscribes there.
//! Scripts build key names themselves, so this targets a standalone (or replicated)
//! Redis, not Redis Cluster.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{
    AsyncConnectionConfig, FromRedisValue, IntoConnectionInfo, RedisError, Script, ScriptInvocation,
};

use super::rows::{claimed_rows, record_from, CompletionColumns, Fields};
use super::{
    all_created, fail_corrupt, maintain_locked, Maintenance, Store, StoredSchedule, Unlock, LOST,
    LOST_UNSTARTED,
};
use crate::error::{CoreError, CoreResult};
use crate::job::{ClaimedJob, Completion, Enqueued, JobRecord, JobRow, JobStatus, QueueCounts};
use crate::redact::{redact, Secrets};
use crate::time::{duration_ms, now_ms, DbClock};

/// Prefix of every key and channel this store uses.
pub const PREFIX: &str = "spikard:";
/// Timeout of one connection attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Reconnect attempts (100 ms, doubling, with jitter) a call waits for after the
/// connection dropped before it fails with `BackendError`: a few seconds, like the SQL
/// stores' acquire timeout, so producers fail fast while the server is down (the
/// library's default of 6 made calls block ~10 s). The next call tries again.
const RECONNECT_RETRIES: usize = 4;
/// Most due scheduled (or retrying) jobs one claim moves to the ready set, per set.
pub(super) const PROMOTE_BATCH: usize = 1000;
/// How long a worker may hold the maintenance lock before it expires by itself (ms).
const MAINTENANCE_LOCK_MS: u64 = 15_000;
/// How often the listener pings its subscription connection to notice a dead peer.
const LISTEN_PING: Duration = Duration::from_secs(15);

/// The scripts, each behind the shared prelude (`fire` runs `enqueue` after its own).
macro_rules! scripts {
    ($($name:ident: $($file:literal)+,)*) => {
        pub(super) struct Scripts {
            $(pub(super) $name: Script,)*
        }

        pub(super) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
            $($name: Script::new(concat!(
                include_str!("redis_scripts/prelude.lua"),
                $(include_str!(concat!("redis_scripts/", $file)),)+
            )),)*
        });

        impl Scripts {
            fn all(&self) -> Vec<&Script> {
                vec![$(&self.$name,)*]
            }
        }
    };
}

scripts! {
    enqueue: "enqueue.lua",
    fire: "fire.lua" "enqueue.lua",
    schedules: "schedules.lua",
    claim: "claim.lua",
    complete: "complete.lua",
    cancel: "cancel.lua",
    heartbeat: "heartbeat.lua",
    rescue: "rescue.lua",
    release: "release.lua",
    counts: "counts.lua",
    purge: "purge.lua",
    mark: "mark.lua",
    progress: "progress.lua",
    maintenance: "maintenance.lua",
    stats: "stats.lua",
    list: "filter.lua" "list.lua",
    bulk: "filter.lua" "bulk.lua",
    workers: "workers.lua",
    backfill: "backfill.lua",
    limits: "limit_keys.lua" "limits.lua",
    claim_limited: "limit_keys.lua" "claim_limited.lua",
}

#[path = "redis_ops.rs"]
mod ops;

/// A job store in Redis.
#[derive(Clone)]
pub struct RedisStore {
    /// Workers' calls: claim, complete, heartbeat, rescue, release.
    work: Managed,
    /// Producers' and readers' calls, on their own connection so that big batches and
    /// status polls never queue ahead of claims and outcomes (or behind them).
    calls: Managed,
    client: redis::Client,
    /// The URL's password (raw and percent-decoded), scrubbed from every error text.
    secrets: Arc<Secrets>,
    /// The server's clock (leases and run_at are compared on it).
    clock: Arc<DbClock>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects to the server a `redis://` or `rediss://` URL names and loads the scripts.
    pub async fn connect(url: &str) -> CoreResult<Self> {
        let secrets = Arc::new(Secrets::of(url));
        // Commands and scripts go out whole: with Nagle's algorithm a command longer than
        // one TCP segment (a batch) waits for the server's delayed ACK (40 ms on Linux).
        let nodelay = redis::io::tcp::TcpSettings::default().set_nodelay(true);
        let client = url
            .into_connection_info()
            .and_then(|info| redis::Client::open(info.set_tcp_settings(nodelay)))
            .map_err(|e| {
                CoreError::config(format!(
                    "malformed Redis URL {:?}: {}",
                    redact(url),
                    secrets.scrub(&e.to_string())
                ))
            })?;
        let failed = |e: RedisError| {
            CoreError::Backend(format!(
                "cannot connect to Redis at {}: {}",
                redact(url),
                secrets.scrub(&e.to_string())
            ))
        };
        // One plain attempt first, so a wrong address, password or TLS setting fails
        // within the timeout instead of after the manager's reconnect backoff.
        let probe = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(CONNECT_TIMEOUT));
        let mut first = client
            .get_multiplexed_async_connection_with_config(&probe)
            .await
            .map_err(failed)?;
        for script in SCRIPTS.all() {
            script.load_async(&mut first).await.map_err(failed)?;
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            // Scripts over large batches take a while; a timed-out script still runs.
            .set_response_timeout(Some(Duration::from_secs(30)))
            .set_max_delay(Duration::from_secs(5))
            .set_number_of_retries(RECONNECT_RETRIES);
        let work = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
            .map_err(failed)?;
        let calls =
            ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(failed)?;
        let store = Self {
            work: Managed::new(work),
            calls: Managed::new(calls),
            client,
            secrets,
            clock: Arc::default(),
        };
        store
            .backfill_ops_index(&mut first)
            .await
            .map_err(|e| store.error(e))?;
        Ok(store)
    }

    /// Takes the maintenance lock: a key set with NX that expires by itself should this
    /// process die (or stall) while it holds it.
    async fn purge_lock(&self) -> CoreResult<Option<Unlock>> {
        let token = format!("{}-{:016x}", std::process::id(), rand::random::<u64>());
        let mut take = SCRIPTS.maintenance.prepare_invoke();
        take.arg(PREFIX).arg("take").arg(&token);
        let taken: i64 = self
            .invoke(&self.work, take.arg(MAINTENANCE_LOCK_MS))
            .await?;
        if taken != 1 {
            return Ok(None);
        }
        let store = self.clone();
        Ok(Some(Box::pin(async move {
            let mut give = SCRIPTS.maintenance.prepare_invoke();
            give.arg(PREFIX).arg("give").arg(&token).arg(0);
            if let Err(e) = store.invoke::<i64>(&store.work, &give).await {
                tracing::debug!(error = %e, "giving back the maintenance lock failed; it expires");
            }
        })))
    }

    fn error(&self, err: RedisError) -> CoreError {
        CoreError::Backend(format!("redis: {}", self.secrets.scrub(&err.to_string())))
    }

    /// Runs a script of another module (flow control): on the workers' connection when
    /// `work`, else on the producers' and readers'.
    pub(super) async fn invoke_script<T: FromRedisValue>(
        &self,
        work: bool,
        inv: &ScriptInvocation<'_>,
    ) -> CoreResult<T> {
        self.invoke(if work { &self.work } else { &self.calls }, inv)
            .await
    }

    async fn invoke<T: FromRedisValue>(
        &self,
        conn: &Managed,
        inv: &ScriptInvocation<'_>,
    ) -> CoreResult<T> {
        inv.invoke_async(&mut conn.get()?)
            .await
            .map_err(|e| self.error(e))
    }
}

/// A connection manager that [`Store::close`] can drop (its connection closes with the
/// last clone).
#[derive(Clone)]
struct Managed(Arc<std::sync::RwLock<Option<ConnectionManager>>>);

impl Managed {
    fn new(conn: ConnectionManager) -> Self {
        Self(Arc::new(std::sync::RwLock::new(Some(conn))))
    }

    /// A handle on the connection; a `BackendError` once closed.
    fn get(&self) -> CoreResult<ConnectionManager> {
        self.0
            .read()
            .ok()
            .and_then(|c| c.clone())
            .ok_or_else(|| CoreError::Backend("redis: this queue is closed".into()))
    }

    fn close(&self) {
        if let Ok(mut c) = self.0.write() {
            c.take();
        }
    }
}

/// An optional script argument: `""` for none, else the value behind a marker.
fn opt(value: Option<&str>) -> String {
    value.map_or_else(String::new, |v| format!("={v}"))
}

/// A job's hash (its id is the key's).
struct Hash<'a>(&'a str, HashMap<String, String>);

/// Fields of a claimed job, in the claim script's order.
pub(super) struct ClaimRow(pub(super) Vec<Option<String>>);

const CLAIM_FIELDS: &str =
    "id queue task args kwargs attempts max_attempts timeout_ms priority enqueued_at \
     trace_context run_at";

impl Fields for Hash<'_> {
    fn text(&self, name: &str) -> CoreResult<Option<String>> {
        Ok(match name {
            "id" => Some(self.0.to_owned()),
            _ => self.1.get(name).cloned(),
        })
    }
}

impl Fields for ClaimRow {
    fn text(&self, name: &str) -> CoreResult<Option<String>> {
        let i = CLAIM_FIELDS.split(' ').position(|f| f == name);
        Ok(i.and_then(|i| self.0.get(i).cloned().flatten()))
    }
}

/// Arguments of `enqueue.lua` (and of `fire.lua`, which runs it).
fn push_rows(inv: &mut ScriptInvocation<'_>, rows: &[JobRow], now: i64) {
    inv.arg(PREFIX).arg(now).arg(rows.len());
    for r in rows {
        inv.arg(&r.id)
            .arg(&r.queue)
            .arg(&r.task)
            .arg(&r.args)
            .arg(&r.kwargs)
            .arg(r.priority)
            .arg(r.max_attempts)
            .arg(r.run_at_ms)
            .arg(opt(r.timeout_ms.map(|t| t.to_string()).as_deref()))
            .arg(opt(r.unique_key.as_deref()))
            .arg(r.enqueued_at_ms)
            .arg(opt(r.trace_context.as_deref()));
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn enqueue(&self, rows: Vec<JobRow>) -> CoreResult<Vec<Enqueued>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = SCRIPTS.enqueue.prepare_invoke();
        push_rows(&mut inv, &rows, self.clock.now_ms());
        // Only the jobs that were not created come back, as (position, existing id).
        let existing: Vec<(usize, String)> = self.invoke(&self.calls, &inv).await?;
        let mut out = all_created(&rows);
        for (i, id) in existing {
            if let Some(e) = out.get_mut(i) {
                *e = Enqueued { id, created: false };
            }
        }
        Ok(out)
    }

    async fn get(&self, id: &str) -> CoreResult<Option<JobRecord>> {
        let h: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(format!("{PREFIX}job:{id}"))
            .query_async(&mut self.calls.get()?)
            .await
            .map_err(|e| self.error(e))?;
        if h.is_empty() {
            return Ok(None);
        }
        record_from(&Hash(id, h), self.clock.now_ms()).map(Some)
    }

    async fn set_progress(&self, id: &str, progress: &str) -> CoreResult<bool> {
        let mut inv = SCRIPTS.progress.prepare_invoke();
        inv.arg(PREFIX).arg(id).arg(progress);
        Ok(self.invoke::<i64>(&self.calls, &inv).await? == 1)
    }

    async fn cancel(&self, id: &str) -> CoreResult<bool> {
        let mut inv = SCRIPTS.cancel.prepare_invoke();
        inv.arg(PREFIX).arg(self.clock.now_ms()).arg(id);
        Ok(self.invoke::<i64>(&self.calls, &inv).await? == 1)
    }

    async fn claim(
        &self,
        queues: &[String],
        worker: &str,
        limit: usize,
        lease: Duration,
    ) -> CoreResult<Vec<ClaimedJob>> {
        if limit == 0 || queues.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.clock.now_ms();
        let mut inv = SCRIPTS.claim.prepare_invoke();
        inv.arg(PREFIX)
            .arg(now)
            .arg(now.saturating_add(duration_ms(lease)))
            .arg(worker)
            .arg(limit)
            .arg(PROMOTE_BATCH);
        for queue in queues {
            inv.arg(queue);
        }
        let rows: Vec<Vec<Option<String>>> = self.invoke(&self.work, &inv).await?;
        let rows: Vec<ClaimRow> = rows.into_iter().map(ClaimRow).collect();
        let (jobs, broken) = claimed_rows(&rows, 0, now)?;
        fail_corrupt(self, worker, broken).await;
        Ok(jobs.into_iter().map(|(job, _)| job).collect())
    }

    async fn complete(
        &self,
        worker: &str,
        done: Vec<(ClaimedJob, Completion)>,
    ) -> CoreResult<usize> {
        if done.is_empty() {
            return Ok(0);
        }
        let now = self.clock.now_ms();
        let mut inv = SCRIPTS.complete.prepare_invoke();
        inv.arg(PREFIX).arg(now).arg(worker).arg(done.len());
        for (job, outcome) in &done {
            let c = CompletionColumns::new(outcome, now)?;
            inv.arg(&job.id)
                .arg(job.attempt)
                .arg(c.status)
                .arg(opt(c.result.as_deref()))
                .arg(opt(c.run_at_ms.map(|at| at.to_string()).as_deref()))
                .arg(opt(c.error.as_deref()))
                .arg(opt(c.cancel_reason.as_deref()))
                .arg(opt(job.started_at_ms.map(|at| at.to_string()).as_deref()));
        }
        Ok(self.invoke::<usize>(&self.work, &inv).await?)
    }

    async fn mark_started(&self, worker: &str, started: &[(String, i64)]) -> CoreResult<u64> {
        if started.is_empty() {
            return Ok(0);
        }
        let mut inv = SCRIPTS.mark.prepare_invoke();
        inv.arg(PREFIX).arg(worker);
        for (id, at) in started {
            inv.arg(id).arg(at);
        }
        self.invoke(&self.work, &inv).await
    }

    async fn heartbeat(
        &self,
        worker: &str,
        ids: &[String],
        lease: Duration,
    ) -> CoreResult<Vec<String>> {
        let mut inv = SCRIPTS.heartbeat.prepare_invoke();
        inv.arg(PREFIX)
            .arg(worker)
            .arg(self.clock.now_ms().saturating_add(duration_ms(lease)))
            .arg(ids);
        self.invoke(&self.work, &inv).await
    }

    async fn rescue_expired(&self, limit: usize) -> CoreResult<u64> {
        let mut inv = SCRIPTS.rescue.prepare_invoke();
        inv.arg(PREFIX)
            .arg(self.clock.now_ms())
            .arg(limit)
            .arg(LOST)
            .arg(LOST_UNSTARTED);
        let (rescued, scanned): (u64, usize) = self.invoke(&self.work, &inv).await?;
        // Stale entries of the lease index count as work done: the round goes on.
        Ok(if scanned >= limit {
            limit as u64
        } else {
            rescued
        })
    }

    async fn release(&self, worker: &str, ids: Option<&[String]>) -> CoreResult<u64> {
        let mut inv = SCRIPTS.release.prepare_invoke();
        inv.arg(PREFIX).arg(worker);
        match ids {
            None => {
                inv.arg("1");
            }
            Some([]) => return Ok(0),
            Some(ids) => {
                inv.arg("0");
                for id in ids {
                    inv.arg(id);
                }
            }
        }
        self.invoke(&self.work, &inv).await
    }

    async fn counts(&self, queue: &str) -> CoreResult<QueueCounts> {
        let mut inv = SCRIPTS.counts.prepare_invoke();
        inv.arg(PREFIX).arg(queue).arg(self.clock.now_ms());
        let flat: Vec<String> = self.invoke(&self.calls, &inv).await?;
        let parse = |s: &str| s.parse::<i64>().unwrap_or(0).max(0) as u64;
        let scheduled = flat.first().map_or(0, |s| parse(s));
        let mut counts = QueueCounts::default();
        for pair in flat.get(1..).unwrap_or_default().chunks_exact(2) {
            let Ok(status) = JobStatus::parse(&pair[0]) else {
                continue;
            };
            counts.add(status, parse(&pair[1]));
        }
        // Scheduled jobs are stored as pending; split them out.
        counts.scheduled = scheduled.min(counts.pending);
        counts.pending -= counts.scheduled;
        Ok(counts)
    }

    async fn purge_finished(&self, before_ms: i64, limit: usize) -> CoreResult<u64> {
        let mut inv = SCRIPTS.purge.prepare_invoke();
        inv.arg(PREFIX).arg(before_ms).arg(limit);
        let (deleted, scanned): (u64, usize) = self.invoke(&self.calls, &inv).await?;
        Ok(if scanned >= limit {
            limit as u64
        } else {
            deleted
        })
    }

    async fn maintain(&self, purge_before: Option<i64>) -> CoreResult<Maintenance> {
        maintain_locked(self, purge_before, self.purge_lock()).await
    }

    async fn close(&self) {
        self.work.close();
        self.calls.close();
    }

    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    async fn sync_clock(&self) -> CoreResult<i64> {
        let mut conn = self.calls.get()?;
        // The connection is opened on first use: open it before the measured round trip.
        redis::cmd("PING")
            .query_async::<redis::Value>(&mut conn)
            .await
            .map_err(|e| self.error(e))?;
        let sent = now_ms();
        let (secs, micros): (i64, i64) = redis::cmd("TIME")
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error(e))?;
        Ok(self
            .clock
            .observe(sent, secs * 1000 + micros / 1000, now_ms()))
    }

    fn spawn_listener(
        &self,
        queues: Vec<String>,
        wake: Arc<tokio::sync::Notify>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let (client, secrets) = (self.client.clone(), self.secrets.clone());
        let channels: Vec<String> = queues.iter().map(|q| format!("{PREFIX}wake:{q}")).collect();
        let channels = Arc::new(channels);
        Some(super::supervise("Redis wake-up subscription", move || {
            let (client, channels) = (client.clone(), Arc::clone(&channels));
            let (secrets, wake) = (Arc::clone(&secrets), Arc::clone(&wake));
            async move {
                let res = listen(&client, &channels, &wake).await;
                res.map_err(|e| secrets.scrub(&e.to_string()))
            }
        }))
    }
}

/// Subscribes to the wake-up channels and wakes a worker per message until the
/// connection drops (`Ok`) or fails to open (`Err`).
async fn listen(
    client: &redis::Client,
    channels: &[String],
    wake: &tokio::sync::Notify,
) -> Result<(), RedisError> {
    let timeout = |what| RedisError::from((redis::ErrorKind::Io, what));
    let pubsub = tokio::time::timeout(Duration::from_secs(5), client.get_async_pubsub())
        .await
        .map_err(|_| timeout("connecting timed out"))??;
    let (mut sink, mut stream) = pubsub.split();
    sink.subscribe(channels).await?;
    // Jobs may have arrived while nobody listened.
    wake.notify_one();
    let mut ping = tokio::time::interval(LISTEN_PING);
    ping.reset();
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(_) => wake.notify_one(),
                None => return Ok(()),
            },
            _ = ping.tick() => {
                match tokio::time::timeout(Duration::from_secs(5), sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(e),
                    Err(_) => return Err(timeout("ping timed out")),
                }
            }
        }
    }
}

#[async_trait]
impl super::ScheduleStore for RedisStore {
    async fn save_schedule(&self, name: &str, definition: &str, now_ms: i64) -> CoreResult<()> {
        let mut inv = SCRIPTS.schedules.prepare_invoke();
        inv.arg(PREFIX)
            .arg("save")
            .arg(name)
            .arg(definition)
            .arg(now_ms);
        self.invoke::<i64>(&self.calls, &inv).await.map(|_| ())
    }

    async fn schedules(&self) -> CoreResult<Vec<StoredSchedule>> {
        let mut inv = SCRIPTS.schedules.prepare_invoke();
        inv.arg(PREFIX).arg("list");
        let flat: Vec<String> = self.invoke(&self.calls, &inv).await?;
        flat.chunks_exact(4)
            .map(|f| {
                let time = |s: &str| {
                    s.parse().map_err(|_| {
                        CoreError::Backend(format!("corrupt schedule {:?}: time {s:?}", f[0]))
                    })
                };
                Ok(StoredSchedule {
                    name: f[0].clone(),
                    definition: f[1].clone(),
                    last_tick_ms: time(&f[2])?,
                    updated_at_ms: time(&f[3])?,
                })
            })
            .collect()
    }

    async fn remove_schedule(&self, name: &str) -> CoreResult<bool> {
        let mut inv = SCRIPTS.schedules.prepare_invoke();
        inv.arg(PREFIX).arg("remove").arg(name);
        Ok(self.invoke::<i64>(&self.calls, &inv).await? > 0)
    }

    async fn fire_schedule(
        &self,
        name: &str,
        tick_ms: i64,
        job: Option<JobRow>,
    ) -> CoreResult<Option<Enqueued>> {
        let mut inv = SCRIPTS.fire.prepare_invoke();
        push_rows(&mut inv, job.as_slice(), self.clock.now_ms());
        inv.arg(name).arg(tick_ms);
        let flat: Vec<String> = self.invoke(&self.calls, &inv).await?;
        fire_reply(&flat, job.as_ref())
    }
}

/// Reads the reply of `fire.lua` for `job` (see the script).
fn fire_reply(flat: &[String], job: Option<&JobRow>) -> CoreResult<Option<Enqueued>> {
    match (flat, job) {
        ([lost], _) if lost == "lost" => Ok(None),
        ([], Some(job)) => Ok(Some(Enqueued {
            id: job.id.clone(),
            created: true,
        })),
        ([], None) => Ok(None),
        ([_, existing], Some(_)) => Ok(Some(Enqueued {
            id: existing.clone(),
            created: false,
        })),
        _ => Err(CoreError::Backend(format!(
            "unexpected reply of the schedule script: {flat:?}"
        ))),
    }
}

#[cfg(test)]
mod fire_reply_tests {
    use super::*;

    fn row() -> JobRow {
        JobRow {
            id: "new".into(),
            queue: "q".into(),
            task: "t".into(),
            args: "[]".into(),
            kwargs: "{}".into(),
            priority: 0,
            max_attempts: 1,
            run_at_ms: 0,
            timeout_ms: None,
            unique_key: None,
            enqueued_at_ms: 0,
            trace_context: None,
        }
    }

    #[test]
    fn created_lost_and_unique_hits_are_told_apart() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let created = fire_reply(&[], Some(&row())).unwrap().unwrap();
        assert_eq!((created.id.as_str(), created.created), ("new", true));
        assert_eq!(fire_reply(&s(&["lost"]), Some(&row())).unwrap(), None);
        let hit = fire_reply(&s(&["0", "old"]), Some(&row()))
            .unwrap()
            .unwrap();
        assert_eq!((hit.id.as_str(), hit.created), ("old", false));
        assert_eq!(fire_reply(&[], None).unwrap(), None);
        assert!(fire_reply(&s(&["a", "b", "c"]), Some(&row())).is_err());
    }
}
