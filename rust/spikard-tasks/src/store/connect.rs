//! Connecting to SQL servers: fail fast with the server's reason, never leak the password.

use std::time::Duration;

use crate::error::{CoreError, CoreResult};

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
    CoreError::Backend(format!(
        "cannot connect to {}: {err}",
        crate::url::redact(url)
    ))
}
