//! Pools of SQL server connections: their options, and connecting that fails fast with
//! the server's reason and never leaks the password.

use std::time::Duration;

use super::conn_stack::PING_IF_IDLE;
use crate::error::{CoreError, CoreResult};

/// How long a call waits for a pooled connection before failing with `BackendError`.
///
/// sqlx keeps retrying a refused connection until this passes, so it bounds how long an
/// enqueue (or any call) blocks while the server is down or restarting; workers retry
/// their claims and outcome writes on their own. Kept short so producers fail fast.
pub(crate) const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Most connections a store's hot path ([`super::conn_stack::Conns`]) keeps open at once,
/// besides those of its pool.
pub(crate) const HOT_CONNECTIONS: usize = 8;

/// Pool settings shared by the SQL servers. A connection that sat idle (a server restart
/// may have closed it) is pinged before use and replaced if dead; one in steady use is
/// not, which saves a round trip per call (sqlx pings on every acquire by default).
/// sqlx (0.9.1 on) opens its TCP connections with `TCP_NODELAY`.
pub(crate) fn pool_options<DB: sqlx::Database>() -> sqlx::pool::PoolOptions<DB> {
    sqlx::pool::PoolOptions::new()
        // The calls off the hot path (reads, cancels, maintenance, schedules); with the
        // hot path's own connections a process opens at most 12.
        .max_connections(4)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for < PING_IF_IDLE {
                    return Ok(true);
                }
                Ok(<DB::Connection as sqlx::Connection>::ping(conn)
                    .await
                    .is_ok())
            })
        })
}

/// Checks that the server at `url` answers ([`probe`]), then opens the pool.
pub(crate) async fn connect<DB: sqlx::Database>(url: &str) -> CoreResult<sqlx::Pool<DB>> {
    probe::<DB::Connection>(url).await?;
    pool_options::<DB>()
        .connect(url)
        .await
        .map_err(|e| connect_error(url, e))
}

/// Parses `url` and opens one connection right away, so a wrong host, port or password
/// fails at once with the server's reason instead of after the pool's acquire timeout.
async fn probe<C: sqlx::Connection>(url: &str) -> CoreResult<()> {
    let conn = tokio::time::timeout(Duration::from_secs(15), C::connect(url))
        .await
        .map_err(|_| {
            CoreError::Backend(format!(
                "cannot connect to {}: timed out after 15 s",
                crate::url::redact(url)
            ))
        })?
        .map_err(|e| connect_error(url, e))?;
    let _ = conn.close().await;
    Ok(())
}

fn connect_error(url: &str, err: sqlx::Error) -> CoreError {
    // The driver's text may quote the password (percent-decoded): scrub it.
    let reason = crate::redact::Secrets::of(url).scrub(&err.to_string());
    let url = crate::url::redact(url);
    match err {
        // A bad URL option (e.g. `sslmode=bogus`) is a malformed URL, not a server fault.
        sqlx::Error::Configuration(_) => {
            CoreError::config(format!("malformed backend URL {url:?}: {reason}"))
        }
        _ => CoreError::Backend(format!("cannot connect to {url}: {reason}")),
    }
}
