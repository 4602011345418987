//! The operations of the Redis store ([`OpsStore`]), on these keys besides the job
//! model's (all under [`PREFIX`]):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `q:{queue}:jobs` | zset by enqueued_at | the queue's jobs (the job list walks it newest first: equal scores order by id) |
//! | `q:{queue}:s:{state}` | zset by enqueued_at | the queue's finished jobs of one state (the list of finished states) |
//! | `q:{queue}:fin:{state}` | zset by finished_at | finished jobs of one queue and state (last-minute figures, retry, purge) |
//! | `queues` | set | known queues (`stats` forgets one with no job left) |
//! | `paused` | hash | paused queue → when it was paused |
//! | `workers` | hash | worker name → its [`WorkerInfo`] as JSON |
//! | `ops_index` | string | set once the jobs of earlier versions are in the indexes above |
//!
//! `stats` reads cardinalities: O(queues), never a scan of jobs. `list_jobs` walks an
//! index by enqueued_at newest first from the cursor inside one script (the
//! `q:{queue}:s:{state}` sets when only finished states are asked for, else
//! `q:{queue}:jobs`; of the filter's queue, or of every known queue merged: one index
//! per queue keeps the enqueue at one more ZADD), checking each job's fields (task,
//! time, state as shown), and
//! stops once it has its page or has examined [`LIST_BUDGET`] entries; then it goes on
//! in another script call (`list_jobs` always fills its page, `list_page` answers
//! with what it found and a cursor at the last entry examined). The bulk operations walk
//! the per-queue sets of the states concerned, [`BULK_BUDGET`] entries per script call,
//! each call atomic.

use async_trait::async_trait;
use std::collections::HashMap;

use super::{Hash, RedisStore, PREFIX, SCRIPTS};
use crate::error::{CoreError, CoreResult};
use crate::job::{JobRecord, JobStatus, QueueCounts};
use crate::store::ops::{Cursor, JobFilter, OpsStore, QueueStats, StorePage, WorkerInfo};
use crate::store::rows::record_from;

/// Most index entries one script call of the job list examines (about 5 ms of the
/// server's time). A page that found fewer jobs by then ends early ([`OpsStore::list_page`])
/// or continues in another call (`list_jobs`).
pub const LIST_BUDGET: usize = 5000;
/// Most index entries one script call of a bulk operation examines.
pub const BULK_BUDGET: usize = 5000;
/// Most rows of workers gone for over an hour one [`OpsStore::workers`] call deletes.
const GONE_BATCH: usize = 100;
/// How long a gone worker's row stays (ms).
const GONE_KEPT_MS: i64 = 3_600_000;
/// The version of the operations indexes; `ops_index` holds it once jobs written
/// before them were added.
const INDEX_VERSION: &str = "2";

/// An optional number as a script argument.
fn opt_num(value: Option<i64>) -> String {
    value.map_or_else(String::new, |v| format!("={v}"))
}

/// Pushes a filter as the five arguments `read_filter` (filter.lua) takes.
fn push_filter(inv: &mut redis::ScriptInvocation<'_>, filter: &JobFilter) {
    let statuses: Vec<&str> = filter.statuses.iter().map(|s| s.as_str()).collect();
    inv.arg(statuses.join(","))
        .arg(super::opt(filter.task.as_deref()))
        .arg(super::opt(filter.queue.as_deref()))
        .arg(opt_num(filter.since_ms))
        .arg(opt_num(filter.until_ms));
}

/// Pushes the filter's job ids (`read_ids` in filter.lua), the last arguments of a
/// script that takes a filter; none when it names no job.
fn push_ids(inv: &mut redis::ScriptInvocation<'_>, filter: &JobFilter) {
    for id in &filter.ids {
        inv.arg(id);
    }
}

/// What one call of `list.lua` found.
struct Scan {
    jobs: Vec<JobRecord>,
    /// The last entry examined.
    last: Option<Cursor>,
    /// Whether the walk reached the end of its indexes.
    exhausted: bool,
}

