//! Transactions the database aborted to resolve a lock conflict are run again.
//!
//! A server answers some conflicts between concurrent transactions by aborting one of
//! them: a deadlock (MySQL/MariaDB 1213, PostgreSQL `40P01`), a lock wait that timed out
//! (MySQL 1205) or a serialization failure (PostgreSQL `40001`, under `REPEATABLE READ` or
//! `SERIALIZABLE`). The aborted work was rolled back and running it again is correct, so
//! the stores retry the whole transaction here (with jittered exponential backoff) instead
//! of failing the caller's enqueue or the worker's claim.

use std::future::Future;
use std::time::Duration;

use crate::error::CoreError;

/// Runs a transaction gets at most (the first one included).
pub(crate) const ATTEMPTS: u32 = 10;
/// Pause before the second run; doubled before each later one, then jittered.
const FIRST_PAUSE: Duration = Duration::from_millis(2);

/// MySQL/MariaDB: deadlock found when trying to get lock.
const ER_LOCK_DEADLOCK: u16 = 1213;
/// MySQL/MariaDB: lock wait timeout exceeded.
const ER_LOCK_WAIT_TIMEOUT: u16 = 1205;

/// An error inside a store transaction: a driver error (perhaps a conflict the server
/// resolved by aborting it) or any other.
#[derive(Debug)]
pub(crate) enum TxError {
    Sql(sqlx::Error),
    Core(CoreError),
}

impl TxError {
    /// True for an aborted transaction that is worth running again.
    fn is_transient(&self) -> bool {
        matches!(self, Self::Sql(err) if is_transient(err))
    }
}

impl std::fmt::Display for TxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sql(err) => err.fmt(f),
            Self::Core(err) => err.fmt(f),
        }
    }
}

impl From<sqlx::Error> for TxError {
    fn from(err: sqlx::Error) -> Self {
        Self::Sql(err)
    }
}

impl From<CoreError> for TxError {
    fn from(err: CoreError) -> Self {
        Self::Core(err)
    }
}

impl From<serde_json::Error> for TxError {
    fn from(err: serde_json::Error) -> Self {
        Self::Core(err.into())
    }
}

impl From<TxError> for CoreError {
    fn from(err: TxError) -> Self {
        match err {
            TxError::Sql(err) => err.into(),
            TxError::Core(err) => err,
        }
    }
}

/// True for MySQL/MariaDB error numbers of an aborted, retryable transaction.
#[cfg_attr(not(feature = "mysql"), allow(dead_code))]
pub(crate) fn mysql_transient(number: u16) -> bool {
    matches!(number, ER_LOCK_DEADLOCK | ER_LOCK_WAIT_TIMEOUT)
}

/// True for PostgreSQL SQLSTATEs of an aborted, retryable transaction.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn postgres_transient(code: &str) -> bool {
    matches!(code, "40P01" | "40001")
}

/// True if the server aborted the transaction to resolve a conflict (see the module).
pub(crate) fn is_transient(err: &sqlx::Error) -> bool {
    err.as_database_error().is_some_and(|db| {
        #[cfg(feature = "mysql")]
        if let Some(e) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
            return mysql_transient(e.number());
        }
        #[cfg(feature = "postgres")]
        if let Some(e) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
            return postgres_transient(e.code());
        }
        let _ = db; // SQLite never aborts a transaction for a conflict (it waits).
        false
    })
}

/// Calls `attempt` until it succeeds, fails with an error `transient` refuses, or
/// [`ATTEMPTS`] calls failed; between calls it sleeps 2 ms, 4 ms, 8 ms, … (each pause
/// a random 50–100% of that, so the transactions that collided do not collide again).
pub(crate) async fn retry<T, E, F, Fut>(transient: fn(&E) -> bool, mut attempt: F) -> Result<T, E>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut pause = FIRST_PAUSE;
    let mut run = 1;
    loop {
        match attempt().await {
            Err(err) if run < ATTEMPTS && transient(&err) => {
                let sleep = pause.mul_f64(rand::random_range(0.5..=1.0));
                tracing::debug!(run, error = %err, retry_in = ?sleep, "transaction aborted by the database; running it again");
                tokio::time::sleep(sleep).await;
                pause *= 2;
                run += 1;
            }
            done => return done,
        }
    }
}

