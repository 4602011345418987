//! Flow control ([`LimitStore`](super::LimitStore)) of the SQL stores, written once over
//! the sqlx driver. A limited claim is one transaction: it locks the rows of the limits
//! it must respect (in key order: concurrent claims queue behind each other, never
//! deadlock), counts the running jobs under each cap, reads candidates per limited task
//! and for the rest (each read bounded, locked with `SKIP LOCKED` where the database can),
//! picks in claim order what every limit allows, claims those by id and advances the
//! rates' next starts. SQLite needs no row locks: `BEGIN IMMEDIATE` is its one writer.

use sqlx::{
    AssertSqlSafe, ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row, Type,
};

use super::limits::{
    allowance, next_start_us, pick, ClaimPlan, Limit, LimitScope, LimitState, Rate,
};
use super::retry::{retry_tx, TxError};
use super::sql::{Affected, Sql};
use super::sql_ops::Args;
use crate::error::CoreResult;

/// The columns a claimed job is read with (before its attempt is counted).
const CLAIM_COLUMNS: &str = "id, queue, task, args, kwargs, attempts, max_attempts, timeout_ms, \
    priority, run_at, enqueued_at, trace_context";

/// A limit from a row of `limit_key, scope, name, rate_count, rate_period_ms,
/// max_running, next_start_us`; `None` for a row this version cannot read.
fn limit_from<R: Row>(row: &R) -> CoreResult<Option<(Limit, i64)>>
where
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    usize: ColumnIndex<R>,
{
    let Ok(scope) = LimitScope::parse(&row.try_get::<String, _>(1)?) else {
        return Ok(None);
    };
    let count = row.try_get::<Option<i64>, _>(3)?;
    let period = row.try_get::<Option<i64>, _>(4)?;
    let rate = match (count, period) {
        (Some(c), Some(p)) => Some(Rate {
            count: u32::try_from(c).unwrap_or(u32::MAX).max(1),
            period_ms: u32::try_from(p).unwrap_or(1000).max(1),
        }),
        _ => None,
    };
    let max_running = row
        .try_get::<Option<i64>, _>(5)?
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX));
    let limit = Limit {
        scope,
        name: row.try_get(2)?,
        rate,
        max_running,
    };
    Ok(Some((limit, row.try_get(6)?)))
}