impl RedisStore {
    /// Adds the jobs of earlier versions to the operations indexes, once per database
    /// (guarded by `ops_index`; concurrent openers repeat harmless work), in batches of
    /// 1000 keys found by SCAN.
    pub(super) async fn backfill_ops_index(
        &self,
        conn: &mut redis::aio::MultiplexedConnection,
    ) -> Result<(), redis::RedisError> {
        let version_key = format!("{PREFIX}ops_index");
        let version: Option<String> = redis::cmd("GET")
            .arg(&version_key)
            .query_async(conn)
            .await?;
        if version.as_deref() == Some(INDEX_VERSION) {
            return Ok(());
        }
        let pattern = format!("{PREFIX}job:*");
        let mut cursor = 0u64;
        let mut indexed = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(conn)
                .await?;
            if !keys.is_empty() {
                let mut inv = SCRIPTS.backfill.prepare_invoke();
                inv.arg(PREFIX);
                for key in &keys {
                    inv.arg(&key[PREFIX.len() + 4..]);
                }
                indexed += inv.invoke_async::<u64>(conn).await?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        redis::cmd("SET")
            .arg(&version_key)
            .arg(INDEX_VERSION)
            .query_async::<()>(conn)
            .await?;
        if indexed > 0 {
            tracing::info!(
                jobs = indexed,
                "indexed the jobs of an earlier version for operations"
            );
        }
        Ok(())
    }

    /// One call of `list.lua`: up to `want` jobs after `after`, examining at most `budget`
    /// entries.
    async fn scan(
        &self,
        filter: &JobFilter,
        after: Option<&Cursor>,
        want: usize,
        budget: usize,
        now_ms: i64,
    ) -> CoreResult<Scan> {
        let mut inv = SCRIPTS.list.prepare_invoke();
        inv.arg(PREFIX).arg(now_ms).arg(want).arg(budget);
        push_filter(&mut inv, filter);
        inv.arg(opt_num(after.map(|c| c.enqueued_at_ms)))
            .arg(super::opt(after.map(|c| c.id.as_str())));
        push_ids(&mut inv, filter);
        let rows: Vec<Vec<String>> = self.invoke(&self.calls, &inv).await?;
        let mut rows = rows.into_iter();
        let head = rows.next().unwrap_or_default();
        let (exhausted, last) = match head.as_slice() {
            [done, score, id] => {
                let last = match (score.parse::<i64>(), id.is_empty()) {
                    (Ok(at), false) => Some(Cursor {
                        enqueued_at_ms: at,
                        id: id.clone(),
                    }),
                    _ => None,
                };
                (done == "1", last)
            }
            _ => {
                return Err(CoreError::Backend(format!(
                    "unexpected reply of the job list script: {head:?}"
                )))
            }
        };
        let jobs = rows
            .map(|row| {
                let mut fields = row.into_iter();
                let id = fields.next().unwrap_or_default();
                let mut h = HashMap::new();
                while let (Some(k), Some(v)) = (fields.next(), fields.next()) {
                    h.insert(k, v);
                }
                record_from(&Hash(&id, h), now_ms)
            })
            .collect::<CoreResult<Vec<_>>>()?;
        Ok(Scan {
            jobs,
            last,
            exhausted,
        })
    }

    /// A bulk operation (`bulk.lua`) on up to `limit` jobs, in script calls of at most
    /// [`BULK_BUDGET`] entries examined, until `limit` were acted on or every source
    /// was walked.
    async fn bulk(
        &self,
        op: &str,
        filter: &JobFilter,
        now_ms: i64,
        before_ms: Option<i64>,
        limit: usize,
    ) -> CoreResult<u64> {
        let (mut touched, mut key, mut skip) = (0u64, String::new(), 0u64);
        while (touched as usize) < limit {
            let mut inv = SCRIPTS.bulk.prepare_invoke();
            inv.arg(PREFIX)
                .arg(op)
                .arg(now_ms)
                .arg(limit - touched as usize)
                .arg(BULK_BUDGET);
            push_filter(&mut inv, filter);
            inv.arg(before_ms.map_or_else(String::new, |b| b.to_string()))
                .arg(&key)
                .arg(skip);
            push_ids(&mut inv, filter);
            let (n, done, next, next_skip): (u64, u64, String, u64) =
                self.invoke(&self.calls, &inv).await?;
            touched += n;
            if done == 1 {
                break;
            }
            (key, skip) = (next, next_skip);
        }
        Ok(touched)
    }
}

/// Reads one queue's row of `stats.lua`.
fn queue_stats(row: &[String]) -> CoreResult<QueueStats> {
    let corrupt = || CoreError::Backend(format!("unexpected reply of the stats script: {row:?}"));
    let [name, paused, scheduled, oldest, succeeded, failed, rest @ ..] = row else {
        return Err(corrupt());
    };
    let num = |s: &str| s.parse::<i64>().map_err(|_| corrupt());
    let mut counts = QueueCounts::default();
    for pair in rest.chunks_exact(2) {
        if let Ok(status) = JobStatus::parse(&pair[0]) {
            counts.add(status, num(&pair[1])?.max(0) as u64);
        }
    }
    // Scheduled jobs are stored as pending; split them out.
    counts.scheduled = (num(scheduled)?.max(0) as u64).min(counts.pending);
    counts.pending -= counts.scheduled;
    Ok(QueueStats {
        queue: name.clone(),
        counts,
        oldest_ready_ms: if oldest.is_empty() {
            None
        } else {
            Some(num(oldest)?)
        },
        succeeded_last_minute: num(succeeded)?.max(0) as u64,
        failed_last_minute: num(failed)?.max(0) as u64,
        paused: paused == "1",
    })
}

#[async_trait]
impl OpsStore for RedisStore {
    async fn stats(&self, now_ms: i64) -> CoreResult<Vec<QueueStats>> {
        let mut inv = SCRIPTS.stats.prepare_invoke();
        inv.arg(PREFIX).arg(now_ms);
        let rows: Vec<Vec<String>> = self.invoke(&self.calls, &inv).await?;
        let mut out = rows
            .iter()
            .map(|r| queue_stats(r))
            .collect::<CoreResult<Vec<_>>>()?;
        out.sort_by(|a, b| a.queue.cmp(&b.queue));
        Ok(out)
    }

