//! Connecting to SQL servers: fail fast with the server's reason, never leak the password.

use std::time::Duration;

use crate::error::{CoreError, CoreResult};

/// How long a call waits for a pooled connection before failing with `BackendError`.
///
/// sqlx keeps retrying a refused connection until this passes, so it bounds how long an
/// enqueue (or any call) blocks while the server is down or restarting; workers retry
/// their claims and outcome writes on their own. Kept short so producers fail fast.
pub(crate) const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Parses `url` and opens one connection right away, so a wrong host, port or password
/// fails at once with the server's reason instead of after the pool's acquire timeout.
pub(crate) async fn probe<C: sqlx::Connection>(url: &str) -> CoreResult<()> {
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

pub(crate) fn connect_error(url: &str, err: sqlx::Error) -> CoreError {
    let url = crate::url::redact(url);
    match err {
        // A bad URL option (e.g. `sslmode=bogus`) is a malformed URL, not a server fault.
        sqlx::Error::Configuration(_) => {
            CoreError::config(format!("malformed backend URL {url:?}: {err}"))
        }
        err => CoreError::Backend(format!("cannot connect to {url}: {err}")),
    }
}