impl<DB> Sql<DB>
where
    DB: Database<QueryResult: Affected>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    for<'r> i64: Decode<'r, DB>,
    for<'r> i32: Decode<'r, DB> + Type<DB>,
    for<'r> bool: Decode<'r, DB> + Type<DB>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
{
    /// [`super::LimitStore::set_limit`].
    pub(crate) async fn set_limit(&self, limit: &Limit) -> CoreResult<bool> {
        limit.validate()?;
        let l = &self.d.limits;
        if !limit.is_some() {
            let sql = format!("DELETE FROM {} WHERE limit_key = {}", l.table, self.mark(1));
            let q = sqlx::query(AssertSqlSafe(sql)).bind(limit.key());
            return Ok(q.execute(&self.pool).await?.n() > 0);
        }
        let stored = self
            .limits(false)
            .await?
            .into_iter()
            .any(|s| &s.limit == limit);
        if stored {
            return Ok(false);
        }
        let q = sqlx::query(AssertSqlSafe(l.upsert))
            .bind(limit.key())
            .bind(limit.scope.as_str())
            .bind(limit.name.as_str())
            .bind(limit.rate.map(|r| i64::from(r.count)))
            .bind(limit.rate.map(|r| i64::from(r.period_ms)))
            .bind(limit.max_running.map(i64::from));
        q.execute(&self.pool).await?;
        Ok(true)
    }

    /// `?` or `$n`.
    fn mark(&self, n: usize) -> String {
        if self.d.numbered {
            format!("${n}")
        } else {
            "?".to_owned()
        }
    }

    /// [`super::LimitStore::limits`].
    pub(crate) async fn limits(&self, usage: bool) -> CoreResult<Vec<LimitState>> {
        let sql = format!(
            "SELECT limit_key, scope, name, rate_count, rate_period_ms, max_running, \
             next_start_us FROM {} ORDER BY limit_key",
            self.d.limits.table
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        let mut conn = if usage && !rows.is_empty() {
            Some(self.pool.acquire().await?)
        } else {
            None
        };
        for row in &rows {
            let Some((limit, next_us)) = limit_from(row)? else {
                continue;
            };
            let running = match conn.as_mut() {
                Some(conn) => self.running_under(conn, &limit).await?,
                None => 0,
            };
            out.push(LimitState {
                limit,
                running,
                next_start_ms: next_us.div_euclid(1000),
            });
        }
        Ok(out)
    }

    /// Jobs `running` under `limit` (claimed ahead included).
    async fn running_under(
        &self,
        conn: &mut DB::Connection,
        limit: &Limit,
    ) -> Result<u64, sqlx::Error> {
        let column = match limit.scope {
            LimitScope::Task => "task",
            LimitScope::Queue => "queue",
        };
        let sql = format!(
            "SELECT COUNT(*) FROM {} WHERE status = 'running' AND {column} = {}",
            self.d.jobs,
            self.mark(1)
        );
        let q = sqlx::query(AssertSqlSafe(sql)).bind(limit.name.as_str());
        let n: i64 = q.fetch_one(&mut *conn).await?.try_get(0)?;
        Ok(n.max(0) as u64)
    }

    /// [`super::LimitStore::claim_limited`]: the claimed rows (attempts not yet
    /// counted in them) and when a rate allows the next start of jobs it held back.
    pub(crate) async fn claim_limited(
        &self,
        queues: &[String],
        worker: &str,
        limit: usize,
        lease_until: i64,
        now: i64,
        plan: &ClaimPlan,
    ) -> CoreResult<(Vec<DB::Row>, Option<i64>)> {
        if limit == 0 || queues.is_empty() {
            return Ok((Vec::new(), None));
        }
        retry_tx(|| async move {
            let mut tx = self.pool.begin_with(AssertSqlSafe(self.d.begin)).await?;
            let out = self
                .claim_limited_in(&mut tx, queues, worker, limit, lease_until, now, plan)
                .await?;
            tx.commit().await?;
            Ok::<_, TxError>(out)
        })
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn claim_limited_in(
        &self,
        conn: &mut DB::Connection,
        queues: &[String],
        worker: &str,
        limit: usize,
        lease_until: i64,
        now: i64,
        plan: &ClaimPlan,
    ) -> Result<(Vec<DB::Row>, Option<i64>), TxError> {
        let now_us = now.saturating_mul(1000);
        // The limits as stored now (a limit removed since the worker read it is gone),
        // locked in key order.
        let mut wanted: Vec<String> = plan.limits.iter().map(Limit::key).collect();
        wanted.sort_unstable();
        wanted.dedup();
        let mut limits: Vec<Limit> = Vec::new();
        let mut next_us: Vec<i64> = Vec::new();
        if !wanted.is_empty() {
            let mut a = Args::new(self.d);
            let sql = format!(
                "SELECT limit_key, scope, name, rate_count, rate_period_ms, max_running, \
                 next_start_us FROM {} WHERE limit_key IN ({}) ORDER BY limit_key{}",
                self.d.limits.table,
                a.list(&wanted),
                self.d.limits.for_update
            );
            for row in Self::query(sql, a.values).fetch_all(&mut *conn).await? {
                if let Some((l, next)) = limit_from(&row)? {
                    limits.push(l);
                    next_us.push(next);
                }
            }
        }
        let mut allow = Vec::with_capacity(limits.len());
        for (l, &next) in limits.iter().zip(&next_us) {
            let running = match l.max_running {
                Some(_) => self.running_under(conn, l).await?,
                None => 0,
            };
            allow.push(allowance(l, running, next, now_us));
        }
        let mut room = plan.queue_room.clone();
        // Queues with room, and among them those a queue limit or a local cap bounds.
        let open: Vec<&String> = queues
            .iter()
            .filter(|q| {
                let global = limits
                    .iter()
                    .zip(&allow)
                    .all(|(l, &n)| !(l.scope == LimitScope::Queue && &l.name == *q) || n > 0);
                let local = room.iter().all(|(name, n)| name != *q || *n > 0);
                global && local
            })
            .collect();
        let bounded = |q: &String| {
            limits
                .iter()
                .any(|l| l.scope == LimitScope::Queue && &l.name == q)
                || room.iter().any(|(name, _)| name == q)
        };
        let tasks: Vec<String> = limits
            .iter()
            .filter(|l| l.scope == LimitScope::Task)
            .map(|l| l.name.clone())
            .collect();
        // Candidates: per limited task (as many as it allows), per bounded queue and for
        // the other queues together (the rest), each read in claim order.
        let mut rows: Vec<DB::Row> = Vec::new();
        if !open.is_empty() {
            let open_names: Vec<String> = open.iter().map(|q| (*q).clone()).collect();
            for (l, &n) in limits.iter().zip(&allow) {
                if l.scope == LimitScope::Task && n > 0 {
                    let mut a = Args::new(self.d);
                    let terms = format!(
                        "{} IN ({}) AND task = {}",
                        self.d.limits.queue_column,
                        a.list(&open_names),
                        a.text(&l.name)
                    );
                    rows.extend(self.candidates(conn, a, &terms, now, n.min(limit)).await?);
                }
            }
            let mut groups: Vec<Vec<String>> = open_names
                .iter()
                .filter(|q| bounded(q))
                .map(|q| vec![q.clone()])
                .collect();
            let rest: Vec<String> = open_names.iter().filter(|q| !bounded(q)).cloned().collect();
            if !rest.is_empty() {
                groups.push(rest);
            }
            for group in groups {
                let mut a = Args::new(self.d);
                let column = self.d.limits.queue_column;
                let mut terms = format!("{column} IN ({})", a.list(&group));
                if !tasks.is_empty() {
                    terms += &format!(" AND task NOT IN ({})", a.list(&tasks));
                }
                rows.extend(self.candidates(conn, a, &terms, now, limit).await?);
            }
        }
        // Claim order over every candidate: priority (highest first), run_at, id.
        let mut keyed: Vec<(i32, i64, String, usize)> = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let priority = row.try_get::<Option<i32>, _>("priority")?.unwrap_or(0);
            let run_at = row.try_get::<Option<i64>, _>("run_at")?.unwrap_or(0);
            keyed.push((priority, run_at, row.try_get("id")?, i));
        }
        keyed.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        keyed.dedup_by(|a, b| a.2 == b.2);
        let mut names: Vec<(String, String)> = Vec::with_capacity(keyed.len());
        for (_, _, _, i) in &keyed {
            names.push((rows[*i].try_get("task")?, rows[*i].try_get("queue")?));
        }
        let refs: Vec<(&str, &str)> = names
            .iter()
            .map(|(t, q)| (t.as_str(), q.as_str()))
            .collect();
        let before = allow.clone();
        let chosen = pick(&refs, &limits, &mut allow, &mut room, limit);
        let ids: Vec<String> = chosen.iter().map(|&k| keyed[k].2.clone()).collect();
        if !ids.is_empty() {
            let mut a = Args::new(self.d);
            let sql = format!(
                "UPDATE {} SET status = 'running', attempts = attempts + 1, locked_by = {}, \
                 lease_until = {}, started_at = NULL WHERE status IN ('pending', 'retrying') \
                 AND id IN ({})",
                self.d.jobs,
                a.text(worker),
                a.int(lease_until),
                a.list(&ids)
            );
            Self::query(sql, a.values).execute(&mut *conn).await?;
        }
        // Rates: advance the next start by each job taken; say when a held-back job may go.
        let mut retry_at: Option<i64> = None;
        for (k, l) in limits.iter().enumerate() {
            let Some(rate) = &l.rate else { continue };
            let taken = before[k] - allow[k];
            if taken > 0 {
                let next = next_start_us(rate, next_us[k], now_us, taken);
                let mut a = Args::new(self.d);
                let sql = format!(
                    "UPDATE {} SET next_start_us = {} WHERE limit_key = {}",
                    self.d.limits.table,
                    a.int(next),
                    a.text(&l.key())
                );
                Self::query(sql, a.values).execute(&mut *conn).await?;
                next_us[k] = next;
            }
            // A rate that has no token now: its jobs may go at its next start.
            if next_us[k] > now_us && chosen.len() < limit {
                let at = next_us[k].div_euclid(1000) + 1;
                retry_at = Some(retry_at.map_or(at, |r: i64| r.min(at)));
            }
        }
        let mut claimed = Vec::with_capacity(chosen.len());
        let mut rows: Vec<Option<DB::Row>> = rows.into_iter().map(Some).collect();
        for k in chosen {
            if let Some(row) = rows[keyed[k].3].take() {
                claimed.push(row);
            }
        }
        Ok((claimed, retry_at))
    }

    /// Up to `limit` ready jobs matching `terms` (with their binds in `a`), in claim
    /// order, locked where the database can.
    async fn candidates(
        &self,
        conn: &mut DB::Connection,
        mut a: Args,
        terms: &str,
        now: i64,
        limit: usize,
    ) -> Result<Vec<DB::Row>, sqlx::Error> {
        let sql = format!(
            "SELECT {CLAIM_COLUMNS} FROM {} WHERE {terms} AND status IN ('pending', 'retrying') \
             AND run_at <= {} ORDER BY priority DESC, run_at, id LIMIT {}{}",
            self.d.jobs,
            a.int(now),
            a.int(limit as i64),
            self.d.lock_rows
        );
        Self::query(sql, a.values).fetch_all(&mut *conn).await
    }
}

/// Implements [`LimitStore`](super::LimitStore) for a SQL store (field `sql`); `$lock`
/// (with the store as `$s`) is held around each write (SQLite's one-writer lock).
macro_rules! sql_limit_store {
    ($ty:ty, |$s:ident| $lock:expr) => {
        #[async_trait::async_trait]
        impl $crate::store::LimitStore for $ty {
            async fn set_limit(&self, limit: &$crate::store::Limit) -> CoreResult<bool> {
                let $s = self;
                let _writing = $lock;
                self.sql.set_limit(limit).await
            }

            async fn limits(&self, usage: bool) -> CoreResult<Vec<$crate::store::LimitState>> {
                self.sql.limits(usage).await
            }

            async fn claim_limited(
                &self,
                queues: &[String],
                worker: &str,
                limit: usize,
                lease: std::time::Duration,
                plan: &$crate::store::ClaimPlan,
            ) -> CoreResult<$crate::store::LimitedClaim> {
                let now = $crate::store::Store::now_ms(self);
                let lease_until =
                    now.saturating_add(lease.as_millis().min(i64::MAX as u128) as i64);
                let (rows, retry_at_ms) = {
                    let $s = self;
                    let _writing = $lock;
                    self.sql
                        .claim_limited(queues, worker, limit, lease_until, now, plan)
                        .await?
                };
                let (keyed, broken) = $crate::store::rows::claimed_rows(&rows, 1, now)?;
                $crate::store::fail_corrupt(self, worker, broken).await;
                let mut keyed = keyed;
                keyed.sort_by(|(a, ra), (b, rb)| {
                    b.priority
                        .cmp(&a.priority)
                        .then(ra.cmp(rb))
                        .then(a.id.cmp(&b.id))
                });
                Ok($crate::store::LimitedClaim {
                    jobs: keyed.into_iter().map(|(j, _)| j).collect(),
                    retry_at_ms,
                })
            }
        }
    };
}
pub(crate) use sql_limit_store;