    async fn list_jobs(
        &self,
        filter: &JobFilter,
        after: Option<&Cursor>,
        limit: usize,
        now_ms: i64,
    ) -> CoreResult<Vec<JobRecord>> {
        let mut jobs = Vec::new();
        let mut cursor = after.cloned();
        while jobs.len() < limit {
            let scan = self
                .scan(
                    filter,
                    cursor.as_ref(),
                    limit - jobs.len(),
                    LIST_BUDGET,
                    now_ms,
                )
                .await?;
            jobs.extend(scan.jobs);
            if scan.exhausted || scan.last.is_none() {
                break;
            }
            cursor = scan.last;
        }
        Ok(jobs)
    }

    async fn list_page(
        &self,
        filter: &JobFilter,
        after: Option<&Cursor>,
        limit: usize,
        now_ms: i64,
    ) -> CoreResult<StorePage> {
        let mut scan = self
            .scan(filter, after, limit + 1, LIST_BUDGET, now_ms)
            .await?;
        let next = if scan.jobs.len() > limit {
            scan.jobs.truncate(limit);
            scan.jobs.last().map(|j| Cursor {
                enqueued_at_ms: j.enqueued_at_ms,
                id: j.id.clone(),
            })
        } else if scan.exhausted {
            None
        } else {
            scan.last
        };
        Ok(StorePage {
            jobs: scan.jobs,
            next,
        })
    }

