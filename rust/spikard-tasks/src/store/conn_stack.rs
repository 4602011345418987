//! Connections for the hot path, handed back without sqlx's ping on release.
//!
//! sqlx 0.9 pings every connection it takes back into its pool (`return_to_pool`), and
//! that cannot be turned off: one more round trip per statement to PostgreSQL (a Sync)
//! and MySQL (a COM_PING), and one more hand-off to SQLite's worker thread, plus a
//! spawned task. Enqueues, claims and outcome writes are one statement each, so that
//! ping was half of their round trips and a large share of the server's work.
//!
//! [`Conns`] keeps its own stack of idle connections. The pool still opens them (its
//! retries, timeout and `after_connect` hook apply); they are detached from it at once.
//! A [`Conn`] goes back to the stack only through [`Conn::release`], which callers reach
//! after their statement succeeded. A `Conn` dropped any other way (an error, or a
//! cancelled future that may have left a statement half-read) is closed, never reused.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::{Connection, Database, Pool};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A connection idle for longer than this is pinged before use (a server restart may
/// have closed it); one in steady use is not. The pools' own connections follow it too.
pub(crate) const PING_IF_IDLE: Duration = Duration::from_secs(1);

/// Idle connections, each with the moment it was handed back; the last is used first.
type IdleStack<DB> = Arc<Mutex<Vec<(<DB as Database>::Connection, Instant)>>>;

/// A bounded stack of idle connections in front of a pool.
pub(crate) struct Conns<DB: Database> {
    pool: Pool<DB>,
    idle: IdleStack<DB>,
    slots: Arc<Semaphore>,
}

impl<DB: Database> Clone for Conns<DB> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            idle: Arc::clone(&self.idle),
            slots: Arc::clone(&self.slots),
        }
    }
}

impl<DB: Database> std::fmt::Debug for Conns<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conns")
            .field("available", &self.slots.available_permits())
            .finish_non_exhaustive()
    }
}

impl<DB: Database> Conns<DB> {
    /// At most `max` connections out at once, opened by `pool`.
    pub(crate) fn new(pool: Pool<DB>, max: usize) -> Self {
        Self {
            pool,
            idle: Arc::new(Mutex::new(Vec::with_capacity(max))),
            slots: Arc::new(Semaphore::new(max)),
        }
    }

    /// A connection: the most recently used idle one, or a new one from the pool.
    pub(crate) async fn get(&self) -> Result<Conn<DB>, sqlx::Error> {
        let slot = Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        loop {
            let popped = self.idle.lock().expect("idle stack poisoned").pop();
            let Some((mut conn, since)) = popped else {
                let conn = self.pool.acquire().await?.detach();
                return Ok(self.wrap(conn, slot));
            };
            if since.elapsed() < PING_IF_IDLE || conn.ping().await.is_ok() {
                return Ok(self.wrap(conn, slot));
            }
            // Dead (e.g. the server restarted): drop it and try the next one.
        }
    }

    /// Closes every idle connection and refuses new ones (connections still out are
    /// closed when they come back). Then closes the pool. Idempotent.
    pub(crate) async fn close(&self) {
        self.slots.close();
        let idle: Vec<_> = self
            .idle
            .lock()
            .expect("idle stack poisoned")
            .drain(..)
            .collect();
        for (conn, _) in idle {
            let _ = tokio::time::timeout(Duration::from_secs(5), conn.close()).await;
        }
        self.pool.close().await;
    }

    fn wrap(&self, conn: DB::Connection, slot: OwnedSemaphorePermit) -> Conn<DB> {
        Conn {
            conn: Some(conn),
            idle: Arc::clone(&self.idle),
            _slot: slot,
        }
    }
}

/// A connection out of [`Conns`]; dereferences to the driver's connection.
pub(crate) struct Conn<DB: Database> {
    conn: Option<DB::Connection>,
    idle: IdleStack<DB>,
    _slot: OwnedSemaphorePermit,
}

impl<DB: Database> Conn<DB> {
    /// Hands the connection back for reuse. Call it only after the last statement on it
    /// finished; a connection dropped without this is closed.
    pub(crate) fn release(mut self) {
        if self._slot.semaphore().is_closed() {
            return; // Closed store: dropping it closes the connection.
        }
        if let Some(conn) = self.conn.take() {
            self.idle
                .lock()
                .expect("idle stack poisoned")
                .push((conn, Instant::now()));
        }
    }
}

impl<DB: Database> Deref for Conn<DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &DB::Connection {
        self.conn
            .as_ref()
            .expect("a Conn holds its connection until dropped")
    }
}

impl<DB: Database> DerefMut for Conn<DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        self.conn
            .as_mut()
            .expect("a Conn holds its connection until dropped")
    }
}

impl<DB: Database> Drop for Conn<DB> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        // Not released: its state is unknown. Say goodbye to the server if a runtime is
        // there to do it; otherwise dropping the connection closes its socket.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(5), conn.close()).await;
            });
        }
    }
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::*;

    /// Room for one connection at a time; every new connection is a fresh database.
    async fn one_slot() -> Conns<sqlx::Sqlite> {
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .connect("sqlite::memory:")
            .await
            .unwrap();
        Conns::new(pool, 1)
    }

    /// True if `conn` is the connection that created the temp table `mark`.
    async fn has_mark(conn: &mut sqlx::SqliteConnection) -> bool {
        sqlx::query("SELECT 1 FROM temp.mark")
            .fetch_optional(conn)
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn released_connections_are_reused_and_dropped_ones_are_not() {
        let conns = one_slot().await;

        let mut conn = conns.get().await.unwrap();
        sqlx::query("CREATE TEMP TABLE mark (x)")
            .execute(&mut *conn)
            .await
            .unwrap();
        conn.release();

        let mut conn = conns.get().await.unwrap();
        assert!(
            has_mark(&mut conn).await,
            "a released connection comes back"
        );
        drop(conn); // not released: its state is unknown

        let mut conn = conns.get().await.unwrap();
        assert!(
            !has_mark(&mut conn).await,
            "a dropped connection is never reused"
        );
        conn.release();
    }

    #[tokio::test]
    async fn at_most_max_connections_are_out_at_once() {
        let conns = one_slot().await;
        let held = conns.get().await.unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(50), conns.get()).await;
        assert!(waiting.is_err(), "a second connection waits for the first");
        held.release();
        let next = tokio::time::timeout(Duration::from_secs(5), conns.get()).await;
        assert!(next.is_ok(), "released slot is handed on");
    }
}