/// [`retry`] for a store transaction: retries what [`is_transient`] accepts.
pub(crate) async fn retry_tx<T, F, Fut>(attempt: F) -> Result<T, CoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, TxError>>,
{
    retry(TxError::is_transient, attempt)
        .await
        .map_err(CoreError::from)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    #[cfg(any(feature = "mysql", feature = "postgres"))]
    use sqlx::AssertSqlSafe;

    use super::*;

    /// A MySQL error number, as the stores see it.
    #[derive(Debug)]
    struct Number(u16);

    impl std::fmt::Display for Number {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "error {}", self.0)
        }
    }

    fn transient(e: &Number) -> bool {
        mysql_transient(e.0)
    }

    /// Fails with `errors` in turn, then succeeds; returns the outcome and the calls.
    async fn run(errors: &[u16]) -> (Result<&'static str, Number>, u32) {
        let calls = AtomicU32::new(0);
        let out = retry(transient, || {
            let n = calls.fetch_add(1, Ordering::SeqCst) as usize;
            async move {
                match errors.get(n) {
                    Some(&e) => Err(Number(e)),
                    None => Ok("done"),
                }
            }
        })
        .await;
        (out, calls.load(Ordering::SeqCst))
    }

    #[tokio::test(start_paused = true)]
    async fn retries_deadlocks_and_lock_wait_timeouts() {
        let (out, calls) = run(&[1213, 1205, 1213]).await;
        assert_eq!(out.unwrap(), "done");
        assert_eq!(calls, 4);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_the_bound() {
        let (out, calls) = run(&[1213; 20]).await;
        assert_eq!(out.unwrap_err().0, 1213);
        assert_eq!(calls, ATTEMPTS);
        let (out, calls) = run(&[1205; ATTEMPTS as usize - 1]).await;
        assert_eq!(out.unwrap(), "done", "the last allowed run may succeed");
        assert_eq!(calls, ATTEMPTS);
    }

    #[tokio::test(start_paused = true)]
    async fn other_errors_are_not_retried() {
        for number in [1062, 1146, 2013] {
            let (out, calls) = run(&[number, 1213]).await;
            assert_eq!(out.unwrap_err().0, number);
            assert_eq!(calls, 1);
        }
        let (out, calls) = run(&[1213, 1062]).await;
        assert_eq!(out.unwrap_err().0, 1062, "a later other error ends it too");
        assert_eq!(calls, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn pauses_grow_from_2_ms_with_jitter() {
        let started = tokio::time::Instant::now();
        let _ = run(&[1213; 20]).await;
        // Nine pauses of 50-100% of 2, 4, …, 512 ms (1,022 ms in all).
        let slept = started.elapsed();
        assert!(slept >= Duration::from_millis(511), "{slept:?}");
        assert!(slept <= Duration::from_millis(1022), "{slept:?}");
    }

    #[test]
    fn transient_codes() {
        assert!(mysql_transient(1213) && mysql_transient(1205));
        assert!(!mysql_transient(1062) && !mysql_transient(2006));
        assert!(postgres_transient("40P01") && postgres_transient("40001"));
        assert!(!postgres_transient("23505") && !postgres_transient("57014"));
        assert!(!is_transient(&sqlx::Error::PoolTimedOut));
        assert!(!TxError::from(CoreError::Backend("1213".into())).is_transient());
    }

    /// A pool on a server of the test suite (`var`, or the machine's default URL), or
    /// `None` to skip when it does not answer (a failure with
    /// `SPIKARD_TASKS_REQUIRE_BACKENDS=1`).
    #[cfg(any(feature = "mysql", feature = "postgres"))]
    async fn server<DB: sqlx::Database>(var: &str, default: &str) -> Option<sqlx::Pool<DB>> {
        let url = std::env::var(var).unwrap_or_else(|_| default.to_owned());
        match sqlx::Pool::<DB>::connect(&url).await {
            Ok(pool) => Some(pool),
            Err(e) if std::env::var("SPIKARD_TASKS_REQUIRE_BACKENDS").as_deref() == Ok("1") => {
                panic!("no server at {url}: {e}")
            }
            Err(_) => None,
        }
    }

    /// Runs the two locking statements `locks` in one transaction through [`retry_tx`]
    /// twice at once, in opposite orders (with a pause between the two), so that they
    /// deadlock: the server aborts one, which runs again, and both commit.
    #[cfg(any(feature = "mysql", feature = "postgres"))]
    async fn deadlock<DB>(pool: &sqlx::Pool<DB>, locks: [String; 2])
    where
        DB: sqlx::Database,
        for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    {
        let runs = AtomicU32::new(0);
        let (locks, runs_ref) = (&locks, &runs);
        // Locks `locks[first]`, pauses, then locks the other one.
        let both = |first: usize| {
            retry_tx(move || async move {
                runs_ref.fetch_add(1, Ordering::SeqCst);
                let mut tx = pool.begin().await?;
                for (i, n) in [first, 1 - first].into_iter().enumerate() {
                    if i > 0 {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    sqlx::raw_sql(AssertSqlSafe(locks[n].as_str()))
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok::<_, TxError>(())
            })
        };
        let (one, other) = tokio::join!(both(0), both(1));
        one.unwrap();
        other.unwrap();
        assert!(
            runs.load(Ordering::SeqCst) >= 3,
            "a deadlock victim ran again"
        );
    }

    #[cfg(feature = "mysql")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mysql_deadlocks_and_lock_wait_timeouts_are_transient() {
        let url = (
            "SPIKARD_TASKS_TEST_MYSQL",
            "mysql://root@127.0.0.1:3306/test",
        );
        let Some(pool) = server::<sqlx::MySql>(url.0, url.1).await else {
            return;
        };
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS spikard_test_locks \
             (id VARCHAR(64) NOT NULL PRIMARY KEY, n INT NOT NULL) ENGINE=InnoDB",
        )
        .execute(&pool)
        .await
        .unwrap();
        let [a, b] = [0, 1].map(|_| uuid::Uuid::now_v7().to_string());
        sqlx::query("INSERT INTO spikard_test_locks (id, n) VALUES (?, 0), (?, 0)")
            .bind(&a)
            .bind(&b)
            .execute(&pool)
            .await
            .unwrap();
        let bump = |id: &str| format!("UPDATE spikard_test_locks SET n = n + 1 WHERE id = '{id}'");
        // Error 1213, and the victim's second run commits.
        deadlock(&pool, [bump(&a), bump(&b)]).await;
        let n: Vec<i32> =
            sqlx::query_scalar("SELECT n FROM spikard_test_locks WHERE id IN (?, ?) ORDER BY id")
                .bind(&a)
                .bind(&b)
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(n, [2, 2], "both transactions committed once");
        // A lock wait that times out (1205) is transient too.
        let mut holder = pool.begin().await.unwrap();
        sqlx::query(AssertSqlSafe(bump(&a)))
            .execute(&mut *holder)
            .await
            .unwrap();
        let mut waiter = pool.acquire().await.unwrap();
        sqlx::query("SET SESSION innodb_lock_wait_timeout = 1")
            .execute(&mut *waiter)
            .await
            .unwrap();
        let err = sqlx::query(AssertSqlSafe(bump(&a)))
            .execute(&mut *waiter)
            .await
            .unwrap_err();
        assert!(is_transient(&err), "{err}");
        holder.rollback().await.unwrap();
        waiter.close_on_drop();
        sqlx::query("DELETE FROM spikard_test_locks WHERE id IN (?, ?)")
            .bind(&a)
            .bind(&b)
            .execute(&pool)
            .await
            .unwrap();
    }

    #[cfg(feature = "postgres")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_deadlocks_are_transient() {
        let url = (
            "SPIKARD_TASKS_TEST_POSTGRES",
            "postgres://postgres@127.0.0.1:5432/test",
        );
        let Some(pool) = server::<sqlx::Postgres>(url.0, url.1).await else {
            return;
        };
        // Error 40P01 (after `deadlock_timeout`), and the victim's second run commits.
        let lock = |_| format!("SELECT pg_advisory_xact_lock({})", rand::random::<i64>());
        deadlock(&pool, [0, 1].map(lock)).await;
    }
}