    async fn retry_batch(&self, filter: &JobFilter, now_ms: i64, limit: usize) -> CoreResult<u64> {
        self.bulk("retry", filter, now_ms, None, limit).await
    }

    async fn cancel_batch(&self, filter: &JobFilter, now_ms: i64, limit: usize) -> CoreResult<u64> {
        self.bulk("cancel", filter, now_ms, None, limit).await
    }

    async fn purge_batch(
        &self,
        filter: &JobFilter,
        before_ms: i64,
        limit: usize,
    ) -> CoreResult<u64> {
        let now_ms = self.clock.now_ms();
        self.bulk("purge", filter, now_ms, Some(before_ms), limit)
            .await
    }

    async fn set_paused(&self, queue: &str, paused: bool, now_ms: i64) -> CoreResult<bool> {
        let key = format!("{PREFIX}paused");
        let cmd = if paused {
            let mut c = redis::cmd("HSETNX");
            c.arg(key).arg(queue).arg(now_ms);
            c
        } else {
            let mut c = redis::cmd("HDEL");
            c.arg(key).arg(queue);
            c
        };
        let changed: i64 = cmd
            .query_async(&mut self.calls.get()?)
            .await
            .map_err(|e| self.error(e))?;
        Ok(changed == 1)
    }

    async fn paused_queues(&self) -> CoreResult<Vec<String>> {
        let mut names: Vec<String> = redis::cmd("HKEYS")
            .arg(format!("{PREFIX}paused"))
            .query_async(&mut self.calls.get()?)
            .await
            .map_err(|e| self.error(e))?;
        names.sort();
        Ok(names)
    }

    async fn register_worker(&self, worker: &WorkerInfo) -> CoreResult<()> {
        let json = worker_json(worker)?;
        redis::cmd("HSET")
            .arg(format!("{PREFIX}workers"))
            .arg(&worker.name)
            .arg(json)
            .query_async::<()>(&mut self.work.get()?)
            .await
            .map_err(|e| self.error(e))
    }

    async fn beat_worker(&self, worker: &WorkerInfo) -> CoreResult<()> {
        let mut inv = SCRIPTS.workers.prepare_invoke();
        inv.arg(PREFIX)
            .arg("beat")
            .arg(&worker.name)
            .arg(worker_json(worker)?)
            .arg(worker.heartbeat_at_ms)
            .arg(worker.jobs_held);
        self.invoke::<i64>(&self.work, &inv).await.map(|_| ())
    }

    async fn remove_worker(&self, name: &str) -> CoreResult<()> {
        redis::cmd("HDEL")
            .arg(format!("{PREFIX}workers"))
            .arg(name)
            .query_async::<()>(&mut self.work.get()?)
            .await
            .map_err(|e| self.error(e))
    }

    async fn workers(&self, now_ms: i64) -> CoreResult<Vec<WorkerInfo>> {
        let key = format!("{PREFIX}workers");
        let mut conn = self.calls.get()?;
        let rows: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error(e))?;
        let mut live = Vec::new();
        let mut stale = Vec::new();
        for (name, json) in rows {
            match serde_json::from_str::<WorkerInfo>(&json) {
                Ok(w) if !w.is_gone(now_ms) => live.push(w),
                Ok(w) if w.is_gone(now_ms.saturating_sub(GONE_KEPT_MS)) => stale.push(name),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(worker = %name, error = %e, "corrupt worker registry row removed");
                    stale.push(name);
                }
            }
        }
        stale.truncate(GONE_BATCH);
        if !stale.is_empty() {
            redis::cmd("HDEL")
                .arg(&key)
                .arg(&stale)
                .query_async::<()>(&mut conn)
                .await
                .map_err(|e| self.error(e))?;
        }
        live.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(live)
    }
}

/// A worker's registry row.
fn worker_json(worker: &WorkerInfo) -> CoreResult<String> {
    serde_json::to_string(worker)
        .map_err(|e| CoreError::Backend(format!("cannot encode worker {:?}: {e}", worker.name)))
}
